"""spaCy training configs for our trainable pipe: what `bilstm-nlp spacy-config` writes.

A config for `python -m spacy train` that trains the `bilstm_trainable_tagger` pipe
(`spacy_training.py`) with our recipe (`bench/configs/{ner,pos,chunk}.json`): the same
architecture, SGD with momentum 0.9 (`bilstm_nlp.SGD.v1`) at 0.015 decayed per epoch as
`lr / (1 + 0.05 * epoch)`, batches of 16 sentences, the gold tokens and sentences of the
corpus (`gold_preproc`), dev scored once an epoch, patience 8 epochs. spaCy counts in steps, so
the schedule and the evaluation frequency need the number of batches per epoch: counted from
`--train` when it is given. What still differs from `bilstm-nlp train` is listed in the header
the config opens with.
"""

from __future__ import annotations

import math
from pathlib import Path

from .._version import __version__
from ..config import ModelConfig, TrainConfig
from ..errors import ConfigError, InputFormatError

SPACY_CONFIG_TASKS = ("ner", "pos", "chunk")
# Batches per epoch assumed when no training file is given (16,000 sentences in batches of 16).
DEFAULT_STEPS_PER_EPOCH = 1000

# What each task sets on the pipe, and the score spaCy selects the best model by.
_TASKS = {
    "ner": {
        "task": "ner",
        "scheme": "BIOES",
        "score_weights": {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
    },
    "chunk": {
        "task": "chunking",
        "scheme": "BIOES",
        "score_weights": {
            "spans_bilstm_chunks_f": 1.0,
            "spans_bilstm_chunks_p": 0.0,
            "spans_bilstm_chunks_r": 0.0,
            "ents_f": None,
            "ents_p": None,
            "ents_r": None,
            "ents_per_type": None,
        },
    },
    "pos": {
        "task": "pos",
        "scheme": None,
        "score_weights": {
            "pos_acc": 1.0,
            "ents_f": None,
            "ents_p": None,
            "ents_r": None,
            "ents_per_type": None,
        },
    },
}


def count_sentences(path: str | Path) -> int:
    """Training sentences in a spaCy DocBin as `spacy train` reads it with `gold_preproc`: a
    doc's sentences when it has sentence boundaries, else the doc.

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
        len(list(doc.sents)) if doc.has_annotation("SENT_START") else 1 for doc in docs if len(doc)
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
        task: `ner`, `pos` or `chunk`.
        train: the training DocBin (`paths.train`); its sentences fix the steps per epoch.
        dev: the dev DocBin (`paths.dev`).
        train_sentences: the training sentences, when `train` is not read (counted from it
            otherwise; without either, `DEFAULT_STEPS_PER_EPOCH` batches are assumed).
    Raises:
        ConfigError: an unknown task.
        InputFormatError: `train` is not a DocBin.
    """
    if task not in _TASKS:
        raise ConfigError(
            f"--task must be one of {', '.join(SPACY_CONFIG_TASKS)}, got {task!r}"
            + (
                " (a trainable sentence classifier for spacy train is not built yet; train "
                "sentiment with bilstm-nlp train and add it with the bilstm_textcat factory)"
                if task == "sentiment"
                else ""
            )
        )
    settings = _TASKS[task]
    recipe_model = ModelConfig()
    recipe = TrainConfig()
    if train_sentences is None and train is not None:
        train_sentences = count_sentences(train)
    counted = train_sentences is not None
    steps = (
        max(1, math.ceil(train_sentences / recipe.batch_size))
        if train_sentences is not None
        else DEFAULT_STEPS_PER_EPOCH
    )
    name = task
    model_lines = {
        "@architectures": "bilstm_nlp.BiLSTMTagger.v1",
        "hidden": recipe_model.hidden,
        "layers": recipe_model.layers,
        "head": recipe_model.head,
        "constrained": recipe_model.constrained,
        "char_encoder": recipe_model.char_encoder,
        "char_dim": recipe_model.char_dim,
        "char_hidden": recipe_model.char_hidden,
        "char_kernel": recipe_model.char_kernel,
        "max_word_chars": recipe_model.max_word_chars,
        "casing_dim": recipe_model.casing_dim,
        "vectors": recipe_model.vectors,
        "max_vectors": recipe_model.max_vectors,
        "freeze_vectors": recipe_model.freeze_vectors,
        "word_dim": recipe_model.word_dim,
        "dropout": recipe_model.dropout,
        "word_dropout": recipe_model.word_dropout,
    }
    sections: list[tuple[str, dict[str, object]]] = [
        (
            "paths",
            {"train": _path(train), "dev": _path(dev), "vectors": None, "init_tok2vec": None},
        ),
        ("system", {"seed": recipe.seed, "gpu_allocator": None}),
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
                "factory": "bilstm_trainable_tagger",
                "task": settings["task"],
                "scheme": settings["scheme"],
                "batch_size": recipe.eval_batch_size,
                "overwrite": False,
            },
        ),
        (f"components.{name}.model", model_lines),
        ("corpora", {}),
        ("corpora.train", _corpus("${paths.train}")),
        ("corpora.dev", _corpus("${paths.dev}")),
        (
            "training",
            {
                "seed": "${system.seed}",
                "gpu_allocator": "${system.gpu_allocator}",
                "dropout": 0.0,
                "accumulate_gradient": 1,
                "patience": recipe.patience * steps,
                "max_epochs": 40,
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
        (
            "training.optimizer",
            {
                "@optimizers": "bilstm_nlp.SGD.v1",
                "momentum": recipe.momentum,
                "grad_clip": recipe.clip,
                "L2": recipe.weight_decay,
            },
        ),
        (
            "training.optimizer.learn_rate",
            {
                "@schedules": "decaying.v1",
                "base_rate": recipe.lr,
                "decay": recipe.lr_decay / steps,
                "t": 0,
            },
        ),
        ("training.score_weights", settings["score_weights"]),
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
    header = _header(task, steps, counted, train_sentences)
    body = "\n\n".join(
        f"[{section}]" + "".join(f"\n{key} = {_value(value)}" for key, value in values.items())
        for section, values in sections
    )
    return header + "\n" + body + "\n"


def _corpus(path: str) -> dict[str, object]:
    # Gold tokens and sentences, as bilstm-nlp train reads the corpus.
    return {
        "@readers": "spacy.Corpus.v1",
        "path": path,
        "gold_preproc": True,
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


def _header(task: str, steps: int, counted: bool, sentences: int | None) -> str:
    basis = (
        f"{sentences} training sentences = {steps} batches of 16 per epoch"
        if counted
        else f"{steps} batches per epoch assumed (pass --train to count them)"
    )
    lines = [
        f"Written by `bilstm-nlp spacy-config --task {task}` (bilstm-nlp {__version__}).",
        "Train: python -m spacy train config.cfg --output OUT [--paths.train T --paths.dev D]",
        f"Steps: {basis};",
        "eval_frequency and the lr decay per step follow from it.",
        "Differs from bilstm-nlp train: batches are not bucketed by length; gradients are",
        "clipped per tensor, not by their global norm; the lr decays a little within an",
        "epoch, not once per epoch; [training] dropout is unused (the model's own dropout",
        "and word_dropout apply); dev is scored after step 0, 125, ... (one batch into the",
        "next epoch); the seed draws other random numbers.",
    ]
    return "\n".join("# " + line for line in lines) + "\n"
