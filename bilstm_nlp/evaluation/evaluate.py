"""Evaluation: a model and gold data → scores, shared by training (dev scoring) and the CLI.

Gold labels the model never saw are kept: they count as misses, and the caller is warned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..corpus.formats import format_named_by_extension
from ..corpus.loading import document_numbers, load_tagging, load_texts
from ..decode import classify_sentences, tag_sentences
from ..errors import ConfigError, InputFormatError, OutputError
from ..nn.model import Classifier, Tagger
from ..text.schemes import convert_tags, detect_scheme, spelt_bilou, split_tag
from ..text.tokenize import tokens_or_tokenized
from .metrics import (
    ClassificationScores,
    EntityScores,
    classification_scores,
    confusions,
    entity_scores,
    token_accuracy,
)

logger = logging.getLogger(__name__)


@dataclass
class TaggerEvaluation:
    """Scores of a tagger on gold sentences (all figures 0-100)."""

    sentences: int
    tokens: int
    accuracy: float
    entities: EntityScores | None  # None for plain labels (POS)
    confusions: list[tuple[str, str, int]]
    unseen_labels: list[str] = field(default_factory=list)
    predicted: list[list[str]] = field(default_factory=list, repr=False)
    token_lists: list[list[str]] = field(default_factory=list, repr=False)
    gold: list[list[str]] = field(default_factory=list, repr=False)

    @property
    def main_score(self) -> float:
        """Entity F1 for scheme-tagged labels, token accuracy otherwise."""
        return self.entities.f1 if self.entities is not None else self.accuracy

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "sentences": self.sentences,
            "tokens": self.tokens,
            "accuracy": round(self.accuracy, 4),
        }
        if self.entities is not None:
            result |= {
                "f1": round(self.entities.f1, 4),
                "precision": round(self.entities.precision, 4),
                "recall": round(self.entities.recall, 4),
                "per_type": {
                    name: {
                        k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(s).items()
                    }
                    for name, s in self.entities.per_type.items()
                },
                "seqeval_mode": self.entities.mode,
            }
        result["confusions"] = [list(c) for c in self.confusions]
        result["unseen_labels"] = self.unseen_labels
        return result


@dataclass
class ClassifierEvaluation:
    """Scores of a classifier on gold sentences (0-100)."""

    sentences: int
    scores: ClassificationScores
    unseen_labels: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list, repr=False)

    @property
    def main_score(self) -> float:
        return self.scores.accuracy

    def to_json(self) -> dict[str, Any]:
        return {
            "sentences": self.sentences,
            "accuracy": round(self.scores.accuracy, 4),
            "macro_f1": round(self.scores.macro_f1, 4),
            "per_class": {
                name: {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(s).items()}
                for name, s in self.scores.per_class.items()
            },
            "labels": self.scores.labels,
            "confusion": self.scores.confusion,
            "unseen_labels": self.unseen_labels,
        }


def evaluate_tagger(
    model: Tagger,
    token_lists: Sequence[Sequence[str]],
    gold_tags: Sequence[Sequence[str]],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    documents: Sequence[Hashable] | None = None,
) -> TaggerEvaluation:
    """Tag `token_lists` and score against `gold_tags` (any scheme: entities compare as spans,
    and the predictions come back spelt in the gold tags' scheme);
    `documents` as `tag_sentences` takes them."""
    unseen = _unseen_labels(model, gold_tags)
    if unseen:
        logger.warning("gold labels the model never saw count as misses: %s", ", ".join(unseen))
    tagged = tag_sentences(
        model,
        token_lists,
        documents=documents,
        batch_size=batch_size,
        confidence=False,
        device=device,
        show_progress=show_progress,
    )
    predicted = [t.tags for t in tagged]
    entities = entity_scores(gold_tags, predicted) if model.scheme else None
    if model.scheme:
        predicted = _spelt_like(gold_tags, predicted)
    return TaggerEvaluation(
        sentences=len(token_lists),
        tokens=sum(len(t) for t in token_lists),
        accuracy=token_accuracy(gold_tags, predicted),
        entities=entities,
        confusions=confusions(gold_tags, predicted),
        unseen_labels=unseen,
        predicted=predicted,
        token_lists=[list(t) for t in token_lists],
        gold=[list(g) for g in gold_tags],
    )


def _spelt_like(
    gold_tags: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> list[list[str]]:
    """The predicted entity tags in the gold tags' scheme, the same spans.

    Token accuracy, the confusions and the predictions written beside the gold tags compare tag
    strings: a model trained on IOB1 (CoNLL-2003 as distributed) scoring an IOB2 file would
    otherwise miss every entity's first token for writing `I-` where the file writes `B-`.
    Gold tags whose scheme cannot be told (plain labels mixed in) leave the predictions as they
    are.
    """
    try:
        scheme = detect_scheme(gold_tags)
    except ValueError:
        scheme = None
    if scheme is None:
        return [list(tags) for tags in predicted]
    converted = [convert_tags(tags, scheme) for tags in predicted]
    if scheme == "BIOES" and any(tag[:2] in ("L-", "U-") for tags in gold_tags for tag in tags):
        converted = [spelt_bilou(tags) for tags in converted]
    return converted


def _unseen_labels(model: Tagger, gold_tags: Sequence[Sequence[str]]) -> list[str]:
    gold = {tag for tags in gold_tags for tag in tags}
    if not model.scheme:
        return sorted(gold - set(model.vocab.labels.items))
    # Scheme-tagged: compare entity types, since the model may spell tags in another scheme.
    known_types = {split_tag(tag)[1] for tag in model.vocab.labels.items}
    return sorted(tag for tag in gold if split_tag(tag)[1] not in known_types)


def evaluate_classifier(
    model: Classifier,
    token_lists: Sequence[Sequence[str]],
    gold_labels: Sequence[str],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
) -> ClassifierEvaluation:
    """Classify `token_lists` and score against `gold_labels`."""
    labels = model.vocab.labels.items
    unseen = sorted(set(gold_labels) - set(labels))
    if unseen:
        logger.warning("gold labels the model never saw count as misses: %s", ", ".join(unseen))
    results = classify_sentences(
        model, token_lists, batch_size=batch_size, device=device, show_progress=show_progress
    )
    predicted = [r.label for r in results]
    return ClassifierEvaluation(
        sentences=len(token_lists),
        scores=classification_scores(gold_labels, predicted, labels),
        unseen_labels=unseen,
        predicted=predicted,
    )


def evaluate_file(
    model: Tagger | Classifier,
    path: str,
    *,
    input_format: str | None = None,
    label_column: int | None = None,
    tag_field: str | None = None,
    dev_from_train: str | None = None,
    misaligned: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    by_document: bool = True,
) -> TaggerEvaluation | ClassifierEvaluation:
    """Evaluate on a data file read with the model's own reader settings (options override them).

    A tagger with document memory reads the file's documents (`-DOCSTART-`, `# newdoc`); with
    `by_document` False, each sentence as a document of its own.

    With `dev_from_train` (e.g. `last:1000`), `path` is a training file and exactly the part carved
    off as dev during training is scored. `misaligned` (`error`, `expand`, `drop`) says what a
    span of a span file that cuts a token does; default the model's setting, else `error`.
    """
    reader = model.meta.reader.to_json()
    if input_format is not None:
        reader["input_format"] = input_format
    elif reader.get("input_format") is not None and Path(path).is_file():
        # The training file's format stands in for this file's, unless its extension says what
        # it is: a DocBin or a JSONL file is read as one.
        named = format_named_by_extension(path)
        if named is not None:
            reader["input_format"] = named
    if not model.meta.is_classifier:
        if label_column is not None:
            reader["label_column"] = label_column
        if tag_field is not None:
            reader["tag_field"] = tag_field
        if misaligned is not None:
            reader["misaligned"] = misaligned
        corpus = load_tagging(
            path if dev_from_train else None,
            None if dev_from_train else path,
            input_format=reader.get("input_format"),
            label_column=reader.get("label_column"),
            tag_field=reader.get("tag_field") or "upos",
            dev_from_train=dev_from_train,
            misaligned=reader.get("misaligned") or "error",
        )
        names = corpus.label_names("dev")
        _check_label_kind(model, corpus.info.source_scheme, names, path)
        # Gold tags as strings: they are scored as spans against predicted tags of any scheme.
        return evaluate_tagger(
            model,
            corpus["dev"]["tokens"][:],
            corpus.tags("dev"),
            batch_size=batch_size,
            device=device,
            show_progress=show_progress,
            documents=document_numbers(corpus["dev"]["doc_id"][:]) if by_document else None,
        )
    if dev_from_train:
        raise ConfigError("--dev-from-train applies to tagging corpora only")
    tokens, labels = read_labelled_texts(path, reader)
    return evaluate_classifier(
        model,
        tokens,
        labels,
        batch_size=batch_size,
        device=device,
        show_progress=show_progress,
    )


def read_labelled_texts(
    path: str | Path, reader: dict[str, Any]
) -> tuple[list[list[str]], list[str]]:
    """The token lists (texts without tokens are tokenized) and gold labels of a labelled-text
    file, read with a classifier's reader settings (`ReaderSettings.to_json()`)."""
    corpus = load_texts(
        None,
        path,
        input_format=reader.get("input_format"),
        sst_labels=reader.get("sst_labels") or "sst2",
        text_field=reader.get("text_field") or "text",
        label_field=reader.get("label_field") or "label",
    )
    split = corpus["dev"]
    return tokens_or_tokenized(split["tokens"][:], split["text"][:]), corpus.labels("dev")


def _check_label_kind(
    model: Tagger, source_scheme: str | None, names: Sequence[str], path: str | Path
) -> None:
    # Entity tags and plain labels (POS) cannot be scored against each other: say so, naming the
    # file, rather than scoring every token a miss or failing on a tag that fits no scheme.
    examples = ", ".join(repr(name) for name in list(names)[:4])
    model_examples = ", ".join(repr(tag) for tag in model.vocab.labels.items[:4])
    if model.scheme and source_scheme is None:
        raise InputFormatError(
            f"holds plain labels ({examples}...), but the model tags entities in scheme "
            f"{model.scheme} ({model_examples}...): evaluate it on a file of entity tags",
            path,
        )
    if not model.scheme and source_scheme is not None:
        raise InputFormatError(
            f"holds entity tags in scheme {source_scheme} ({examples}...), but the model tags "
            f"plain labels ({model_examples}...): evaluate it on a file of those labels",
            path,
        )


def check_predictions_path(path: str | Path, data: str | Path | None = None) -> None:
    """Check, before evaluating, that `write_predictions` can create `path`.

    Args:
        path: where the predictions go.
        data: the gold data file, which the predictions must not overwrite.
    Raises:
        OutputError: `path` is a folder, its folder is missing, or it is the data file itself.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder: --predictions needs a file name", path)
    if not path.parent.is_dir():
        raise OutputError(f"the folder {str(path.parent)!r} does not exist; create it first", path)
    if data is not None and path.exists() and Path(data).exists():
        if os.path.samefile(path, data):
            raise OutputError("is the data file itself: predictions would overwrite it", path)


def write_predictions(result: TaggerEvaluation, path: str | Path) -> None:
    """Write `token gold predicted` columns, a blank line after each sentence (conlleval input).

    Raises:
        OutputError: the file cannot be written (missing folder, a folder, no permission, disk
            full).
    """
    try:
        with Path(path).open("w", encoding="utf-8") as out:
            for tokens, gold, predicted in zip(
                result.token_lists, result.gold, result.predicted, strict=True
            ):
                for token, gold_tag, tag in zip(tokens, gold, predicted, strict=True):
                    out.write(f"{token} {gold_tag} {tag}\n")
                out.write("\n")
    except OSError as error:
        raise OutputError(f"cannot write predictions: {error.strerror or error}", path) from None
