"""JSON (and CoNLL-U numbers) past what Python parses: nesting 100,000 deep, 5,000-digit integers.

`json.loads` raises `RecursionError` or a plain `ValueError` for these, not `JSONDecodeError`; the
readers and `corpus stats` must still give the one `file:line` error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.corpus.readers.conllu import read_conllu
from bilstm_nlp.corpus.readers.jsonl import read_jsonl_tagged, read_jsonl_texts
from bilstm_nlp.errors import InputFormatError

runner = CliRunner()

_GOOD_TAGGED = '{"tokens": ["Jo"], "tags": ["B-PER"]}\n'
_GOOD_TEXT = '{"text": "Jo", "label": "x"}\n'
_DEEP = "[" * 100_000 + "]" * 100_000
_DIGITS = "9" * 5000

CASES = {
    "deep tokens": (_GOOD_TAGGED, '{"tokens": ' + _DEEP + "}", "nested too deep"),
    "deep line": (_GOOD_TAGGED, _DEEP, "nested too deep"),
    "huge id": (_GOOD_TAGGED, '{"tokens": ["a"], "tags": ["O"], "id": ' + _DIGITS + "}", "digits"),
    "deep label": (_GOOD_TEXT, '{"text": "a", "label": ' + _DEEP + "}", "nested too deep"),
    "huge label": (_GOOD_TEXT, '{"text": "a", "label": ' + _DIGITS + "}", "4300 digits"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_jsonl_reader_names_file_and_line(tmp_path: Path, case: str) -> None:
    good, bad, fragment = CASES[case]
    path = tmp_path / "a.jsonl"
    path.write_text(good + bad + "\n", encoding="utf-8")
    read = read_jsonl_tagged if "tokens" in good else read_jsonl_texts
    with pytest.raises(InputFormatError) as info:
        list(read(path))
    assert str(info.value).startswith(f"{path}:2: bad JSON: ")
    assert fragment in info.value.message


@pytest.mark.parametrize("case", sorted(CASES))
def test_corpus_stats_one_line_even_on_the_first_record(tmp_path: Path, case: str) -> None:
    # stats peeks at the first record to tell tagged from text files: that peek must not crash.
    _, bad, fragment = CASES[case]
    path = tmp_path / "a.jsonl"
    path.write_text(bad + "\n", encoding="utf-8")
    result = runner.invoke(app, ["corpus", "stats", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith(f"error: {path}:1: bad JSON")
        and fragment in lines[0]
    )


@pytest.mark.parametrize("column", [0, 6])  # ID, HEAD
def test_conllu_huge_number_names_file_and_line(tmp_path: Path, column: int) -> None:
    fields = ["1", "Jo", "jo", "PROPN", "NNP", "_", "0", "root", "0:root", "_"]
    fields[column] = _DIGITS
    path = tmp_path / "a.conllu"
    path.write_text("\t".join(fields) + "\n\n", encoding="utf-8")
    with pytest.raises(InputFormatError) as info:
        list(read_conllu(path))
    assert str(info.value).startswith(f"{path}:1: a number of more than 4300 digits")
