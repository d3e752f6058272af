"""Adding labels to a trained model (`extend_labels`, `train --init-model` on data with new
labels): the old labels keep their exact weights and, before any training, their predictions; the
new ones start as in a fresh model; the scheme's constraints cover the whole tag set; the extended
model saves and loads; a model of another kind, task or scheme is refused in one line."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp import tag_sentences
from bilstm_nlp.cli import app
from bilstm_nlp.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.nn.crf import allowed_tensors
from bilstm_nlp.nn.encoding import TokenEncoder, collate
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import Classifier, Tagger, extend_labels
from bilstm_nlp.nn.vocab import Vocab
from bilstm_nlp.serialize import load_model, save_model
from bilstm_nlp.text.schemes import allowed_transitions
from bilstm_nlp.training.loop import train

sys.path.insert(0, str(Path(__file__).parent))
from test_train import write_conll  # noqa: E402

PRODUCT_TAGS = ["B-PRODUCT", "E-PRODUCT", "I-PRODUCT", "S-PRODUCT"]
# Product entities only (the new type) and some of the old ones, in IOB1 like CoNLL-2003.
NEW_SENTENCES = [
    [("Apple", "I-ORG"), ("released", "O"), ("the", "O"), ("iPhone", "I-PRODUCT"), (".", "O")],
    [("The", "O"), ("Walkman", "I-PRODUCT"), ("sold", "O"), ("well", "O"), ("in", "O")]
    + [("Japan", "I-LOC"), (".", "O")],
    [("Boeing", "I-ORG"), ("flew", "O"), ("the", "O"), ("Dreamliner", "I-PRODUCT")]
    + [("Jumbo", "I-PRODUCT"), ("Jet", "I-PRODUCT")],
]


@pytest.fixture(scope="module")
def ner() -> Tagger:
    return load_model("ner")


@pytest.fixture(scope="module")
def dev_sentences(shared_corpora: Path) -> list[list[str]]:
    sentences, tokens = [], []
    for line in (shared_corpora / "conll2003" / "dev.txt").read_text().splitlines():
        if not line.strip():
            if tokens:
                sentences.append(tokens)
            tokens = []
        elif not line.startswith("-DOCSTART-"):
            tokens.append(line.split(" ")[0])
    return sentences[:300]


def test_old_weights_and_predictions_are_kept_exactly(ner, dev_sentences) -> None:
    torch.manual_seed(0)
    extended = extend_labels(ner, PRODUCT_TAGS)
    old = ner.vocab.labels.items
    assert extended.vocab.labels.items == [*old, *PRODUCT_TAGS]
    k = len(old)
    before, after = ner.state_dict(), extended.state_dict()
    for name, value in before.items():
        if name.startswith("head.crf.allowed"):
            continue
        if after[name].shape == value.shape:
            assert torch.equal(after[name], value), name
    head, new_head = ner.head, extended.head
    assert torch.equal(new_head.projection.weight[:k], head.projection.weight)
    assert torch.equal(new_head.projection.bias[:k], head.projection.bias)
    assert torch.equal(new_head.crf.transitions[:k, :k], head.crf.transitions)
    assert torch.equal(new_head.crf.start_transitions[:k], head.crf.start_transitions)
    assert torch.equal(new_head.crf.end_transitions[:k], head.crf.end_transitions)
    # The new rows start as a fresh model's: small, within the default initialisation.
    bound = 1 / head.projection.in_features**0.5
    assert new_head.projection.weight[k:].abs().max() <= bound
    assert new_head.crf.transitions[k:].abs().max() <= 0.1
    # Constraints are the scheme's for the whole tag set.
    allowed = allowed_tensors(allowed_transitions("BIOES", extended.vocab.labels.items))
    assert torch.equal(new_head.crf.allowed_transitions, allowed.transitions.bool())
    assert torch.equal(new_head.crf.allowed_start, allowed.start.bool())
    assert torch.equal(new_head.crf.allowed_end, allowed.end.bool())
    assert extended.meta == ner.meta


def test_before_training_old_paths_score_as_before(ner, dev_sentences) -> None:
    torch.manual_seed(0)
    extended = extend_labels(ner, PRODUCT_TAGS)
    k = len(ner.vocab.labels)
    encoder = TokenEncoder(ner.vocab, ner.config.max_word_chars)
    batch = collate([encoder(tokens) for tokens in dev_sentences])
    with torch.inference_mode():
        emissions, wider = ner(batch), extended(batch)
        # The old tags' emissions are the old model's, bit for bit.
        assert torch.equal(wider[:, :, :k], emissions)
        path, _ = ner.head.crf.viterbi_decode(emissions, batch.mask)
        # So every old path scores exactly as before under the extended CRF.
        old_scores = ner.head.crf.path_scores(emissions, path, batch.mask)
        assert torch.equal(extended.head.crf.path_scores(wider, path, batch.mask), old_scores)
        # With the new tags ruled out, decoding gives the old paths.
        ruled_out = wider.clone()
        ruled_out[:, :, k:] = float("-inf")
        again, _ = extended.head.crf.viterbi_decode(ruled_out, batch.mask)
        assert torch.equal(again, path)
    # With them in, the tags are the old model's wherever it was sure of every tag; a new tag's
    # fresh scores can win only where the old tags' were weak (measured: 8 of the first 1,000
    # dev sentences, each on a token the old model gave a probability of 0.42-0.73).
    original = tag_sentences(ner, dev_sentences)
    extended_tags = tag_sentences(extended, dev_sentences)
    changed = 0
    for before, after in zip(original, extended_tags, strict=True):
        if min(before.tag_probs) >= 0.9:
            assert after.tags == before.tags
        changed += after.tags != before.tags
    assert changed <= len(dev_sentences) // 50


def test_extended_model_saves_and_loads(ner, dev_sentences, tmp_path) -> None:
    torch.manual_seed(1)
    extended = extend_labels(ner, PRODUCT_TAGS)
    folder = save_model(extended, tmp_path / "extended")
    loaded = load_model(folder)
    assert loaded.vocab.labels.items == extended.vocab.labels.items
    for name, value in extended.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value.to(loaded.state_dict()[name].dtype))
    sentences = dev_sentences[:50]
    assert [r.tags for r in tag_sentences(loaded, sentences)] == [
        r.tags for r in tag_sentences(extended, sentences)
    ]


def test_softmax_tagger_and_classifier_keep_their_old_rows() -> None:
    torch.manual_seed(2)
    config = ModelConfig(vectors=None, word_dim=8, hidden=6, char_hidden=4, char_dim=4)
    softmax = Tagger(
        ModelConfig(**{**config.__dict__, "head": "softmax"}),
        Vocab.build([["EU", "call"]], ["O", "S-ORG", "B-ORG", "E-ORG"]),
        ModelMeta.from_json({}, kind="tagger", scheme="BIOES", output_scheme=None),
    )
    wider = extend_labels(softmax, ["S-PER"])
    assert torch.equal(wider.head.projection.weight[:4], softmax.head.projection.weight)
    assert wider.head.transition_constraints.shape == (5, 5)
    allowed = allowed_tensors(
        allowed_transitions("BIOES", ["O", "S-ORG", "B-ORG", "E-ORG", "S-PER"])
    )
    assert torch.equal(wider.head.transition_constraints == 0, allowed.transitions.bool())
    classifier = Classifier(
        ModelConfig(**{**config.__dict__, "task": "classifier"}),
        Vocab.build([["a", "film"]], ["negative", "positive"]),
        ModelMeta(task="sentiment"),
    )
    more = extend_labels(classifier, ["neutral"])
    assert more.vocab.labels.items == ["negative", "positive", "neutral"]
    assert torch.equal(more.head.projection.weight[:2], classifier.head.projection.weight)
    assert torch.equal(more.head.projection.bias[:2], classifier.head.projection.bias)
    with pytest.raises(ValueError, match="new to the model"):
        extend_labels(classifier, ["positive"])


def _config(train_file: Path, **data) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(train=str(train_file), dev=str(train_file), scheme="BIOES", **data),
        model=ModelConfig(vectors=None),
        train=TrainConfig(
            optimizer="sgd", lr=0.015, batch_size=2, epochs=2, patience=0, seed=3, threads=1
        ),
    )


def test_train_init_model_adds_the_new_labels_and_warns_of_forgetting(
    ner, tmp_path, caplog
) -> None:
    corpus = write_conll(tmp_path / "products.conll", NEW_SENTENCES)
    with caplog.at_level(logging.WARNING, logger="bilstm_nlp.training.setup"):
        result = train(_config(corpus), tmp_path / "run", init_model="ner")
    model = load_model(result.output)
    # Old labels in their order, then the new ones sorted.
    assert model.vocab.labels.items == [*ner.vocab.labels.items, *PRODUCT_TAGS]
    assert model.meta.task == "ner" and model.scheme == "BIOES"
    # The data has ORG, LOC and PRODUCT: the warning names the old types it lacks.
    [warning] = [r.getMessage() for r in caplog.records if "forget" in r.getMessage()]
    assert "MISC, PER" in warning and "mix in" in warning
    tagged = tag_sentences(model, [["the", "Walkman", "and", "the", "iPhone"]])
    assert {span.label for span in tagged[0].spans} <= {"PER", "LOC", "ORG", "MISC", "PRODUCT"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"scheme": "IOB2"},
            "trained on entity tags in scheme BIOES; this run's data has entity tags in scheme "
            "IOB2",
        ),
        ({"task": "chunking"}, "trained for ner; this run's data.task is chunking"),
        ({"model_task": "classifier"}, "the initial model is a tagger; this run trains a"),
    ],
)
def test_init_model_of_another_kind_task_or_scheme_is_refused(tmp_path, change, message) -> None:
    corpus = write_conll(tmp_path / "products.conll", NEW_SENTENCES)
    config = _config(corpus)
    if "scheme" in change:
        config = ExperimentConfig(
            DataConfig(train=str(corpus), dev=str(corpus), scheme=change["scheme"]),
            config.model,
            config.train,
        )
    elif "task" in change:
        config = _config(corpus, task=change["task"])
    else:
        jsonl = tmp_path / "texts.jsonl"
        jsonl.write_text('{"text": "a fine film", "label": "positive"}\n')
        config = ExperimentConfig(
            DataConfig(train=str(jsonl), dev=str(jsonl)),
            ModelConfig(task="classifier", vectors=None),
            config.train,
        )
    with pytest.raises(ConfigError, match=message):
        train(config, tmp_path / "run", init_model="ner")
    # The refused run leaves no folder behind.
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("initial", "message"),
    [
        # A chunker on NER data: the same scheme, not one label in common.
        (
            "chunk",
            r"the initial model \(chunking\) knows ADJP, .*none of them \(LOC, ORG, PRODUCT\)",
        ),
        ("pos", r"the initial model \(pos\) was trained on plain labels \(no tag scheme\); this "),
    ],
)
def test_init_model_of_another_task_is_refused_by_its_labels(tmp_path, initial, message) -> None:
    corpus = write_conll(tmp_path / "products.conll", NEW_SENTENCES)
    config = _config(corpus)
    with pytest.raises(ConfigError, match=message):
        train(config, tmp_path / "run", init_model=initial)


def test_init_model_says_which_run_settings_it_does_not_use_and_records_its_own(
    ner, tmp_path, caplog
) -> None:
    corpus = write_conll(tmp_path / "products.conll", NEW_SENTENCES)
    config = _config(corpus)
    config = ExperimentConfig(
        config.data,
        ModelConfig(vectors=None, hidden=32, head="softmax", dropout=0.1),
        config.train,
    )
    with caplog.at_level(logging.WARNING, logger="bilstm_nlp.training.setup"):
        result = train(config, tmp_path / "run", init_model="ner")
    [warning] = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert f"model.hidden 32 (the model's: {ner.config.hidden})" in warning
    assert "model.head 'softmax' (the model's: 'crf')" in warning and "model.dropout 0.1" in warning
    model = load_model(result.output)
    assert model.config == ner.config
    # The provenance gives the settings the model was built with, not the run's unused ones.
    assert model.meta.provenance["config"]["model"] == dataclasses.asdict(ner.config)


def test_cli_init_model_with_new_labels(tmp_path, caplog) -> None:
    corpus = write_conll(tmp_path / "products.conll", NEW_SENTENCES)
    out = tmp_path / "cli-run"
    caplog.set_level(logging.WARNING, logger="bilstm_nlp.training.setup")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--train",
            str(corpus),
            "--dev",
            str(corpus),
            "--scheme",
            "BIOES",
            "--init-model",
            "ner",
            "--epochs",
            "1",
            "--output",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "PRODUCT" in (out / "labels.json").read_text()
    assert any("may forget them" in record.getMessage() for record in caplog.records)
