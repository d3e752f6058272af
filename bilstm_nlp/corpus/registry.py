"""The corpus registry: what each known corpus is and where its files lie.

Read by the loaders and the CLI before any file is opened. `corpora/registry.toml` ships inside the
package as `bilstm_nlp.corpora` and is found with `importlib.resources`; its entries become frozen
`CorpusEntry` values. File paths are relative to a corpora root: env `BILSTM_NLP_CORPORA`, else
`../shared/corpora` from the working directory.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..config import INPUT_FORMATS
from ..errors import ConfigError
from ..text.schemes import normalize_scheme

CORPORA_ENV = "BILSTM_NLP_CORPORA"
REGISTRY_FILE = "registry.toml"
FORMAT_VERSION = 1
# Kept in step with bilstm_nlp.corpus.formats.INPUT_FORMATS (less "hub", which is no file format).
_FILE_FORMATS = INPUT_FORMATS
_TASKS = ("ner", "chunking", "pos", "sentiment")
_ENTRY_KEYS = {
    "task", "format", "columns", "label_column", "tag_field", "sst_labels", "scheme",
    "train", "dev", "dev_from_train", "licence", "hub",
}  # fmt: skip
_HUB_KEYS = {"id", "tokens_column", "tags_column", "scheme", "splits"}


@dataclass(frozen=True)
class HubSource:
    """Where a corpus lives on the Hugging Face hub, and how its columns map to ours.

    Attributes:
        id: hub repository id (`"eriktks/conll2003"`).
        tokens_column: column with the words.
        tags_column: column with the tags (`List(ClassLabel)` or `List(string)`).
        scheme: scheme of the hub's tags, or None for plain labels.
        splits: `(hub split, our split)` pairs, e.g. `(("train", "train"), ("validation", "dev"))`.
    """

    id: str
    tokens_column: str
    tags_column: str
    scheme: str | None
    splits: tuple[tuple[str, str], ...]

    @property
    def split_names(self) -> dict[str, str]:
        """Hub split name → our split name."""
        return dict(self.splits)


@dataclass(frozen=True)
class CorpusEntry:
    """One corpus of the registry.

    Attributes:
        name: registry key (`"conll2003"`).
        task: `"ner"`, `"chunking"`, `"pos"` or `"sentiment"`.
        format: input format name of `bilstm_nlp.corpus.loading` (`"conll"`, `"sst"`...).
        columns: what the file's columns hold, in order.
        label_column: index of the label column (conll format), else None.
        tag_field: `"upos"`/`"xpos"` (conllu format), else None.
        sst_labels: `"sst5"`/`"sst2"` (sst format), else None.
        scheme: tag scheme as distributed, or None for plain labels.
        train: train file, relative to the corpora root.
        dev: dev file, relative to the corpora root, or None.
        dev_from_train: `"last:N"`/`"first:N"` when dev is carved out of train, else None.
        licence: one line on the licence.
        hub: the hub dataset, if one exists.
    """

    name: str
    task: str
    format: str
    columns: tuple[str, ...]
    label_column: int | None
    tag_field: str | None
    sst_labels: str | None
    scheme: str | None
    train: str
    dev: str | None
    dev_from_train: str | None
    licence: str
    hub: HubSource | None

    def path(self, split: str, root: str | Path | None = None) -> Path:
        """The file of `split` (`"train"` or `"dev"`) under `root` (default `corpora_root()`).

        Raises:
            ConfigError: the corpus has no file for that split (CoNLL-2000's dev comes from train).
        """
        relative = {"train": self.train, "dev": self.dev}.get(split)
        if relative is None:
            raise ConfigError(f"corpus {self.name!r} has no {split!r} file")
        return Path(root if root is not None else corpora_root()) / relative


def corpora_root() -> Path:
    """The corpora folder: env `BILSTM_NLP_CORPORA`, else `../shared/corpora` from the cwd."""
    configured = os.environ.get(CORPORA_ENV)
    if configured:
        return Path(configured)
    return Path.cwd().parent / "shared" / "corpora"


def load_registry() -> dict[str, CorpusEntry]:
    """All registry entries by name, from the `registry.toml` shipped in `bilstm_nlp.corpora`.

    Raises:
        ConfigError: the registry has an unknown key, a missing key or a wrong value.
    """
    text = files("bilstm_nlp.corpora").joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    if data.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"registry format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}",
            REGISTRY_FILE,
        )
    return {name: _entry(name, table) for name, table in data.get("corpora", {}).items()}


def entry_for_file(path: str | Path) -> CorpusEntry | None:
    """The registry entry whose train or dev file `path` is (by its last folder and file name,
    `conll2003/train.txt`, wherever the corpora are kept), or None."""
    parts = Path(path).parts
    for entry in load_registry().values():
        for relative in (entry.train, entry.dev):
            if relative is not None and parts[-len(Path(relative).parts) :] == Path(relative).parts:
                return entry
    return None


def get_corpus(name: str) -> CorpusEntry:
    """The registry entry `name`.

    Raises:
        ConfigError: no corpus of that name.
    """
    registry = load_registry()
    if name not in registry:
        raise ConfigError(f"unknown corpus {name!r}: expected one of {', '.join(sorted(registry))}")
    return registry[name]


def _entry(name: str, table: dict[str, Any]) -> CorpusEntry:
    where = f"[corpora.{name}]"
    _check_keys(table, _ENTRY_KEYS, where, required=("task", "format", "train", "licence"))
    if table["task"] not in _TASKS:
        raise ConfigError(f"{where}: task {table['task']!r} is not one of {_TASKS}", REGISTRY_FILE)
    if table["format"] not in _FILE_FORMATS:
        raise ConfigError(
            f"{where}: format {table['format']!r} is not one of {_FILE_FORMATS}", REGISTRY_FILE
        )
    if "dev" in table and "dev_from_train" in table:
        raise ConfigError(f"{where}: give dev or dev_from_train, not both", REGISTRY_FILE)
    hub = _hub(name, table["hub"]) if "hub" in table else None
    scheme = table.get("scheme")
    return CorpusEntry(
        name=name,
        task=table["task"],
        format=table["format"],
        columns=tuple(table.get("columns", ())),
        label_column=table.get("label_column"),
        tag_field=table.get("tag_field"),
        sst_labels=table.get("sst_labels"),
        scheme=normalize_scheme(scheme) if scheme is not None else None,
        train=table["train"],
        dev=table.get("dev"),
        dev_from_train=table.get("dev_from_train"),
        licence=table["licence"],
        hub=hub,
    )


def _hub(name: str, table: dict[str, Any]) -> HubSource:
    where = f"[corpora.{name}.hub]"
    _check_keys(table, _HUB_KEYS, where, required=("id", "tokens_column", "tags_column", "splits"))
    scheme = table.get("scheme")
    return HubSource(
        id=table["id"],
        tokens_column=table["tokens_column"],
        tags_column=table["tags_column"],
        scheme=normalize_scheme(scheme) if scheme is not None else None,
        splits=tuple((str(hub), str(ours)) for hub, ours in table["splits"].items()),
    )


def _check_keys(
    table: dict[str, Any], known: set[str], where: str, required: tuple[str, ...]
) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}", REGISTRY_FILE)
    missing = [key for key in required if key not in table]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}", REGISTRY_FILE)
