"""Mutated valid files: every reader either reads them correctly or names the file and line.

Each case starts from a valid file of the format (the corpus samples under corpora/samples, or a
small hand-written file) and applies a few random edits: bytes deleted, inserted or replaced, lines
dropped, duplicated or swapped, the file cut short, line endings turned CR-only, runs of NUL bytes
(up to 46 kB) inserted, the whole file turned UTF-16. The reader must then give well-formed examples
or raise `InputFormatError` with the file and a line inside it; any other exception is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilstm_nlp.corpus.readers import Sentence, TextExample
from bilstm_nlp.corpus.readers.conll import read_conll
from bilstm_nlp.corpus.readers.conllu import read_conllu
from bilstm_nlp.corpus.readers.jsonl import read_jsonl_tagged, read_jsonl_texts
from bilstm_nlp.corpus.readers.sst import read_sst
from bilstm_nlp.corpus.readers.table import read_table
from bilstm_nlp.errors import InputFormatError

SAMPLES = Path(__file__).resolve().parents[1] / "corpora" / "samples"
_STRAY_CR = re.compile(rb"\r+[^\r\n]")  # a CR not ending its line

_JSONL_TAGGED = (
    '{"id": "s1", "tokens": ["EU", "rejects", "German", "call"], '
    '"tags": ["B-ORG", "O", "B-MISC", "O"]}\n'
    '{"id": "s2", "tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}\n'
    '{"id": "s3", "tokens": ["BRUSSELS", "1996-08-22"], "tags": ["B-LOC", "O"]}\n'
)
_JSONL_TEXTS = (
    '{"id": 1, "text": "A gripping, funny film.", "label": "positive"}\n'
    '{"id": 2, "text": "Dull \\u00e9 and \\"long\\".", "label": "negative"}\n'
    '{"id": 3, "text": "Meh.", "label": "negative"}\n'
)
_CSV = (
    'id,text,label\n1,"A gripping, funny film.",positive\n'
    '2,"Dull and\nlong",negative\n3,Fine,positive\n'
)


def _valid(reader: str) -> tuple[str, bytes]:
    """A valid file of the reader's format: its name and bytes."""
    files = {
        "conll2003": ("train.txt", (SAMPLES / "conll2003" / "train.txt").read_bytes()),
        "conll2000": ("train.txt", (SAMPLES / "conll2000" / "train.txt").read_bytes()),
        "wnut17": ("train.txt", (SAMPLES / "wnut17" / "train.txt").read_bytes()),
        "conllu": ("train.conllu", (SAMPLES / "ud_ewt" / "train.conllu").read_bytes()),
        "sst": ("train.txt", (SAMPLES / "sst" / "train.txt").read_bytes()),
        "jsonl_tagged": ("train.jsonl", _JSONL_TAGGED.encode()),
        "jsonl_texts": ("train.jsonl", _JSONL_TEXTS.encode()),
        "table": ("train.csv", _CSV.encode()),
    }
    return files[reader]


def _read(reader: str) -> Callable[[Path], Iterable[Sentence | TextExample]]:
    return {
        "conll2003": read_conll,
        "conll2000": read_conll,
        "wnut17": read_conll,
        "conllu": read_conllu,
        "sst": read_sst,
        "jsonl_tagged": read_jsonl_tagged,
        "jsonl_texts": read_jsonl_texts,
        "table": read_table,
    }[reader]


READERS = [
    "conll2003",
    "conll2000",
    "wnut17",
    "conllu",
    "sst",
    "jsonl_tagged",
    "jsonl_texts",
    "table",
]

# Bytes that matter to the formats: separators, brackets, quotes, tag prefixes, digits, a UTF-8
# lead byte without its continuation, a BOM, NUL.
_INTERESTING = st.sampled_from(
    [
        b" ",
        b"\t",
        b"\n",
        b"\r",
        b"(",
        b")",
        b'"',
        b",",
        b"{",
        b"}",
        b"-",
        b"B-",
        b"I-",
        b"O",
        b"_",
        b"#",
        b"1",
        b"0",
        b"\xc3",
        b"\xef\xbb\xbf",
        b"\x00",
        b"\\",
        b":",
    ]
)
_INSERTED = st.one_of(_INTERESTING, st.binary(min_size=1, max_size=4))


@st.composite
def _mutation(draw: st.DrawFn, size: int) -> tuple[str, int, int, bytes]:
    kind = draw(
        st.sampled_from(
            ["delete", "insert", "replace", "truncate", "line", "cr_only", "nul_run", "utf16"]
        )
    )
    at = draw(st.integers(0, max(size - 1, 0)))
    length = draw(st.integers(1, 6))
    return kind, at, length, draw(_INSERTED)


def _apply(content: bytes, mutation: tuple[str, int, int, bytes], line_op: int) -> bytes:
    kind, at, length, inserted = mutation
    at = min(at, len(content))
    if kind == "delete":
        return content[:at] + content[at + length :]
    if kind == "insert":
        return content[:at] + inserted + content[at:]
    if kind == "replace":
        return content[:at] + inserted + content[at + len(inserted) :]
    if kind == "truncate":
        return content[:at]
    if kind == "cr_only":  # from `at` on, lines end in CR alone (classic Mac), or CR CR LF
        ending = b"\r" if length > 1 else b"\r\r\n"
        return content[:at] + content[at:].replace(b"\n", ending)
    if kind == "nul_run":  # a run of zeros, up to a sparse file's worth of a block
        return content[:at] + b"\0" * (length**6) + content[at:]
    if kind == "utf16":
        return content.decode("utf-8", errors="replace").encode("utf-16-le")
    lines = content.split(b"\n")
    first = at % len(lines)
    second = (at + length) % len(lines)
    if line_op == 0:  # drop a line
        del lines[first]
    elif line_op == 1:  # duplicate a line
        lines.insert(first, lines[first])
    else:  # swap two lines
        lines[first], lines[second] = lines[second], lines[first]
    return b"\n".join(lines)


def _well_formed(example: Sentence | TextExample) -> bool:
    if isinstance(example, Sentence):
        return bool(example.tokens) and (
            example.tags is None or len(example.tags) == len(example.tokens)
        )
    return isinstance(example.text, str) and (
        example.tokens is None or all(isinstance(t, str) and t for t in example.tokens)
    )


@pytest.mark.parametrize("reader", READERS)
def test_unmutated_files_read(tmp_path: Path, reader: str) -> None:
    name, content = _valid(reader)
    path = tmp_path / name
    path.write_bytes(content)
    examples = list(_read(reader)(path))
    assert examples and all(_well_formed(e) for e in examples)


@pytest.mark.parametrize("reader", READERS)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_files_read_or_name_file_and_line(
    tmp_path: Path, reader: str, data: st.DataObject
) -> None:
    name, content = _valid(reader)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        mutation = data.draw(_mutation(len(content)), label="edit")
        content = _apply(content, mutation, data.draw(st.integers(0, 2), label="line op"))
    path = tmp_path / name
    path.write_bytes(content)
    try:
        examples = list(_read(reader)(path))
    except InputFormatError as error:
        assert error.path == str(path)
        lines = content.count(b"\n") + 1
        assert error.line is None or 1 <= error.line <= lines, (error.line, lines)
        assert str(error).startswith(f"{path}:")
        return
    # NUL bytes and CRs inside a line are never read as text.
    assert b"\0" not in content and not _STRAY_CR.search(content), content[:200]
    assert examples and all(_well_formed(e) for e in examples)
