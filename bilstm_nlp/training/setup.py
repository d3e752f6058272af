"""What a training run starts from: the declared model (task, vocabulary, pretrained vectors, or an
initial model to fine-tune) and its optimizer; `prepare_training` gives benches the same start."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .._version import __version__
from ..config import ExperimentConfig, ModelConfig
from ..corpus.registry import entry_for_file
from ..errors import ConfigError
from ..nn.embeddings import load_vectors, pretrained_matrix
from ..nn.encoding import EncodedSentence
from ..nn.meta import ModelMeta, ReaderSettings, default_task
from ..nn.model import Classifier, Tagger, build_model, extend_labels, word_embedders
from ..nn.vocab import Vocab
from ..serialize import load_model, read_meta
from ..text.schemes import split_tag
from .data import TrainingData, encode_training_rows, read_training_data

logger = logging.getLogger(__name__)


def cpu_model() -> str:
    """This machine's CPU model name (Linux's /proc/cpuinfo, else what `platform` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_meta(config: ExperimentConfig, data: TrainingData, command: str | None = None) -> ModelMeta:
    """The `ModelMeta` a run declares for its model: the task, the schemes and reader settings of
    its data, and its provenance (command, config, versions, sizes).

    Raises:
        ConfigError: `data.task` does not fit the data (a `pos` task on span tags, say).
    """
    try:
        return ModelMeta(
            task=_task_name(config, data.scheme),
            scheme=data.scheme,
            output_scheme=data.file_scheme,
            reader=ReaderSettings(**data.reader),
            provenance={
                "command": command,
                "config": config.to_dict(),
                "library_version": __version__,
                "torch_version": torch.__version__,
                # A seeded run repeats bit for bit on one CPU kind, not across them.
                "cpu": cpu_model(),
                "trained_on": time.strftime("%Y-%m-%d"),
                "train_sentences": len(data.train),
                "dev_sentences": len(data.dev.token_lists) if data.dev else 0,
                **(
                    {"unlabeled_sentences": len(data.unlabeled)}
                    if data.unlabeled is not None
                    else {}
                ),
                **(
                    {
                        "teachers": [
                            run_facts(path, read_meta(path)[1].provenance)
                            for path in config.train.distill_from
                        ]
                    }
                    if config.train.distill_from
                    else {}
                ),
            },
        )
    except ValueError as error:
        raise ConfigError(f"data.task: {error}") from None


def run_facts(path: str, provenance: dict) -> dict:
    """What a model made of other runs (a distilled student, an ensemble) records of each: where
    it was, its seed, protocol, date, command and the config it was trained with."""
    config = provenance.get("config") or {}
    return {
        "path": path,
        "seed": (config.get("train") or {}).get("seed"),
        "train_with_dev": bool((config.get("data") or {}).get("train_with_dev")),
        "trained_on": provenance.get("trained_on"),
        "command": provenance.get("command"),
        "config": config,
    }


def _task_name(config: ExperimentConfig, scheme: str | None) -> str:
    """The task the model is trained for: `data.task`, else the corpus registry's entry for the
    training file, else the default of its kind (`ner` for tags with a scheme, `pos` without,
    `classification`). Never guessed from the tag names."""
    declared = _declared_task(config)
    return declared if declared is not None else default_task(config.model.task, scheme)


def _declared_task(config: ExperimentConfig) -> str | None:
    """`data.task`, else the corpus registry's task for the training file, else None."""
    if config.data.task is not None:
        return config.data.task
    entry = entry_for_file(config.data.train) if config.data.train else None
    return entry.task if entry is not None else None


def build_run_model(
    config: ExperimentConfig,
    data: TrainingData,
    meta: ModelMeta,
    init_model: str | Path | None,
) -> Tagger | Classifier:
    """The model a run starts from: built fresh from `config.model` and the training data, or
    the model in `init_model` (see `initial_run_model`), declared with `meta`."""
    if init_model is not None:
        return initial_run_model(config, data, meta, init_model)
    return build_fresh_model(
        config.model, data.token_lists, data.label_names, meta, config.train.seed
    )


def build_fresh_model(
    model_config: ModelConfig,
    token_lists: Sequence[Sequence[str]],
    label_names: Sequence[str],
    meta: ModelMeta,
    seed: int,
) -> Tagger | Classifier:
    """An untrained model for training rows: the vocabulary of their tokens (plus the first
    `max_vectors` pretrained words), `label_names` as its labels in that order, and the pretrained
    vectors of `model_config.vectors` loaded into the word embedding (words the vectors lack get
    small random rows drawn with `seed`). `train` and the spaCy trainable pipe both start here.

    Raises:
        ConfigError: the vectors are missing.
    """
    words: list[str] = []
    matrix = None
    if model_config.vectors:
        words, matrix = load_vectors(model_config.vectors)
        model_config = replace(model_config, word_dim=int(matrix.shape[1]))
    vocab = Vocab.build(token_lists, list(label_names), words, model_config.max_vectors)
    model = build_model(model_config, vocab, meta)
    if matrix is not None:
        weights = pretrained_matrix(vocab, words, matrix, seed)
        for embedder in word_embedders(model):
            embedder.set_word_vectors(weights)
    return model


def initial_run_model(
    config: ExperimentConfig, data: TrainingData, meta: ModelMeta, init_model: str | Path
) -> Tagger | Classifier:
    """The model in `init_model`, to train further on `data`: its architecture, vocabulary and
    weights, declared with `meta` (the task the initial model declares unless the run declares
    one).

    Labels of the data that the model lacks are added (`extend_labels`, new ones sorted after
    the old): the old labels keep their weights exactly, the new ones start as in a fresh model.
    Labels of the model that the data lacks stay, but training on such data alone tends to make
    the model forget them (a warning says which; mix in some of the old training data).

    Raises:
        ConfigError: the initial model is of another kind (tagger, classifier), task or scheme.
        ModelFileError: `init_model` is not a model.
    """
    initial = load_model(init_model, quantized=False)
    if initial.config.task != config.model.task:
        raise ConfigError(
            f"the initial model is a {initial.config.task}; this run trains a "
            f"{config.model.task} (model.task)",
            init_model,
        )
    task = _declared_task(config) or initial.meta.task
    if task != initial.meta.task:
        raise ConfigError(
            f"the initial model was trained for {initial.meta.task}; this run's data.task is "
            f"{task}",
            init_model,
        )
    if initial.scheme != meta.scheme:
        raise ConfigError(_scheme_mismatch(initial, meta), init_model)
    old = initial.vocab.labels.items
    _check_shared_labels(old, data.label_names, meta.scheme, initial.meta.task, init_model)
    meta = replace(meta, task=task, provenance=_provenance_of(meta, initial.config))
    _warn_of_unused_settings(config.model, initial.config, init_model)
    _warn_of_forgetting(old, data.label_names, meta.scheme, init_model)
    new = sorted(set(data.label_names) - set(old))
    if new:
        logger.info("adding %d labels to the initial model: %s", len(new), ", ".join(new))
        return extend_labels(initial, new, meta).train()
    # The same architecture and weights, declared as this run's model.
    model = build_model(initial.config, initial.vocab, meta)
    model.load_state_dict(initial.state_dict())
    return model


def _scheme_mismatch(initial: Tagger | Classifier, meta: ModelMeta) -> str:
    def what(scheme: str | None) -> str:
        return f"entity tags in scheme {scheme}" if scheme else "plain labels (no tag scheme)"

    return (
        f"the initial model ({initial.meta.task}) was trained on {what(initial.scheme)}; this "
        f"run's data has {what(meta.scheme)}"
    )


def _label_kinds(labels: Sequence[str], scheme: str | None) -> set[str]:
    """Entity types of span tags; the labels themselves otherwise."""
    if scheme is None:
        return set(labels)
    return {kind for kind in (split_tag(tag)[1] for tag in labels) if kind is not None}


def _check_shared_labels(
    old: Sequence[str],
    trained: Sequence[str],
    scheme: str | None,
    task: str,
    init_model: str | Path,
) -> None:
    """Refuse data that shares no label (entity type, for span tags) with the initial model: a
    model of another task (a chunker started on NER data) would go on as that task."""
    old_kinds, new_kinds = _label_kinds(old, scheme), _label_kinds(trained, scheme)
    if old_kinds and new_kinds and not old_kinds & new_kinds:
        raise ConfigError(
            f"the initial model ({task}) knows {', '.join(sorted(old_kinds)[:6])}; the training "
            f"data has none of them ({', '.join(sorted(new_kinds)[:6])}): a model of another "
            "task? Train from scratch, or start from a model of this task",
            init_model,
        )


def _provenance_of(meta: ModelMeta, model_config: ModelConfig) -> dict:
    """The run's provenance, its config's model section the one the model was built with (the
    initial model's)."""
    provenance = dict(meta.provenance)
    config = dict(provenance.get("config") or {})
    config["model"] = asdict(model_config)
    provenance["config"] = config
    return provenance


def _warn_of_unused_settings(
    wanted: ModelConfig, used: ModelConfig, init_model: str | Path
) -> None:
    """Say which of the run's model settings the initial model's own replace."""
    wanted_values, used_values = asdict(wanted), asdict(used)
    differing = [
        f"model.{key} {wanted_values[key]!r} (the model's: {used_values[key]!r})"
        for key in wanted_values
        if key in used_values and wanted_values[key] != used_values[key]
    ]
    if differing:
        logger.warning(
            "%s: the model is the initial model, built as it was; these settings of the run are "
            "not used: %s",
            init_model,
            "; ".join(differing),
        )


def _warn_of_forgetting(
    old: list[str], trained: list[str], scheme: str | None, init_model: str | Path
) -> None:
    """Warn about the initial model's labels (entity types, for span tags) the data lacks."""
    what = "entity types" if scheme is not None else "labels"
    lacking = sorted(_label_kinds(old, scheme) - _label_kinds(trained, scheme))
    if lacking:
        logger.warning(
            "%s: the training data has no %s %s of the initial model; trained on it alone the "
            "model may forget them (mix in some of the data it was trained on)",
            init_model,
            what,
            ", ".join(lacking),
        )


def make_optimizer(model: torch.nn.Module, config: ExperimentConfig) -> torch.optim.Optimizer:
    settings = config.train
    parameters = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    if settings.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    raise ConfigError(f"train.optimizer must be sgd or adam, got {settings.optimizer!r}")


@dataclass
class PreparedRun:
    """A model ready to train on its encoded data: what `train` builds before its first epoch.

    Attributes:
        config: the settings.
        data: the training data read from `config`.
        model: the untrained model, built from `config` and the training rows.
        encoded: the training rows as ids.
        optimizer: the optimizer over the model's trainable parameters.
    """

    config: ExperimentConfig
    data: TrainingData
    model: Tagger | Classifier
    encoded: list[EncodedSentence]
    optimizer: torch.optim.Optimizer


def prepare_training(config: ExperimentConfig, *, max_sentences: int | None = None) -> PreparedRun:
    """Read the data, build the model and encode the training rows as `train` does (benches time
    the epochs that follow). Seed first (`set_seed`) for a reproducible model.

    Args:
        config: the settings.
        max_sentences: keep only the first this many training rows (the vocabulary is built
            from those).
    Raises:
        ConfigError, InputFormatError: bad settings or data.
    """
    data = read_training_data(config)
    if max_sentences is not None:
        data = data.head(max_sentences)
    model = build_run_model(config, data, run_meta(config, data), None)
    encoded = encode_training_rows(data, model.vocab, model.config.max_word_chars)
    return PreparedRun(config, data, model, encoded, make_optimizer(model, config))
