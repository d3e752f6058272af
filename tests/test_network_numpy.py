"""Tests for `bilstm_nlp.runtime.network_numpy` and its use by `decode_torch`: the numpy network
gives the torch `Tagger`'s emission scores (character features bitwise, the rest to float32
rounding) on random models of every architecture it runs and on the shipped models over real
dev sentences; it declines what it cannot run; its arrays follow the model's weights.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bilstm_nlp import decode_torch
from bilstm_nlp.config import ModelConfig
from bilstm_nlp.corpus.readers.conll import read_conll
from bilstm_nlp.decode import tag_sentences
from bilstm_nlp.decode_torch import network_arrays
from bilstm_nlp.nn import vocab as nn_vocab
from bilstm_nlp.nn.embeddings import CharCNN
from bilstm_nlp.nn.encoding import collate
from bilstm_nlp.nn.ids import TokenEncoder
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import Tagger
from bilstm_nlp.nn.quantize import quantize_int8
from bilstm_nlp.nn.vocab import Vocab
from bilstm_nlp.runtime import network_numpy
from bilstm_nlp.runtime.network_numpy import NetworkArrays
from bilstm_nlp.serialize import load_model

SENTENCES = [
    ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
    ["Peter"],
    ["BRUSSELS", "1996-08-22", "the", "a"],
    ["ünknöwn", "ΩΩ", "x" * 40, "the", "a", "EU", ""],
    ["a"] * 30,
    ["Zxq", "met", "Zxq", "ZXQ", "the", "The"],  # repeats, unknown words among them
]
EMISSION_TOLERANCE = 1e-4
"""float32 scores of size ~1-20, summed in another order by another BLAS."""


def random_tagger(seed: int, **config: object) -> Tagger:
    """An untrained tagger with random weights (pretrained-only words included: "the", "a")."""
    torch.manual_seed(seed)
    tags = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    vocab = Vocab.build([[t for s in SENTENCES[:3] for t in s]], tags, ["the", "a"], 2)
    sizes = {"vectors": None, "word_dim": 8, "hidden": 6, "char_hidden": 5, "char_dim": 4}
    model = Tagger(
        ModelConfig(**(sizes | config)),
        vocab,
        ModelMeta.from_json({"task": "ner"}, kind="tagger", scheme="BIOES", output_scheme="BIOES"),
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 1.0)
    return model.eval()


def torch_emissions(model: Tagger, encoder: TokenEncoder, tokens: list[str]) -> np.ndarray:
    with torch.inference_mode():
        return model(collate([encoder(tokens)]))[0].numpy()


def numpy_emissions(
    network: NetworkArrays, encoder: TokenEncoder, tokens: list[str], model: Tagger
) -> np.ndarray:
    encoded = encoder(tokens)
    found = network_numpy.emissions(network, encoded.word_ids, encoded.casing_ids, encoded.char_ids)
    if model.config.doc_memory:
        # The network gives the emission layer's two parts; the sentence is its own document.
        [one] = decode_torch.with_document_memory([found], [encoded], len(model.vocab.words))
        return one
    return found


ARCHITECTURES = [
    {},
    {"doc_memory": True},
    {"layers": 2},
    {"char_encoder": "none", "casing_dim": 0},
    {"char_kernel": 4},
    {"char_kernel": 5, "hidden": 9},
]


@pytest.mark.parametrize("config", ARCHITECTURES)
@pytest.mark.parametrize("seed", [0, 1])
def test_emissions_equal_torch_on_random_models(config, seed):
    model = random_tagger(seed, **config)
    network = network_arrays(model)
    assert network is not None
    encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    for tokens in SENTENCES:
        expected = torch_emissions(model, encoder, tokens)
        found = numpy_emissions(network, encoder, tokens, model)
        assert found.dtype == np.float32 and found.shape == expected.shape
        np.testing.assert_allclose(found, expected, atol=EMISSION_TOLERANCE)
        assert np.abs(expected).max() > 0.5  # random weights give scores worth comparing


@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
def test_char_features_are_the_torch_ones_bitwise(kernel):
    torch.manual_seed(kernel)
    cnn = CharCNN(num_chars=12, char_dim=4, filters=7, kernel=kernel).eval()
    generator = np.random.default_rng(kernel)
    words = [list(generator.integers(1, 12, size=n)) for n in (1, 2, 3, 9, 1, 30)] + [[]]
    grid = torch.zeros(len(words), 30, dtype=torch.long)
    for row, chars in enumerate(words):
        grid[row, : len(chars)] = torch.tensor(chars, dtype=torch.long)
    with torch.inference_mode():
        expected = cnn(grid).numpy()
        tables = cnn.tables().numpy()
    network = NetworkArrays(
        trainable_words=np.zeros((2, 1), np.float32),
        fixed_words=np.zeros((0, 1), np.float32),
        casings=None,
        char_tables=tables,
        char_bias=cnn.conv.bias.detach().numpy(),
        char_padding=cnn.conv.padding[0],
        layers=(),
        projection=np.zeros((1, 1), np.float32),
        projection_bias=np.zeros(1, np.float32),
    )
    found = network_numpy._char_features(network, words)
    assert np.array_equal(found, expected)


@pytest.mark.parametrize(
    ("rows", "inner", "cols"),
    [(1, 3, 4), (3, 108, 800), (4, 108, 800), (13, 108, 800), (64, 108, 1600), (5, 600, 1000)],
)
def test_serial_product_equals_one_product(rows, inner, cols):
    """Cut into pieces of a few rows (none, one row, or the last piece short), the product is
    the whole one's; a row over the piece size (600 × 1000) still goes one row at a time."""
    rng = np.random.default_rng(rows)
    left = rng.standard_normal((rows, inner)).astype(np.float32)
    right = rng.standard_normal((inner, cols)).astype(np.float32)
    product = network_numpy.serial_product(left, right)
    assert product.shape == (rows, cols) and product.dtype == np.float32
    np.testing.assert_allclose(product, left.astype(np.float64) @ right, rtol=1e-4, atol=1e-3)


def test_padding_id_is_the_vocabularys():
    assert network_numpy.PAD_ID == nn_vocab.PAD_ID


def test_declines_what_it_cannot_run():
    assert network_arrays(random_tagger(0, char_encoder="lstm")) is None
    quantized = random_tagger(0)
    quantize_int8(quantized)
    assert network_arrays(quantized) is None
    assert network_arrays(random_tagger(0).double()) is None


def test_low_latency_follows_the_models_weights():
    # The numpy arrays are made once per model and remade when a parameter changes: after an
    # in-place update, a `load_state_dict` and a swap of the LSTM, one sentence tagged with
    # low latency still equals the torch path.
    model = random_tagger(3)
    tokens = SENTENCES[0]

    def both() -> tuple[list, list]:
        [fast] = tag_sentences(model, [tokens], low_latency=True)
        [slow] = tag_sentences(model, [tokens])
        assert fast.tags == slow.tags
        assert fast.tag_probs == pytest.approx(slow.tag_probs, abs=1e-5)
        return fast.tags, fast.tag_probs

    before = both()
    with torch.no_grad():
        model.head.projection.bias[4] += 50.0  # S-PER everywhere it is allowed
    after_update = both()
    assert after_update != before and after_update[0] == ["S-PER"] * len(tokens)
    model.load_state_dict(random_tagger(4).state_dict())
    after_load = both()
    assert after_load != after_update
    quantize_int8(model)  # swaps the LSTM and the projection: the torch network runs it
    assert decode_torch._numpy_arrays(model).network is None
    both()


def test_imports_without_torch():
    code = (
        "import sys; import bilstm_nlp.runtime.network_numpy; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def dev_sentences(corpora: Path, count: int) -> list[list[str]]:
    import conllu

    conll = [
        list(s.tokens)
        for s in read_conll(corpora / "conll2003" / "dev.txt")
        if list(s.tokens) != ["-DOCSTART-"]
    ][:count]
    ewt = conllu.parse((corpora / "ud_ewt" / "dev.conllu").read_text(encoding="utf-8"))
    return conll + [[token["form"] for token in sentence] for sentence in ewt[:count]]


@pytest.mark.parametrize("name", ["ner", "pos"])
def test_shipped_models_on_real_sentences(name, shared_corpora):
    model = load_model(name)
    network = network_arrays(model)
    assert network is not None
    encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    largest = 0.0
    for tokens in dev_sentences(shared_corpora, 200):
        expected = torch_emissions(model, encoder, tokens)
        found = numpy_emissions(network, encoder, tokens, model)
        largest = max(largest, float(np.abs(found - expected).max()))
        assert (found.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert largest < EMISSION_TOLERANCE


def dev_paragraphs(corpora: Path, count: int) -> list[list[list[str]]]:
    """CoNLL-2003 dev documents cut into runs of 2 to `NUMPY_DOCUMENT_MAX_SENTENCES` consecutive
    sentences (each within `NUMPY_NETWORK_MAX_TOKENS`): texts of a few sentences, as one spaCy
    call gets them."""
    largest = decode_torch.NUMPY_DOCUMENT_MAX_SENTENCES
    paragraphs = []
    for _, sentences in itertools.groupby(
        read_conll(corpora / "conll2003" / "dev.txt"), key=lambda s: s.doc_id
    ):
        tokens = [list(s.tokens) for s in sentences if list(s.tokens) != ["-DOCSTART-"]]
        tokens = [t for t in tokens if 0 < len(t) <= decode_torch.NUMPY_NETWORK_MAX_TOKENS]
        size = 2 + len(paragraphs) % (largest - 1)  # 2, 3, ..., largest, 2, ...
        paragraphs.extend(tokens[i : i + size] for i in range(0, len(tokens) - 1, size))
    return [p for p in paragraphs if len(p) > 1][:count]


def test_document_of_a_few_sentences_equals_torch(shared_corpora):
    """A low-latency call of a few sentences of one document (a paragraph in `nlp(text)`): the
    numpy network with the memory taken over the document gives the torch path's emissions, so
    the same tags, and probabilities within 1e-5; words recur across the sentences (the memory
    is in play)."""
    model = load_model("ner")
    encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    paragraphs = dev_paragraphs(shared_corpora, 120)
    largest = decode_torch.NUMPY_DOCUMENT_MAX_SENTENCES
    assert len(paragraphs) == 120 and {len(p) for p in paragraphs} == set(range(2, largest + 1))
    recurring = 0
    for sentences in paragraphs:
        documents = ["d"] * len(sentences)
        found = decode_torch.low_latency_document_emissions(
            model, encoder, sentences, documents, "cpu"
        )
        assert found is not None
        with torch.inference_mode():
            [(batch, expected)] = decode_torch.document_emissions(
                model, encoder, [(list(range(len(sentences))), sentences)], documents, "cpu"
            )
        for row, one in enumerate(found):
            np.testing.assert_allclose(
                one, expected[row, : len(one)].numpy(), atol=EMISSION_TOLERANCE
            )
        words = [w.lower() for s in sentences for w in s]
        recurring += len(words) - len(set(words))
        alone = tag_sentences(model, sentences, documents=documents, low_latency=True, k=2)
        together = tag_sentences(model, sentences, documents=documents, k=2)
        for one, two in zip(alone, together, strict=True):
            assert one.tags == two.tags
            assert one.tag_probs == pytest.approx(two.tag_probs, abs=1e-5)
            assert [s.score for s in one.spans] == pytest.approx(
                [s.score for s in two.spans], abs=1e-5
            )
            assert [t for t, _ in one.kbest] == [t for t, _ in two.kbest]
    assert recurring > 500
    # Two documents in one call (spaCy's pipe of two short docs): the memory stays in each.
    first, second = (p[:2] for p in paragraphs[:2])
    sentences, documents = first + second, ["a", "a", "b", "b"]
    mixed = tag_sentences(model, sentences, documents=documents, low_latency=True)
    apart = tag_sentences(model, first, documents=["a"] * 2, low_latency=True)
    apart += tag_sentences(model, second, documents=["b"] * 2, low_latency=True)
    assert [t.tags for t in mixed] == [t.tags for t in apart]
    assert [t.tag_probs for t in mixed] == [t.tag_probs for t in apart]


def test_document_path_declines_what_it_cannot_run():
    model = random_tagger(0, doc_memory=True)
    encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    short = [["EU", "rejects"], ["Peter"]]
    assert decode_torch.low_latency_document_emissions(model, encoder, short, [0, 0], "cpu")
    too_many = [["a"]] * (decode_torch.NUMPY_DOCUMENT_MAX_SENTENCES + 1)
    too_long = [["a"] * (decode_torch.NUMPY_NETWORK_MAX_TOKENS + 1), ["b"]]
    for sentences in (too_many, too_long, [["a"], []]):
        documents = [0] * len(sentences)
        assert (
            decode_torch.low_latency_document_emissions(model, encoder, sentences, documents, "cpu")
            is None
        )
    quantize_int8(model)
    assert decode_torch.low_latency_document_emissions(model, encoder, short, [0, 0], "cpu") is None
