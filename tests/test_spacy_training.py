"""The trainable spaCy pipe (`spacy_training.py`) and `bilstm-nlp spacy-config`: one training
step against torch's own, the optimizer against `torch.optim.SGD`, serialization round trips,
the generated configs through spaCy's own config checks, and `spacy train` on real CoNLL-2003
against `bilstm-nlp train` with the same settings."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import spacy
import torch
from spacy.cli.convert import convert as spacy_convert
from spacy.cli.debug_config import debug_config
from spacy.cli.init_config import fill_config
from spacy.scorer import Scorer
from spacy.tokens import DocBin
from spacy.training import Corpus, Example
from spacy.training.converters import conll_ner_to_docs, conllu_to_docs
from spacy.training.initialize import init_nlp
from spacy.training.loop import train as spacy_train_loop
from spacy.util import load_config, load_model_from_config, registry
from thinc.api import Config
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.config import ExperimentConfig
from bilstm_nlp.errors import ConfigError
from bilstm_nlp.integrations import spacy_training
from bilstm_nlp.integrations.spacy_component import CHUNKS_KEY, ENTS_KEY, SCORES_ATTR
from bilstm_nlp.integrations.spacy_config import spacy_training_config
from bilstm_nlp.integrations.spacy_thinc import (
    CLASSIFIER_ARCHITECTURE,
    OPTIMIZER,
    TAGGER_ARCHITECTURE,
    momentum_sgd,
)
from bilstm_nlp.serialize import load_model
from bilstm_nlp.training.loop import train as bilstm_train

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "corpora" / "samples"
runner = CliRunner()


@pytest.fixture
def one_thread():
    """Train on one torch thread (a tiny model gains nothing from more, and CI shares cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Small and without pretrained vectors, so a unit test builds a model in milliseconds.
SMALL = {
    "@architectures": TAGGER_ARCHITECTURE,
    "hidden": 8,
    "char_dim": 4,
    "char_hidden": 6,
    "casing_dim": 2,
    "vectors": None,
    "word_dim": 6,
}


def _examples(nlp, docs) -> list[Example]:
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def _ner_docs(nlp, path: Path = SAMPLES / "conll2003" / "train.txt"):
    return list(conll_ner_to_docs(path.read_text(), n_sents=1, no_print=True))


def _pipeline(config: dict | None = None, name: str = "ner"):
    nlp = spacy.blank("en")
    settings = {"model": dict(SMALL)} | (config or {})
    pipe = nlp.add_pipe("bilstm_trainable_tagger", name=name, config=settings)
    return nlp, pipe


def test_the_pyproject_entry_points_name_what_is_registered() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    points = pyproject["project"]["entry-points"]
    factories = spacy_training.__name__
    assert points["spacy_factories"]["bilstm_trainable_tagger"] == (
        f"{factories}:make_bilstm_trainable_tagger"
    )
    assert points["spacy_factories"]["bilstm_trainable_textcat"] == (
        f"{factories}:make_bilstm_trainable_textcat"
    )
    thinc_module = momentum_sgd.__module__
    architectures = points["spacy_architectures"]
    assert architectures[TAGGER_ARCHITECTURE] == f"{thinc_module}:bilstm_tagger_model"
    assert architectures[CLASSIFIER_ARCHITECTURE] == f"{thinc_module}:bilstm_classifier_model"
    assert points["thinc_optimizers"][OPTIMIZER] == f"{thinc_module}:momentum_sgd"
    assert registry.architectures.get(TAGGER_ARCHITECTURE).__name__ == "bilstm_tagger_model"
    assert registry.optimizers.get(OPTIMIZER) is momentum_sgd
    nlp = spacy.blank("en")
    for factory, architecture in (
        ("bilstm_trainable_tagger", TAGGER_ARCHITECTURE),
        ("bilstm_trainable_textcat", CLASSIFIER_ARCHITECTURE),
    ):
        meta = nlp.get_factory_meta(factory)
        assert meta.default_config["model"]["@architectures"] == architecture


def test_the_factory_module_is_light() -> None:
    """spaCy imports every factory entry point's module whenever it makes a `Language`: ours
    must not drag in the trainable pipes, the training code or datasets (nor torch, for a
    torch-free install that only tags)."""
    probe = (
        "import sys, spacy\n"
        "import bilstm_nlp.integrations.spacy_training\n"
        "spacy.blank('en')\n"
        "heavy = ['datasets', 'bilstm_nlp.integrations.spacy_trainable', 'bilstm_nlp.training']\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_momentum_sgd_steps_as_torch_sgd() -> None:
    torch.manual_seed(0)
    weights = torch.randn(5, 3)
    reference = weights.clone().requires_grad_()
    torch_sgd = torch.optim.SGD([reference], lr=0.1, momentum=0.9)
    ours = momentum_sgd(0.1, momentum=0.9, grad_clip=0.0, L2=0.0)
    mine = weights.numpy().copy()
    for _ in range(4):
        gradient = torch.randn(5, 3)
        reference.grad = gradient.clone()
        torch_sgd.step()
        mine, _ = ours((1, "w"), mine, gradient.numpy().copy())
    torch.testing.assert_close(torch.from_numpy(mine), reference.detach())


def test_one_training_step_equals_bilstm_nlp_trains_step(one_thread: None) -> None:
    """The pipe's update (Thinc shim, CRF loss, global clipping, momentum SGD) moves every
    weight exactly as our trainer's step would (loss per sentence, clip_grad_norm_,
    torch.optim.SGD), with dropout off so both see the same function."""
    nlp, pipe = _pipeline({"model": SMALL | {"dropout": 0.0, "word_dropout": 0.0}})
    examples = _examples(nlp, _ner_docs(nlp))
    nlp.initialize(lambda: examples)
    model = pipe.bilstm_model
    reference = copy.deepcopy(model)
    optimizer = momentum_sgd(0.5, momentum=0.9, grad_clip=1.0, L2=0.0)
    torch_sgd = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9)
    batch = pipe._gold_batch(examples)
    for _ in range(2):
        losses = pipe.update(examples, sgd=optimizer)
        reference.train()
        torch_sgd.zero_grad()
        loss = reference.loss(batch) / batch.mask.shape[0]  # per sentence
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        torch_sgd.step()
        assert losses["ner"] == pytest.approx(float(loss.detach()), rel=1e-5)
    expected = reference.state_dict()
    for name, ours in model.state_dict().items():
        torch.testing.assert_close(ours, expected[name], msg=name)


def test_get_loss_is_the_crf_nll_per_sentence() -> None:
    nlp, pipe = _pipeline()
    examples = _examples(nlp, _ner_docs(nlp))
    nlp.initialize(lambda: examples)
    batch = pipe._gold_batch(examples)
    scores = pipe.model.predict(batch)
    loss, d_scores = pipe.get_loss(examples, scores)
    model = pipe.bilstm_model.eval()
    expected = model.head.loss(torch.from_numpy(scores), batch.tag_ids, batch.mask) / len(
        batch.mask
    )
    assert loss == pytest.approx(float(expected.detach()), rel=1e-6)
    assert d_scores.shape == scores.shape
    assert abs(d_scores).sum() > 0


def test_training_fits_the_sample_and_round_trips(one_thread: None) -> None:
    """A few hundred steps on the sample: the pipe learns it (entities with CRF probabilities),
    and to_bytes, to_disk → spacy.load and `bilstm_tagger` on the saved model folder all give
    the same entities and scores."""
    torch.manual_seed(0)
    nlp, pipe = _pipeline({"model": SMALL | {"hidden": 16, "dropout": 0.0, "word_dropout": 0.0}})
    docs = _ner_docs(nlp)
    examples = _examples(nlp, docs)
    optimizer = nlp.initialize(lambda: examples, sgd=momentum_sgd(0.05))
    assert pipe.labels == ("LOC", "MISC", "ORG", "PER")
    first = pipe.update(examples)["ner"]
    for _ in range(100):
        losses = nlp.update(examples, sgd=optimizer)
    assert losses["ner"] < first / 10
    predicted = [nlp(doc.text) for doc in docs]
    assert Scorer.score_spans(
        [Example(p, d) for p, d in zip(predicted, docs, strict=True)], "ents"
    )["ents_f"] == pytest.approx(1.0)
    scores = [list(doc.spans[ENTS_KEY].attrs[SCORES_ATTR]) for doc in predicted]
    assert all(0.5 < s <= 1.0 for row in scores for s in row)
    assert nlp.evaluate(_examples(nlp, docs))["ents_f"] == pytest.approx(1.0)

    def outputs(pipeline) -> list:
        out = [pipeline(doc.text) for doc in docs]
        return [
            ([(e.start, e.end, e.label_) for e in d.ents], list(d.spans[ENTS_KEY].attrs["scores"]))
            for d in out
        ]

    expected = outputs(nlp)
    restored, _ = _pipeline({"model": SMALL | {"hidden": 16, "dropout": 0.0, "word_dropout": 0.0}})
    restored.from_bytes(nlp.to_bytes())
    assert outputs(restored) == expected
    with pytest.MonkeyPatch.context() as patch, _tmp() as folder:
        patch.chdir(folder)
        nlp.to_disk("pipeline")
        assert outputs(spacy.load("pipeline")) == expected
        assert sorted(p.name for p in Path("pipeline/ner").iterdir()) == sorted(
            ["config.json", "words.json", "chars.json", "labels.json", "model.safetensors"]
        )
        inference = spacy.blank("en")
        inference.add_pipe("bilstm_tagger", config={"model": "pipeline/ner"})
        assert outputs(inference) == expected


def _tmp():
    import tempfile

    return tempfile.TemporaryDirectory()


def test_pos_pipe_trains_on_universal_tags_and_scores_pos_acc(one_thread: None) -> None:
    torch.manual_seed(0)
    nlp, pipe = _pipeline(
        {"task": "pos", "scheme": None, "model": SMALL | {"hidden": 16, "dropout": 0.0}}, "pos"
    )
    text = (SAMPLES / "ud_ewt" / "train.conllu").read_text()
    docs = list(conllu_to_docs(text, n_sents=1, no_print=True))
    examples = _examples(nlp, docs)
    optimizer = nlp.initialize(lambda: examples, sgd=momentum_sgd(0.05))
    for _ in range(100):
        nlp.update(examples, sgd=optimizer)
    assert set(pipe.labels) == {t.pos_ for doc in docs for t in doc}
    scores = nlp.evaluate(_examples(nlp, docs))
    assert scores["pos_acc"] == pytest.approx(1.0)
    doc = nlp(docs[0].text)
    assert [t.pos_ for t in doc] == [t.pos_ for t in docs[0]]


def test_chunking_pipe_learns_chunks_into_its_span_group(one_thread: None) -> None:
    """CoNLL-2000 chunks as `spacy convert -c ner` reads them (as entities): the pipe trains on
    them and writes the span group `bilstm_chunks`, scored as `spans_bilstm_chunks_f`."""
    torch.manual_seed(0)
    nlp, pipe = _pipeline(
        {"task": "chunking", "model": SMALL | {"hidden": 16, "dropout": 0.0}}, "chunk"
    )
    docs = _ner_docs(nlp, SAMPLES / "conll2000" / "train.txt")
    examples = _examples(nlp, docs)
    optimizer = nlp.initialize(lambda: examples, sgd=momentum_sgd(0.05))
    for _ in range(100):
        nlp.update(examples, sgd=optimizer)
    assert set(pipe.labels) == {ent.label_ for doc in docs for ent in doc.ents}
    assert nlp.evaluate(_examples(nlp, docs))["spans_bilstm_chunks_f"] == pytest.approx(1.0)
    doc = nlp(docs[0].text)
    assert [(s.start, s.end, s.label_) for s in doc.spans[CHUNKS_KEY]] == [
        (e.start, e.end, e.label_) for e in docs[0].ents
    ]
    assert not doc.ents


def test_textcat_pipe_learns_the_sst_sample_and_round_trips(
    one_thread: None, tmp_path: Path
) -> None:
    """SST trees as `bilstm-nlp convert --to docbin` writes them (doc.cats): the classifier
    trains on them, `doc.cats` gets every label's probability, `cats_score` is spaCy's, and
    the saved pipeline (and `bilstm_textcat` on its model folder) gives the same cats."""
    torch.manual_seed(0)
    corpus = tmp_path / "sst.spacy"
    result = runner.invoke(
        app, ["convert", str(SAMPLES / "sst" / "train.txt"), str(corpus), "--to", "docbin"]
    )
    assert result.exit_code == 0, result.output
    nlp = spacy.blank("en")
    small = {key: value for key, value in SMALL.items() if key != "@architectures"}
    model = {"@architectures": CLASSIFIER_ARCHITECTURE, **small, "dropout": 0.0}
    pipe = nlp.add_pipe("bilstm_trainable_textcat", name="sentiment", config={"model": model})
    docs = list(DocBin().from_disk(corpus).get_docs(nlp.vocab))
    examples = _examples(nlp, docs)
    optimizer = nlp.initialize(lambda: examples, sgd=momentum_sgd(0.05))
    assert pipe.labels == ("negative", "positive")
    for _ in range(60):
        nlp.update(examples, sgd=optimizer)
    assert nlp.evaluate(_examples(nlp, docs))["cats_score"] == pytest.approx(1.0)
    predicted = [nlp(doc.text).cats for doc in docs]
    for cats, doc in zip(predicted, docs, strict=True):
        assert max(cats, key=cats.get) == max(doc.cats, key=doc.cats.get)
        assert sum(cats.values()) == pytest.approx(1.0, abs=1e-5)
    nlp.to_disk(tmp_path / "pipeline")
    assert [spacy.load(tmp_path / "pipeline")(d.text).cats for d in docs] == predicted
    inference = spacy.blank("en")
    inference.add_pipe("bilstm_textcat", config={"model": str(tmp_path / "pipeline" / "sentiment")})
    assert [inference(d.text).cats for d in docs] == predicted


def test_user_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="task must be one of"):
        _pipeline({"task": "sentiment"})
    with pytest.raises(ConfigError, match="task must be one of"):
        spacy.blank("en").add_pipe("bilstm_trainable_textcat", config={"task": "ner"})
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bilstm_trainable_textcat",
        config={"model": {"@architectures": CLASSIFIER_ARCHITECTURE, "vectors": None}},
    )
    uncategorised = _examples(nlp, [nlp.make_doc("A film that sparkles .")])
    with pytest.raises(ConfigError, match="has no doc.cats"):
        nlp.initialize(lambda: uncategorised)
    with pytest.raises(ConfigError, match="no scheme"):
        _pipeline({"task": "pos"})
    with pytest.raises(ConfigError, match="scheme must be one of"):
        _pipeline({"scheme": "BILOU"})
    nlp, _ = _pipeline()
    with pytest.raises(ConfigError, match="has no model yet"):
        nlp("Mara Lind flew to Oslo .")
    nlp, _ = _pipeline({"task": "pos", "scheme": None}, "pos")
    untagged = _examples(nlp, [nlp.make_doc("Mara flew .")])
    with pytest.raises(ConfigError, match="'Mara' .* has no pos"):
        nlp.initialize(lambda: untagged)
    nlp, _ = _pipeline()
    examples = _examples(nlp, _ner_docs(nlp))
    nlp.initialize(lambda: examples[:1])
    with pytest.raises(ConfigError, match="not in the examples the pipe was initialized with"):
        nlp.update(examples)


@pytest.mark.parametrize("task", ["ner", "pos", "chunk", "sentiment"])
def test_spacy_config_passes_spacys_config_checks(tmp_path: Path, task: str) -> None:
    """`spacy debug config` finds the written config valid, `spacy init fill-config` has
    nothing to add to it, and its pipeline builds with our pipe for the task."""
    path = tmp_path / "config.cfg"
    corpus = tmp_path / "sample.spacy"
    DocBin(docs=_ner_docs(spacy.blank("en"))).to_disk(corpus)
    options = ["--task", task, "--train", str(corpus), "--dev", str(corpus), "--output", str(path)]
    result = runner.invoke(app, ["spacy-config", *options])
    assert result.exit_code == 0, result.output
    debug_config(path, overrides={})  # exits on an invalid config
    fill_config(tmp_path / "filled.cfg", path, silent=True)
    written = Config().from_disk(path, interpolate=False)
    assert Config().from_disk(tmp_path / "filled.cfg", interpolate=False) == written
    nlp = load_model_from_config(load_config(path), auto_fill=False, validate=True)
    assert nlp.pipe_names == [task]
    assert nlp.get_pipe(task).task == {"chunk": "chunking"}.get(task, task)
    expected = "bilstm_trainable_textcat" if task == "sentiment" else "bilstm_trainable_tagger"
    assert nlp.get_pipe_meta(task).factory == expected


def test_spacy_config_counts_steps_from_train(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    docs = _ner_docs(nlp)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    text = spacy_training_config("ner", train=tmp_path / "train.spacy")
    config = Config().from_str(text, interpolate=False)
    assert config["training"]["eval_frequency"] == 1  # 5 sentences, one batch of 16
    assert config["training"]["optimizer"]["learn_rate"]["decay"] == pytest.approx(0.05)
    assert config["paths"]["train"] == str(tmp_path / "train.spacy")


def test_spacy_config_bad_input_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["spacy-config", "--task", "lemma"])
    assert result.exit_code == 1
    assert "--task must be one of ner, pos, chunk, sentiment, got 'lemma'" in result.output
    assert "Traceback" not in result.output
    bogus = tmp_path / "train.spacy"
    bogus.write_text("EU NNP I-NP I-ORG\n")
    result = runner.invoke(app, ["spacy-config", "--task", "ner", "--train", str(bogus)])
    assert result.exit_code == 1
    assert f"{bogus}: not a spaCy DocBin" in result.output and "Traceback" not in result.output
    # The dev file too: spacy train would otherwise fail on it at its first evaluation.
    result = runner.invoke(app, ["spacy-config", "--task", "ner", "--dev", str(bogus)])
    assert result.exit_code == 1
    assert f"{bogus}: not a spaCy DocBin" in result.output and "Traceback" not in result.output


def _head_conll(source: Path, count: int, target: Path) -> None:
    """The first `count` sentences of a CoNLL-2003 file (document separators left out)."""
    sentences, current = [], []
    for line in source.read_text().splitlines():
        if line.startswith("-DOCSTART-"):
            continue
        if line.strip():
            current.append(line)
        elif current:
            sentences.append(current)
            current = []
        if len(sentences) == count:
            break
    target.write_text("".join("\n".join(s) + "\n\n" for s in sentences))


@pytest.mark.slow
def test_spacy_train_matches_bilstm_nlp_train_on_conll2003(
    shared_corpora: Path, tmp_path: Path, datasets_cache: Path, one_thread: None
) -> None:
    """2,000 CoNLL-2003 train sentences converted by `spacy convert`, trained for 8 epochs by
    `spacy train` with the config `spacy-config` writes and by `bilstm-nlp train` with the same
    recipe, dev scored after each epoch on the first 1,000 dev sentences. The dev F1 they
    reach, the mean over the last 3 epochs (one epoch's figure swings by a point or two either
    way on this little data; see the README), agree within 1 point; both best models,
    scored by spaCy's `Scorer` on the same dev examples, are printed. The saved model-last
    loads with spacy.load and gives what the trained pipeline in memory gives."""
    epochs, last = 8, 3
    conll2003 = shared_corpora / "conll2003"
    _head_conll(conll2003 / "train.txt", 2000, tmp_path / "train.txt")
    _head_conll(conll2003 / "dev.txt", 1000, tmp_path / "dev.txt")
    for split in ("train", "dev"):
        spacy_convert(tmp_path / f"{split}.txt", tmp_path, file_type="spacy", converter="ner")
    config_path = tmp_path / "config.cfg"
    result = runner.invoke(
        app,
        [
            "spacy-config",
            "--task",
            "ner",
            "--train",
            str(tmp_path / "train.spacy"),
            "--dev",
            str(tmp_path / "dev.spacy"),
            "-o",
            str(config_path),
        ],
    )
    assert result.exit_code == 0, result.output
    steps = 125  # 2,000 sentences in batches of 16
    # What `python -m spacy train config.cfg --output OUT --training.max_steps 1000
    # --training.logger.output_file log.jsonl` runs: spaCy scores dev after steps 0, 125, 250,
    # ..., one batch into the next epoch, so it stops at step 1000 to score all 8 epochs.
    overrides = {
        "training.max_epochs": 0,
        "training.max_steps": epochs * steps,
        "training.logger.output_file": str(tmp_path / "spacy_log.jsonl"),
    }
    config = load_config(config_path, overrides=overrides)
    assert config["training"]["eval_frequency"] == steps
    nlp = init_nlp(config)
    (tmp_path / "spacy").mkdir()
    trained, _ = spacy_train_loop(nlp, tmp_path / "spacy")

    recipe = json.loads((REPO / "bench" / "configs" / "ner.json").read_text())
    recipe["data"] = {
        "train": str(tmp_path / "train.txt"),
        "dev": str(tmp_path / "dev.txt"),
        "scheme": "BIOES",
    }
    recipe["train"] |= {"epochs": epochs, "patience": 0, "max_minutes": 0}
    bilstm_train(ExperimentConfig.from_dict(recipe), tmp_path / "ours")

    spacy_curve = [
        json.loads(line)["scores"]["ents_f"]
        for line in (tmp_path / "spacy_log.jsonl").read_text().splitlines()
    ][1:]  # the first is step 0, before any update
    our_curve = [
        json.loads(line)["dev_score"] for line in (tmp_path / "ours" / "train_log.jsonl").open()
    ]
    assert len(spacy_curve) == len(our_curve) == epochs
    reached = {
        "spacy train": sum(spacy_curve[-last:]) / last,
        "bilstm-nlp train": sum(our_curve[-last:]) / last,
    }

    ours = spacy.blank("en")
    ours.add_pipe("bilstm_tagger", config={"model": str(tmp_path / "ours")})
    best = spacy.load(tmp_path / "spacy" / "model-best")
    best_f1 = {}
    for name, pipeline in (("spacy train", best), ("bilstm-nlp train", ours)):
        examples = list(Corpus(str(tmp_path / "dev.spacy"), gold_preproc=True)(pipeline))
        predicted = [Example(pipeline(eg.predicted), eg.reference) for eg in examples]
        best_f1[name] = 100 * Scorer.score_spans(predicted, "ents")["ents_f"]
    print(
        f"dev F1 per epoch: spacy train {[round(f, 2) for f in spacy_curve]}, "
        f"bilstm-nlp train {[round(f, 2) for f in our_curve]}; mean of the last {last}: "
        f"{reached}; best models by spaCy's Scorer: {best_f1}"
    )
    assert abs(reached["spacy train"] - reached["bilstm-nlp train"]) <= 1.0, reached
    # Our trainer's seqeval figure and spaCy's Scorer agree on its best model.
    assert best_f1["bilstm-nlp train"] == pytest.approx(max(our_curve), abs=0.2)
    assert min(best_f1.values()) > 80

    dev_docs = list(DocBin().from_disk(tmp_path / "dev.spacy").get_docs(nlp.vocab))
    saved = spacy.load(tmp_path / "spacy" / "model-last")
    for doc in dev_docs[:200]:
        a, b = trained(doc.text), saved(doc.text)
        assert [(e.start, e.end, e.label_) for e in a.ents] == [
            (e.start, e.end, e.label_) for e in b.ents
        ]
        assert list(a.spans[ENTS_KEY].attrs[SCORES_ATTR]) == list(
            b.spans[ENTS_KEY].attrs[SCORES_ATTR]
        )
    assert load_model(tmp_path / "spacy" / "model-best" / "ner").meta.task == "ner"
