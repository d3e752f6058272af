"""Distillation of an ensemble into one model: the CRF's pair marginals and expected
log-likelihood against enumeration of all paths, the classifier's blended cross-entropy against
its sum, the teachers' averaged targets, and training that follows the teachers where they
disagree with the gold tags or labels."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp import classify_sentences, load, tag_sentences
from bilstm_nlp.cli import app
from bilstm_nlp.config import ExperimentConfig, TrainConfig
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.nn.encoding import collate, encode_tokens
from bilstm_nlp.nn.heads import CRFHead, SentenceHead, SoftmaxHead, TeacherMarginals
from bilstm_nlp.training.data import read_training_data
from bilstm_nlp.training.distill import teacher_label_probs, teacher_targets
from bilstm_nlp.training.loop import train, unlabeled_rows

from .test_crf import (
    all_paths,
    enumerated_scores,
    lengths_of,
    random_allowed,
    random_batch,
    random_crf,
)
from .test_train import NER_SENTENCES, tiny_config, write_conll
from .tiny_models import REVIEWS, write_reviews

SIZES = [(3, 4), (4, 3), (2, 6)]


def enumerated_pairs(paths: torch.Tensor, scores: torch.Tensor, num_tags: int) -> torch.Tensor:
    """`(length - 1, num_tags, num_tags)`: mass of the paths with tags (i, j) at (t, t + 1)."""
    probs = scores.softmax(0)
    length = paths.size(1)
    pairs = torch.zeros(length - 1, num_tags, num_tags, dtype=torch.float64)
    for t in range(length - 1):
        pairs[t].index_put_((paths[:, t], paths[:, t + 1]), probs, accumulate=True)
    return pairs


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_pair_marginals_match_enumeration(num_tags, seq_len, seed, constrained):
    allowed = random_allowed(num_tags, seq_len, seed) if constrained else None
    crf = random_crf(num_tags, seed, allowed).double()
    emissions, mask = random_batch(num_tags, seq_len, seed)
    pairs = crf.pair_marginals(emissions, mask)
    assert pairs.shape == (mask.size(0), seq_len - 1, num_tags, num_tags)
    marginals = crf.marginals(emissions, mask)
    for b, length in enumerate(lengths_of(mask)):
        assert (pairs[b, length - 1 :] == 0).all()
        if length < 2:
            continue
        paths = all_paths(num_tags, length)
        scores = enumerated_scores(emissions[b, :length], paths, crf.scores())
        torch.testing.assert_close(
            pairs[b, : length - 1], enumerated_pairs(paths, scores, num_tags), atol=1e-9, rtol=0
        )
        # Summing out either tag gives the tag marginals.
        torch.testing.assert_close(pairs[b, : length - 1].sum(2), marginals[b, : length - 1])
        torch.testing.assert_close(pairs[b, : length - 1].sum(1), marginals[b, 1:length])


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("num_tags", "seq_len"), SIZES)
def test_expected_log_likelihood_of_a_mixture_matches_enumeration(
    num_tags, seq_len, seed, constrained
):
    # Two teachers (other CRFs, other emissions) mixed 30/70: the student's expected
    # log-probability under the mixture, summed path by path, against the marginals' shortcut.
    allowed = random_allowed(num_tags, seq_len, seed) if constrained else None
    student = random_crf(num_tags, seed, allowed).double()
    teachers = [random_crf(num_tags, seed + 10 * k, allowed).double() for k in (1, 2)]
    emissions, mask = random_batch(num_tags, seq_len, seed)
    teacher_emissions = [random_batch(num_tags, seq_len, seed + 50 * k)[0] for k in (1, 2)]
    shares = (0.3, 0.7)
    tags = sum(
        w * t.marginals(e, mask)
        for w, t, e in zip(shares, teachers, teacher_emissions, strict=True)
    )
    pairs = sum(
        w * t.pair_marginals(e, mask)
        for w, t, e in zip(shares, teachers, teacher_emissions, strict=True)
    )
    expected = student.expected_log_likelihood(emissions, tags, pairs, mask)
    for b, length in enumerate(lengths_of(mask)):
        paths = all_paths(num_tags, length)
        mixture = sum(
            w * enumerated_scores(e[b, :length], paths, t.scores()).softmax(0)
            for w, t, e in zip(shares, teachers, teacher_emissions, strict=True)
        )
        student_log_probs = enumerated_scores(emissions[b, :length], paths, student.scores())
        student_log_probs = student_log_probs.log_softmax(0)
        # Paths the teachers never take weigh 0 (forbidden ones have log-probability ~ -1e4).
        brute = (mixture * torch.where(mixture > 0, student_log_probs, 0.0)).sum()
        torch.testing.assert_close(expected[b], brute, atol=1e-8, rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_hot_targets_give_the_log_likelihood_and_its_gradient(seed):
    num_tags, seq_len = 4, 5
    crf = random_crf(num_tags, seed).double()
    emissions, mask = random_batch(num_tags, seq_len, seed)
    gold = torch.randint(0, num_tags, mask.shape, generator=torch.Generator().manual_seed(seed))
    one_hot = torch.nn.functional.one_hot(gold, num_tags).double()
    pairs = one_hot[:, :-1, :, None] * one_hot[:, 1:, None, :]
    expected = crf.expected_log_likelihood(emissions, one_hot, pairs, mask)
    torch.testing.assert_close(expected, crf.log_likelihood(emissions, gold, mask))


def test_gradient_is_target_minus_model_marginals():
    # d E_q[log p] / d emissions = q's tag marginals - p's, on real tokens; 0 at padding.
    num_tags, seq_len = 3, 5
    student = random_crf(num_tags, 3).double()
    teacher = random_crf(num_tags, 4).double()
    emissions, mask = random_batch(num_tags, seq_len, 3)
    teacher_emissions = random_batch(num_tags, seq_len, 4)[0]
    tags = teacher.marginals(teacher_emissions, mask)
    pairs = teacher.pair_marginals(teacher_emissions, mask)
    emissions = emissions.clone().requires_grad_(True)
    student.expected_log_likelihood(emissions, tags, pairs, mask).sum().backward()
    wanted = tags - student.marginals(emissions.detach(), mask)
    torch.testing.assert_close(emissions.grad, torch.where(mask[..., None], wanted, 0.0))


def test_bad_target_shapes_are_refused():
    crf = random_crf(3, 0).double()
    emissions, mask = random_batch(3, 4, 0)
    tags = crf.marginals(emissions, mask)
    pairs = crf.pair_marginals(emissions, mask)
    with pytest.raises(ValueError, match="tag_probs"):
        crf.expected_log_likelihood(emissions, tags[:, :-1], pairs, mask)
    with pytest.raises(ValueError, match="pair_probs"):
        crf.expected_log_likelihood(emissions, tags, pairs[:, :, :2], mask)


# Training with teachers.


def _config(corpus: Path, seed: int, epochs: int = 40, **train_values) -> ExperimentConfig:
    config = tiny_config(corpus, "crf", "BIOES")
    settings = dataclasses.replace(config.train, epochs=epochs, seed=seed, **train_values)
    return dataclasses.replace(config, train=settings)


def _relabelled(sentences, word: str, tag: str):
    return [[(w, tag if w == word else t) for w, t in s] for s in sentences]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> list[Path]:
    """Two teachers trained on the tiny corpus, each with "Paris" relabelled as a person."""
    folder = tmp_path_factory.mktemp("teachers")
    corpus = write_conll(folder / "wrong.conll", _relabelled(NER_SENTENCES, "Paris", "I-PER"))
    paths = []
    for seed in (1, 2):
        result = train(_config(corpus, seed), folder / f"t{seed}")
        assert result.best_dev_score == pytest.approx(100.0)
        paths.append(folder / f"t{seed}")
    return paths


def test_teacher_targets_average_the_teachers_marginals(teachers):
    models = [load(p) for p in teachers]
    sentences = [[w for w, _ in s] for s in NER_SENTENCES] + [["Paris"]]
    student_tags = list(reversed(models[0].vocab.labels.items))  # another order than the teachers'
    targets = teacher_targets(models, sentences, student_tags, "BIOES", torch.device("cpu"))
    assert targets.teachers == 2
    for model in models:
        model.eval()
    for index, tokens in enumerate(sentences):
        encoded = collate([encode_tokens(tokens, models[0].vocab, 30)])
        with torch.no_grad():
            each = [m.head.marginals(m(encoded), encoded.mask)[0] for m in models]
            pairs = [m.head.crf.pair_marginals(m(encoded), encoded.mask)[0] for m in models]
        order = [models[0].vocab.labels.items.index(tag) for tag in student_tags]
        mean = (each[0] + each[1]).double()[:, order] / 2
        torch.testing.assert_close(
            torch.from_numpy(targets.tags[index]).double(), mean, atol=1e-6, rtol=0
        )
        mean_pairs = (pairs[0] + pairs[1]).double()[:, order][:, :, order] / 2
        torch.testing.assert_close(
            torch.from_numpy(targets.pairs[index]).double(), mean_pairs, atol=1e-3, rtol=0
        )
    # A padded batch holds each sentence's targets, zeros beyond it.
    batch = targets.batch([0, 2], 6, torch.device("cpu"))
    assert isinstance(batch, TeacherMarginals)
    assert batch.tags.shape == (2, 6, len(student_tags))
    assert batch.pairs.shape == (2, 5, len(student_tags), len(student_tags))
    assert (batch.tags[1, 2:] == 0).all() and (batch.pairs[1, 1:] == 0).all()
    torch.testing.assert_close(batch.tags.sum(2)[0, :5], torch.ones(5))


def test_teachers_tag_only_from_first(teachers):
    # At a teachers' share of 0 the labelled sentences (the first 7) are not worth tagging: the
    # targets from `first` on are those of tagging everything, and the rows before are zeros.
    models = [load(p) for p in teachers]
    sentences = [[w for w, _ in s] for s in NER_SENTENCES] + [["Paris"], [], ["Peter", "said"]]
    tags = list(models[0].vocab.labels.items)
    cpu, first = torch.device("cpu"), len(NER_SENTENCES)
    documents = [0] * first + [1, 1, 2]
    for docs in (None, documents):
        every = teacher_targets(
            models, sentences, tags, "BIOES", cpu, labelled=first, documents=docs
        )
        taught = teacher_targets(
            models, sentences, tags, "BIOES", cpu, labelled=first, documents=docs, first=first
        )
        assert len(taught.tags) == len(sentences) - first
        indices = list(range(len(sentences)))
        expected, got = every.batch(indices, 8, cpu), taught.batch(indices, 8, cpu)
        torch.testing.assert_close(got.tags[first:], expected.tags[first:], atol=1e-6, rtol=0)
        torch.testing.assert_close(got.pairs[first:], expected.pairs[first:], atol=1e-3, rtol=0)
        assert (got.tags[:first] == 0).all() and (got.pairs[:first] == 0).all()
        assert got.tags[first + 1, 0, 0] == 1.0  # the empty sentence, as before
        torch.testing.assert_close(
            taught.weights(indices, 0.0, cpu), every.weights(indices, 0.0, cpu)
        )


def test_a_share_of_0_without_unlabeled_sentences_warns(tmp_path, teachers, caplog):
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = _config(corpus, 3, epochs=1, distill_from=[str(teachers[0])], distill_weight=0.0)
    with caplog.at_level("WARNING"):
        train(config, tmp_path / "run")
    assert "the teachers teach nothing" in caplog.text


def test_the_student_follows_its_teachers_by_their_weight(tmp_path, teachers):
    # Gold says Paris is a location, both teachers say a person: with the teachers' weight at
    # 0.9 the student answers as they do; at 0 (gold only) as the gold tags do.
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    paths = [str(p) for p in teachers]
    answers = {}
    for weight in (0.0, 0.9):
        config = _config(corpus, 3, distill_from=paths, distill_weight=weight)
        # No dev: the last epoch is kept (gold-tagged dev would select against the teachers).
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, dev=None))
        train(config, tmp_path / f"w{weight}")
        model = load(tmp_path / f"w{weight}")
        tagged = tag_sentences(model, [["Peter", "Blackburn", "visited", "Paris"]])[0]
        answers[weight] = tagged.tags[-1]
    assert answers == {0.0: "I-LOC", 0.9: "I-PER"}
    card = (tmp_path / "w0.9" / "README.md").read_text()
    assert "distilled from an ensemble of 2 teachers" in card
    saved = json.loads((tmp_path / "w0.9" / "config.json").read_text())
    assert saved["meta"]["provenance"]["config"]["train"]["distill_from"] == paths
    # The student records who taught it: each teacher's path, seed and config.
    teachers_seen = saved["meta"]["provenance"]["teachers"]
    assert [(t["path"], t["seed"], t["train_with_dev"]) for t in teachers_seen] == [
        (paths[0], 1, False),
        (paths[1], 2, False),
    ]
    assert teachers_seen[0]["config"]["model"]["hidden"] == config.model.hidden


def test_teachers_with_other_tags_or_scheme_are_refused(tmp_path, teachers):
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    iob2 = dataclasses.replace(
        _config(corpus, 3, epochs=1, distill_from=[str(teachers[0])]),
        data=dataclasses.replace(_config(corpus, 3).data, scheme="IOB2"),
    )
    with pytest.raises(ConfigError, match="teacher tags in BIOES, the student in IOB2"):
        train(iob2, tmp_path / "iob2")
    extra = write_conll(tmp_path / "extra.conll", NER_SENTENCES + [[("Mars", "I-PLANET")]])
    with pytest.raises(ConfigError, match="teacher lacks"):
        train(_config(extra, 3, epochs=1, distill_from=[str(teachers[0])]), tmp_path / "extra")


def test_distill_settings_are_checked():
    with pytest.raises(ConfigError, match="distill_weight"):
        TrainConfig(distill_weight=1.5)
    with pytest.raises(ConfigError, match="distill_from"):
        ExperimentConfig.from_dict({"train": {"distill_from": "runs/t1"}})
    with pytest.raises(ConfigError, match=r"distill_from\[1\]"):
        ExperimentConfig.from_dict({"train": {"distill_from": ["runs/t1", 3]}})
    config = ExperimentConfig.from_dict({"train": {"distill_from": ["a", "b"]}})
    assert config.train.distill_from == ["a", "b"]


def test_cli_distill_options(tmp_path, teachers):
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config_path = tmp_path / "train.json"
    config_path.write_text(json.dumps(_config(corpus, 3, epochs=2).to_dict()))
    arguments = ["train", "-c", str(config_path), "-o", str(tmp_path / "m"), "--no-progress"]
    for teacher in teachers:
        arguments += ["--distill-from", str(teacher)]
    result = CliRunner().invoke(app, [*arguments, "--distill-weight", "0.7"])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "m" / "config.json").read_text())["meta"]["provenance"]
    assert settings["config"]["train"]["distill_from"] == [str(t) for t in teachers]
    assert settings["config"]["train"]["distill_weight"] == 0.7
    missing = CliRunner().invoke(
        app, ["train", "-c", str(config_path), "-o", str(tmp_path / "m2"), "--distill-from", "nope"]
    )
    assert missing.exit_code != 0 and "Traceback" not in missing.output


# Classifiers: teachers' class probabilities.


def _classifier_config(corpus: Path, seed: int, epochs: int = 40, **train_values):
    config = ExperimentConfig.from_dict(
        {
            "data": {"train": str(corpus), "dev": None},
            "model": {
                "task": "classifier",
                "vectors": None,
                "word_dim": 16,
                "hidden": 16,
                "char_encoder": "none",
                "dropout": 0.0,
                "word_dropout": 0.0,
                "pooling": "max",
            },
            "train": {
                "optimizer": "adam",
                "lr": 0.02,
                "batch_size": 2,
                "epochs": epochs,
                "patience": 0,
                "seed": seed,
                "threads": 1,
            },
        }
    )
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train_values))


@pytest.fixture(scope="module")
def classifier_teachers(tmp_path_factory) -> list[Path]:
    """Two classifiers trained with "a waste of time" labelled positive."""
    folder = tmp_path_factory.mktemp("classifier_teachers")
    wrong = [(t, "positive" if t == "a waste of time" else label) for t, label in REVIEWS]
    corpus = write_reviews(folder / "wrong.jsonl", wrong)
    paths = []
    for seed in (1, 2):
        train(_classifier_config(corpus, seed), folder / f"t{seed}")
        paths.append(folder / f"t{seed}")
    return paths


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_classifier_distill_loss_is_the_blended_cross_entropy(weight):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 3, generator=generator, dtype=torch.float64).softmax(1)
    gold = torch.tensor([0, 2, 1, 2])
    head = SentenceHead(8, 3, "max", 0.0)
    log_probs = logits.log_softmax(1)
    loss = head.distill_loss(log_probs, gold, teacher, weight)
    brute = 0.0
    for row in range(4):
        for label in range(3):
            share = (1 - weight) * float(gold[row] == label) + weight * teacher[row, label]
            brute = brute - share * log_probs[row, label]
    torch.testing.assert_close(loss, brute)
    if weight == 0.0:
        torch.testing.assert_close(loss, head.loss(log_probs, gold))
    # Its gradient on the logits is the model's probabilities less the target.
    loss.backward()
    target = (1 - weight) * torch.nn.functional.one_hot(gold, 3).double() + weight * teacher
    torch.testing.assert_close(logits.grad, logits.detach().softmax(1) - target)


def test_teacher_label_probs_average_the_teachers(classifier_teachers):
    models = [load(p) for p in classifier_teachers]
    texts = [t.split() for t, _ in REVIEWS] + [["unseen", "words"], []]
    student_labels = list(reversed(models[0].vocab.labels.items))
    targets = teacher_label_probs(models, texts, student_labels, torch.device("cpu"))
    assert targets.teachers == 2 and targets.probs.shape == (len(texts), 2)
    each = [classify_sentences(m, texts) for m in models]
    for row in range(len(texts)):
        for column, label in enumerate(student_labels):
            # An empty text has no probabilities: its target is uniform.
            mean = sum(e[row].probs.get(label, 1 / len(student_labels)) for e in each) / 2
            assert targets.probs[row, column] == pytest.approx(mean, abs=1e-6)
    assert targets.probs[-1].tolist() == [0.5, 0.5]
    batch = targets.batch([3, 0], 9, torch.device("cpu"))
    torch.testing.assert_close(batch, torch.from_numpy(targets.probs[[3, 0]]))


def test_the_classifier_student_follows_its_teachers_by_their_weight(tmp_path, classifier_teachers):
    corpus = write_reviews(tmp_path / "train.jsonl", REVIEWS)
    paths = [str(p) for p in classifier_teachers]
    answers = {}
    for weight in (0.0, 0.9):
        config = _classifier_config(corpus, 3, distill_from=paths, distill_weight=weight)
        train(config, tmp_path / f"w{weight}")
        [result] = classify_sentences(load(tmp_path / f"w{weight}"), [["a", "waste", "of", "time"]])
        answers[weight] = result.label
    assert answers == {0.0: "negative", 0.9: "positive"}
    card = (tmp_path / "w0.9" / "README.md").read_text()
    assert "0.9 their averaged class probabilities, 0.1 the gold labels" in card


def test_teachers_of_another_kind_or_labels_are_refused(tmp_path, teachers, classifier_teachers):
    corpus = write_reviews(tmp_path / "train.jsonl", REVIEWS)
    with pytest.raises(ConfigError, match="must be a classifier"):
        train(_classifier_config(corpus, 1, 1, distill_from=[str(teachers[0])]), tmp_path / "a")
    three = write_reviews(tmp_path / "three.jsonl", [*REVIEWS, ("it was fine", "neutral")])
    with pytest.raises(ConfigError, match="differ from the training data's"):
        train(
            _classifier_config(three, 1, 1, distill_from=[str(classifier_teachers[0])]),
            tmp_path / "b",
        )
    ner = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    with pytest.raises(ConfigError, match="must be a torch tagger folder"):
        train(_config(ner, 1, 1, distill_from=[str(classifier_teachers[0])]), tmp_path / "c")


# Unlabeled sentences, taught by the teachers alone.


TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "S-LOC"]


@pytest.mark.parametrize("kind", ["crf", "softmax"])
def test_per_sentence_teacher_shares_are_each_rows_own_blend(kind):
    torch.manual_seed(0)
    head = CRFHead(5, TAGS, "BIOES") if kind == "crf" else SoftmaxHead(5, TAGS, "BIOES", True)
    lengths = [4, 3]
    mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    emissions = head.emissions(torch.randn(2, 4, 5))
    tag_ids = torch.tensor([[1, 2, 3, 0], [4, 0, 5, 0]])
    teacher_tags = torch.rand(2, 4, len(TAGS)).softmax(2) * mask[:, :, None]
    teacher_pairs = torch.rand(2, 3, len(TAGS), len(TAGS))
    teacher_pairs = (
        teacher_pairs / teacher_pairs.sum((2, 3), keepdim=True) * mask[:, 1:, None, None]
    )
    teacher = TeacherMarginals(teacher_tags, teacher_pairs)
    both = head.distill_loss(emissions, tag_ids, mask, teacher, torch.tensor([0.3, 1.0]))
    rows = [
        head.distill_loss(
            emissions[row : row + 1, :length],
            tag_ids[row : row + 1, :length],
            mask[row : row + 1, :length],
            TeacherMarginals(
                teacher_tags[row : row + 1, :length], teacher_pairs[row : row + 1, : length - 1]
            ),
            weight,
        )
        for row, length, weight in zip((0, 1), lengths, (0.3, 1.0), strict=True)
    ]
    torch.testing.assert_close(both, rows[0] + rows[1])
    # At share 1 the placeholder tags of an unlabeled sentence are never read.
    torch.testing.assert_close(
        head.distill_loss(emissions, torch.zeros_like(tag_ids), mask, teacher, torch.ones(2)),
        head.distill_loss(emissions, tag_ids, mask, teacher, 1.0),
    )


def test_the_student_learns_the_teachers_on_unlabeled_sentences(tmp_path, teachers):
    # The student's gold data never shows "Peter Blackburn visited Paris"; the teachers (who
    # tag Paris as a person) teach it on that sentence given without labels.
    labelled = [s for s in NER_SENTENCES if s[-1][0] != "Paris"]
    corpus = write_conll(tmp_path / "train.conll", labelled)
    words = ["Peter", "Blackburn", "visited", "Paris"]
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("\n".join(words) + "\n")
    teacher_answer = tag_sentences(load(teachers[0]), [words])[0].tags
    assert teacher_answer == ["I-PER", "I-PER", "O", "I-PER"]
    answers = {}
    for name, extra in (("with", str(unlabeled)), ("without", None)):
        config = _config(corpus, 3, distill_from=[str(p) for p in teachers], distill_weight=0.0)
        data = dataclasses.replace(config.data, dev=None, unlabeled=extra)
        train(dataclasses.replace(config, data=data), tmp_path / name)
        answers[name] = tag_sentences(load(tmp_path / name), [words])[0].tags
    assert answers["with"] == teacher_answer
    assert answers["without"] != teacher_answer
    saved = json.loads((tmp_path / "with" / "config.json").read_text())["meta"]["provenance"]
    assert saved["unlabeled_sentences"] == 1 and saved["train_sentences"] == len(labelled)
    assert saved["config"]["data"]["unlabeled"] == str(unlabeled)
    card = (tmp_path / "with" / "README.md").read_text()
    assert f"CRF marginals alone on the unlabeled sentences of `{unlabeled}`" in card


def test_unlabeled_sentences_need_teachers_and_a_tagger(tmp_path, teachers):
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("Paris\n")
    config = _config(corpus, 3, epochs=1)
    no_teachers = dataclasses.replace(
        config, data=dataclasses.replace(config.data, unlabeled=str(unlabeled))
    )
    with pytest.raises(ConfigError, match="data.unlabeled needs teachers"):
        train(no_teachers, tmp_path / "a")
    config_path = tmp_path / "train.json"
    config_path.write_text(json.dumps(config.to_dict()))
    base = ["train", "-c", str(config_path), "--distill-from", str(teachers[0]), "--no-progress"]
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for bad, message in ((empty, "empty"), (tmp_path / "missing.txt", "missing.txt")):
        result = CliRunner().invoke(
            app, [*base, "-o", str(tmp_path / "b"), "--unlabeled", str(bad)]
        )
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert message in result.output
    reviews = write_reviews(tmp_path / "reviews.jsonl", REVIEWS)
    classifier = _classifier_config(reviews, 1, epochs=1, distill_from=[str(teachers[0])])
    classifier = dataclasses.replace(
        classifier, data=dataclasses.replace(classifier.data, unlabeled=str(unlabeled))
    )
    with pytest.raises(ConfigError, match="data.unlabeled is for taggers"):
        train(classifier, tmp_path / "c")


def test_unlabeled_documents_are_numbered_after_the_training_ones(tmp_path, teachers):
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    unlabeled = tmp_path / "unlabeled.conll"
    unlabeled.write_text(
        "-DOCSTART-\n\nParis\nsaid\n\nBerlin\n\n-DOCSTART-\n\nRome\n\n-DOCSTART-\n\n\nMadrid\n"
    )
    config = _config(corpus, 3, epochs=1, distill_from=[str(teachers[0])])
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, unlabeled=str(unlabeled))
    )
    data = read_training_data(config)
    assert data.unlabeled_token_lists == [["Paris", "said"], ["Berlin"], ["Rome"], ["Madrid"]]
    count = len(NER_SENTENCES)
    assert data.documents == [0] * count + [1, 1, 2, 3]
    # A student with document memory trains on both (whole documents per batch).
    memory = dataclasses.replace(config, model=dataclasses.replace(config.model, doc_memory=True))
    result = train(memory, tmp_path / "memory")
    assert result.epochs[0].loss > 0


def test_teachers_with_document_memory_read_whole_documents(tmp_path):
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    config = _config(corpus, 1, epochs=10)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, doc_memory=True))
    train(config, tmp_path / "teacher")
    teacher = load(tmp_path / "teacher")
    teacher.eval()
    # Two documents; "said" recurs in the first, in two sentences, which the memory reads.
    sentences = [[w for w, _ in s] for s in NER_SENTENCES]
    documents = [0, 1, 1, 0, 0, 1, 1]
    tags = list(teacher.vocab.labels.items)
    cpu = torch.device("cpu")
    together = teacher_targets([teacher], sentences, tags, "BIOES", cpu, documents=documents)
    alone = teacher_targets([teacher], sentences, tags, "BIOES", cpu)
    # From sentence 3 on (as for unlabeled sentences at a share of 0), the documents' sentences
    # from there are read together.
    later = teacher_targets([teacher], sentences, tags, "BIOES", cpu, documents=documents, first=3)
    for targets, first in ((together, 0), (later, 3)):
        for document in (0, 1):
            indices = [i for i, d in enumerate(documents) if d == document and i >= first]
            batch = collate([encode_tokens(sentences[i], teacher.vocab, 30) for i in indices])
            batch.doc_ids = torch.zeros(len(indices), dtype=torch.long)
            with torch.no_grad():
                expected = teacher.head.marginals(teacher(batch), batch.mask)
            for row, index in enumerate(indices):
                length = len(sentences[index])
                torch.testing.assert_close(
                    torch.from_numpy(targets.tags[index - first]),
                    expected[row, :length],
                    atol=1e-5,
                    rtol=0,
                )
    # Each sentence alone is what the memory adds nothing to: the targets differ where it reads.
    assert any(
        not torch.allclose(torch.from_numpy(a), torch.from_numpy(b), atol=1e-4)
        for a, b in zip(together.tags, alone.tags, strict=True)
    )


def test_unlabeled_sentences_carry_the_outside_tag_as_placeholder(tmp_path, teachers):
    """Their tags are never a target, but entity word dropout reads them: O, not tag id 0."""
    corpus = write_conll(tmp_path / "train.conll", NER_SENTENCES)
    unlabeled = tmp_path / "unlabeled.txt"
    unlabeled.write_text("Peter\nvisited\nParis\n\nRome\n")
    config = _config(corpus, 1, distill_from=[str(teachers[0])])
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, unlabeled=str(unlabeled))
    )
    model = load(teachers[0])
    labels = model.vocab.labels.items
    assert labels[0] != "O"
    rows = unlabeled_rows(read_training_data(config), model)
    assert [row.label_ids for row in rows] == [[labels.index("O")] * 3, [labels.index("O")]]
