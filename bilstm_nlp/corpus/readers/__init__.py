"""Readers: one module per input format, each turning a file into checked examples.

The first stage of the flow. Readers parse and validate every line themselves and stop at the first
bad one with an `InputFormatError` naming file and line; `loading.py` hands their output to
datasets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sentence:
    """One tagged (or untagged) sentence.

    Attributes:
        tokens: the words, as the file writes them.
        tags: one string label per token, as the file writes them; None when unlabelled.
        doc_id: the document the sentence belongs to, if the format says.
        line: 1-based line of the file where the sentence starts (for error messages).
        source_lines: the token lines as the file writes them (every column, its separators),
            when a reader is asked to keep them (`read_conll(keep_lines=True)`), so `convert`
            writes back the columns it does not read.
        docstart: the `-DOCSTART-` line that opens this sentence's document, on the document's
            first sentence, when lines are kept.
    """

    tokens: list[str]
    tags: list[str] | None = None
    doc_id: str | None = None
    line: int | None = None
    source_lines: list[str] | None = None
    docstart: str | None = None


@dataclass
class TextExample:
    """One sentence-classification example.

    Attributes:
        text: the raw text (for SST, the leaves joined by spaces).
        tokens: the tokens when the format gives them (SST trees); None for raw-text formats.
        label: the string label; None when unlabelled.
        example_id: an id from the file (JSONL/CSV id column) or None.
        line: 1-based line of the file where the example is.
    """

    text: str
    tokens: list[str] | None = None
    label: str | None = None
    example_id: str | None = None
    line: int | None = None
