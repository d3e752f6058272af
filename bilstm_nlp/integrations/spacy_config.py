"""spaCy training configs for our trainable pipes: what `bilstm-nlp spacy-config` writes.

A config for `python -m spacy train` that trains the `bilstm_trainable_tagger` pipe
(`spacy_training.py`) with our recipe (`bench/configs/{ner,pos,chunk}.json`): the same
architecture, SGD with momentum 0.9 (`bilstm_nlp.SGD.v1`) at 0.015 decayed per epoch as
`lr / (1 + 0.05 * epoch)`, batches of 16 sentences, the gold tokens and sentences of the
corpus (`gold_preproc`), dev scored once an epoch, patience 8 epochs. spaCy counts in steps, so
the schedule and the evaluation frequency need the number of batches per epoch: counted from
`--train` when it is given. `--task sentiment` trains `bilstm_trainable_textcat` with
`bench/configs/sentiment.json`'s recipe (Adam 0.001, batches of 64 texts). What still differs
from `bilstm-nlp train` is listed in the header the config opens with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..config import ModelConfig, TrainConfig
from ..errors import ConfigError, InputFormatError

SPACY_CONFIG_TASKS = ("ner", "pos", "chunk", "sentiment")
# Batches per epoch assumed when no training file is given.
DEFAULT_STEPS_PER_EPOCH = 1000

_NO_ENTS = {"ents_f": None, "ents_p": None, "ents_r": None, "ents_per_type": None}
_TAGGER_RECIPE = ModelConfig()  # bench/configs/{ner,pos,chunk}.json: the defaults
_TAGGER_TRAINING = TrainConfig()


@dataclass(frozen=True)
class _Recipe:
    """What one task's config holds: the pipe, its architecture, and how it trains."""

    factory: str
    pipe: dict[str, object]
    model: dict[str, object]
    optimizer: dict[str, object]
    lr: float
    lr_decay: float
    batch_size: int
    max_epochs: int
    patience_epochs: int
    # Gold tokens and sentences, as bilstm-nlp train reads a tagging corpus; a classifier trains
    # on each doc's tokens, and Span.as_doc (which gold_preproc cuts sentences with) drops cats.
    gold_preproc: bool
    score_weights: dict[str, object]


def _tagger_recipe(task: str, scheme: str | None, score_weights: dict[str, object]) -> _Recipe:
    model, train = _TAGGER_RECIPE, _TAGGER_TRAINING
    return _Recipe(
        factory="bilstm_trainable_tagger",
        pipe={"task": task, "scheme": scheme},
        model={
            "@architectures": "bilstm_nlp.BiLSTMTagger.v1",
            "hidden": model.hidden,
            "layers": model.layers,
            "head": model.head,
            "constrained": model.constrained,
            "char_encoder": model.char_encoder,
            "char_dim": model.char_dim,
            "char_hidden": model.char_hidden,
            "char_kernel": model.char_kernel,
            "max_word_chars": model.max_word_chars,
            "casing_dim": model.casing_dim,
            "vectors": model.vectors,
            "max_vectors": model.max_vectors,
            "freeze_vectors": model.freeze_vectors,
            "word_dim": model.word_dim,
            "dropout": model.dropout,
            "word_dropout": model.word_dropout,
        },
        optimizer={
            "@optimizers": "bilstm_nlp.SGD.v1",
            "momentum": train.momentum,
            "grad_clip": train.clip,
            "L2": train.weight_decay,
        },
        lr=train.lr,
        lr_decay=train.lr_decay,
        batch_size=train.batch_size,
        max_epochs=40,
        patience_epochs=train.patience,
        gold_preproc=True,
        score_weights=score_weights,
    )


_RECIPES = {
    "ner": _tagger_recipe(
        "ner", "BIOES", {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None}
    ),
    "chunk": _tagger_recipe(
        "chunking",
        "BIOES",
        {
            "spans_bilstm_chunks_f": 1.0,
            "spans_bilstm_chunks_p": 0.0,
            "spans_bilstm_chunks_r": 0.0,
            **_NO_ENTS,
        },
    ),
    "pos": _tagger_recipe("pos", None, {"pos_acc": 1.0, **_NO_ENTS}),
    # bench/configs/sentiment.json: Adam 0.001 (torch's betas and eps), batches of 64, 16
    # epochs, patience 3, clip 5, no decay.
    "sentiment": _Recipe(
        factory="bilstm_trainable_textcat",
        pipe={"task": "sentiment"},
        model={
            "@architectures": "bilstm_nlp.BiLSTMClassifier.v1",
            "hidden": 150,
            "layers": 1,
            "pooling": "max",
            "char_encoder": "none",
            "char_dim": 30,
            "char_hidden": 50,
            "char_kernel": 3,
            "max_word_chars": 30,
            "casing_dim": 0,
            "vectors": "glove-6b-50d",
            "max_vectors": 100_000,
            "freeze_vectors": False,
            "word_dim": 50,
            "dropout": 0.5,
            "word_dropout": 0.05,
        },
        optimizer={
            "@optimizers": "Adam.v1",
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-8,
            "L2": 0.0,
            "L2_is_weight_decay": False,
            "grad_clip": 5.0,
            "use_averages": False,
        },
        lr=0.001,
        lr_decay=0.0,
        batch_size=64,
        max_epochs=16,
        patience_epochs=3,
        gold_preproc=False,
        score_weights={"cats_score": 1.0, **_NO_ENTS},
    ),
}


def count_sentences(path: str | Path, gold_preproc: bool = True) -> int:
    """Training rows in a spaCy DocBin as `spacy train` reads it: with `gold_preproc`, a doc's
    sentences when it has sentence boundaries, else the doc; without, the docs.

    Raises:
        InputFormatError: the file is not a DocBin.
    """
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    path = Path(path)
    try:
        docs = list(DocBin().from_disk(path).get_docs(Vocab()))
    except Exception as error:  # msgpack and zlib raise several unrelated types
        raise InputFormatError(
            f"not a spaCy DocBin (.spacy, as spacy convert writes): {error}", str(path)
        ) from None
    return sum(
        len(list(doc.sents)) if gold_preproc and doc.has_annotation("SENT_START") else 1
        for doc in docs
        if len(doc)
    )


def spacy_training_config(
    task: str,
    *,
    train: str | Path | None = None,
    dev: str | Path | None = None,
    train_sentences: int | None = None,
) -> str:
    """A complete spaCy training config (the text of `config.cfg`) for our pipe on `task`.

    Args:
        task: `ner`, `pos`, `chunk` or `sentiment`.
        train: the training DocBin (`paths.train`); its rows fix the steps per epoch.
        dev: the dev DocBin (`paths.dev`).
        train_sentences: the training rows (sentences, or texts for sentiment), when `train`
            is not read (counted from it otherwise; without either,
            `DEFAULT_STEPS_PER_EPOCH` batches are assumed).
    Raises:
        ConfigError: an unknown task.
        InputFormatError: `train` or `dev` is not a DocBin.
    """
    if task not in _RECIPES:
        raise ConfigError(f"--task must be one of {', '.join(SPACY_CONFIG_TASKS)}, got {task!r}")
    recipe = _RECIPES[task]
    if train_sentences is None and train is not None:
        train_sentences = count_sentences(train, recipe.gold_preproc)
    if dev is not None:
        count_sentences(dev)  # a dev file spaCy could not read fails here, not in spacy train
    counted = train_sentences is not None
    steps = (
        max(1, math.ceil(train_sentences / recipe.batch_size))
        if train_sentences is not None
        else DEFAULT_STEPS_PER_EPOCH
    )
    name = task
    optimizer = dict(recipe.optimizer)
    schedule: list[tuple[str, dict[str, object]]] = []
    if recipe.lr_decay:
        # lr / (1 + lr_decay * epoch), per step.
        schedule = [
            (
                "training.optimizer.learn_rate",
                {
                    "@schedules": "decaying.v1",
                    "base_rate": recipe.lr,
                    "decay": recipe.lr_decay / steps,
                    "t": 0,
                },
            )
        ]
    else:
        optimizer["learn_rate"] = recipe.lr
    sections: list[tuple[str, dict[str, object]]] = [
        (
            "paths",
            {"train": _path(train), "dev": _path(dev), "vectors": None, "init_tok2vec": None},
        ),
        ("system", {"seed": _TAGGER_TRAINING.seed, "gpu_allocator": None}),
        (
            "nlp",
            {
                "lang": "en",
                "pipeline": [name],
                "disabled": [],
                "before_creation": None,
                "after_creation": None,
                "after_pipeline_creation": None,
                "batch_size": 256,
            },
        ),
        ("nlp.tokenizer", {"@tokenizers": "spacy.Tokenizer.v1"}),
        # Our pipe brings its own word vectors (the architecture's `vectors`).
        ("nlp.vectors", {"@vectors": "spacy.Vectors.v1"}),
        ("components", {}),
        (
            f"components.{name}",
            {
                "factory": recipe.factory,
                **recipe.pipe,
                "batch_size": _TAGGER_TRAINING.eval_batch_size,
                "overwrite": False,
            },
        ),
        (f"components.{name}.model", recipe.model),
        ("corpora", {}),
        ("corpora.train", _corpus("${paths.train}", recipe.gold_preproc)),
        ("corpora.dev", _corpus("${paths.dev}", recipe.gold_preproc)),
        (
            "training",
            {
                "seed": "${system.seed}",
                "gpu_allocator": "${system.gpu_allocator}",
                "dropout": 0.0,
                "accumulate_gradient": 1,
                "patience": recipe.patience_epochs * steps,
                "max_epochs": recipe.max_epochs,
                "max_steps": 0,
                "eval_frequency": steps,
                "frozen_components": [],
                "annotating_components": [],
                "dev_corpus": "corpora.dev",
                "train_corpus": "corpora.train",
                "before_to_disk": None,
                "before_update": None,
            },
        ),
        (
            "training.batcher",
            {
                "@batchers": "spacy.batch_by_sequence.v1",
                "size": recipe.batch_size,
                "get_length": None,
            },
        ),
        (
            "training.logger",
            {
                "@loggers": "spacy.ConsoleLogger.v2",
                "progress_bar": False,
                "console_output": True,
                "output_file": None,
            },
        ),
        ("training.optimizer", optimizer),
        *schedule,
        ("training.score_weights", recipe.score_weights),
        ("pretraining", {}),
        (
            "initialize",
            {
                "vectors": "${paths.vectors}",
                "init_tok2vec": "${paths.init_tok2vec}",
                "vocab_data": None,
                "lookups": None,
                "before_init": None,
                "after_init": None,
            },
        ),
        ("initialize.components", {}),
        ("initialize.tokenizer", {}),
    ]
    header = _header(task, recipe, steps, counted, train_sentences)
    body = "\n\n".join(
        f"[{section}]" + "".join(f"\n{key} = {_value(value)}" for key, value in values.items())
        for section, values in sections
    )
    return header + "\n" + body + "\n"


def _corpus(path: str, gold_preproc: bool) -> dict[str, object]:
    return {
        "@readers": "spacy.Corpus.v1",
        "path": path,
        "gold_preproc": gold_preproc,
        "max_length": 0,
        "limit": 0,
        "augmenter": None,
    }


def _path(path: str | Path | None) -> str | None:
    return None if path is None else str(path)


def _value(value: object) -> str:
    """A config value: JSON, except `${...}` references, which stay bare."""
    import json

    if isinstance(value, str) and value.startswith("${"):
        return value
    return json.dumps(value)


def _header(task: str, recipe: _Recipe, steps: int, counted: bool, rows: int | None) -> str:
    size = recipe.batch_size
    basis = (
        f"{rows} training rows = {steps} batches of {size} per epoch"
        if counted
        else f"{steps} batches per epoch assumed (pass --train to count them)"
    )
    clipping = "are clipped by their global norm, as ours are"
    lines = [
        f"Written by `bilstm-nlp spacy-config --task {task}` (bilstm-nlp {__version__}).",
        "Train: python -m spacy train config.cfg --output OUT [--paths.train T --paths.dev D]",
        f"Steps: {basis};",
        "eval_frequency, patience"
        + (" and the lr decay per step follow" if recipe.lr_decay else " follow")
        + " from it.",
        "Differs from bilstm-nlp train: batches are not bucketed by length (padding is",
        f"masked, the loss is the same); gradients {clipping}; the lr decays a",
        "little within an epoch, not once per epoch; [training] dropout is unused (the",
        "model's own dropout and word_dropout apply); dev is scored after step 0, then one",
        "batch into each next epoch; the seed draws other random numbers.",
    ]
    return "\n".join("# " + line for line in lines) + "\n"
