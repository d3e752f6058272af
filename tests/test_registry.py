"""Tests for `bilstm_nlp.corpus.registry`: the shipped entries, file lookup, and every rejection.

Rejections run on registry files written into `tmp_path` and read in place of the shipped one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bilstm_nlp.corpus import registry
from bilstm_nlp.errors import ConfigError

MINIMAL = """
format_version = 1

[corpora.toy]
task = "ner"
format = "conll"
train = "toy/train.txt"
licence = "none"
"""


@pytest.fixture
def registry_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Write a registry file and make `load_registry` read it instead of the shipped one."""

    def write(text: str) -> None:
        (tmp_path / registry.REGISTRY_FILE).write_text(text, encoding="utf-8")

    monkeypatch.setattr(registry, "files", lambda package: tmp_path)
    return write


def test_shipped_entries_by_hand() -> None:
    entries = registry.load_registry()
    assert sorted(entries) == ["conll2000", "conll2003", "sst", "ud_ewt", "wnut17"]
    conll2003 = entries["conll2003"]
    assert conll2003.name == "conll2003" and conll2003.task == "ner"
    assert conll2003.columns == ("word", "pos", "chunk", "ner")
    assert (conll2003.format, conll2003.label_column, conll2003.scheme) == ("conll", 3, "IOB1")
    assert (conll2003.train, conll2003.dev) == ("conll2003/train.txt", "conll2003/dev.txt")
    assert conll2003.hub is not None
    assert conll2003.hub.splits == (("train", "train"), ("validation", "dev"))
    assert conll2003.hub.scheme == "IOB2"
    assert entries["conll2000"].dev is None and entries["conll2000"].dev_from_train == "last:1000"
    assert entries["ud_ewt"].tag_field == "upos" and entries["ud_ewt"].scheme is None
    assert entries["sst"].task == "sentiment" and entries["sst"].sst_labels == "sst5"
    # Every entry's format is a readable file format, never the hub.
    assert all(entry.format != "hub" for entry in entries.values())


def test_get_corpus_and_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert registry.get_corpus("wnut17") == registry.load_registry()["wnut17"]
    with pytest.raises(ConfigError, match="unknown corpus 'conll': expected one of conll2000, "):
        registry.get_corpus("conll")
    entry = registry.get_corpus("conll2003")
    assert entry.path("dev", tmp_path) == tmp_path / "conll2003" / "dev.txt"
    with pytest.raises(ConfigError, match="corpus 'conll2000' has no 'dev' file"):
        registry.get_corpus("conll2000").path("dev")
    with pytest.raises(ConfigError, match="has no 'test' file"):
        entry.path("test", tmp_path)
    monkeypatch.setenv(registry.CORPORA_ENV, str(tmp_path / "elsewhere"))
    assert entry.path("train") == tmp_path / "elsewhere" / "conll2003" / "train.txt"
    monkeypatch.setenv(registry.CORPORA_ENV, "")
    monkeypatch.chdir(tmp_path)
    assert registry.corpora_root() == tmp_path.parent / "shared" / "corpora"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/anywhere/conll2003/train.txt", "conll2003"),
        ("conll2003/dev.txt", "conll2003"),
        ("../shared/corpora/wnut17/dev.txt", "wnut17"),
        ("/data/train.txt", None),  # the file name alone is not enough
        ("/data/wnut17/test.txt", None),
        ("/data/conll2000/dev.txt", None),  # CoNLL-2000 has no dev file
    ],
)
def test_entry_for_file(path: str, expected: str | None) -> None:
    entry = registry.entry_for_file(path)
    assert (entry.name if entry is not None else None) == expected


def test_minimal_entry_takes_defaults(registry_text) -> None:
    registry_text(MINIMAL)
    [entry] = registry.load_registry().values()
    assert entry.name == "toy" and entry.columns == ()
    assert entry.dev is entry.scheme is entry.hub is entry.label_column is None


def test_scheme_aliases_are_normalised(registry_text) -> None:
    registry_text(
        MINIMAL.replace('licence = "none"', 'licence = "none"\nscheme = "iobes"')
        + '[corpora.toy.hub]\nid = "a/b"\ntokens_column = "t"\ntags_column = "n"\n'
        + 'scheme = "BIO"\nsplits = { test = "dev" }\n'
    )
    entry = registry.get_corpus("toy")
    assert entry.scheme == "BIOES"
    assert entry.hub is not None and entry.hub.scheme == "IOB2"
    assert entry.hub.split_names == {"test": "dev"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("format_version = 1", "format_version = 2"), "registry format_version 2, expected 1"),
        (("format_version = 1", ""), "registry format_version None, expected 1"),
        (('task = "ner"', 'task = "parsing"'), "[corpora.toy]: task 'parsing' is not one of"),
        (('format = "conll"', 'format = "hub"'), "[corpora.toy]: format 'hub' is not one of"),
        (('licence = "none"', ""), "[corpora.toy]: missing key(s) licence"),
        (('licence = "none"', 'licence = "x"\nlabel = 3'), "[corpora.toy]: unknown key(s) label"),
        (
            ('licence = "none"', 'licence = "x"\ndev = "d"\ndev_from_train = "last:5"'),
            "[corpora.toy]: give dev or dev_from_train, not both",
        ),
        (('licence = "none"', 'licence = "x"\nscheme = "IOB3"'), "unknown tag scheme 'IOB3'"),
        (
            ('licence = "none"', 'licence = "x"\n[corpora.toy.hub]\nid = "a/b"\nsplits = {}'),
            "[corpora.toy.hub]: missing key(s) tokens_column, tags_column",
        ),
    ],
)
def test_bad_registries_are_rejected_by_name(registry_text, edit, message) -> None:
    old, new = edit
    registry_text(MINIMAL.replace(old, new))
    with pytest.raises(ConfigError) as info:
        registry.load_registry()
    assert message in str(info.value)
