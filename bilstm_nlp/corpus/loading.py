"""Readers → `datasets.DatasetDict` with typed features.

The stage after the readers. Every file is read and checked by our readers first (so errors name
file and line, and label names and the source scheme are known), then handed to `datasets` through
`Dataset.from_generator`, whose cache key holds the file's path, size and mtime and a digest of the
reader code. Tag columns are `List(ClassLabel(names))`, sentence labels `ClassLabel(names)`, names
sorted unless given.

The tag scheme travels in each split's `info.description` as `bilstm_nlp corpus info: {json}`, with
keys `input_format`, `source_scheme` (the scheme the files are written in, None for plain labels
such as POS) and `scheme` (the scheme the `tags` column holds now); `corpus_info` and
`corpus_scheme` read it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError

from ..config import INPUT_FORMATS as FILE_FORMATS
from ..errors import BilstmNlpError, ConfigError, InputFormatError
from ..text import schemes
from .readers import Sentence, TextExample
from .readers import conll as conll_reader
from .readers import conllu as conllu_reader
from .readers import jsonl as jsonl_reader
from .readers import sst as sst_reader
from .readers import table as table_reader
from .registry import CorpusEntry

logger = logging.getLogger(__name__)

INPUT_FORMATS = (*FILE_FORMATS, "hub")
TAGGING_FORMATS = ("conll", "conllu", "jsonl")
TEXT_FORMATS = ("jsonl", "csv", "tsv", "sst")
DESCRIPTION_PREFIX = "bilstm_nlp corpus info: "
_FORMAT_BY_SUFFIX = {".conllu": "conllu", ".jsonl": "jsonl", ".csv": "csv"}
_SPLIT_SPEC = re.compile(r"^(first|last):([0-9]+)$")
_HUB_SPLITS = {"train": "train", "validation": "dev"}


# Formats and dispatch


def detect_format(path: str | Path) -> str:
    """The input format of a file: `"conll"`, `"conllu"`, `"jsonl"`, `"csv"`, `"tsv"` or `"sst"`.

    By extension for `.conllu`, `.jsonl` and `.csv`; otherwise by the first non-blank line: `(`
    and a digit is an SST tree, `{` a JSON line, a `# ` comment or 10 tab-separated columns with
    an integer first is CoNLL-U, a `.tsv` file whose first line names `text` and `label` columns
    is a table, and anything else is CoNLL columns.

    Raises:
        InputFormatError: the file is missing, empty, or its first line is not valid UTF-8.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _FORMAT_BY_SUFFIX:
        return _FORMAT_BY_SUFFIX[suffix]
    first = first_content_line(path)
    if re.match(r"[ \t]*\([0-9]", first):
        return "sst"
    if first.lstrip(" \t").startswith("{"):
        return "jsonl"
    fields = first.split("\t")
    if first.startswith("# ") or (len(fields) == 10 and fields[0].isdigit()):
        return "conllu"
    if suffix == ".tsv" and {"text", "label"} <= set(fields):
        return "tsv"
    return "conll"


def first_content_line(path: Path) -> str:
    lines = conll_reader.read_lines(path)
    try:
        for _, line in lines:
            if not conll_reader.is_blank(line):
                return line
    finally:
        lines.close()
    raise InputFormatError("empty file: no sentences", path)


def _format_of(
    path: str | Path, input_format: str | None, allowed: Sequence[str], kind: str
) -> str:
    fmt = input_format if input_format is not None else detect_format(path)
    if fmt not in INPUT_FORMATS:
        raise ConfigError(
            f"unknown input format {fmt!r}: expected one of {', '.join(INPUT_FORMATS)}"
        )
    if fmt not in allowed:
        raise ConfigError(
            f"input format {fmt!r} does not hold {kind} (formats for {kind}: {', '.join(allowed)})"
        )
    return fmt


def read_sentences(
    path: str | Path,
    input_format: str | None = None,
    label_column: int | None = None,
    tag_field: str = "upos",
) -> Iterator[Sentence]:
    """Tagged sentences of a file in any tagging format (`conll`, `conllu`, `jsonl`).

    Args:
        path: the file.
        input_format: the format; default `detect_format(path)`.
        label_column: label column of a CoNLL file (default the last); only for `conll`.
        tag_field: `"upos"` or `"xpos"`, for `conllu`.
    Returns:
        An iterator of `Sentence`s, as the format's reader yields them.
    Raises:
        ConfigError: an unknown format, one that holds texts, a bad `tag_field`, or a
            `label_column` for a format without columns.
        InputFormatError: the reader's errors (file and line).
    """
    fmt = _format_of(path, input_format, TAGGING_FORMATS, "tagged sentences")
    if label_column is not None and fmt != "conll":
        raise ConfigError(f"a label column applies to CoNLL column files, not to {fmt!r}")
    if fmt == "conll":
        return conll_reader.read_conll(path, label_column)
    if fmt == "conllu":
        if tag_field not in conllu_reader.TAG_FIELDS:
            raise ConfigError(f"tag field {tag_field!r}: expected one of upos, xpos")
        return conllu_reader.read_conllu(path, tag_field)
    return jsonl_reader.read_jsonl_tagged(path)


def read_texts(
    path: str | Path,
    input_format: str | None = None,
    *,
    sst_labels: str = "sst2",
    phrases: bool = False,
    text_field: str = "text",
    label_field: str = "label",
    id_field: str | None = None,
) -> Iterator[TextExample]:
    """Labelled texts of a file in any text format (`jsonl`, `csv`, `tsv`, `sst`).

    Args:
        path: the file.
        input_format: the format; default `detect_format(path)`.
        sst_labels: `"sst2"` or `"sst5"`, for `sst`.
        phrases: for `sst`, also yield every labelled phrase of each tree (see `read_sst`).
        text_field: JSON field or table column of the text.
        label_field: JSON field or table column of the label.
        id_field: JSON field (default `"id"`) or table column (default none) of the example id.
    Returns:
        An iterator of `TextExample`s.
    Raises:
        ConfigError: an unknown format, one that holds tagged sentences, or bad `sst_labels`.
        InputFormatError: the reader's errors (file and line).
    """
    fmt = _format_of(path, input_format, TEXT_FORMATS, "labelled texts")
    if fmt == "sst":
        if sst_labels not in sst_reader.SST_LABELS:
            raise ConfigError(f"SST labels {sst_labels!r}: expected one of sst2, sst5")
        return sst_reader.read_sst(path, sst_labels, phrases)
    if fmt == "jsonl":
        return jsonl_reader.read_jsonl_texts(path, text_field, label_field, id_field or "id")
    delimiter = "," if fmt == "csv" else "\t"
    return table_reader.read_table(path, delimiter, text_field, label_field, id_field)


def parse_split_spec(spec: str) -> tuple[str, int]:
    """`"last:1000"` → `("last", 1000)`: which end of train becomes dev, and how many sentences.

    Raises:
        ConfigError: not `first:N` or `last:N` with N ≥ 1.
    """
    match = _SPLIT_SPEC.match(spec)
    if match is None or int(match.group(2)) < 1:
        raise ConfigError(f"dev_from_train {spec!r}: expected 'last:N' or 'first:N' with N >= 1")
    return match.group(1), int(match.group(2))


# Corpus info carried in the datasets


@dataclass(frozen=True)
class CorpusInfo:
    """What a loaded corpus was and is.

    Attributes:
        input_format: the format of the files (or `"hub"`).
        source_scheme: the scheme the files are written in; None for plain labels.
        scheme: the scheme of the `tags` column now (the target when converted); None for plain
            labels.
    """

    input_format: str
    source_scheme: str | None
    scheme: str | None


def corpus_info(dataset_dict: DatasetDict) -> CorpusInfo:
    """The `CorpusInfo` that `load_tagging`/`load_hub_tagging`/`load_texts` stored in the splits.

    Raises:
        ValueError: the datasets were not built by this module.
    """
    for dataset in dataset_dict.values():
        description = dataset.info.description or ""
        if description.startswith(DESCRIPTION_PREFIX):
            return CorpusInfo(**json.loads(description[len(DESCRIPTION_PREFIX) :]))
    raise ValueError("no bilstm_nlp corpus info in these datasets")


def corpus_scheme(dataset_dict: DatasetDict) -> str | None:
    """The scheme of the `tags` column (`"IOB1"`, `"IOB2"`, `"BIOES"`), or None for plain labels."""
    return corpus_info(dataset_dict).scheme


def _set_info(dataset: Dataset, info: CorpusInfo) -> None:
    dataset.info.description = DESCRIPTION_PREFIX + json.dumps(asdict(info))


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
) -> DatasetDict:
    """Tagging files → a `DatasetDict` with splits `"train"` and/or `"dev"`.

    Features: `id` (`"<file name>:<line>"`), `doc_id`, `tokens`, `tags` as `List(ClassLabel)`.
    When `scheme` is given and the labels are scheme tags, tags are converted to it (canonical
    tags, every span kept); plain labels (POS) are left as they are. The source scheme is detected
    over all files with `schemes.detect_scheme`; see `corpus_info`.

    Args:
        train: the training file.
        dev: the dev file.
        input_format: format of both files; default detected per file.
        label_column: CoNLL label column (default the last).
        tag_field: `"upos"`/`"xpos"` for CoNLL-U.
        scheme: target scheme (`IOB1`, `IOB2`, `BIOES` or an alias) for scheme-tagged labels.
        dev_from_train: `"last:N"` (the CoNLL-2000 convention) or `"first:N"`: those N sentences
            of train become dev, train keeps the rest.
        label_names: the `ClassLabel` names in id order (a model's vocabulary); default the
            sorted labels.
    Returns:
        The `DatasetDict`.
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
    target = schemes.normalize_scheme(scheme) if scheme is not None else None
    formats = {
        split: _format_of(path, input_format, TAGGING_FORMATS, "tagged sentences")
        for split, path in files.items()
    }
    read = {
        split: list(read_sentences(path, formats[split], label_column, tag_field))
        for split, path in files.items()
    }
    for split, sentences in read.items():
        if sentences[0].tags is None:
            raise InputFormatError("no tags: the file holds words only", files[split])
    source_scheme = detect_source_scheme([s.tags or [] for ss in read.values() for s in ss], files)
    convert = target if source_scheme is not None else None
    if target is not None and source_scheme is None:
        logger.info("labels are not scheme tags: scheme %s not applied", target)
    names = _tag_names(read, files, convert, label_names)
    features = tagging_features(names)
    info = CorpusInfo(next(iter(formats.values())), source_scheme, convert or source_scheme)
    # Each split: (file, format, first sentence, end); dev_from_train makes both from train.
    parts = {split: (path, formats[split], 0, None) for split, path in files.items()}
    if spec is not None:
        parts = _carve_dev(spec, files["train"], formats["train"], len(read["train"]))
    splits = {}
    for split, (path, fmt, start, stop) in parts.items():
        options = {"label_column": label_column, "tag_field": tag_field, "scheme": convert}
        gen_kwargs = {
            **_file_key(path),
            "input_format": fmt,
            **options,
            "start": start,
            "stop": stop,
        }
        splits[split] = _from_generator(_tagging_rows, features, gen_kwargs, split, info)
    return DatasetDict(splits)


def _carve_dev(
    spec: tuple[str, int], train: Path, fmt: str, total: int
) -> dict[str, tuple[Path, str, int, int | None]]:
    end, count = spec
    if count >= total:
        raise ConfigError(
            f"dev_from_train '{end}:{count}' leaves no training sentence: {train} has {total}"
        )
    if end == "last":
        return {"train": (train, fmt, 0, total - count), "dev": (train, fmt, total - count, None)}
    return {"train": (train, fmt, count, None), "dev": (train, fmt, 0, count)}


def _file_key(path: Path) -> dict[str, Any]:
    # Path, size, mtime and reader code key the datasets cache: a changed file is read again.
    stat = path.stat()
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "code": _code_digest(),
    }


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


def _tag_names(
    read: Mapping[str, list[Sentence]],
    files: Mapping[str, Path],
    convert: str | None,
    label_names: Sequence[str] | None,
) -> list[str]:
    if label_names is not None and len(set(label_names)) != len(label_names):
        raise ConfigError("label_names holds a name twice")
    allowed = set(label_names) if label_names is not None else None
    seen: set[str] = set()
    for split, sentences in read.items():
        for sentence in sentences:
            tags = sentence.tags or []
            if convert is not None:
                tags = schemes.convert_tags(tags, convert)
            for tag in tags:
                if allowed is not None and tag not in allowed:
                    raise InputFormatError(
                        f"tag {tag!r} (in the sentence starting here) is not one of the "
                        f"{len(allowed)} label names",
                        files[split],
                        sentence.line,
                    )
                seen.add(tag)
    return list(label_names) if label_names is not None else sorted(seen)


def _tagging_rows(
    path: str,
    size: int,
    mtime_ns: int,
    input_format: str,
    label_column: int | None,
    tag_field: str,
    scheme: str | None,
    start: int,
    stop: int | None,
    code: str,
) -> Iterator[dict[str, Any]]:
    # size, mtime_ns and code are unused here: they are in gen_kwargs so they key the cache.
    name = Path(path).name
    sentences = read_sentences(path, input_format, label_column, tag_field)
    for sentence in itertools.islice(sentences, start, stop):
        tags = sentence.tags or []
        yield {
            "id": f"{name}:{sentence.line}",
            "doc_id": sentence.doc_id,
            "tokens": sentence.tokens,
            "tags": schemes.convert_tags(tags, scheme) if scheme is not None else tags,
        }


def _code_digest() -> str:
    # Cached datasets must change when the readers or the scheme code change, not only the files.
    digest = hashlib.sha256()
    for module in (conll_reader, conllu_reader, jsonl_reader, table_reader, sst_reader, schemes):
        digest.update(Path(module.__file__).read_bytes())  # type: ignore[arg-type]
    return digest.hexdigest()[:16]


def _from_generator(
    generator: Any, features: Features, gen_kwargs: dict[str, Any], split: str, info: CorpusInfo
) -> Dataset:
    try:
        dataset = Dataset.from_generator(
            generator, features=features, gen_kwargs=gen_kwargs, split=datasets.NamedSplit(split)
        )
    except DatasetGenerationError as error:
        # The file changed between our check and the build: surface the reader's own error.
        cause = error.__cause__
        if isinstance(cause, BilstmNlpError):
            raise cause from None
        raise
    _set_info(dataset, info)
    return dataset


# Hub datasets


def load_hub_tagging(
    source: str | Path,
    entry: CorpusEntry,
    *,
    split_names: Mapping[str, str] | None = None,
    scheme: str | None = None,
    label_names: Sequence[str] | None = None,
) -> DatasetDict:
    """A hub tagging dataset (or a local folder laid out like one) → our tagging features.

    Calls `datasets.load_dataset(source)`, takes the entry's tokens and tags columns (tags as
    `List(ClassLabel)`, whose names give the strings, or `List(string)`), converts to `scheme` as
    `load_tagging` does, and returns splits renamed by `split_names` (hub → ours; default the
    entry's, else `train` → `train`, `validation` → `dev`). `id` is the hub's `id` column, else the
    row index; `doc_id` is None.

    Args:
        source: hub repository id or local folder.
        entry: the registry entry; its `hub` gives the columns.
        split_names: hub split name → our split name.
        scheme: target scheme for scheme-tagged labels.
        label_names: `ClassLabel` names in id order; default the sorted tags.
    Returns:
        The `DatasetDict`.
    Raises:
        ConfigError: the entry has no hub source, or no split of `split_names` is in the dataset.
        InputFormatError: the dataset cannot be loaded, lacks a column, has a row whose tags and
            tokens differ in length, or a tag missing from `label_names`.
    """
    if entry.hub is None:
        raise ConfigError(f"corpus {entry.name!r} has no hub dataset in the registry")
    hub = entry.hub
    split_names = dict(split_names or hub.split_names or _HUB_SPLITS)
    target = schemes.normalize_scheme(scheme) if scheme is not None else None
    try:
        loaded = datasets.load_dataset(str(source))
    except (DatasetNotFoundError, FileNotFoundError, ConnectionError) as error:
        raise InputFormatError(f"cannot load the dataset: {error}", str(source)) from None
    present = {hub_split: ours for hub_split, ours in split_names.items() if hub_split in loaded}
    if not present:
        raise ConfigError(
            f"{source}: none of the splits {sorted(split_names)} is in the dataset "
            f"(it has {sorted(loaded)})"
        )
    tag_strings: dict[str, list[list[str]]] = {}
    tag_names: dict[str, list[str] | None] = {}
    for hub_split in present:
        dataset = loaded[hub_split]
        for column in (hub.tokens_column, hub.tags_column):
            if column not in dataset.column_names:
                raise InputFormatError(
                    f"split {hub_split!r} has no column {column!r} "
                    f"(columns: {dataset.column_names})",
                    str(source),
                )
        names = _class_label_names(dataset.features[hub.tags_column])
        tag_names[hub_split] = names
        tag_strings[hub_split] = _hub_tags(
            dataset, hub.tokens_column, hub.tags_column, names, source
        )
    all_tags = [tags for split_tags in tag_strings.values() for tags in split_tags]
    labels = {tag for tags in all_tags for tag in tags}
    source_scheme = schemes.detect_scheme(all_tags) if schemes.is_entity_tagset(labels) else None
    convert = target if source_scheme is not None else None
    if convert is not None:
        all_tags = [schemes.convert_tags(tags, convert) for tags in all_tags]
    seen = {tag for tags in all_tags for tag in tags}
    if label_names is not None:
        missing = sorted(seen - set(label_names))
        if missing:
            raise InputFormatError(f"tags {missing} are not among the label names", str(source))
    names_out = list(label_names) if label_names is not None else sorted(seen)
    features = tagging_features(names_out)
    info = CorpusInfo("hub", source_scheme, convert or source_scheme)
    splits = {}
    for hub_split, ours in present.items():
        dataset = loaded[hub_split]
        converted = dataset.map(
            _hub_rows,
            batched=True,
            with_indices=True,
            remove_columns=dataset.column_names,
            features=features,
            fn_kwargs={
                "tokens_column": hub.tokens_column,
                "tags_column": hub.tags_column,
                "source_names": tag_names[hub_split],
                "target_names": names_out,
                "scheme": convert,
            },
        )
        _set_info(converted, info)
        splits[ours] = converted
    return DatasetDict(splits)


def _class_label_names(feature: Any) -> list[str] | None:
    inner = getattr(feature, "feature", None)
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    if isinstance(inner, Value) and inner.dtype in ("string", "large_string"):
        return None
    raise InputFormatError(
        f"tags column has type {feature}, expected a list of ClassLabel or string"
    )


def _hub_tags(
    dataset: Dataset, tokens_column: str, tags_column: str, names: list[str] | None, source: Any
) -> list[list[str]]:
    result = []
    for index, (tokens, tag_ids) in enumerate(
        zip(dataset[tokens_column], dataset[tags_column], strict=True)
    ):
        if len(tokens) != len(tag_ids) or not tokens:
            raise InputFormatError(
                f"row {index}: {len(tokens)} tokens but {len(tag_ids)} tags", str(source)
            )
        result.append([names[i] for i in tag_ids] if names is not None else list(tag_ids))
    return result


def _hub_rows(
    batch: dict[str, list[Any]],
    indices: list[int],
    tokens_column: str,
    tags_column: str,
    source_names: list[str] | None,
    target_names: list[str],
    scheme: str | None,
) -> dict[str, list[Any]]:
    tag_ids = {name: i for i, name in enumerate(target_names)}
    rows_tags = []
    for row in batch[tags_column]:
        tags = [source_names[i] for i in row] if source_names is not None else row
        if scheme is not None:
            tags = schemes.convert_tags(tags, scheme)
        rows_tags.append([tag_ids[tag] for tag in tags])
    ids = batch["id"] if "id" in batch else [str(i) for i in indices]
    return {
        "id": [str(i) for i in ids],
        "doc_id": [None] * len(indices),
        "tokens": batch[tokens_column],
        "tags": rows_tags,
    }


# Text classification corpora


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
) -> DatasetDict:
    """Labelled-text files → a `DatasetDict` with splits `"train"` and/or `"dev"`.

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
        label_names: `ClassLabel` names in id order; default the sorted labels.
    Returns:
        The `DatasetDict`.
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
        split: _format_of(path, input_format, TEXT_FORMATS, "labelled texts")
        for split, path in files.items()
    }
    seen: set[str] = set()
    for split, path in files.items():
        for example in read_texts(
            path, formats[split], phrases=phrases and split == "train", **options
        ):
            if example.label is None:
                raise InputFormatError(f"no labels (no {label_field!r} field or column)", path)
            if label_names is not None and example.label not in label_names:
                raise InputFormatError(
                    f"label {example.label!r} is not one of the {len(label_names)} label names",
                    path,
                    example.line,
                )
            seen.add(example.label)
    features = text_features(list(label_names) if label_names is not None else sorted(seen))
    info = CorpusInfo(next(iter(formats.values())), None, None)
    splits = {}
    for split, path in files.items():
        gen_kwargs = {
            **_file_key(path),
            "input_format": formats[split],
            "phrases": phrases and split == "train",
            "options": options,
        }
        splits[split] = _from_generator(_text_rows, features, gen_kwargs, split, info)
    return DatasetDict(splits)


def _text_rows(
    path: str,
    size: int,
    mtime_ns: int,
    input_format: str,
    phrases: bool,
    options: dict[str, Any],
    code: str,
) -> Iterator[dict[str, Any]]:
    name = Path(path).name
    for example in read_texts(path, input_format, phrases=phrases, **options):
        yield {
            "id": example.example_id or f"{name}:{example.line}",
            "text": example.text,
            "tokens": example.tokens or [],
            "label": example.label,
        }
