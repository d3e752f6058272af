"""Tests for `bilstm_nlp.nn.memory` and the document plumbing around it: the memory against a
per-token loop, documents numbered and batched whole, a document-memory tagger giving the same
scores however its documents are batched, and one trained end to end on a corpus whose tags only
another sentence of the document can tell."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp import load, tag_sentences
from bilstm_nlp.annotation.annotator import annotate_texts
from bilstm_nlp.cli import app
from bilstm_nlp.config import ModelConfig
from bilstm_nlp.corpus.loading import document_numbers
from bilstm_nlp.decode_torch import document_emissions
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.nn.encoding import Batch, TokenEncoder, batch_doc_ids, collate, document_batches
from bilstm_nlp.nn.memory import document_memory
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import Tagger
from bilstm_nlp.nn.vocab import UNK_ID, Vocab
from bilstm_nlp.training.loop import train

from .test_train import tiny_config


def _memory_by_loop(features: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Each token's memory, one token at a time."""
    size, seq_len, dim = features.shape
    docs = batch.doc_ids.tolist() if batch.doc_ids is not None else list(range(size))
    expected = torch.zeros_like(features)

    def word(row: int, position: int) -> tuple:
        word_id = int(batch.word_ids[row, position])
        if word_id == UNK_ID:
            return ("spelling", int(batch.spelling_ids[row, position]))
        return ("word", word_id)

    for row in range(size):
        for position in range(seq_len):
            if not batch.mask[row, position]:
                continue
            others = [
                features[other_row, other_position]
                for other_row in range(size)
                for other_position in range(seq_len)
                if batch.mask[other_row, other_position]
                and docs[other_row] == docs[row]
                and (other_row, other_position) != (row, position)
                and word(other_row, other_position) == word(row, position)
            ]
            if others:
                expected[row, position] = torch.stack(others).mean(dim=0)
    return expected


WORDS = ["the", "The", "EU", "rejects", "German", "call", "Zorb", "ZORB", "Quax", "quax", "."]
WORDS += ["Zorbalinovich", "Quaxenburgerstrasse"]


def _random_batch(seed: int, sentences: int, documents: int | None) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    vocab = Vocab.build([WORDS[:6]], ["O"], [], 1)  # Zorb, Quax: unknown words, told by spelling
    encoder = TokenEncoder(vocab, 30)
    token_lists = []
    for _ in range(sentences):
        length = int(torch.randint(1, 9, (1,), generator=generator))
        picks = torch.randint(0, len(WORDS), (length,), generator=generator)
        token_lists.append([WORDS[int(i)] for i in picks])
    batch = collate([encoder(tokens) for tokens in token_lists])
    if documents is not None:
        batch.doc_ids = torch.randint(0, documents, (sentences,), generator=generator)
    return batch


@pytest.mark.parametrize(("seed", "documents"), [(0, None), (1, 1), (2, 3), (3, 7)])
def test_memory_is_the_mean_of_the_other_occurrences_in_the_document(seed, documents):
    batch = _random_batch(seed, 7, documents)
    generator = torch.Generator().manual_seed(seed + 100)
    features = torch.randn(*batch.word_ids.shape, 5, generator=generator, dtype=torch.float64)
    features = features * batch.mask.unsqueeze(-1)
    got = document_memory(features, batch)
    torch.testing.assert_close(got, _memory_by_loop(features, batch))
    # Somewhere a word recurs in its document, or the comparison above proved little.
    assert bool(got.abs().sum(-1)[batch.mask].gt(0).any())


def test_case_variants_share_a_word_and_unknown_words_their_spelling():
    # Every character is known, so unknown words are told apart by their characters.
    vocab = Vocab.build([["the", "EU", "THE"]], ["O"], [], 1)
    encoder = TokenEncoder(vocab, 30)
    batch = collate([encoder(["The", "EU", "het"]), encoder(["the", "HET", "het"])])
    batch.doc_ids = torch.tensor([0, 0])
    features = torch.arange(12, dtype=torch.float32).view(2, 3, 2)
    memory = document_memory(features, batch)
    # "The" and "the" are one word; "het" twice is one spelling; "HET" (unknown) is another.
    assert memory[0, 0].tolist() == features[1, 0].tolist()
    assert memory[1, 0].tolist() == features[0, 0].tolist()
    assert memory[0, 2].tolist() == features[1, 2].tolist()
    assert memory[0, 1].tolist() == [0.0, 0.0] and memory[1, 1].tolist() == [0.0, 0.0]


def test_document_numbers_follow_runs_of_one_doc_id():
    ids = ["doc-1", "doc-1", None, None, "doc-2", "doc-1", "doc-1"]
    assert document_numbers(ids) == [0, 0, 1, 2, 3, 4, 4]
    assert document_numbers([]) == []


def test_document_batches_keep_documents_whole_and_cover_every_sentence():
    documents = [d for d, size in enumerate([3, 1, 5, 2, 12, 4, 4, 1]) for _ in range(size)]
    batches = list(document_batches(documents, 6, random.Random(1)))
    assert sorted(i for batch in batches for i in batch) == list(range(len(documents)))
    assert all(len(batch) <= 6 for batch in batches)
    for document in set(documents):
        members = [i for i, d in enumerate(documents) if d == document]
        holding = [batch for batch in batches if set(batch) & set(members)]
        # A document that fits is in one batch; the 12-sentence one in pieces of 6.
        assert len(holding) == (1 if len(members) <= 6 else 2)
    assert batches == list(document_batches(documents, 6, random.Random(1)))
    assert batches != list(document_batches(documents, 6, random.Random(2)))


def test_batch_doc_ids_number_documents_and_set_sentences_alone():
    assert batch_doc_ids([7, 7, 3, 7, 9]).tolist() == [0, 0, 1, 0, 2]
    alone = batch_doc_ids([7, 7, 7, 7], alone=1.0, rng=random.Random(0))
    assert alone.tolist() == [0, 1, 2, 3]
    some = batch_doc_ids([7] * 200, alone=0.2, rng=random.Random(0))
    own = len(set(some.tolist())) - 1
    assert 20 < own < 60


def _memory_tagger(head: str = "crf") -> Tagger:
    """Words past the sixth are unknown, their characters known: told apart by spelling."""
    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    known = Vocab.build([WORDS[:6]], labels)
    vocab = Vocab(known.words, Vocab.build([WORDS], labels).chars, known.labels, len(known.words))
    config = ModelConfig(
        vectors=None, word_dim=8, hidden=6, char_hidden=4, char_dim=4, doc_memory=True, head=head
    )
    meta = ModelMeta.from_json({"task": "ner"}, kind="tagger", scheme="IOB2", output_scheme="IOB2")
    return Tagger(config, vocab, meta).eval()


def test_memory_moves_only_the_scores_of_words_found_elsewhere_in_the_document():
    model = _memory_tagger()
    encoder = TokenEncoder(model.vocab, 30)
    batch = collate([encoder(["Zorb", "rejects", "the", "call"]), encoder(["EU", "Zorb", "."])])
    with torch.no_grad():
        apart = model(batch)
        batch.doc_ids = torch.tensor([0, 0])
        together = model(batch)
    moved = (apart - together).abs().amax(dim=-1) > 1e-6
    assert moved.tolist() == [[True, False, False, False], [False, True, False, False]]


def test_tagging_by_document_does_not_depend_on_batching_or_order():
    model = _memory_tagger()
    generator = random.Random(3)
    token_lists = [
        [generator.choice(WORDS) for _ in range(generator.randint(0, 9))] for _ in range(40)
    ]
    documents = [f"d{generator.randint(0, 9)}" for _ in token_lists]

    def scores(batch_size: int, order: list[int]) -> list[list[list[float]]]:
        tagged = tag_sentences(
            model,
            [token_lists[i] for i in order],
            documents=[documents[i] for i in order],
            batch_size=batch_size,
        )
        by_input = {index: tagged[place].tag_probs for place, index in enumerate(order)}
        return [by_input[i] for i in range(len(token_lists))]

    reference = scores(256, list(range(40)))
    shuffled = list(range(40))
    generator.shuffle(shuffled)
    for batch_size, order in ((1, list(range(40))), (7, shuffled), (64, shuffled[::-1])):
        for a, b in zip(reference, scores(batch_size, order), strict=True):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=0, atol=1e-5)
    alone = tag_sentences(model, token_lists)
    assert any(
        not torch.allclose(torch.tensor(a.tag_probs), torch.tensor(b), atol=1e-5)
        for a, b in zip(alone, reference, strict=True)
        if a.tag_probs
    )
    with pytest.raises(ValueError, match="3 documents given for 40 sentences"):
        tag_sentences(model, token_lists, documents=["a", "b", "c"])


@pytest.mark.parametrize("sentences", [5, 40])  # 40: the by-type path of large batches
def test_the_split_emission_layer_gives_the_emissions_of_the_whole(sentences):
    model = _memory_tagger()
    generator = random.Random(sentences)
    token_lists = [
        [generator.choice(WORDS) for _ in range(generator.randint(1, 9))] for _ in range(sentences)
    ]
    batch = collate([TokenEncoder(model.vocab, 30)(tokens) for tokens in token_lists])
    batch.doc_ids = torch.tensor([generator.randint(0, 2) for _ in token_lists])
    with torch.enable_grad():  # the training formulation: the memory of the full states
        whole = model(batch).detach()
    with torch.inference_mode():
        split = model(batch)
    mask = batch.mask
    torch.testing.assert_close(split[mask], whole[mask], rtol=0, atol=1e-5)


def test_the_split_emission_layer_follows_the_weights_it_was_built_from():
    # Built once and kept: a training step or a load after it must not leave it stale.
    model = _memory_tagger()
    batch = collate([TokenEncoder(model.vocab, 30)(["Zorb", "rejects", "EU"])])
    batch.doc_ids = torch.tensor([0])
    assert model.stacked_memory_projection() is model.stacked_memory_projection()

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            whole = model(batch).detach()
        with torch.inference_mode():
            return model(batch), whole

    before, _ = both()
    with torch.no_grad():  # as an optimizer step changes them: in place
        model.head.projection.weight.mul_(1.5)
        model.head.projection.bias.add_(0.25)
    split, whole = both()
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-5)
    assert not torch.allclose(split, before)
    state = {k: v + 0.5 if "projection" in k else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    split, whole = both()
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-5)
    # As thinc's optimizer does in spaCy training: through shared memory, no version counted.
    model.head.projection.weight.detach().numpy()[0] += 2.0
    split, whole = both()
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-5)
    # A model loaded under inference mode has weights without a version count.
    with torch.inference_mode():
        loaded = _memory_tagger()
        assert loaded.stacked_memory_projection() is loaded.stacked_memory_projection()


def test_document_emissions_are_the_model_on_whole_documents():
    model = _memory_tagger()
    generator = random.Random(5)
    token_lists = [
        [generator.choice(WORDS) for _ in range(generator.randint(0, 9))] for _ in range(30)
    ]
    documents = [generator.choice("abcd") for _ in token_lists]
    encoder = TokenEncoder(model.vocab, 30)
    batches = [(list(range(i, min(i + 4, 30))), token_lists[i : i + 4]) for i in range(0, 30, 4)]
    with torch.inference_mode():
        prepared = document_emissions(model, encoder, batches, documents, "cpu")
        rows = {
            index: emissions[row]
            for (indices, _), (_, emissions) in zip(batches, prepared, strict=True)
            for row, index in enumerate(indices)
        }
        for document in "abcd":
            members = [i for i, d in enumerate(documents) if d == document]
            batch = collate([encoder(token_lists[i]) for i in members])
            batch.doc_ids = torch.zeros(len(members), dtype=torch.long)
            whole = model(batch)
            for row, index in enumerate(members):
                # An empty sentence runs as one padding token whose row nothing reads (it
                # lends only to other empty sentences' memory): it has no tags.
                length = len(token_lists[index])
                torch.testing.assert_close(
                    rows[index][:length], whole[row, :length], rtol=0, atol=1e-5
                )


def test_an_int8_memory_tagger_tags_by_document():
    model = _memory_tagger()
    token_lists = [["Zorb", "rejects", "the", "call"], ["EU", "Zorb", "."], []]
    documents = ["a", "a", "a"]
    float_tags = [t.tags for t in tag_sentences(model, token_lists, documents=documents)]
    model.quantize_int8()
    tagged = tag_sentences(model, token_lists, documents=documents)
    assert [len(t.tags) for t in tagged] == [4, 3, 0]
    assert [t.tags for t in tagged] == float_tags


# A made-up name is a person or a place by its context in one sentence ("Mr Zorb", "in Zorb");
# the other sentence, the same words in every document, says nothing of which.
def _story(name: str, label: str) -> list[list[tuple[str, str]]]:
    opening = [("Mr", "O"), (name, f"I-{label}"), ("spoke", "O"), (".", "O")]
    if label == "LOC":
        opening = [("rain", "O"), ("in", "O"), (name, "I-LOC"), (".", "O")]
    return [opening, [(name, f"I-{label}"), ("was", "O"), ("named", "O"), (".", "O")]]


def _write_stories(path: Path) -> Path:
    lines = []
    for name in ("Zorb", "Quax", "Vell", "Mirt"):
        for label in ("PER", "LOC"):
            lines += ["-DOCSTART- -X- O O", ""]
            for sentence in _story(name, label):
                lines += [f"{word} NNP I-NP {tag}" for word, tag in sentence] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_memory_tagger_learns_what_only_the_document_tells(tmp_path: Path):
    corpus = _write_stories(tmp_path / "stories.conll")
    plain = train(tiny_config(corpus, "crf", "BIOES"), tmp_path / "plain")
    remembering = train(
        tiny_config(corpus, "crf", "BIOES", doc_memory=True, doc_memory_dropout=0.0),
        tmp_path / "memory",
    )
    # Alone, "Zorb was named ." is a person in one story and a place in the other: a sentence
    # model gets at most half of those names (12 of 16 entities in all).
    assert plain.best_dev_score <= 100 * (2 * 12 / (16 + 12)) + 1e-6
    assert remembering.best_dev_score == pytest.approx(100.0)
    model = load(tmp_path / "memory")
    tokens = [["Mr", "Vell", "spoke", "."], ["Vell", "was", "named", "."]]
    tagged = tag_sentences(model, tokens, documents=["story", "story"])
    assert tagged[1].tags == ["I-PER", "O", "O", "O"]
    tokens[0] = ["rain", "in", "Vell", "."]
    tagged = tag_sentences(model, tokens, documents=["story", "story"])
    assert tagged[1].tags == ["I-LOC", "O", "O", "O"]
    # evaluate reads the file's documents, or with --sentences-alone none.
    for options, expected in (([], 100.0), (["--sentences-alone"], None)):
        result = CliRunner().invoke(
            app, ["evaluate", str(tmp_path / "memory"), str(corpus), "--json", *options]
        )
        assert result.exit_code == 0, result.output
        f1 = json.loads(result.stdout)["f1"]
        assert f1 == pytest.approx(expected) if expected else f1 < 100.0
    # Raw text: each text is a document (annotate, tag, the service, the spaCy component).
    texts = ["Mr Mirt spoke. Mirt was named.", "rain in Mirt. Mirt was named."]
    annotations = annotate_texts(model, texts)
    assert [len(a.sentences) for a in annotations] == [2, 2]
    assert [[(s.text, s.label) for s in a.spans] for a in annotations] == [
        [("Mirt", "PER"), ("Mirt", "PER")],
        [("Mirt", "LOC"), ("Mirt", "LOC")],
    ]


def test_an_epoch_of_a_memory_tagger_reads_whole_documents(tmp_path: Path):
    from bilstm_nlp.training import prepare_training, run_epoch

    corpus = _write_stories(tmp_path / "stories.conll")
    run = prepare_training(tiny_config(corpus, "crf", "BIOES", doc_memory=True))
    assert run.data.documents == [d for d in range(8) for _ in range(2)]
    loss, tokens = run_epoch(run, random.Random(0))
    assert math.isfinite(loss) and tokens == 8 * (4 + 4)


def test_memory_is_for_taggers():
    with pytest.raises(ConfigError, match="doc_memory is for taggers"):
        ModelConfig(task="classifier", doc_memory=True)


@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_an_onnx_export_tags_as_the_torch_model_by_document_and_alone(tmp_path: Path, head):
    pytest.importorskip("onnxruntime")
    from bilstm_nlp.integrations.runtime.export import export_onnx
    from bilstm_nlp.serialize import save_model

    model = _memory_tagger(head)
    save_model(model, tmp_path / "model")
    exported = load(export_onnx(tmp_path / "model", tmp_path / "onnx"))
    generator = random.Random(11)
    token_lists = [
        [generator.choice(WORDS) for _ in range(generator.randint(0, 9))] for _ in range(50)
    ]
    documents = [generator.choice("abcde") for _ in token_lists]
    for given in (documents, None):
        for batch_size in (8, 256):
            by_torch = tag_sentences(model, token_lists, documents=given, batch_size=batch_size)
            by_onnx = tag_sentences(exported, token_lists, documents=given, batch_size=batch_size)
            for a, b in zip(by_torch, by_onnx, strict=True):
                assert a.tags == b.tags
                torch.testing.assert_close(
                    torch.tensor(a.tag_probs), torch.tensor(b.tag_probs), rtol=0, atol=1e-4
                )
