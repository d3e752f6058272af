"""The engine tests' input and comparisons: 2,000 CoNLL-2003 dev sentences as lines, plus an empty
line and one with bad UTF-8; records compared with tags and spans identical, floats within 1e-6."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

DOCUMENTS = 2000
BAD_LINE = b"Bad bytes \xff\xfe in Germany ."


def conll_lines(corpora: Path, count: int = DOCUMENTS) -> list[str]:
    """The first `count` sentences of CoNLL-2003 dev, tokens joined with spaces."""
    lines: list[str] = []
    sentence: list[str] = []
    with open(corpora / "conll2003" / "dev.txt", encoding="utf-8") as handle:
        for raw in handle:
            fields = raw.split()
            if fields and fields[0] != "-DOCSTART-":
                sentence.append(fields[0])
            elif sentence:
                lines.append(" ".join(sentence))
                sentence = []
                if len(lines) == count:
                    break
    assert len(lines) == count
    return lines


def write_input(corpora: Path, path: Path) -> Path:
    """The test input: the sentences, an empty line, a line with bad UTF-8."""
    text = "\n".join(conll_lines(corpora)) + "\n\n"
    path.write_bytes(text.encode("utf-8") + BAD_LINE + b"\n")
    return path


def assert_records_equal(found: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Same records in the same order: everything identical but floats, within 1e-6."""
    assert len(found) == len(expected)
    for index, (a, b) in enumerate(zip(found, expected, strict=True)):
        _assert_close(a, b, f"record {index}")


def _assert_close(a: Any, b: Any, where: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-6), f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys differ"
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for position, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{where}[{position}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def read_records(lines: list[bytes] | list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]
