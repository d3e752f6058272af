"""What a model declares about itself beside its weights: `ModelMeta`.

A model is built from its architecture (`ModelConfig`), its vocabularies (`Vocab`) and this
record: the task it was trained for, its tag schemes, how its training data was read (so
`evaluate` reads gold data the same way), where it came from and how it scored. `serialize.py`
writes it into `config.json` and reads it back, checked; nothing else sets anything on a model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .._version import __version__
from ..config import INPUT_FORMATS, MISALIGNED_POLICIES, short_json
from ..text.schemes import SCHEMES

FORMAT_VERSION = 1
"""The model-folder format this version writes and reads."""

TAGGER_TASKS = ("ner", "chunking", "pos")
"""ner and chunking tag spans (a scheme), pos tags tokens (plain labels)."""
CLASSIFIER_TASKS = ("sentiment", "classification")
TASKS = (*TAGGER_TASKS, *CLASSIFIER_TASKS)


@dataclass(frozen=True)
class ReaderSettings:
    """How the training data was read; None where the reader's default applies.

    Attributes:
        input_format: the reader (`conll`, `conllu`, `jsonl`, `csv`, `tsv`, `sst`); None detects it.
        label_column: CoNLL column of the labels (taggers).
        tag_field: CoNLL-U field, `upos` or `xpos` (taggers).
        file_scheme: the scheme the training file was written in (taggers with spans).
        sst_labels: `sst2` or `sst5` (classifiers on SST trees).
        text_field: JSONL/CSV column of the text (classifiers).
        label_field: JSONL/CSV column of the label (classifiers).
        misaligned: span files: `error`, `expand` or `drop` for spans that cut a token (taggers).
    """

    input_format: str | None = None
    label_column: int | None = None
    tag_field: str | None = None
    file_scheme: str | None = None
    sst_labels: str | None = None
    text_field: str | None = None
    label_field: str | None = None
    misaligned: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> ReaderSettings:
        """Checked settings from `config.json`'s `meta.reader`.

        Raises:
            ValueError: a value of the wrong type or outside its choices, naming the key.
        """
        if not isinstance(value, dict):
            raise ValueError(f"meta.reader must be an object, got {short_json(value)}")
        choices = {
            "input_format": INPUT_FORMATS,
            "tag_field": ("upos", "xpos"),
            "file_scheme": SCHEMES,
            "sst_labels": ("sst2", "sst5"),
            "misaligned": MISALIGNED_POLICIES,
        }
        for key, allowed in choices.items():
            if value.get(key) is not None and value[key] not in allowed:
                raise ValueError(
                    f"meta.reader.{key} must be one of {', '.join(allowed)} or null, "
                    f"got {short_json(value[key])}"
                )
        for key in ("text_field", "label_field"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise ValueError(f"meta.reader.{key} must be a string")
        column = value.get("label_column")
        if column is not None and (
            not isinstance(column, int) or isinstance(column, bool) or abs(column) > 1000
        ):
            raise ValueError(
                f"meta.reader.label_column must be an integer in [-1000, 1000] or null, "
                f"got {short_json(column)}"
            )
        # Keys a later version may add are not this version's to judge.
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value[key] for key in known if key in value})


@dataclass(frozen=True)
class ModelMeta:
    """A model's declared metadata.

    Attributes:
        task: `ner`, `chunking`, `pos` (taggers), `sentiment` or `classification` (classifiers);
            recorded at training time (`data.task`, or the corpus registry's entry for the
            training file), it decides what the spaCy component writes (entities, a span group
            of chunks, token tags).
        scheme: the tag scheme the model was trained in, which fixes the tag sequences it can
            decode (`IOB1`, `IOB2`, `BIOES`); None for plain labels and classifiers.
        output_scheme: the scheme tags are given in (the training file's); None: `scheme`.
        reader: how the training data was read.
        provenance: the training command, its config and the versions used (free-form JSON).
        scores: dev figures (`dev`, `epoch`, ... ; free-form JSON, `dev` a number or None).
        library_version: the bilstm-nlp version that wrote the model.
        half_embeddings: the word embeddings are stored as float16 (an export choice, kept when
            the model is saved again).
        int8: the folder asks for int8 LSTMs and linear layers on load (`"quantize": "int8"` in
            `config.json`; an export choice, kept when the model is saved again).
        source: the folder the model was loaded from; None for a model built in memory. Not saved.
    """

    task: str
    scheme: str | None = None
    output_scheme: str | None = None
    reader: ReaderSettings = field(default_factory=ReaderSettings)
    provenance: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    library_version: str = __version__
    half_embeddings: bool = False
    int8: bool = False
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {short_json(self.task)}")
        for key in ("scheme", "output_scheme"):
            value = getattr(self, key)
            if value is not None and value not in SCHEMES:
                raise ValueError(
                    f"{key} must be one of {', '.join(SCHEMES)} or null, got {short_json(value)}"
                )
        if self.scheme is not None and self.task not in ("ner", "chunking"):
            raise ValueError(f"a {self.task} model tags plain labels; it has no scheme")

    @property
    def is_classifier(self) -> bool:
        return self.task in CLASSIFIER_TASKS

    @property
    def tags_in(self) -> str | None:
        """The scheme tags are given to users in."""
        return self.output_scheme or self.scheme

    @property
    def dev_score(self) -> float | None:
        """The dev figure measured on held-out data, if any."""
        return self.scores.get("dev")

    @property
    def trained_with_dev(self) -> bool:
        """Trained on train + dev (`data.train_with_dev`): no held-out dev figure of its own."""
        config = self.provenance.get("config")
        data = config.get("data") if isinstance(config, dict) else None
        return bool(isinstance(data, dict) and data.get("train_with_dev"))

    def headline_figure(self) -> dict[str, Any]:
        """The dev figure that stands for the model, what it is, and the command behind it.

        A model trained on train + dev has no held-out figure of its own: its recipe's (the same
        settings trained on train alone) stands for it.
        """
        if self.trained_with_dev:
            recipe = self.scores.get("recipe_dev")
            usable = isinstance(recipe, int | float) and not isinstance(recipe, bool)
            return {
                "dev": float(recipe) if usable and math.isfinite(recipe) else None,
                "figure": "recipe dev (trained on train+dev)",
                "figure_command": self.scores.get("recipe_command"),
            }
        dev = self.dev_score
        return {
            "dev": dev,
            "figure": "dev" if dev is not None else None,
            "figure_command": self.provenance.get("command"),
        }

    def with_scores(self, scores: dict[str, Any]) -> ModelMeta:
        """This record with `scores` merged over its scores."""
        return dataclasses.replace(self, scores={**self.scores, **scores})

    def to_json(self) -> dict[str, Any]:
        """The `meta` object of `config.json` (`scheme` and `output_scheme` stand beside it)."""
        return {
            "task": self.task,
            "reader": self.reader.to_json(),
            "provenance": self.provenance,
            "scores": self.scores,
        }

    @classmethod
    def from_json(
        cls,
        meta: Any,
        *,
        kind: str,
        scheme: str | None,
        output_scheme: str | None,
        library_version: str = __version__,
        half_embeddings: bool = False,
        int8: bool = False,
        source: str | None = None,
    ) -> ModelMeta:
        """A checked record from `config.json`.

        A model saved before the task was recorded gets the task its kind and scheme imply
        (`ner` for a tagger with a scheme, `pos` without one, `classification`).

        Raises:
            ValueError: a part of the wrong type or value, naming it.
        """
        if not isinstance(meta, dict):
            raise ValueError("meta must be an object")
        for key in ("reader", "scores", "provenance"):
            if not isinstance(meta.get(key, {}), dict):
                raise ValueError(f"meta.{key} must be an object, got {short_json(meta[key])}")
        task = meta.get("task")
        if task is None:
            task = default_task(kind, scheme)
        if not isinstance(task, str):
            raise ValueError(f"meta.task must be a string, got {short_json(task)}")
        if task not in (CLASSIFIER_TASKS if kind == "classifier" else TAGGER_TASKS):
            raise ValueError(f"meta.task {short_json(task)} is not a task of a {kind}")
        dev = meta.get("scores", {}).get("dev")
        if dev is not None and (
            not isinstance(dev, int | float) or isinstance(dev, bool) or not math.isfinite(dev)
        ):
            raise ValueError(f"meta.scores.dev must be a number or null, got {short_json(dev)}")
        return cls(
            task=task,
            scheme=scheme,
            output_scheme=output_scheme,
            reader=ReaderSettings.from_json(meta.get("reader", {})),
            provenance=dict(meta.get("provenance", {})),
            scores=dict(meta.get("scores", {})),
            library_version=library_version,
            half_embeddings=half_embeddings,
            int8=int8,
            source=source,
        )


def default_task(kind: str, scheme: str | None) -> str:
    """The task of a model whose data named none: spans are entities, plain labels are tags."""
    if kind == "classifier":
        return "classification"
    return "ner" if scheme else "pos"
