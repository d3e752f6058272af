"""Hugging Face hub tagging datasets (or local folders laid out like them) → a `Corpus`.

Beside `loading.py`, which reads local files: the hub's tokens and tags columns (as the registry
entry names them) are cast to the same features, converted to the asked scheme the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Value
from datasets.exceptions import DatasetNotFoundError

from ..errors import ConfigError, InputFormatError
from ..text import schemes
from .loading import Corpus, CorpusInfo, label_names_by_split, tagging_features
from .registry import CorpusEntry

_HUB_SPLITS = {"train": "train", "validation": "dev"}


def load_hub_tagging(
    source: str | Path,
    entry: CorpusEntry,
    *,
    split_names: Mapping[str, str] | None = None,
    scheme: str | None = None,
    label_names: Sequence[str] | None = None,
) -> Corpus:
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
        label_names: `ClassLabel` names in id order; default per split, as `Corpus` says.
    Returns:
        The `Corpus`.
    Raises:
        ConfigError: the entry has no hub source, duplicate label names, or no split of
            `split_names` is in the dataset.
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
        tag_strings = {
            split: [schemes.convert_tags(tags, convert) for tags in rows]
            for split, rows in tag_strings.items()
        }
    seen = {split: {t for tags in rows for t in tags} for split, rows in tag_strings.items()}
    if label_names is not None:
        if len(set(label_names)) != len(label_names):
            raise ConfigError("label_names holds a name twice")
        missing = sorted(set().union(*seen.values()) - set(label_names))
        if missing:
            raise InputFormatError(f"tags {missing} are not among the label names", str(source))
    names = label_names_by_split(seen, label_names)
    info = CorpusInfo("hub", source_scheme, convert or source_scheme)
    splits = {}
    for hub_split, ours in present.items():
        dataset = loaded[hub_split]
        splits[ours] = dataset.map(
            _hub_rows,
            batched=True,
            with_indices=True,
            remove_columns=dataset.column_names,
            features=tagging_features(names[hub_split]),
            fn_kwargs={
                "tokens_column": hub.tokens_column,
                "tags_column": hub.tags_column,
                "source_names": tag_names[hub_split],
                "target_names": names[hub_split],
                "scheme": convert,
            },
        )
    return Corpus(DatasetDict(splits), info)


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
