"""Tests for `bilstm_nlp.nn.model`: a large batch at inference is embedded once per distinct token
and gives what embedding every token gives; an ensemble classifier (`model.members`) is its
members' mean probability, trains each member on its own loss, and stores the pretrained-only
word vectors once."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bilstm_nlp.config import ModelConfig
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.nn import encoder as encoder_module
from bilstm_nlp.nn import model as model_module
from bilstm_nlp.nn.encoding import TokenEncoder, collate
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import Classifier, Tagger, _token_types
from bilstm_nlp.nn.vocab import UNK_ID, Vocab

WORDS = ["the", "The", "THE", "EU", "rejects", "German", "call", "1996", "x" * 40, "x" * 41, "ΩΩ"]


def _sentences(count: int) -> list[list[str]]:
    generator = torch.Generator().manual_seed(count)
    sentences = []
    for _ in range(count):
        length = int(torch.randint(1, 12, (1,), generator=generator))
        picks = torch.randint(0, len(WORDS), (length,), generator=generator)
        sentences.append([WORDS[int(i)] for i in picks])
    return sentences


def _model(task: str = "tagger", **config: object) -> Tagger | Classifier:
    torch.manual_seed(0)
    labels = ["negative", "positive"] if task == "classifier" else ["O", "B-ORG", "I-ORG"]
    vocab = Vocab.build([WORDS[:6]], labels, ["the", "a"], 1)
    sizes = {"word_dim": 8, "hidden": 6, "char_hidden": 4, "char_dim": 4, **config}
    meta = ModelMeta.from_json(
        {"task": "classification" if task == "classifier" else "ner"},
        kind="classifier" if task == "classifier" else "tagger",
        scheme=None if task == "classifier" else "IOB2",
        output_scheme=None if task == "classifier" else "IOB2",
    )
    model_class = Classifier if task == "classifier" else Tagger
    return model_class(ModelConfig(vectors=None, task=task, **sizes), vocab, meta).eval()


def _batch(model, sentences):
    encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    return collate([encoder(tokens) for tokens in sentences])


def test_token_types_give_every_token_its_own_features_bitwise():
    model = _model()
    batch = _batch(model, _sentences(60))
    words, casings, spellings, real, token_types = _token_types(batch)
    # Distinct: no two types share word, casing and spelling; only padding is not real.
    assert len(set(zip(words.tolist(), casings.tolist(), spellings.tolist(), strict=True))) == len(
        words
    )
    assert int((~real).sum()) == 1 and not bool(real[token_types[~batch.mask]].any())
    with torch.no_grad():
        per_token = model.embedder(
            batch.word_ids, batch.casing_ids, batch.char_ids, batch.spelling_ids, batch.mask
        )
        per_type = model.embedder(
            words[None], casings[None], batch.char_ids, spellings[None], real[None]
        )[0]
    assert len(words) < int(batch.mask.sum())  # the batch repeats its tokens
    assert torch.equal(per_type[token_types], per_token)


def test_large_batch_scores_equal_the_per_token_path(monkeypatch):
    models = (
        _model(),
        _model(layers=2),
        _model(head="softmax"),
        _model("classifier"),
        _model("classifier", members=3),
    )
    for model in models:
        batch = _batch(model, _sentences(encoder_module.STEPPED_MIN_BATCH + 5))
        with torch.no_grad():
            by_type = model(batch)
            monkeypatch.setattr(model_module, "STEPPED_MIN_BATCH", 10**9)
            monkeypatch.setattr(encoder_module, "STEPPED_MIN_BATCH", 10**9)
            per_token = model(batch)
            monkeypatch.undo()
        torch.testing.assert_close(by_type, per_token, rtol=0, atol=1e-5)
        # Training and gradients take the per-token path with word dropout.
        model.train()
        assert model(batch).grad_fn is not None


# Ensemble classifiers.


def test_an_ensemble_answers_its_members_mean_probability():
    model = _model("classifier", members=3)
    batch = _batch(model, _sentences(9))
    with torch.no_grad():
        each = [log_probs.exp() for log_probs in model.member_log_probs(batch)]
        mean = model(batch).exp()
    assert len(each) == 3
    # The members start from their own weights, so they disagree.
    assert (each[0] - each[1]).abs().max() > 1e-3 and (each[1] - each[2]).abs().max() > 1e-3
    torch.testing.assert_close(mean, sum(each) / 3, rtol=0, atol=1e-6)
    torch.testing.assert_close(mean.sum(1), torch.ones(9), rtol=0, atol=1e-6)


def test_an_ensemble_trains_each_member_on_its_own_loss():
    # Dropout off, so that the loss and the members' log-probabilities see the same network.
    model = _model("classifier", members=2, dropout=0.0, word_dropout=0.0).train()
    batch = _batch(model, _sentences(6))
    batch.tag_ids = torch.tensor([0, 1, 1, 0, 1, 0])
    loss = model.loss(batch)
    each = [
        torch.nn.functional.nll_loss(log_probs, batch.tag_ids, reduction="sum")
        for log_probs in model.member_log_probs(batch)
    ]
    torch.testing.assert_close(loss, each[0] + each[1])
    loss.backward()
    first, second = model.members()
    # Each member's own weights get gradients; the shared pretrained-only vectors none.
    assert first.encoder.lstm.weight_ih_l0.grad.abs().sum() > 0
    assert second.encoder.lstm.weight_ih_l0.grad.abs().sum() > 0
    assert second.embedder.word_embedding.weight.grad is not None
    assert second.embedder.fixed_embedding is first.embedder.fixed_embedding
    assert first.embedder.fixed_embedding.weight.grad is None


def test_an_ensemble_stores_the_pretrained_only_vectors_once():
    single, ensemble = _model("classifier"), _model("classifier", members=3)
    fixed = [name for name in ensemble.state_dict() if "fixed_embedding" in name]
    assert fixed == ["embedder.fixed_embedding.weight"]
    trained_vectors = [name for name in ensemble.state_dict() if "word_embedding" in name]
    assert len(trained_vectors) == 3
    # A one-member model's weights keep the names they always had.
    assert set(single.state_dict()) == {
        name for name in ensemble.state_dict() if not name.startswith("other_members.")
    }


def test_members_are_for_classifiers_only():
    with pytest.raises(ConfigError, match="model.members is for classifiers"):
        ModelConfig(task="tagger", members=2)
    with pytest.raises(ConfigError, match="model.members must be in"):
        ModelConfig(task="classifier", members=0)


def _words_embedded(model: Tagger, batch) -> torch.Tensor:
    """The word ids the embedder receives for `batch` in one training forward pass."""
    seen = []
    handle = model.embedder.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        model(batch)
    finally:
        handle.remove()
    return seen[0]


def test_entity_word_dropout_replaces_only_words_inside_gold_entities():
    model = _model(word_dropout=0.0, entity_word_dropout=0.5).train()
    tags = [model.vocab.labels.items.index(t) for t in ["B-ORG", "O", "B-ORG", "I-ORG"]]
    batch = _batch(model, [["EU", "rejects", "German", "THE"]] * 500)
    assert not (batch.word_ids == UNK_ID).any()
    batch = dataclasses.replace(batch, tag_ids=torch.tensor([tags] * 500))
    torch.manual_seed(3)
    embedded = _words_embedded(model, batch)
    dropped = embedded == UNK_ID
    entity = batch.tag_ids != model.vocab.labels.items.index("O")
    assert not dropped[~entity].any()
    # 1,500 entity tokens at 0.5: the share lies within 5 standard deviations of a half.
    assert abs(dropped[entity].float().mean().item() - 0.5) < 5 * (0.25 / 1500) ** 0.5
    assert torch.equal(embedded[~dropped], batch.word_ids[~dropped])
    # Tagging (eval mode) never drops a word.
    assert torch.equal(_words_embedded(model.eval(), batch), batch.word_ids)


def test_entity_word_dropout_at_0_draws_as_word_dropout_alone():
    model = _model(word_dropout=0.3).train()
    batch = _batch(model, _sentences(50))
    batch = dataclasses.replace(batch, tag_ids=torch.zeros_like(batch.word_ids))
    torch.manual_seed(5)
    before = _words_embedded(model, batch)
    torch.manual_seed(5)
    expected = torch.where(
        (torch.rand(batch.word_ids.shape) < 0.3) & batch.mask, UNK_ID, batch.word_ids
    )
    assert torch.equal(before, expected)


def test_entity_word_dropout_needs_entity_tags():
    with pytest.raises(ConfigError, match="model.entity_word_dropout is for taggers"):
        ModelConfig(task="classifier", entity_word_dropout=0.3)
    with pytest.raises(ConfigError, match="model.entity_word_dropout must be"):
        ModelConfig(entity_word_dropout=1.5)
    vocab = Vocab.build([WORDS[:6]], ["NOUN", "VERB"], ["the"], 1)
    meta = ModelMeta.from_json({"task": "pos"}, kind="tagger", scheme=None, output_scheme=None)
    config = ModelConfig(vectors=None, word_dim=8, hidden=6, entity_word_dropout=0.3)
    with pytest.raises(ConfigError, match="needs entity tags"):
        Tagger(config, vocab, meta)
