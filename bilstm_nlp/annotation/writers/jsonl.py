"""JSONL output: one annotation record per line, UTF-8, keys in a fixed order.

The record schema is `annotate.Annotation.to_record`'s. Lines end with `\\n` and are split at
`\\n` only when read back (U+2028 may sit inside a JSON string written with `ensure_ascii=False`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from typing import Any, BinaryIO


class JsonlWriter:
    """One compact JSON object per line; appendable, so runs resume record by record."""

    name = "jsonl"
    extension = ".jsonl"
    atomic = False

    def encode(self, record: dict[str, Any]) -> bytes:
        return (_dumps(record) + "\n").encode()

    def stream(self, out: BinaryIO) -> JsonlStream:
        """A writer for one long document, given piece by piece (see `JsonlStream`)."""
        return JsonlStream(out)

    def begin(self, out: BinaryIO) -> None:
        pass

    def add(self, out: BinaryIO, encoded: bytes) -> None:
        out.write(encoded)

    def end(self, out: BinaryIO) -> None:
        pass


def _dumps(value: Any) -> str:
    # NaN and Infinity are not JSON: writing one is a bug (a ValueError), never a record.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# The list-valued keys that follow a tagger record's text, in `to_record`'s order.
_PIECE_KEYS = ("tokens", "sentences", "spans", "kbest")


class JsonlStream:
    """One document's record written from the records of its pieces, in order, with the bytes
    `encode` gives for the whole record. The text goes straight to `out`; tokens, sentences,
    spans and k-best paths wait in temporary files (not memory) until `close` appends them.

    Args:
        out: the output file.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.spools: dict[str, Any] = {}
        self.started = False

    def add(self, record: dict[str, Any], start: int, token_start: int) -> None:
        """Add a piece's record (offsets local to the piece), at character `start` and token
        `token_start` of the document."""
        if set(record) - {"id", "text", *_PIECE_KEYS}:
            raise ValueError("only a tagger's records can be written piece by piece")
        if not self.started:
            self.out.write(('{"id":' + _dumps(record["id"]) + ',"text":"').encode())
            self.started = True
        self.out.write(_dumps(record["text"])[1:-1].encode())
        for token in record["tokens"]:
            token["start"] += start
            token["end"] += start
        for sentence in record["sentences"]:
            sentence[0] += token_start
            sentence[1] += token_start
        for span in record.get("spans", []):
            span["start"] += start
            span["end"] += start
            span["token_start"] += token_start
            span["token_end"] += token_start
        for key in _PIECE_KEYS:
            if key not in record:
                continue
            spool = self.spools.get(key)
            if spool is None:
                spool = self.spools[key] = tempfile.TemporaryFile()
                separator = ""
            else:
                separator = "," if spool.tell() else ""
            items = ",".join(_dumps(item) for item in record[key])
            spool.write(((separator if items else "") + items).encode())

    def close(self) -> None:
        """Write the rest of the record."""
        self.out.write(b'"')
        for key in _PIECE_KEYS:
            spool = self.spools.pop(key, None)
            if spool is None:
                continue
            self.out.write(f',"{key}":['.encode())
            spool.seek(0)
            shutil.copyfileobj(spool, self.out)
            spool.close()
            self.out.write(b"]")
        self.out.write(b"}\n")
