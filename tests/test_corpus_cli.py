"""`bilstm-nlp corpus stats`: the real corpora's README counts, tables, and every bad-input exit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bilstm_nlp.cli import app

runner = CliRunner()


def stats_json(path: Path, *options: str) -> dict[str, Any]:
    result = runner.invoke(app, ["corpus", "stats", str(path), "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# Real corpora: the counts their READMEs give

CONLL2003 = {
    "train.txt": (946, 14041, 203621, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}),
    "dev.txt": (216, 3250, 51362, {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}),
}


@pytest.mark.parametrize("name", sorted(CONLL2003))
def test_conll2003_counts(shared_corpora: Path, name: str) -> None:
    documents, sentences, tokens, entities = CONLL2003[name]
    stats = stats_json(shared_corpora / "conll2003" / name)
    assert (stats["documents"], stats["sentences"], stats["tokens"]) == (
        documents,
        sentences,
        tokens,
    )
    assert stats["entity_counts"] == dict(sorted(entities.items(), key=lambda kv: -kv[1]))
    assert stats["entities"] == sum(entities.values())
    assert stats["scheme"] == "IOB1" and stats["input_format"] == "conll"
    if name == "train.txt":
        assert stats["label_counts"] == {
            "O": 169578, "I-PER": 11128, "I-ORG": 10001, "I-LOC": 8286, "I-MISC": 4556,
            "B-MISC": 37, "B-ORG": 24, "B-LOC": 11,
        }  # fmt: skip


def test_conll2003_pos_column(shared_corpora: Path) -> None:
    stats = stats_json(shared_corpora / "conll2003" / "dev.txt", "--label-column", "1")
    assert stats["scheme"] is None and stats["entities"] is None
    assert stats["label_counts"]["NN|SYM"] == 1
    chunks = stats_json(shared_corpora / "conll2003" / "dev.txt", "--label-column", "-2")
    assert chunks["scheme"] == "IOB1" and "NP" in chunks["entity_counts"]


WNUT17 = {
    "train.txt": (3394, 62730, 59570, (660, 548, 264, 221, 142, 140)),
    "dev.txt": (1009, 15733, 14483, (470, 74, 39, 34, 114, 105)),
}
WNUT17_TYPES = ("person", "location", "group", "corporation", "product", "creative-work")


@pytest.mark.parametrize("name", sorted(WNUT17))
def test_wnut17_counts(shared_corpora: Path, name: str) -> None:
    sentences, tokens, outside, entities = WNUT17[name]
    stats = stats_json(shared_corpora / "wnut17" / name)
    assert (stats["sentences"], stats["tokens"], stats["label_counts"]["O"]) == (
        sentences,
        tokens,
        outside,
    )
    assert stats["documents"] is None and stats["scheme"] == "IOB2"
    assert stats["entity_counts"] == {
        kind: count
        for kind, count in sorted(zip(WNUT17_TYPES, entities, strict=True), key=lambda kv: -kv[1])
    }
    assert stats["entities"] == sum(entities)
    for kind, count in zip(WNUT17_TYPES, entities, strict=True):
        assert stats["label_counts"][f"B-{kind}"] == count


UD_EWT = {
    "train.conllu": (540, 12544, 204577, {"NOUN": 34751, "PUNCT": 23596, "SYM": 722, "X": 400}),
    "dev.conllu": (318, 2001, 25147, {"NOUN": 4210, "PUNCT": 3075, "SYM": 81, "X": 59}),
}


@pytest.mark.parametrize("name", sorted(UD_EWT))
def test_ud_ewt_counts(shared_corpora: Path, name: str) -> None:
    documents, sentences, words, upos = UD_EWT[name]
    stats = stats_json(shared_corpora / "ud_ewt" / name)
    assert (stats["documents"], stats["sentences"], stats["tokens"]) == (
        documents,
        sentences,
        words,
    )
    assert len(stats["label_counts"]) == 17
    assert sum(stats["label_counts"].values()) == words
    for tag, count in upos.items():
        assert stats["label_counts"][tag] == count
    assert stats["scheme"] is None and stats["entity_counts"] == {}


def test_ud_ewt_xpos(shared_corpora: Path) -> None:
    stats = stats_json(shared_corpora / "ud_ewt" / "dev.conllu", "--tag-field", "xpos")
    assert stats["tokens"] == 25147 and "NN" in stats["label_counts"]
    assert sum(stats["label_counts"].values()) == 25147


def test_conll2000_counts(shared_corpora: Path) -> None:
    stats = stats_json(shared_corpora / "conll2000" / "train.txt")
    assert (stats["sentences"], stats["tokens"], stats["entities"]) == (8936, 211727, 106978)
    assert stats["entity_counts"] == {
        "NP": 55081, "VP": 21467, "PP": 21281, "ADVP": 4227, "SBAR": 2207, "ADJP": 2060,
        "PRT": 556, "CONJP": 56, "INTJ": 31, "LST": 10, "UCP": 2,
    }  # fmt: skip
    assert len(stats["label_counts"]) == 22 and stats["scheme"] == "IOB2"


SST = {
    ("train.txt", "sst5"): (8544, 163563, {"0": 1092, "1": 2218, "2": 1624, "3": 2322, "4": 1288}),
    ("dev.txt", "sst5"): (1101, 21274, {"0": 139, "1": 289, "2": 229, "3": 279, "4": 165}),
    ("train.txt", "sst2"): (6920, 133552, {"negative": 3310, "positive": 3610}),
    ("dev.txt", "sst2"): (872, 17046, {"negative": 428, "positive": 444}),
}


@pytest.mark.parametrize(("name", "labels"), sorted(SST))
def test_sst_counts(shared_corpora: Path, name: str, labels: str) -> None:
    sentences, tokens, label_counts = SST[(name, labels)]
    stats = stats_json(shared_corpora / "sst" / name, "--sst-labels", labels)
    assert (stats["sentences"], stats["tokens"]) == (sentences, tokens)
    assert stats["label_counts"] == dict(sorted(label_counts.items(), key=lambda kv: -kv[1]))
    assert stats["input_format"] == "sst" and stats["documents"] is None


# Tables on stdout


def test_stats_tables(samples: Path) -> None:
    result = runner.invoke(app, ["corpus", "stats", str(samples / "conll2003" / "train.txt")])
    assert result.exit_code == 0, result.output
    for expected in ("documents", "sentences", "19", "IOB1", "I-PER", "entity type", "MISC"):
        assert expected in result.stdout
    assert result.stderr == ""


def test_stats_json_is_one_object(samples: Path) -> None:
    stats = stats_json(samples / "sst" / "train.txt", "--input-format", "sst")
    assert stats == {
        "path": str(samples / "sst" / "train.txt"),
        "input_format": "sst",
        "documents": None,
        "sentences": 3,  # roots 3, 1, 2, 0: the neutral one is dropped
        "tokens": 18,
        "label_counts": {"negative": 2, "positive": 1},
        "scheme": None,
        "entity_counts": {},
        "entities": None,
    }


# Bad input: exit code 1, `error: file:line: ...`, no traceback

BAD_FILES = [
    ("cols.txt", b"EU NNP I-NP I-ORG\n\nGermany NNP B-NP\n", 3, "expected 4 columns"),
    ("utf8.txt", b"a O\nb\xff O\n", 2, "not valid UTF-8"),
    ("tag.txt", b"a O\nb X-PER\n", 2, "'X-PER' fits no tag scheme"),
    ("tag2.txt", b"a O\nb B-\n", 2, "'B-' fits no tag scheme"),
    ("bad.jsonl", b'{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"]\n', 2, "bad JSON"),
    ("trees.txt", b"(2 (2 a) (2 b))\n(3 (2 a) (3 b)\n", 2, "unbalanced brackets"),
    ("trees2.txt", b"(2 (2 a) (2 b))\n(3 (a) (3 b))\n", 2, "expected a label 0-4"),
    ("u.conllu", b"1\ta\ta\tX\tX\t_\t0\troot\t_\t_\n2\tb\tb\tX\n", 2, "10 tab-separated"),
    ("t.csv", b"text,label\na,1\nb,2,3\n", 3, "expected 2 columns"),
]


@pytest.mark.parametrize(("name", "content", "line", "fragment"), BAD_FILES)
def test_bad_input_exits_1_with_file_and_line(
    tmp_path: Path, name: str, content: bytes, line: int, fragment: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = runner.invoke(app, ["corpus", "stats", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}:{line}: "), result.stderr
    assert fragment in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        (None, [], "no such file"),
        (b"", [], "empty file"),
        (b"\n\t\n", [], "empty file"),
        (b"a O\n", ["--input-format", "iob"], "unknown input format 'iob'"),
        (b"a O\n", ["--input-format", "hub"], "corpus stats reads files"),
        (b"a O\n", ["--label-column", "5"], "outside the 2 columns"),
        (b"a O\n", ["--input-format", "conllu", "--tag-field", "lemma"], "tag field 'lemma'"),
        (b"(2 (2 a) (2 b))\n", ["--sst-labels", "sst3"], "SST labels 'sst3'"),
    ],
)
def test_bad_file_or_option_exits_1(
    tmp_path: Path, content: bytes | None, options: list[str], message: str
) -> None:
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["corpus", "stats", str(path), *options])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.output
