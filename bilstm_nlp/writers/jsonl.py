"""JSONL output: one annotation record per line, UTF-8, keys in a fixed order.

The record schema is `annotate.Annotation.to_record`'s. Lines end with `\\n` and are split at
`\\n` only when read back (U+2028 may sit inside a JSON string written with `ensure_ascii=False`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InputFormatError


class JsonlWriter:
    """One compact JSON object per line; appendable, so runs resume record by record."""

    name = "jsonl"
    extension = ".jsonl"
    atomic = False

    def encode(self, record: dict[str, Any]) -> bytes:
        # NaN and Infinity are not JSON: writing one is a bug (a ValueError), never a record.
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return (line + "\n").encode()

    def begin(self, out: BinaryIO) -> None:
        pass

    def add(self, out: BinaryIO, encoded: bytes) -> None:
        out.write(encoded)

    def end(self, out: BinaryIO) -> None:
        pass


def read_jsonl_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL annotation file, in order.

    Raises:
        InputFormatError: a line that is not a JSON object (with its line number).
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise InputFormatError(f"not a JSON record: {error}", path, number) from None
            if not isinstance(record, dict):
                raise InputFormatError("expected a JSON object", path, number)
            yield record
