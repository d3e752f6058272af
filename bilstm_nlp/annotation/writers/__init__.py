"""Writers: annotation records → bytes of an output format (JSONL, CoNLL, DocBin, HTML, text).

The last stage of the flow. A record is the JSON-able dict `annotate.Annotation.to_record` makes
(id, text, tokens with character offsets, tags, spans, k-best paths, or a label with every label's
probability, scores rounded to 4 decimals); writers know records only, never models. Each writer
turns one record into bytes with `encode` (annotate runs this in its worker processes), and puts
encoded records in a file with `begin` / `add` / `end`. Streaming writers (`atomic = False`) only
append, so a killed run can be resumed record by record; atomic writers (DocBin, HTML) need the
whole file and are written to a temporary file that replaces the output at the end. The streaming
writers also write one long document from the records of its pieces (`stream(out)`, then `add`
per piece and `close`), in bytes equal to the whole record's, so a document of any length needs
memory for one piece only.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Protocol

from ...errors import ConfigError
from .conll import ConllWriter
from .docbin import DocBinWriter
from .html import HtmlWriter
from .jsonl import JsonlWriter


class Writer(Protocol):
    """What `annotate` needs of an output format.

    Attributes:
        name: the `--format` name.
        extension: the suffix of output files (`.jsonl`).
        atomic: True when a file can only be written whole (it cannot be appended to).
    """

    name: str
    extension: str
    atomic: bool

    def encode(self, record: dict[str, Any]) -> bytes:
        """One record as bytes (self-contained: no state is kept between calls)."""
        ...

    def begin(self, out: BinaryIO) -> None:
        """Start a new output file (a header, a fresh collection)."""
        ...

    def add(self, out: BinaryIO, encoded: bytes) -> None:
        """Add one encoded record."""
        ...

    def end(self, out: BinaryIO) -> None:
        """Finish the output file (a footer, the collected documents)."""
        ...


class TextWriter:
    """Inline text for people, one line per document: `[EU ORG 0.99] rejects [German MISC 0.97]
    call .` for entities and chunks, `EU/PROPN rejects/VERB` for POS, `positive 0.97<TAB>text` for
    a classifier. Line breaks inside a document become spaces; scores have 2 decimals."""

    name = "text"
    extension = ".txt"
    atomic = False

    def encode(self, record: dict[str, Any]) -> bytes:
        return (_one_line(inline_text(record)) + "\n").encode("utf-8")

    def begin(self, out: BinaryIO) -> None:
        pass

    def add(self, out: BinaryIO, encoded: bytes) -> None:
        out.write(encoded)

    def end(self, out: BinaryIO) -> None:
        pass

    def stream(self, out: BinaryIO) -> TextStream:
        """A writer for one long document, given piece by piece."""
        return TextStream(self, out)


class TextStream:
    """One document's line written from its pieces' records (pieces end at whitespace, which the
    line shows as it is, so the bytes are `encode`'s for the whole document)."""

    def __init__(self, writer: TextWriter, out: BinaryIO) -> None:
        self.writer = writer
        self.out = out
        self.written = False

    def add(self, record: dict[str, Any], start: int, token_start: int) -> None:
        line = self.writer.encode(record)[:-1]  # without its line end
        if line and self.written and "spans" not in record:
            self.out.write(b" ")  # `token/TAG` pairs are joined by a space, across pieces too
        self.out.write(line)
        self.written = self.written or bool(line)

    def close(self) -> None:
        self.out.write(b"\n")


def inline_text(record: dict[str, Any]) -> str:
    """A record as readable text (see `TextWriter`)."""
    text = record["text"]
    if "label" in record:
        if record["label"] is None:
            return ""
        return f"{record['label']} {record['probs'][record['label']]:.2f}\t{text}"
    if "spans" not in record:
        return " ".join(f"{t['text']}/{t['tag']}" for t in record["tokens"])
    pieces = []
    position = 0
    for span in record["spans"]:
        pieces.append(text[position : span["start"]])
        pieces.append(f"[{span['text']} {span['label']} {span['score']:.2f}]")
        position = span["end"]
    pieces.append(text[position:])
    return "".join(pieces)


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


WRITERS: dict[str, type] = {
    "jsonl": JsonlWriter,
    "conll": ConllWriter,
    "docbin": DocBinWriter,
    "html": HtmlWriter,
    "text": TextWriter,
}


def make_writer(fmt: str, task: str | None = None) -> Writer:
    """The writer for a `--format` name; `task` is the model's (`meta.task`), which decides where
    a DocBin puts spans (chunks in a span group, entities in `doc.ents`).

    Raises:
        ConfigError: an unknown format.
    """
    if fmt not in WRITERS:
        raise ConfigError(f"unknown output format {fmt!r}; choose from {', '.join(WRITERS)}")
    return DocBinWriter(task) if fmt == "docbin" else WRITERS[fmt]()


__all__ = [
    "WRITERS",
    "ConllWriter",
    "DocBinWriter",
    "HtmlWriter",
    "JsonlWriter",
    "TextWriter",
    "Writer",
    "inline_text",
    "make_writer",
]
