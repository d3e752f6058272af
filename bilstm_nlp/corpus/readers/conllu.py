"""CoNLL-U files (Universal Dependencies): UPOS or XPOS tags of the syntactic words.

A reader of the first stage. The `conllu` package parses the sentences; this module feeds it the
file line by line through a tracker that checks each word line (10 tab-separated, non-empty columns)
and remembers line numbers, so any error, ours or the package's, names the file and the line.
Taggers tag syntactic words: multiword-token ranges (`3-4`) and empty nodes (`8.1`) are skipped, as
the CoNLL 2018 evaluation script skips them.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import conllu
from conllu.exceptions import ParseException

from ...errors import InputFormatError
from . import Sentence
from ._lines import excerpt, read_lines

TAG_FIELDS = ("upos", "xpos")
_COLUMNS = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
# What the conllu package raises on malformed input besides its own ParseException.
_PARSER_ERRORS = (ParseException, ValueError, IndexError, KeyError)


class _TrackedLines:
    """The file's lines, as the text stream `conllu.parse_incr` reads, with their line numbers.

    Each finished sentence block (its non-blank lines with their numbers) is queued in `blocks`;
    the reader takes one block off the queue per sentence the parser yields, so they match.
    """

    def __init__(self, path: str | Path):
        self.path = path
        self.blocks: deque[list[tuple[int, str]]] = deque()

    def read(self, size: int = -1) -> str:
        # parse_incr only checks that this attribute exists; it iterates over lines.
        raise NotImplementedError("read line by line")

    def __iter__(self) -> Iterator[str]:
        block: list[tuple[int, str]] = []
        for number, line in read_lines(self.path):
            if not line.strip():  # the conllu package's own sentence-break rule
                if block:
                    self.blocks.append(block)
                    block = []
                yield "\n"
                continue
            if not _is_comment(line):
                _check_word_line(line, self.path, number)
            block.append((number, line))
            yield line + "\n"
        if block:
            self.blocks.append(block)


def _is_comment(line: str) -> bool:
    # The conllu package's rule: a line is a comment when it starts with "#" once stripped.
    return line.strip().startswith("#")


def _check_word_line(line: str, path: str | Path, number: int) -> None:
    fields = line.split("\t")
    if len(fields) != len(_COLUMNS):
        raise InputFormatError(
            f"expected {len(_COLUMNS)} tab-separated columns, got {len(fields)}: {excerpt(line)}",
            path,
            number,
        )
    for name, field in zip(_COLUMNS, fields, strict=True):
        if not field:
            raise InputFormatError(f"column {name} is empty: {excerpt(line)}", path, number)
    if "  " in line:
        # The conllu package also splits columns at two spaces; such a line would shift columns.
        raise InputFormatError(
            f"two spaces in a row inside a column: {excerpt(line)}", path, number
        )


def read_conllu(path: str | Path, tag_field: str = "upos") -> Iterator[Sentence]:
    """Sentences of a CoNLL-U file, tagged with UPOS or XPOS.

    Tokens are the syntactic words (integer IDs, which must run 1, 2, 3...); multiword-token range
    lines and empty nodes are skipped. `doc_id` is the value of the last `# newdoc id = ...` comment
    (a bare `# newdoc` gives `"doc-N"`, N counting documents from 1), or None before any.

    Args:
        path: the file.
        tag_field: `"upos"` or `"xpos"`.
    Returns:
        An iterator of `Sentence`s; `line` is the sentence's first word line.
    Raises:
        ValueError: `tag_field` is neither `"upos"` nor `"xpos"`.
        InputFormatError: at the first bad line: not 10 tab-separated columns, an empty column, a
            value the conllu package rejects, word IDs out of order, a `_` tag in `tag_field`, a
            sentence with no words, bad UTF-8; or a missing or empty file.
    """
    if tag_field not in TAG_FIELDS:
        raise ValueError(f"tag_field must be one of {TAG_FIELDS}, got {tag_field!r}")
    return _read_conllu(path, tag_field)


def _read_conllu(path: str | Path, tag_field: str) -> Iterator[Sentence]:
    tracked = _TrackedLines(path)
    parsed = iter(conllu.parse_incr(tracked))  # type: ignore[arg-type]
    doc_id: str | None = None
    documents = sentences = 0
    while True:
        try:
            tokenlist = next(parsed)
        except StopIteration:
            break
        except _PARSER_ERRORS as error:
            raise _locate_parse_error(error, tracked.blocks[0], path) from None
        block = tracked.blocks.popleft()
        metadata = tokenlist.metadata
        if "newdoc id" in metadata:
            documents += 1
            doc_id = metadata["newdoc id"]
        elif "newdoc" in metadata:
            documents += 1
            doc_id = f"doc-{documents}"
        sentence = _words(tokenlist, block, tag_field, path)
        sentence.doc_id = doc_id
        sentences += 1
        yield sentence
    if sentences == 0:
        raise InputFormatError("empty file: no sentences", path)


def _words(
    tokenlist: conllu.TokenList, block: list[tuple[int, str]], tag_field: str, path: str | Path
) -> Sentence:
    # The parser keeps one token per non-comment line, in order.
    word_lines = [(number, line) for number, line in block if not _is_comment(line)]
    if not word_lines:
        raise InputFormatError("comment lines with no word lines after them", path, block[0][0])
    tokens: list[str] = []
    tags: list[str] = []
    for token, (number, line) in zip(tokenlist, word_lines, strict=True):
        token_id = token["id"]
        if not isinstance(token_id, int):
            continue  # a multiword range (3, "-", 4) or an empty node (8, ".", 1)
        if token_id != len(tokens) + 1:
            raise InputFormatError(
                f"expected word ID {len(tokens) + 1}, got {token_id}: {excerpt(line)}", path, number
            )
        tag = token[tag_field]
        if tag is None or tag == "_":
            raise InputFormatError(
                f"{tag_field.upper()} is '_' (no tag) for word {token['form']!r}", path, number
            )
        tokens.append(token["form"])
        tags.append(tag)
    if not tokens:
        raise InputFormatError("sentence has no syntactic words", path, word_lines[0][0])
    return Sentence(tokens, tags, None, _first_word_line(tokenlist, word_lines))


def _first_word_line(tokenlist: conllu.TokenList, word_lines: list[tuple[int, str]]) -> int:
    for token, (number, _) in zip(tokenlist, word_lines, strict=True):
        if isinstance(token["id"], int):
            return number
    return word_lines[0][0]


def _locate_parse_error(
    error: Exception, block: list[tuple[int, str]], path: str | Path
) -> InputFormatError:
    # The parser says what is wrong but not where: parse the block's lines one by one to find it.
    for number, line in block:
        if _is_comment(line):
            continue
        try:
            conllu.parse(line + "\n")
        except _PARSER_ERRORS as line_error:
            what = str(line_error)
            if "integer string conversion" in what:  # Python's cap on int() of long digit runs
                what = f"a number of more than {sys.get_int_max_str_digits()} digits"
            return InputFormatError(f"{what}: {excerpt(line)}", path, number)
    return InputFormatError(f"CoNLL-U sentence does not parse: {error}", path, block[0][0])
