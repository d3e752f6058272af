"""CoNLL output: `token<TAB>tag` lines, a blank line after each sentence, a `-DOCSTART- id` line
(and a blank line) opening each document.

The project's own CoNLL reader (`readers/conll.py`) reads these files (it skips `-DOCSTART-` lines),
so tagged output can be corrected by hand and trained on. An empty document is its `-DOCSTART-`
line alone. Tokens never hold whitespace (the tokenizer splits there). Taggers only: a classifier's
output has no token column to fill (use JSONL).
"""

from __future__ import annotations

import logging
from typing import Any, BinaryIO

from ...corpus.readers.conll import DOCSTART

logger = logging.getLogger(__name__)

# A token line of the token `-DOCSTART-` (every token line follows a line break).
_DOCSTART_TOKEN_LINE = f"\n{DOCSTART}\t".encode()


class ConllWriter:
    """Token and tag columns; appendable, so runs resume document by document.

    A text can hold the token `-DOCSTART-`, which CoNLL readers take for a document's first line:
    it is written as any token, and counted; `end` warns of it, since reading the file back
    loses those tokens (JSONL keeps them)."""

    name = "conll"
    extension = ".conll"
    atomic = False

    def __init__(self) -> None:
        self.docstart_tokens = 0

    def encode(self, record: dict[str, Any]) -> bytes:
        if "label" in record:
            raise ValueError("CoNLL output holds token tags; a classifier's record has none")
        doc_id = " ".join(str(record["id"]).split())
        lines = [f"{DOCSTART} {doc_id}".rstrip(), ""]
        tokens = record["tokens"]
        for start, end in record["sentences"]:
            lines.extend(f"{t['text']}\t{t['tag']}" for t in tokens[start:end])
            lines.append("")
        return ("\n".join(lines) + "\n").encode("utf-8")

    def stream(self, out: BinaryIO) -> ConllStream:
        """A writer for one long document, given piece by piece."""
        return ConllStream(self, out)

    def begin(self, out: BinaryIO) -> None:
        pass

    def add(self, out: BinaryIO, encoded: bytes) -> None:
        self.docstart_tokens += encoded.count(_DOCSTART_TOKEN_LINE)
        out.write(encoded)

    def end(self, out: BinaryIO) -> None:
        if self.docstart_tokens:
            logger.warning(
                "%d tokens %r written as CoNLL lines: a CoNLL reader takes each for the start of "
                "a document and loses it; -f jsonl keeps them",
                self.docstart_tokens,
                DOCSTART,
            )
            self.docstart_tokens = 0


class ConllStream:
    """One document written from the records of its pieces: each piece's sentences, under the
    document's one `-DOCSTART-` line; the bytes `encode` gives for the whole document."""

    def __init__(self, writer: ConllWriter, out: BinaryIO) -> None:
        self.writer = writer
        self.out = out
        self.started = False

    def add(self, record: dict[str, Any], start: int, token_start: int) -> None:
        encoded = self.writer.encode(record)
        if self.started:
            header = f"{DOCSTART} {' '.join(str(record['id']).split())}".rstrip() + "\n\n"
            encoded = encoded[len(header.encode("utf-8")) :]
        self.started = True
        self.writer.add(self.out, encoded)

    def close(self) -> None:
        pass
