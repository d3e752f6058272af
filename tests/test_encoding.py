"""Token encoding and the char CNN: the fast paths equal the plain ones."""

from __future__ import annotations

import itertools
import random
import sys
import threading

import numpy as np
import torch
import torch.nn.functional as F

from bilstm_nlp.nn.embeddings import CharCNN
from bilstm_nlp.nn.encoding import (
    EncodedSentence,
    TokenEncoder,
    bucket_batches,
    collate,
    encode_tokens,
)
from bilstm_nlp.nn.ids import collate_arrays
from bilstm_nlp.nn.vocab import PAD_ID, Vocab


def _padded_cnn(cnn: CharCNN, char_ids: torch.Tensor) -> torch.Tensor:
    # The plain computation: every word padded to the longest, padding masked before the max.
    features = F.conv1d(
        cnn.embedding(char_ids).transpose(1, 2),
        cnn.conv.weight,
        cnn.conv.bias,
        padding=cnn.conv.padding,
    )
    features = features.masked_fill((char_ids == PAD_ID).unsqueeze(1), float("-inf"))
    return features.max(dim=2).values


def test_char_cnn_grouped_by_length_equals_padded_batch() -> None:
    torch.manual_seed(0)
    rng = random.Random(0)
    cnn = CharCNN(num_chars=40, char_dim=7, filters=5, kernel=3)
    lengths = [rng.randint(1, 12) for _ in range(300)]
    char_ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        char_ids[row, :length] = torch.randint(1, 40, (length,))
    torch.testing.assert_close(cnn(char_ids), _padded_cnn(cnn, char_ids))


def test_char_cnn_kept_tables_follow_every_change_of_the_weights() -> None:
    # Without gradients the CNN keeps its tables; a change of the weights must be seen however
    # it is made: a load, an optimizer step, or thinc's writes through shared memory.
    torch.manual_seed(3)
    cnn = CharCNN(num_chars=30, char_dim=5, filters=4, kernel=3)
    char_ids = torch.randint(1, 30, (50, 8))
    with torch.no_grad():
        assert cnn.stacked_tables() is cnn.stacked_tables()
        changes = [
            lambda: cnn.conv.weight.mul_(1.25),
            lambda: cnn.load_state_dict({k: v + 0.5 for k, v in cnn.state_dict().items()}),
            lambda: cnn.embedding.weight.detach().numpy().__setitem__(3, 9.0),
            lambda: cnn.conv.bias.detach().numpy().__iadd__(1.0),
        ]
        for change in changes:
            before = cnn(char_ids)
            change()
            after = cnn(char_ids)
            torch.testing.assert_close(after, _padded_cnn(cnn, char_ids))
            assert not torch.allclose(before, after)
    # With gradients the tables are built afresh, so that they carry them.
    assert cnn(char_ids).requires_grad


def test_char_cnn_gradients_equal_padded_batch() -> None:
    torch.manual_seed(1)
    cnn = CharCNN(num_chars=20, char_dim=4, filters=3, kernel=5).double()
    char_ids = torch.tensor([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [1, 2, 3, 4, 5], [9, 8, 0, 0, 0]])
    grouped = torch.autograd.grad(cnn(char_ids).sum(), list(cnn.parameters()))
    padded = torch.autograd.grad(_padded_cnn(cnn, char_ids).sum(), list(cnn.parameters()))
    for got, want in zip(grouped, padded, strict=True):
        torch.testing.assert_close(got, want)


def test_char_cnn_gradients_equal_padded_batch_when_a_maximum_is_tied() -> None:
    # A word with a repeated character n-gram ("Mississippi", "!!!!", "1000") has the same
    # convolution output at two positions; if that is its maximum, the gradient goes to one of
    # them, as Tensor.max gives it. torch.segment_reduce's backward gave it to each, so every
    # character CNN weight's gradient was too large by the ties (3-7% on a batch of EWT words).
    torch.manual_seed(2)
    rng = random.Random(2)
    cnn = CharCNN(num_chars=6, char_dim=3, filters=4, kernel=3).double()
    words = [[rng.randint(1, 3)] * rng.randint(1, 9) for _ in range(20)]
    words += [[rng.randint(1, 5) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    char_ids = torch.zeros(len(words), max(map(len, words)), dtype=torch.long)
    for row, word in enumerate(words):
        char_ids[row, : len(word)] = torch.tensor(word)
    upstream = torch.randn(len(words), 4, dtype=torch.float64)
    outputs = cnn(char_ids)
    features = F.conv1d(
        cnn.embedding(char_ids).transpose(1, 2), cnn.conv.weight, cnn.conv.bias, padding=1
    ).masked_fill((char_ids == PAD_ID).unsqueeze(1), float("-inf"))
    tied = int(((features == outputs.unsqueeze(2)).sum(dim=2) > 1).sum())
    assert tied > 20  # the case under test occurs
    grouped = torch.autograd.grad((outputs * upstream).sum(), list(cnn.parameters()))
    padded = torch.autograd.grad(
        (_padded_cnn(cnn, char_ids) * upstream).sum(), list(cnn.parameters())
    )
    for got, want in zip(grouped, padded, strict=True):
        torch.testing.assert_close(got, want)
    # The bias enters every output once, so its gradient is the upstream gradient's sum.
    torch.testing.assert_close(grouped[-1], upstream.sum(dim=0))


def test_token_encoder_equals_encode_tokens_across_cache_clears() -> None:
    vocab = Vocab.build([["The", "cat", "sat", "2024", "Ünïcode"]], ["O"])
    encoder = TokenEncoder(vocab, max_word_chars=4, cache_size=3)
    rng = random.Random(2)
    words = ["The", "the", "cat", "sat", "2024", "Ünïcode", "unseen", "", "x" * 40, "a😀"]
    most_distinct = 0
    for _ in range(50):
        tokens = [rng.choice(words) for _ in range(rng.randint(0, 8))]
        most_distinct = max(most_distinct, len(set(tokens)))
        got = encoder(tokens)
        want = encode_tokens(tokens, vocab, 4)
        assert got.word_ids == want.word_ids
        assert got.casing_ids == want.casing_ids
        assert [list(chars) for chars in got.char_ids] == want.char_ids
        # bounded: at most the cache size, or the most distinct tokens of one sentence
        assert encoder.remembered <= max(3, most_distinct)


def test_encode_batch_equals_collating_each_sentence_across_cache_clears() -> None:
    vocab = Vocab.build([["The", "cat", "sat", "2024", "Ünïcode"]], ["O"])
    rng = random.Random(4)
    words = ["The", "the", "cat", "sat", "2024", "Ünïcode", "unseen", "", "x" * 40, "xxxxy"]
    # Spellings that differ as text and not as ids: unknown characters (one outside the Basic
    # Multilingual Plane, one a lone surrogate as surrogateescape decoding leaves them), and
    # words cut to the same first 4 characters.
    words += ["a☃", "a😀", "a\udcff", "😀", "xxxxz", "sat☃☃☃☃"]
    # cache 3: batches hold more distinct tokens than it keeps, so it is cleared and overrun
    for cache_size in (3, 1_000):
        batch_encoder = TokenEncoder(vocab, max_word_chars=4, cache_size=cache_size)
        for _ in range(60):
            sentences = [
                [rng.choice(words) for _ in range(rng.choice([0, 1, 3, 8]))]
                for _ in range(rng.randint(1, 6))
            ]
            got = batch_encoder.encode_batch(sentences)
            want = collate_arrays([encode_tokens(tokens, vocab, 4) for tokens in sentences])
            for field in ("word_ids", "casing_ids", "char_ids", "spelling_ids", "mask"):
                got_array, want_array = getattr(got, field), getattr(want, field)
                assert got_array.dtype == want_array.dtype, field
                assert np.array_equal(got_array, want_array), field
            assert got.tag_ids is None
            assert batch_encoder.remembered <= cache_size


def test_one_encoder_shared_by_threads_encodes_every_batch_as_collating_it() -> None:
    vocab = Vocab.build([["The", "cat", "sat", "2024"]], ["O"])
    words = [f"w{i}" for i in range(400)] + ["The", "cat", "sat", "", "x" * 40, "a😀"]
    # cache 300: threads clear the memory under one another's feet, too
    for cache_size in (300, 100_000):
        encoder = TokenEncoder(vocab, max_word_chars=5, cache_size=cache_size)
        failures = []

        def encode(seed: int, encoder=encoder, failures=failures) -> None:
            rng = random.Random(seed)
            for _ in range(40):
                sentences = [
                    [rng.choice(words) for _ in range(rng.randint(0, 12))] for _ in range(8)
                ]
                try:
                    got = encoder.encode_batch(sentences)
                except Exception as error:  # noqa: BLE001 - reported below, with the rest
                    failures.append((seed, repr(error)))
                    continue
                want = collate_arrays([encode_tokens(t, vocab, 5) for t in sentences])
                for field in ("word_ids", "casing_ids", "char_ids", "spelling_ids", "mask"):
                    if not np.array_equal(getattr(got, field), getattr(want, field)):
                        failures.append((seed, field))

        # Threads switch every microsecond, so that they meet inside the encoder.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=encode, args=(seed,)) for seed in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(interval)
        assert failures == []


def test_collate_places_every_character_and_pads_with_zeros() -> None:
    rng = random.Random(3)
    # A small pool of spellings, so that the batch repeats some and the rows are shared.
    pool = [tuple(rng.randint(1, 30) for _ in range(rng.randint(1, 12))) for _ in range(25)]
    sentences = []
    for _ in range(40):
        length = rng.choice([0, 1, 2, 5, 9])
        sentences.append(
            EncodedSentence(
                word_ids=[rng.randint(2, 50) for _ in range(length)],
                casing_ids=[rng.randint(1, 7) for _ in range(length)],
                char_ids=[rng.choice(pool) for _ in range(length)],
                label_ids=[rng.randint(0, 4) for _ in range(length)],
            )
        )
    batch = collate(sentences)
    seq_len = max(max(len(s.word_ids) for s in sentences), 1)
    distinct = {chars for s in sentences for chars in s.char_ids}
    char_len = max(len(c) for c in distinct)
    assert batch.char_ids.shape == (len(distinct), char_len)
    assert batch.spelling_ids.shape == (len(sentences), seq_len)
    expected = torch.zeros(len(sentences), seq_len, char_len, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        for position, chars in enumerate(sentence.char_ids):
            expected[row, position, : len(chars)] = torch.tensor(chars)
        assert batch.word_ids[row, : len(sentence.word_ids)].tolist() == sentence.word_ids
        assert batch.tag_ids[row, : len(sentence.word_ids)].tolist() == sentence.label_ids
        # an empty sentence is one padding token marked real
        assert batch.mask[row].sum() == max(len(sentence.word_ids), 1)
    # Every real token's spelling row holds its characters, zero-padded.
    real = torch.zeros_like(batch.mask)
    for row, sentence in enumerate(sentences):
        real[row, : len(sentence.word_ids)] = True
    assert torch.equal(batch.char_ids[batch.spelling_ids][real], expected[real])


def test_collate_of_empty_sentences_only_has_one_padding_spelling() -> None:
    empty = EncodedSentence(word_ids=[], casing_ids=[], char_ids=[], label_ids=None)
    batch = collate([empty, empty])
    assert batch.char_ids.tolist() == [[0]]
    assert batch.mask.tolist() == [[True], [True]]


def test_bucket_batches_cover_each_sentence_once_in_length_sorted_windows() -> None:
    lengths = [(i * 37) % 23 + 1 for i in range(250)]
    batches = list(bucket_batches(lengths, 4, random.Random(3), bucket_factor=5))
    assert sorted(i for batch in batches for i in batch) == list(range(250))
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert sum(len(batch) < 4 for batch in batches) <= 250 // 20 + 1  # one short batch a window
    assert all(lengths[a] <= lengths[b] for batch in batches for a, b in itertools.pairwise(batch))
    # The same seed gives the same epoch; another seed another order.
    assert batches == list(bucket_batches(lengths, 4, random.Random(3), bucket_factor=5))
    assert batches != list(bucket_batches(lengths, 4, random.Random(4), bucket_factor=5))
