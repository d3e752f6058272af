"""Files that are no line-based UTF-8 text: NUL bytes, CR-only line endings, endless lines.

Every reader gets its lines from `read_lines`, which refuses these at the first line that shows
them, naming file and line, and reads a huge or sparse file in bounded memory: a 200 MB sparse file
of zeros fails after its first block, not after reading it whole.
"""

from __future__ import annotations

import tempfile
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.corpus.loading import load_tagging
from bilstm_nlp.corpus.readers import _lines as lines_module
from bilstm_nlp.corpus.readers._lines import read_lines
from bilstm_nlp.corpus.readers.conll import read_conll
from bilstm_nlp.corpus.readers.conllu import read_conllu
from bilstm_nlp.corpus.readers.jsonl import read_jsonl_tagged, read_jsonl_texts
from bilstm_nlp.corpus.readers.sst import read_sst
from bilstm_nlp.corpus.readers.table import read_table
from bilstm_nlp.errors import InputFormatError

runner = CliRunner()

_WORD = "\t".join(["1", "Jo", "jo", "PROPN", "NNP", "_", "0", "root", "0:root", "_"])
# Per reader: a file name and a valid two-record file, lines ending in LF.
_GOOD: dict[str, tuple[str, str, Callable[[Path], Iterable[object]]]] = {
    "conll": ("a.txt", "-DOCSTART- O\n\nJo B-PER\nran O\n\nHe O\n", read_conll),
    "conllu": ("a.conllu", f"{_WORD}\n\n{_WORD}\n", read_conllu),
    "jsonl_tagged": (
        "a.jsonl",
        '{"tokens": ["Jo"], "tags": ["B-PER"]}\n{"tokens": ["He"], "tags": ["O"]}\n',
        read_jsonl_tagged,
    ),
    "jsonl_texts": (
        "a.jsonl",
        '{"text": "Jo", "label": "x"}\n{"text": "He", "label": "y"}\n',
        read_jsonl_texts,
    ),
    "table": ("a.csv", "text,label\nJo,x\nHe,y\n", read_table),
    "sst": ("a.txt", "(2 (2 Jo) (2 ran))\n(3 (3 He))\n", read_sst),
}
READERS = sorted(_GOOD)


def _error(read: Callable[[Path], Iterable[object]], path: Path) -> InputFormatError:
    with pytest.raises(InputFormatError) as info:
        list(read(path))
    return info.value


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("reader", READERS)
def test_cr_only_line_endings_are_refused_at_line_1(tmp_path: Path, reader: str) -> None:
    name, good, read = _GOOD[reader]
    path = _write(tmp_path, name, good.replace("\n", "\r").encode())
    error = _error(read, path)
    assert (error.path, error.line) == (str(path), 1)
    assert "CR-only" in error.message and "carriage return" in error.message


def test_cr_only_conll_starting_with_docstart_is_not_called_empty(tmp_path: Path) -> None:
    # It used to read as one -DOCSTART- line and say "empty file".
    path = _write(
        tmp_path, "a.txt", b"-DOCSTART- -X- O O\r\rEU NNP B-NP B-ORG\rrejects VBZ B-VP O\r"
    )
    error = _error(read_conll, path)
    assert str(error).startswith(f"{path}:1: carriage return (CR) inside the line at byte 19")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("ending", ["\r\n", "\r\r\n"])
def test_cr_lf_endings_read_like_lf(tmp_path: Path, reader: str, ending: str) -> None:
    name, good, read = _GOOD[reader]
    path_lf = _write(tmp_path, "lf-" + name, good.encode())
    path_crlf = _write(tmp_path, "crlf-" + name, good.replace("\n", ending).encode())
    assert list(read(path_crlf)) == list(read(path_lf))


@pytest.mark.parametrize("reader", READERS)
def test_nul_byte_names_its_line_and_byte(tmp_path: Path, reader: str) -> None:
    name, good, read = _GOOD[reader]
    lines = good.encode().split(b"\n")
    lines[-2] = lines[-2][:1] + b"\0" + lines[-2][1:]  # the last line with content
    path = _write(tmp_path, name, b"\n".join(lines))
    error = _error(read, path)
    assert str(error).startswith(f"{path}:{len(lines) - 1}: NUL byte at byte 2 of the line")


def test_utf16_file_is_refused_at_its_first_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", "Jo B-PER\nran O\n".encode("utf-16-le"))
    error = _error(read_conll, path)
    assert (error.line, "NUL byte at byte 2" in error.message) == (1, True)
    assert "UTF-16" in error.message


@pytest.mark.parametrize("reader", READERS)
def test_sparse_file_of_zeros_fails_at_once_in_bounded_memory(tmp_path: Path, reader: str) -> None:
    # 200 MB that take no disk: the old reader took the whole file as one line (and for a 2 GB
    # one, 52 s and 4.6 GB) to report "1 sentence, 1 token".
    name, _, read = _GOOD[reader]
    path = tmp_path / name
    with open(path, "wb") as handle:
        handle.truncate(200 * 2**20)
    tracemalloc.start()
    try:
        error = _error(read, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(error).startswith(f"{path}:1: NUL byte at byte 1 of the line")
    assert peak < 8 * 2**20, peak


def test_zeros_after_valid_lines_name_the_first_line_of_zeros(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"Jo B-PER\n\nHe O\n")
    with open(path, "ab") as handle:
        handle.truncate(50 * 2**20)
    error = _error(read_conll, path)
    assert (error.line, error.message.startswith("NUL byte at byte 1")) == (4, True)


def test_first_bad_line_wins_over_a_later_nul_in_the_same_block(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"Jo B-PER\nran\nHe O\x00\n")
    error = _error(read_conll, path)
    assert (error.line, "expected 2 columns" in error.message) == (2, True)


def test_line_longer_than_the_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"Jo B-PER\n\n" + b"x" * 5000 + b" O\n")
    with (
        mock.patch.object(lines_module, "MAX_LINE_BYTES", 1000),
        mock.patch.object(lines_module, "_BLOCK_BYTES", 64),
    ):
        error = _error(read_conll, path)
    assert str(error).startswith(f"{path}:3: line longer than 1,000 bytes")


def test_file_without_line_breaks_is_not_read_whole(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", b"x " * 2 * 2**20)  # 4 MiB, one line
    tracemalloc.start()
    try:
        with (
            mock.patch.object(lines_module, "MAX_LINE_BYTES", 1000),
            mock.patch.object(lines_module, "_BLOCK_BYTES", 64),
        ):
            error = _error(read_conll, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(error).startswith(f"{path}:1: line longer than 1,000 bytes")
    assert peak < 2**20, peak


_LINE_TEXT = st.text(
    alphabet=st.sampled_from(["a", "é", " ", "\t", "\u2028", "€", "\r"]), max_size=12
).filter(lambda text: "\r" not in text.rstrip("\r"))


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.tuples(_LINE_TEXT, st.sampled_from(["\n", "\r\n"])), max_size=12),
    last=_LINE_TEXT,
    block=st.integers(1, 9),
)
def test_block_reads_split_lines_like_str_split(
    lines: list[tuple[str, str]], last: str, block: int
) -> None:
    # Lines cut anywhere by block edges (a CR LF, a UTF-8 character) still read whole.
    content = "".join(text + end for text, end in lines) + last
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.txt"
        path.write_bytes(content.encode())
        with mock.patch.object(lines_module, "_BLOCK_BYTES", block):
            read = list(read_lines(path))
            kept = list(read_lines(path, keep_ends=True))
    expected = content.split("\n")
    if expected[-1] == "":
        expected.pop()
    expected = [text.rstrip("\r") for text in expected]
    assert read == list(enumerate(expected, start=1))
    assert "".join(line for _, line in kept) == content


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"Jo B-PER\rran O\r", "CR-only"), (b"Jo B-PER\n\x00\x00\x00", "NUL byte")],
)
def test_corpus_stats_and_loading_refuse_in_one_line(
    tmp_path: Path, datasets_cache: Path, content: bytes, fragment: str
) -> None:
    path = _write(tmp_path, "a.txt", content)
    result = runner.invoke(app, ["corpus", "stats", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:") and fragment in lines[0]
    # What train reads through: the same error, not a one-token corpus.
    with pytest.raises(InputFormatError, match=fragment):
        load_tagging(path)
