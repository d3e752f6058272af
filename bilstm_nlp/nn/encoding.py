"""Examples → `Batch`: padded id tensors and a bool mask, with length bucketing.

Sits between the vocabularies and the model. Sentences are encoded to ids once (`EncodedSentence`),
then batched many times; batches group sentences of similar length so padding stays small.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .vocab import PAD_ID, UNK_ID, Vocab, casing_of, word_key


@dataclass
class EncodedSentence:
    """One sentence as ids (no padding)."""

    word_ids: list[int]
    casing_ids: list[int]
    char_ids: Sequence[Sequence[int]]
    label_ids: list[int] | None  # a tag id per token, or one class id, or None


@dataclass
class Batch:
    """Padded tensors for a batch of sentences.

    Attributes:
        word_ids: `(batch, seq_len)` long.
        casing_ids: `(batch, seq_len)` long.
        char_ids: `(spellings, char_len)` long, the characters of each distinct spelling in the
            batch, left-aligned and padded with `PAD_ID`; at least one row.
        spelling_ids: `(batch, seq_len)` long, the row of `char_ids` that spells each token (0 at
            padding). Char features are computed once per spelling: a batch repeats its frequent
            words many times over.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned.
        tag_ids: `(batch, seq_len)` long gold tags (taggers) or `(batch,)` gold classes, or None.
    """

    word_ids: Tensor
    casing_ids: Tensor
    char_ids: Tensor
    spelling_ids: Tensor
    mask: Tensor
    tag_ids: Tensor | None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.word_ids.to(device),
            self.casing_ids.to(device),
            self.char_ids.to(device),
            self.spelling_ids.to(device),
            self.mask.to(device),
            None if self.tag_ids is None else self.tag_ids.to(device),
        )

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())


def encode_tokens(
    tokens: Sequence[str],
    vocab: Vocab,
    max_word_chars: int,
    label_ids: list[int] | None = None,
) -> EncodedSentence:
    """Ids of one sentence. Unknown words and characters map to `<unk>`."""
    unknown_chars = UNK_ID
    char_id = vocab.chars._ids.get
    return EncodedSentence(
        word_ids=vocab.words.ids((word_key(t) for t in tokens), default=UNK_ID),
        casing_ids=[casing_of(t) for t in tokens],
        char_ids=[
            [char_id(c, unknown_chars) for c in t[:max_word_chars]] or [UNK_ID] for t in tokens
        ],
        label_ids=label_ids,
    )


class TokenEncoder:
    """`encode_tokens` with the ids of each distinct token remembered: prediction sees the same
    words again and again, and looking a token up once beats lower-casing, classifying its casing
    and mapping its characters every time.

    Args:
        vocab: the model's vocabularies (frozen).
        max_word_chars: characters per word kept for the char encoder.
        cache_size: distinct tokens remembered; the memory is cleared when it is full, so it stays
            bounded on any input.
    """

    def __init__(self, vocab: Vocab, max_word_chars: int, cache_size: int = 200_000) -> None:
        self.vocab = vocab
        self.max_word_chars = max_word_chars
        self.cache_size = cache_size
        # Tuples of ints, which the garbage collector stops tracking; lists made it rescan the
        # whole memory again and again.
        self._codes: dict[str, tuple[int, int, tuple[int, ...]]] = {}

    def __call__(self, tokens: Sequence[str]) -> EncodedSentence:
        codes = self._codes
        rows = list(map(codes.get, tokens))
        if None in rows:
            missing = list(
                dict.fromkeys(t for t, row in zip(tokens, rows, strict=True) if row is None)
            )
            if len(codes) + len(missing) > self.cache_size:
                codes.clear()
                missing = list(dict.fromkeys(tokens))
            word_id = self.vocab.words._ids.get
            char_id = self.vocab.chars._ids.get
            width = self.max_word_chars
            for token in missing:
                # As `encode_tokens`, without building a sentence per miss.
                chars = tuple(char_id(c, UNK_ID) for c in token[:width]) or (UNK_ID,)
                codes[token] = (word_id(word_key(token), UNK_ID), casing_of(token), chars)
            rows = [codes[t] for t in tokens]
        return EncodedSentence(
            word_ids=[row[0] for row in rows],
            casing_ids=[row[1] for row in rows],
            char_ids=[row[2] for row in rows],
            label_ids=None,
        )


def collate(sentences: Sequence[EncodedSentence], sentence_labels: bool = False) -> Batch:
    """Pad encoded sentences into a `Batch`. An empty sentence becomes one padding token that the
    mask marks real, so every row has `mask[:, 0]` True (the CRF needs it); callers drop its
    output."""
    batch = len(sentences)
    lengths = [len(s.word_ids) for s in sentences]
    seq_len = max(max(lengths), 1)
    # Each distinct spelling once, in order of first appearance, and each token's spelling row.
    spellings: dict[tuple[int, ...], int] = {}
    token_spellings = [
        spellings.setdefault(tuple(chars), len(spellings))
        for s in sentences
        for chars in s.char_ids
    ]
    unique_chars = list(spellings) or [(PAD_ID,)]
    # All characters of all spellings, flattened, and where each goes: one scatter instead of a
    # Python loop.
    char_counts = np.fromiter(map(len, unique_chars), dtype=np.int64, count=len(unique_chars))
    char_len = max(int(char_counts.max(initial=1)), 1)
    flat_chars = np.fromiter(
        itertools.chain.from_iterable(unique_chars), dtype=np.int64, count=int(char_counts.sum())
    )
    char_ids = np.zeros((len(unique_chars), char_len), dtype=np.int64)
    char_starts = np.cumsum(char_counts) - char_counts
    char_positions = np.arange(len(flat_chars)) - np.repeat(char_starts, char_counts)
    char_ids[np.repeat(np.arange(len(unique_chars)), char_counts), char_positions] = flat_chars
    word_ids = np.zeros((batch, seq_len), dtype=np.int64)
    casing_ids = np.zeros((batch, seq_len), dtype=np.int64)
    spelling_ids = np.zeros((batch, seq_len), dtype=np.int64)
    mask = np.arange(seq_len)[None, :] < np.maximum(np.asarray(lengths), 1)[:, None]
    real = np.arange(seq_len)[None, :] < np.asarray(lengths)[:, None]
    # row-major order of the real positions is sentence order, as token_spellings is built
    spelling_ids[real] = np.asarray(token_spellings, dtype=np.int64)
    has_labels = all(s.label_ids is not None for s in sentences)
    labels = np.zeros((batch,) if sentence_labels else (batch, seq_len), dtype=np.int64)
    for row, sentence in enumerate(sentences):
        length = lengths[row]
        if length == 0:
            continue
        word_ids[row, :length] = sentence.word_ids
        casing_ids[row, :length] = sentence.casing_ids
        if has_labels:
            if sentence_labels:
                labels[row] = sentence.label_ids[0]  # type: ignore[index]
            else:
                labels[row, :length] = sentence.label_ids
    tag_ids = torch.from_numpy(labels) if has_labels else None
    word_ids, casing_ids, char_ids, spelling_ids = (
        torch.from_numpy(a) for a in (word_ids, casing_ids, char_ids, spelling_ids)
    )
    mask = torch.from_numpy(mask)
    return Batch(word_ids, casing_ids, char_ids, spelling_ids, mask, tag_ids)


def bucket_batches(
    lengths: Sequence[int],
    batch_size: int,
    rng: random.Random,
    bucket_factor: int = 50,
) -> Iterator[list[int]]:
    """Indices of training sentences grouped into batches of similar length, in a random order.

    Sentences are shuffled, cut into windows of `bucket_factor * batch_size`, sorted by length
    inside each window and cut into batches; the batch order is then shuffled. Prediction sorts by
    length itself (least padding); this is for training, where each epoch needs another order.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_factor
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    yield from batches


def word_dropout(word_ids: Tensor, mask: Tensor, rate: float) -> Tensor:
    """Replace real words by `<unk>` with probability `rate` (training only), so the model learns
    the unknown-word embedding and leans on char features for rare words."""
    if rate <= 0:
        return word_ids
    drop = (torch.rand(word_ids.shape, device=word_ids.device) < rate) & mask
    return torch.where(drop, torch.full_like(word_ids, UNK_ID), word_ids)


__all__ = [
    "Batch",
    "EncodedSentence",
    "PAD_ID",
    "TokenEncoder",
    "bucket_batches",
    "collate",
    "encode_tokens",
    "word_dropout",
]
