"""Readers → a `Corpus`: `datasets.Dataset` splits with typed features, and what they hold.

The stage after the readers. Each file is read once, by our reader, which checks every line (so
errors name file and line); the checked rows, with their labels converted to the asked scheme,
become the dataset (an in-memory arrow table: building it costs less than a second even for
CoNLL-2003 train, so a disk cache would save nothing but the read it would have to repeat to
notice a changed file). Tag columns are `List(ClassLabel(names))`, sentence labels
`ClassLabel(names)`; the ClassLabel ids are the label ids a model trains on, so nothing turns
them back into strings to look them up again.

What the corpus is (input format, source scheme, the scheme of the tags now, reader options) is a
frozen `CorpusInfo` beside the splits in a `Corpus`, not text inside `DatasetInfo.description`:
`DatasetInfo` has no typed place for it, `datasets` copies or drops its description as splits are
mapped, selected and concatenated, and a string would have to be parsed back by every reader of
it. A `Corpus` reads as the mapping split → `Dataset` that a `DatasetDict` is, so code that only
wants the rows does not change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from datasets.table import InMemoryTable

from ..errors import ConfigError, InputFormatError
from ..text import schemes
from .formats import (
    TAGGING_FORMATS,
    TEXT_FORMATS,
    parse_split_spec,
    read_sentences,
    read_texts,
    resolve_format,
)
from .readers import Sentence, TextExample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusInfo:
    """What a loaded corpus was and is.

    Attributes:
        input_format: the format of the files (or `"hub"`).
        source_scheme: the scheme the files are written in; None for plain labels.
        scheme: the scheme of the `tags` column now (the target when converted); None for plain
            labels.
        reader: the reader options the files were read with (`label_column`, `tag_field`,
            `misaligned`; or `sst_labels`, `phrases`, `text_field`, `label_field`, `id_field`);
            empty for the hub.
    """

    input_format: str
    source_scheme: str | None
    scheme: str | None
    reader: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Corpus(Mapping[str, Dataset]):
    """The splits of a loaded corpus and its `CorpusInfo`; reads as a mapping split → `Dataset`.

    Each split has its own label feature: the first split's names are its sorted labels, and a
    later split appends (sorted) the labels the earlier ones lack, so a name keeps its id across
    splits and the train split's names are exactly the labels training sees.

    Attributes:
        splits: `"train"` and/or `"dev"` → `Dataset`.
        info: the format, schemes and reader options.
    """

    splits: DatasetDict
    info: CorpusInfo

    def __getitem__(self, split: str) -> Dataset:
        return self.splits[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    @property
    def label_column(self) -> str:
        """`"tags"` (tagging corpora) or `"label"` (text corpora)."""
        return "tags" if "tags" in next(iter(self.splits.values())).features else "label"

    def label_names(self, split: str) -> list[str]:
        """The `ClassLabel` names of a split in id order."""
        feature = self.splits[split].features[self.label_column]
        return list(getattr(feature, "feature", feature).names)

    def tags(self, split: str) -> list[list[str]]:
        """The tags of a tagging split as strings, for scoring against predicted tags."""
        names = self.label_names(split)
        return [[names[i] for i in row] for row in self.splits[split]["tags"][:]]

    def labels(self, split: str) -> list[str]:
        """The labels of a text split as strings."""
        names = self.label_names(split)
        return [names[i] for i in self.splits[split]["label"][:]]

    def joined(self, splits: Sequence[str]) -> Dataset:
        """The rows of `splits` in order, as one `Dataset` (training on train and dev).

        The label names stay as they are when the splits share them, else they become the
        sorted labels of all the splits, as one split's would be.
        """
        column = self.label_column
        named = [(split, self.label_names(split)) for split in splits]
        if all(names == named[0][1] for _, names in named):
            return datasets.concatenate_datasets([self.splits[split] for split, _ in named])
        union = sorted({name for _, names in named for name in names})
        features = self.splits[named[0][0]].features.copy()
        features[column] = _label_feature(column, union)
        new_id = {name: i for i, name in enumerate(union)}
        columns: dict[str, list[Any]] = {name: [] for name in features}
        for split, names in named:
            table = [new_id[name] for name in names]
            dataset = self.splits[split]
            for name in features:
                values = dataset[name][:]
                if name == column and column == "tags":
                    values = [[table[i] for i in row] for row in values]
                elif name == column:
                    values = [table[i] for i in values]
                columns[name].extend(values)
        return _dataset(columns, features, None)


def _dataset(columns: dict[str, list[Any]], features: Features, split: str | None) -> Dataset:
    # The rows are checked and the label ids made already: arrow takes them as they are, without
    # `Dataset.from_dict` encoding each value again (a third of the load time of CoNLL-2003).
    table = pa.Table.from_pydict(columns, schema=features.arrow_schema)
    return Dataset(
        InMemoryTable(table),
        info=datasets.DatasetInfo(features=features),
        split=datasets.NamedSplit(split) if split else None,
    )


def _label_feature(column: str, names: Sequence[str]) -> Any:
    label = ClassLabel(names=list(names))
    return List(label) if column == "tags" else label


def label_names_by_split(
    labels_by_split: Mapping[str, set[str]], label_names: Sequence[str] | None
) -> dict[str, list[str]]:
    """The ClassLabel names of each split: `label_names` for all when given; else each split's
    own labels sorted, after the names of the splits before it (so train's ids are the model's
    and a name keeps its id in every split)."""
    if label_names is not None:
        return {split: list(label_names) for split in labels_by_split}
    result: dict[str, list[str]] = {}
    names: list[str] = []
    for split, labels in labels_by_split.items():
        names = names + sorted(labels - set(names))
        result[split] = names
    return result


# Tagging corpora


def tagging_features(label_names: Sequence[str]) -> Features:
    """Features of a tagging dataset: `id`, `doc_id`, `tokens`, `tags` (`List(ClassLabel)`)."""
    return Features(
        {
            "id": Value("string"),
            "doc_id": Value("string"),
            "tokens": List(Value("string")),
            "tags": List(ClassLabel(names=list(label_names))),
        }
    )


def load_tagging(
    train: str | Path | None = None,
    dev: str | Path | None = None,
    *,
    input_format: str | None = None,
    label_column: int | None = None,
    tag_field: str = "upos",
    scheme: str | None = None,
    dev_from_train: str | None = None,
    label_names: Sequence[str] | None = None,
    canonical: bool = False,
    misaligned: str = "error",
) -> Corpus:
    """Tagging files → a `Corpus` with splits `"train"` and/or `"dev"`.

    Each file is read once by its reader, which checks every line; the checked sentences become
    the rows. Features: `id` (`"<file name>:<line>"`), `doc_id`, `tokens`, `tags` as
    `List(ClassLabel)`. When `scheme` is given and the labels are scheme tags, tags are converted
    to it (canonical tags, every span kept); plain labels (POS) are left as they are. The source
    scheme is detected over all files with `schemes.detect_scheme`; see `CorpusInfo`.

    Args:
        train: the training file.
        dev: the dev file.
        input_format: format of both files; default detected per file.
        label_column: CoNLL label column (default the last).
        tag_field: `"upos"`/`"xpos"` for CoNLL-U.
        scheme: target scheme (`IOB1`, `IOB2`, `BIOES` or an alias) for scheme-tagged labels.
        dev_from_train: `"last:N"` (the CoNLL-2000 convention) or `"first:N"`: those N sentences
            of train become dev, train keeps the rest.
        label_names: the `ClassLabel` names in id order for every split (a model's vocabulary);
            default per split, as `Corpus` says.
        canonical: with no `scheme`, still write scheme tags canonically in the files' own
            scheme (CoNLL-2003's stray IOB1 `B-X` after `O` becomes `I-X`, the same entity), as
            training needs: a CRF constrained to the scheme cannot score a non-canonical path.
            Scoring keeps the tags as written.
        misaligned: span files (`spans`, `doccano`, `labelstudio`): `"error"`, `"expand"` or
            `"drop"` for a span whose edge falls inside a token (see `readers.spans`).
    Returns:
        The `Corpus`.
    Raises:
        ConfigError: no file, a bad format or option, a bad `dev_from_train` spec or one that leaves
            no training sentence, dev given twice, duplicate label names.
        InputFormatError: a reader error; a file without tags; a tag missing from `label_names`;
            train and dev labels of different kinds.
    """
    files = {split: Path(p) for split, p in (("train", train), ("dev", dev)) if p is not None}
    if not files:
        raise ConfigError("no corpus file given: pass train, dev or both")
    spec = None
    if dev_from_train is not None:
        if train is None or dev is not None:
            raise ConfigError("dev_from_train needs a train file and no dev file")
        spec = parse_split_spec(dev_from_train)
    if label_names is not None and len(set(label_names)) != len(label_names):
        raise ConfigError("label_names holds a name twice")
    target = schemes.normalize_scheme(scheme) if scheme is not None else None
    formats = {
        split: resolve_format(path, input_format, TAGGING_FORMATS, "tagged sentences")
        for split, path in files.items()
    }
    read = {
        split: list(
            read_sentences(path, formats[split], label_column, tag_field, misaligned=misaligned)
        )
        for split, path in files.items()
    }
    for split, sentences in read.items():
        if sentences[0].tags is None:
            raise InputFormatError("no tags: the file holds words only", files[split])
    source_scheme = detect_source_scheme([s.tags or [] for ss in read.values() for s in ss], files)
    convert = (target or (source_scheme if canonical else None)) if source_scheme else None
    if target is not None and source_scheme is None:
        logger.info("labels are not scheme tags: scheme %s not applied", target)
    tags = {
        split: [
            schemes.convert_tags(s.tags or [], convert) if convert else s.tags or []
            for s in sentences
        ]
        for split, sentences in read.items()
    }
    _check_label_names(read, tags, files, label_names)
    # Each split: (file, sentences, their tags); dev_from_train makes both from train.
    parts = {split: (path, read[split], tags[split]) for split, path in files.items()}
    if spec is not None:
        parts = _carve_dev(spec, files["train"], read["train"], tags["train"])
    names = label_names_by_split(
        {split: {t for row in part[2] for t in row} for split, part in parts.items()}, label_names
    )
    splits = {}
    for split, (path, sentences, split_tags) in parts.items():
        tag_ids = {name: i for i, name in enumerate(names[split])}
        file_name = path.name
        columns = {
            "id": [f"{file_name}:{s.line}" for s in sentences],
            "doc_id": [s.doc_id for s in sentences],
            "tokens": [s.tokens for s in sentences],
            "tags": [[tag_ids[t] for t in row] for row in split_tags],
        }
        splits[split] = _dataset(columns, tagging_features(names[split]), split)
    reader = {"label_column": label_column, "tag_field": tag_field, "misaligned": misaligned}
    info = CorpusInfo(next(iter(formats.values())), source_scheme, convert or source_scheme, reader)
    return Corpus(DatasetDict(splits), info)


def _carve_dev(
    spec: tuple[str, int], train: Path, sentences: list[Sentence], tags: list[list[str]]
) -> dict[str, tuple[Path, list[Sentence], list[list[str]]]]:
    end, count = spec
    total = len(sentences)
    if count >= total:
        raise ConfigError(
            f"dev_from_train '{end}:{count}' leaves no training sentence: {train} has {total}"
        )
    cut = total - count if end == "last" else count
    head = (train, sentences[:cut], tags[:cut])
    tail = (train, sentences[cut:], tags[cut:])
    return {"train": head, "dev": tail} if end == "last" else {"train": tail, "dev": head}


def detect_source_scheme(tag_sequences: list[list[str]], files: Mapping[str, Path]) -> str | None:
    labels = {tag for tags in tag_sequences for tag in tags}
    if not schemes.is_entity_tagset(labels):
        return None
    try:
        return schemes.detect_scheme(tag_sequences)
    except ValueError as error:
        # Each file is consistent (the readers check); here train and dev disagree.
        raise InputFormatError(
            f"{error} ({' and '.join(str(p) for p in files.values())})", None
        ) from None


def _check_label_names(
    read: Mapping[str, list[Sentence]],
    tags: Mapping[str, list[list[str]]],
    files: Mapping[str, Path],
    label_names: Sequence[str] | None,
) -> None:
    if label_names is None:
        return
    allowed = set(label_names)
    for split, sentences in read.items():
        for sentence, row in zip(sentences, tags[split], strict=True):
            for tag in row:
                if tag not in allowed:
                    raise InputFormatError(
                        f"tag {tag!r} (in the sentence starting here) is not one of the "
                        f"{len(allowed)} label names",
                        files[split],
                        sentence.line,
                    )


def text_features(label_names: Sequence[str]) -> Features:
    """Features of a text dataset: `id`, `text`, `tokens` (empty without tokens), `label`."""
    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "tokens": List(Value("string")),
            "label": ClassLabel(names=list(label_names)),
        }
    )


def load_texts(
    train: str | Path | None = None,
    dev: str | Path | None = None,
    *,
    input_format: str | None = None,
    sst_labels: str = "sst2",
    phrases: bool = False,
    text_field: str = "text",
    label_field: str = "label",
    id_field: str | None = None,
    label_names: Sequence[str] | None = None,
) -> Corpus:
    """Labelled-text files → a `Corpus` with splits `"train"` and/or `"dev"`.

    Features: `id` (the file's id, else `"<file name>:<line>"`, SST `"line-N"`), `text`, `tokens`
    (SST leaves; empty for raw-text formats), `label` (`ClassLabel`).

    Args:
        train: the training file.
        dev: the dev file.
        input_format: format of both files; default detected per file.
        sst_labels: `"sst2"` or `"sst5"` for SST trees.
        phrases: SST only: add every labelled phrase of each training tree to train. Dev always
            holds whole sentences, the unit published results score.
        text_field: JSON field / table column of the text.
        label_field: JSON field / table column of the label.
        id_field: JSON field (default `"id"`) / table column (default none) of the id.
        label_names: `ClassLabel` names in id order for every split; default per split, as
            `Corpus` says.
    Returns:
        The `Corpus`.
    Raises:
        ConfigError: no file, a bad format or option, duplicate label names.
        InputFormatError: a reader error; a file without labels; a label missing from `label_names`.
    """
    files = {split: Path(p) for split, p in (("train", train), ("dev", dev)) if p is not None}
    if not files:
        raise ConfigError("no corpus file given: pass train, dev or both")
    if label_names is not None and len(set(label_names)) != len(label_names):
        raise ConfigError("label_names holds a name twice")
    options = {
        "sst_labels": sst_labels,
        "text_field": text_field,
        "label_field": label_field,
        "id_field": id_field,
    }
    formats = {
        split: resolve_format(path, input_format, TEXT_FORMATS, "labelled texts")
        for split, path in files.items()
    }
    read: dict[str, list[TextExample]] = {}
    for split, path in files.items():
        examples = read_texts(path, formats[split], phrases=phrases and split == "train", **options)
        read[split] = []
        for example in examples:
            if example.label is None:
                raise InputFormatError(f"no labels (no {label_field!r} field or column)", path)
            if label_names is not None and example.label not in label_names:
                raise InputFormatError(
                    f"label {example.label!r} is not one of the {len(label_names)} label names",
                    path,
                    example.line,
                )
            read[split].append(example)
    names = label_names_by_split(
        {split: {str(e.label) for e in examples} for split, examples in read.items()},
        label_names,
    )
    splits = {}
    for split, examples in read.items():
        label_ids = {name: i for i, name in enumerate(names[split])}
        file_name = files[split].name
        columns = {
            "id": [e.example_id or f"{file_name}:{e.line}" for e in examples],
            "text": [e.text for e in examples],
            "tokens": [e.tokens or [] for e in examples],
            "label": [label_ids[str(e.label)] for e in examples],
        }
        splits[split] = _dataset(columns, text_features(names[split]), split)
    reader = {**options, "phrases": phrases}
    return Corpus(DatasetDict(splits), CorpusInfo(next(iter(formats.values())), None, None, reader))


def document_numbers(doc_ids: Sequence[str | None]) -> list[int]:
    """Sentences numbered by document: a run of consecutive sentences with the same `doc_id`
    is one document (so train and dev joined keep theirs apart); a sentence without one is a
    document of its own."""
    numbers: list[int] = []
    for index, doc_id in enumerate(doc_ids):
        same = index > 0 and doc_id is not None and doc_id == doc_ids[index - 1]
        numbers.append(numbers[-1] if same else (numbers[-1] + 1 if numbers else 0))
    return numbers
