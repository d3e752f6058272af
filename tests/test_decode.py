"""Tests for `bilstm_nlp.decode`: batched equals one at a time, k-best agrees with Viterbi,
probabilities are probabilities, empty sentences get empty results, in input order.

The models are tiny and untrained, with weights drawn wide enough that predictions vary.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import threading

import numpy as np
import pytest
import torch

from bilstm_nlp.config import ModelConfig
from bilstm_nlp.decode import (
    classify_sentences,
    garbage_collection_paused,
    length_batches,
    tag_sentences,
)
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.nn.encoding import Batch
from bilstm_nlp.nn.heads import CRFHead
from bilstm_nlp.nn.ids import TokenEncoder
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import Classifier, Tagger
from bilstm_nlp.nn.vocab import Vocab
from bilstm_nlp.text.schemes import convert_tags, spelt_bilou, tags_to_spans

WORDS = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
SENTENCES = [
    ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
    ["German"],
    [],
    ["British", "lamb", "unknown", "EU", "call"],
    ["to", "boycott", "."],
    [],
    ["EU", "EU", "EU", "German", "German", "lamb", "lamb"],
]
TAGGERS = {
    # name: (tags, scheme, output scheme, head)
    "crf-bioes-as-iob1": (["O", "B-ORG", "E-ORG", "S-ORG", "S-MISC"], "BIOES", "IOB1", "crf"),
    "crf-iob1": (["O", "I-ORG", "B-ORG", "I-MISC", "B-MISC"], "IOB1", "IOB1", "crf"),
    "softmax-iob2": (["O", "B-ORG", "I-ORG", "B-MISC", "I-MISC"], "IOB2", "IOB2", "softmax"),
    "crf-pos": (["NN", "VB", "JJ", "."], None, None, "crf"),
    "softmax-pos": (["NN", "VB", "JJ", "."], None, None, "softmax"),
}


def _widen(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-1.0, 1.0)


def _tagger(name: str) -> Tagger:
    tags, scheme, output_scheme, head = TAGGERS[name]
    torch.manual_seed(0)
    vocab = Vocab.build([WORDS], tags)
    config = ModelConfig(
        vectors=None, word_dim=8, hidden=6, char_hidden=4, char_dim=4, head=head, constrained=True
    )
    meta = ModelMeta.from_json({}, kind="tagger", scheme=scheme, output_scheme=output_scheme)
    model = Tagger(config, vocab, meta)
    _widen(model)
    return model.eval()


@pytest.fixture(scope="module", params=list(TAGGERS))
def tagger(request) -> Tagger:
    return _tagger(request.param)


def test_batched_equals_one_at_a_time(tagger: Tagger) -> None:
    batched = tag_sentences(tagger, SENTENCES, batch_size=3, k=3)
    for tokens, result in zip(SENTENCES, batched, strict=True):
        [alone] = tag_sentences(tagger, [tokens], k=3)
        assert result.tokens == tokens and result.tags == alone.tags
        assert result.tag_probs == pytest.approx(alone.tag_probs, abs=1e-5)
        assert [(s.start, s.end, s.label) for s in result.spans] == [
            (s.start, s.end, s.label) for s in alone.spans
        ]
        assert [s.score for s in result.spans] == pytest.approx(
            [s.score for s in alone.spans], abs=1e-5
        )
        assert [path for path, _ in result.kbest] == [path for path, _ in alone.kbest]
        assert [p for _, p in result.kbest] == pytest.approx([p for _, p in alone.kbest], abs=1e-5)


def test_first_kbest_path_is_the_decoded_one_and_probabilities_are_probabilities(
    tagger: Tagger,
) -> None:
    results = tag_sentences(tagger, SENTENCES, k=4)
    assert bool(tagger.scheme) == any(result.spans for result in results)
    for tokens, result in zip(SENTENCES, results, strict=True):
        assert len(result.tags) == len(result.tag_probs) == len(tokens)
        assert all(0.0 <= p <= 1.0 for p in result.tag_probs)
        assert all(0.0 <= s.score <= 1.0 for s in result.spans)
        if not tokens:
            assert result.kbest == []
            continue
        assert result.kbest[0][0] == result.tags
        kbest_probs = [p for _, p in result.kbest]
        assert all(0.0 < p <= 1.0 for p in kbest_probs) and sum(kbest_probs) <= 1.0 + 1e-6
        assert kbest_probs == sorted(kbest_probs, reverse=True)
        # A whole path is never likelier than any one of its tags.
        assert kbest_probs[0] <= min(result.tag_probs) + 1e-6
        # Spans are those of the tags given back (output scheme).
        if tagger.scheme:
            spans = [(s.start, s.end, s.label) for s in tags_to_spans(result.tags)]
            assert [(s.start, s.end, s.label) for s in result.spans] == spans
        else:
            assert result.spans == []


def test_empty_sentences_get_empty_results_in_place(tagger: Tagger) -> None:
    with_empty = tag_sentences(tagger, SENTENCES, k=2)
    without = tag_sentences(tagger, [s for s in SENTENCES if s], k=2)
    assert len(with_empty) == len(SENTENCES)
    for empty in (with_empty[2], with_empty[5]):
        assert (empty.tokens, empty.tags, empty.tag_probs, empty.spans, empty.kbest) == (
            [],
            [],
            [],
            [],
            [],
        )
    assert [r.tags for r in with_empty if r.tokens] == [r.tags for r in without]
    assert tag_sentences(tagger, []) == []
    assert [r.tags for r in tag_sentences(tagger, [[], []])] == [[], []]


def test_without_confidence_the_tags_are_the_same(tagger: Tagger) -> None:
    plain = tag_sentences(tagger, SENTENCES, confidence=False)
    assert [r.tags for r in plain] == [r.tags for r in tag_sentences(tagger, SENTENCES)]
    assert all(p == 1.0 for r in plain for p in r.tag_probs)


def test_uncertainty_agrees_with_kbest_and_marginals_and_changes_nothing_else(
    tagger: Tagger,
) -> None:
    plain = tag_sentences(tagger, SENTENCES, k=2)
    unsure = tag_sentences(tagger, SENTENCES, k=2, uncertainty=True)
    assert all(result.uncertainty is None for result in plain)
    for tokens, before, after in zip(SENTENCES, plain, unsure, strict=True):
        assert (after.tags, after.spans, after.kbest) == (before.tags, before.spans, before.kbest)
        measure = after.uncertainty
        if not tokens:
            assert (measure.path_log_prob, measure.entropy, measure.outside_probs) == (0, 0, [])
            continue
        # The decoded path's probability is the best k-best path's.
        assert math.exp(measure.path_log_prob) == pytest.approx(after.kbest[0][1], abs=1e-5)
        assert measure.path_log_prob <= 0 and measure.entropy >= 0
        if not tagger.scheme:
            assert measure.outside_probs == []
            continue
        assert len(measure.outside_probs) == len(tokens)
        # Where the model tags O with probability p, the outside probability is that p.
        for tag, prob, outside in zip(
            after.tags, after.tag_probs, measure.outside_probs, strict=True
        ):
            assert 0.0 <= outside <= 1.0
            if tag == "O":
                assert outside == pytest.approx(prob, abs=1e-6)


def _path_distribution(tagger: Tagger, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every tag path of a sentence with its probability under the model, by enumeration: the
    CRF's path scores over all paths (forbidden steps score as in its sums), or the product of
    the softmax head's token probabilities."""
    encoder = TokenEncoder(tagger.vocab, tagger.config.max_word_chars)
    with torch.inference_mode():
        emissions = tagger(Batch.from_arrays(encoder.encode_batch([tokens])))[0].double().numpy()
    length, num_tags = emissions.shape
    paths = np.array(list(itertools.product(range(num_tags), repeat=length)))
    scores = emissions[np.arange(length), paths].sum(1)
    if isinstance(tagger.head, CRFHead):
        start, transitions, end = (x.detach().double().numpy() for x in tagger.head.crf.scores())
        scores += start[paths[:, 0]] + end[paths[:, -1]]
        scores += transitions[paths[:, :-1], paths[:, 1:]].sum(1)
    probs = np.exp(scores - scores.max())
    return paths, probs / probs.sum()


def _written_in(tags: list[str], scheme: str) -> list[str]:
    written = convert_tags(tags, "BIOES" if scheme == "BILOU" else scheme)
    return spelt_bilou(written) if scheme == "BILOU" else written


def _scheme_taggers() -> list[Tagger]:
    # The module's scheme taggers, and a softmax head decoding without constraints, whose
    # argmax path may be ill-formed (`I-ORG` after `O`).
    taggers = [_tagger(name) for name, spec in TAGGERS.items() if spec[1]]
    torch.manual_seed(1)
    vocab = Vocab.build([WORDS], ["O", "B-ORG", "I-ORG", "B-MISC", "I-MISC"])
    config = ModelConfig(vectors=None, word_dim=8, hidden=6, char_hidden=4, char_dim=4)
    config = dataclasses.replace(config, head="softmax", constrained=False)
    meta = ModelMeta.from_json({}, kind="tagger", scheme="IOB2", output_scheme="IOB2")
    unconstrained = Tagger(config, vocab, meta)
    _widen(unconstrained)
    return [*taggers, unconstrained.eval()]


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "BIOES", "BILOU"])
def test_tags_written_in_another_scheme_have_their_exact_probabilities(scheme: str) -> None:
    short = [tokens for tokens in SENTENCES if 0 < len(tokens) <= 5]
    short += [["EU", "German", "German"], ["lamb", "EU", "British", "call"]]
    for tagger in _scheme_taggers():
        own = tag_sentences(tagger, short, k=3)
        written = tag_sentences(tagger, short, k=3, scheme=scheme)
        for tokens, before, after in zip(short, own, written, strict=True):
            if scheme == tagger.scheme == tagger.output_scheme:
                # The model's own scheme: its tags and their probabilities, as without one.
                assert after == before
                continue
            # The same spans, the tags of those spans in the scheme asked for.
            assert after.spans == before.spans
            assert after.tags == _written_in(before.tags, scheme)
            assert [p for p, _ in after.kbest] == [_written_in(p, scheme) for p, _ in before.kbest]
            # Each written tag's probability is the mass of the paths that write it there.
            paths, probs = _path_distribution(tagger, tokens)
            labels = tagger.vocab.labels.items
            path_tags = [_written_in([labels[i] for i in path], scheme) for path in paths]
            for position, (tag, prob) in enumerate(zip(after.tags, after.tag_probs, strict=True)):
                mass = sum(
                    p for tags, p in zip(path_tags, probs, strict=True) if tags[position] == tag
                )
                assert prob == pytest.approx(mass, abs=1e-5), (tokens, position, tag)
        # Every batch size and the numpy CRF of short batches give them too.
        alone = [tag_sentences(tagger, [t], scheme=scheme, low_latency=True)[0] for t in short]
        assert [r.tags for r in alone] == [r.tags for r in written]
        for a, b in zip(alone, written, strict=True):
            assert a.tag_probs == pytest.approx(b.tag_probs, abs=1e-5)


def test_the_training_files_scheme_is_the_default_and_plain_labels_have_none() -> None:
    tagger = _tagger("crf-bioes-as-iob1")
    default = tag_sentences(tagger, SENTENCES, k=2)
    assert tag_sentences(tagger, SENTENCES, k=2, scheme="IOB1") == default
    assert any(tag.startswith("I-") for result in default for tag in result.tags)
    with pytest.raises(ConfigError, match="no tag scheme"):
        tag_sentences(_tagger("crf-pos"), SENTENCES, scheme="IOB2")
    with pytest.raises(ConfigError, match="unknown tag scheme 'BILOUX'"):
        tag_sentences(tagger, SENTENCES, scheme="BILOUX")


def test_classifier_probabilities_sum_to_one_and_label_is_the_best() -> None:
    torch.manual_seed(1)  # a seed whose untrained model gives the sentences different labels
    labels = ["negative", "neutral", "positive"]
    vocab = Vocab.build([WORDS], labels)
    config = ModelConfig(
        task="classifier",
        vectors=None,
        word_dim=8,
        hidden=6,
        char_dim=4,
        char_hidden=4,
        pooling="mean",
    )
    meta = ModelMeta.from_json({}, kind="classifier", scheme=None, output_scheme=None)
    model = Classifier(config, vocab, meta)
    _widen(model)
    nonempty = [s for s in SENTENCES if s]
    batched = classify_sentences(model, nonempty, batch_size=2)
    assert len({r.label for r in batched}) > 1, "weights too narrow: every sentence alike"
    for tokens, result in zip(nonempty, batched, strict=True):
        assert result.tokens == tokens and sorted(result.probs) == sorted(labels)
        assert math.isclose(sum(result.probs.values()), 1.0, abs_tol=1e-6)
        assert result.label == max(result.probs, key=result.probs.__getitem__)
        [alone] = classify_sentences(model, [tokens])
        assert alone.label == result.label
        assert list(alone.probs.values()) == pytest.approx(list(result.probs.values()), abs=1e-6)
    # An empty sentence gets no label, as an empty text in annotate, and the others are as alone.
    mixed = classify_sentences(model, [[], nonempty[0], []], batch_size=2)
    assert [(r.tokens, r.label, r.probs) for r in (mixed[0], mixed[2])] == [([], None, {})] * 2
    assert mixed[1].probs == pytest.approx(batched[0].probs, abs=1e-6)


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(2, 50_000), (100, 8), (1, 1)])
def test_length_batches_cover_every_index_once_within_limits(batch_size, max_tokens) -> None:
    lengths = [5, 0, 12, 3, 3, 7, 1, 0, 20]
    batches = list(length_batches(lengths, batch_size, max_tokens))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [i for batch in batches for i in batch]
    assert [lengths[i] for i in flat] == sorted(lengths)
    for batch in batches:
        assert len(batch) <= batch_size
        padded = max(max(lengths[i] for i in batch), 1) * len(batch)
        assert padded <= max_tokens or len(batch) == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_tagging_leaves_garbage_collection_as_it_was(tagger: Tagger, enabled, monkeypatch) -> None:
    (gc.enable if enabled else gc.disable)()
    try:
        tag_sentences(tagger, SENTENCES, k=2)
        assert gc.isenabled() == enabled
        # also when tagging fails half way
        monkeypatch.setattr("bilstm_nlp.decode._batches", _fail)
        with pytest.raises(RuntimeError):
            tag_sentences(tagger, SENTENCES)
        assert gc.isenabled() == enabled
    finally:
        gc.enable()


def _fail(*args, **kwargs):
    raise RuntimeError("half way")


def test_nested_and_concurrent_pauses_give_back_the_state_the_first_one_found() -> None:
    assert gc.isenabled()
    inside, release = threading.Barrier(5), threading.Event()
    states = []

    def pause() -> None:
        with garbage_collection_paused():
            with garbage_collection_paused():
                inside.wait()
                states.append(gc.isenabled())
                release.wait()

    threads = [threading.Thread(target=pause) for _ in range(4)]
    for thread in threads:
        thread.start()
    inside.wait()
    release.set()
    for thread in threads:
        thread.join()
    assert states == [False] * 4
    assert gc.isenabled()


def test_a_call_leaves_no_cyclic_garbage(tagger: Tagger) -> None:
    """What makes pausing the collector safe: what a call makes is freed by reference counting."""
    tag_sentences(tagger, SENTENCES, k=2, uncertainty=tagger.config.head == "crf")
    gc.collect()
    gc.disable()
    try:
        tag_sentences(tagger, SENTENCES * 20, k=2, uncertainty=tagger.config.head == "crf")
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_the_encoder_kept_for_a_model_lasts_across_calls_and_changes_no_result() -> None:
    from bilstm_nlp.decode import _encoder_for, _kept_encoders
    from bilstm_nlp.nn.ids import TokenEncoder

    model = _tagger("crf-bioes-as-iob1")
    first = tag_sentences(model, SENTENCES, k=2)
    kept = _encoder_for(model, None)
    assert set(kept._memory.index) >= {t for s in SENTENCES for t in s}
    again = tag_sentences(model, SENTENCES, k=2)
    assert _encoder_for(model, None) is kept
    fresh = tag_sentences(
        model, SENTENCES, k=2, encoder=TokenEncoder(model.vocab, model.config.max_word_chars)
    )
    for a, b, c in zip(first, again, fresh, strict=True):
        assert a == b == c
    # a model given other vocabularies gets an encoder of them
    model.vocab = Vocab.build([WORDS + ["new"]], TAGGERS["crf-bioes-as-iob1"][0])
    assert _encoder_for(model, None) is not kept
    # and the memory goes with the model
    del model
    gc.collect()
    assert all(encoder is not kept for _, encoder in _kept_encoders.values())


def test_crf_weights_written_in_place_behind_torchs_back_are_read_on_the_next_call() -> None:
    # spaCy's trainer (thinc) owns the weights and writes them through shared memory, which no
    # tensor version counts; the numpy CRF of the batch path must still read the new scores.
    import copy

    model = _tagger("crf-bioes-as-iob1")
    before = tag_sentences(model, SENTENCES)
    shared = model.head.crf.transitions.data.numpy()
    version = model.head.crf.transitions._version
    shared += np.random.default_rng(0).normal(scale=3.0, size=shared.shape).astype(shared.dtype)
    assert model.head.crf.transitions._version == version
    fresh = copy.deepcopy(model)
    after, expected = tag_sentences(model, SENTENCES), tag_sentences(fresh, SENTENCES)
    assert [s.tag_probs for s in after] != [s.tag_probs for s in before]
    for got, want in zip(after, expected, strict=True):
        assert got.tags == want.tags
        assert got.tag_probs == pytest.approx(want.tag_probs, abs=1e-6)


def test_forgotten_numpy_arrays_are_made_again_for_the_one_sentence_path() -> None:
    # The one-sentence (low-latency) path checks tensor versions only; a trainer that writes
    # behind them (the spaCy component's finish_update) drops the copies.
    import copy

    from bilstm_nlp.decode_torch import forget_numpy_arrays

    model = _tagger("crf-bioes-as-iob1")
    sentence = SENTENCES[0]
    [before] = tag_sentences(model, [sentence], low_latency=True)
    shared = model.head.crf.transitions.data.numpy()
    shared += np.random.default_rng(0).normal(scale=3.0, size=shared.shape).astype(shared.dtype)
    forget_numpy_arrays(model)
    [after] = tag_sentences(model, [sentence], low_latency=True)
    [expected] = tag_sentences(copy.deepcopy(model), [sentence], low_latency=True)
    assert after.tags == expected.tags
    assert after.tag_probs == pytest.approx(expected.tag_probs, abs=1e-6)
    assert after.tag_probs != before.tag_probs


def test_api_misuse_is_a_config_error_not_a_crash(tagger: Tagger) -> None:
    from bilstm_nlp import load

    sentiment = load("sentiment")
    with pytest.raises(ConfigError, match="needs a tagger; this is a classifier"):
        tag_sentences(sentiment, [["great"]])
    with pytest.raises(ConfigError, match="needs a classifier; this is a tagger"):
        classify_sentences(tagger, [["great"]])
    for bad in ({"batch_size": 0}, {"batch_size": -1}, {"batch_size": True}, {"k": -1}):
        with pytest.raises(ConfigError, match="must be an integer of at least"):
            tag_sentences(tagger, [["EU"]], **bad)
    with pytest.raises(ConfigError, match="batch_size must be"):
        classify_sentences(sentiment, [["great"]], batch_size=0)
    for threads in (0, -1):
        with pytest.raises(ConfigError, match="threads must be at least 1"):
            load("ner", threads=threads)
