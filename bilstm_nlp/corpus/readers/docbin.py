"""spaCy `DocBin` files (`.spacy`, spaCy v3's training data): tagged sentences or labelled texts.

A reader of the first stage. Each `Doc` gives its tokens (white-space tokens dropped, as the
tokenizer of `annotate` drops them) and, decided once per file from its first document:
entities (`doc.ents`, when the document has entity annotation), else `token.pos_` or
`token.tag_` (`tag_field` `upos` prefers `pos_`, `xpos` takes `tag_`); for a classifier, the
category of `doc.cats` with the highest score. A document is split into sentences where it has
sentence starts, else by the sentencizer `annotate` uses; an entity across a sentence break joins
the sentences it touches. Entities become tags in the scheme `convert` recorded in
`doc.user_data["bilstm_nlp"]["scheme"]`, else IOB2. Errors name the file and the document's
number (1-based), in the place of a line.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InputFormatError
from ...text.schemes import SCHEMES, Span, written_tags
from . import Sentence, TextExample
from .spans import SPAN_SCHEME, sequence_bounds

# `doc.user_data` key of what `convert` keeps: the scheme of the source file, the source's token
# lines (every column) and its `-DOCSTART-` line, so a CoNLL file comes back byte for byte.
USER_DATA_KEY = "bilstm_nlp"
ID_KEY = "id"  # the document id, as `annotate -f docbin` writes it
# What a corrupt or foreign file makes spaCy, msgpack, zlib or numpy raise while reading (a
# mangled span-group table decodes to an integer where spaCy expects a dict: AttributeError).
_CORRUPT = (
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    AssertionError,
    AttributeError,
    zlib.error,
    OverflowError,
)


def read_docbin_docs(path: str | Path) -> Iterator[tuple[int, Any]]:
    """`(number, Doc)` for each document of a DocBin, numbered from 1.

    Raises:
        InputFormatError: a missing file, one that is no DocBin or is corrupt (naming the
            document where reading failed), or one with no documents.
    """
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFormatError("no such file", path) from None
    except IsADirectoryError:
        raise InputFormatError("is a directory, expected a file", path) from None
    except OSError as error:
        raise InputFormatError(f"cannot read: {error.strerror}", path) from None
    try:
        docbin = DocBin(store_user_data=True).from_bytes(data)
    except _CORRUPT as error:
        raise InputFormatError(
            f"not a spaCy DocBin (.spacy) file, or a corrupt one: {_reason(error)}", path
        ) from None
    if len(docbin) == 0:
        raise InputFormatError("empty file: no documents", path)
    docs = docbin.get_docs(Vocab())
    number = 0
    while True:
        try:
            doc = next(docs)
        except StopIteration:
            return
        except _CORRUPT as error:
            raise _corrupt_document(error, path, number + 1) from None
        number += 1
        yield number, doc


def _corrupt_document(error: Exception, path: str | Path, number: int) -> InputFormatError:
    return InputFormatError(
        f"corrupt DocBin: document {number} cannot be read: {_reason(error)}", path, number
    )


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0][:200] if text else type(error).__name__) or type(error).__name__


def doc_settings(doc: Any) -> dict[str, Any]:
    """What `convert` recorded in the Doc (`USER_DATA_KEY`), or `{}`."""
    value = doc.user_data.get(USER_DATA_KEY)
    return dict(value) if isinstance(value, dict) else {}


def doc_id(doc: Any) -> str | None:
    """The document id in `doc.user_data["id"]`, as a string, or None."""
    value = doc.user_data.get(ID_KEY)
    return None if value is None else str(value)


@dataclass(frozen=True)
class DocSequence:
    """One sequence (sentence) of a DocBin document.

    Attributes:
        number: the document's number in the file (1-based).
        doc: the spaCy `Doc`.
        positions: Doc indices of the sequence's tokens (white-space tokens left out).
        tags: the tags: from the entities in the file's scheme, or `pos_`/`tag_`; None when the
            file holds no token annotation.
        spans: the entities as token spans over the sequence; empty without entities.
        scheme: the scheme of entity tags; None for plain tags.
        first: True for the document's first sequence.
    """

    number: int
    doc: Any
    positions: list[int]
    tags: list[str] | None
    spans: list[Span]
    scheme: str | None
    first: bool


def docbin_sequences(path: str | Path, tag_field: str = "upos") -> Iterator[DocSequence]:
    """The sequences of a DocBin's documents, with their tags (see the module docstring).

    Raises:
        InputFormatError: as `read_docbin_sentences`.
    """
    kind: str | None = None
    decided_by: int | None = None  # the document whose annotation the file's reading follows
    sentencizer = None
    for number, doc in read_docbin_docs(path):
        # A corrupt file may read without complaint and fail only when an attribute is looked
        # at (an entity label missing from the strings): that is the file's fault, not ours.
        try:
            positions = [token.i for token in doc if not token.text.isspace()]
            if not positions:
                continue
            if decided_by is None:
                kind, decided_by = _label_kind(doc, tag_field), number
            elif kind is None and (later := _label_kind(doc, tag_field)) is not None:
                raise InputFormatError(
                    f"document {number} has {_KIND_NAMES[later]}, while the file's first "
                    f"document ({decided_by}) has no annotation: a file is read as the first "
                    "document is annotated, and its words would train as untagged; annotate "
                    "every document, or leave the unannotated ones out",
                    path,
                    number,
                )
            if not doc.has_annotation("SENT_START"):
                if sentencizer is None:
                    from ...text.tokenize import Tokenizer

                    sentencizer = Tokenizer().sentencizer
                doc = sentencizer(doc)
            spans: list[Span] = []
            tags: list[str] | None = None
            scheme = None
            if kind == "ents":
                spans = _entity_spans(doc, positions, path, number)
                recorded = doc_settings(doc).get("scheme")
                scheme = recorded if recorded in (*SCHEMES, "BILOU") else SPAN_SCHEME
            elif kind is not None:
                tags = _token_tags(doc, positions, kind, path, number)
            breaks = _breaks(doc, positions)
        except _CORRUPT as error:
            raise _corrupt_document(error, path, number) from None
        bounds = sequence_bounds(len(positions), breaks, spans)
        for index, (start, end) in enumerate(bounds):
            inside = [
                Span(s.start - start, s.end - start, s.label)
                for s in spans
                if start <= s.start and s.end <= end
            ]
            row = written_tags(inside, end - start, scheme) if scheme else None
            if tags is not None:
                row = tags[start:end]
            yield DocSequence(number, doc, positions[start:end], row, inside, scheme, index == 0)


def read_docbin_sentences(
    path: str | Path, tag_field: str = "upos", keep_lines: bool = False
) -> Iterator[Sentence]:
    """Tagged sentences of a DocBin (see the module docstring for what the tags are).

    Args:
        path: the file.
        tag_field: `"upos"` (prefer `token.pos_`) or `"xpos"` (`token.tag_`), for files without
            entities.
        keep_lines: fill `Sentence.source_lines`/`docstart` from what `convert` recorded.
    Returns:
        An iterator of `Sentence`s; `doc_id` from `doc.user_data["id"]`, `line` the document's
        number. A document without tokens gives no sentence (a file of only such documents is
        an error).
    Raises:
        InputFormatError: as `read_docbin_docs`; a document lacking the file's annotation (an
            entity file's document without entity annotation, a token with spaCy's missing
            entity or tag value); an entity of white space only.
    """
    lines: list[Any] | None = None
    offset = 0
    sequence = None
    for sequence in docbin_sequences(path, tag_field):
        doc = sequence.doc
        words = [doc[i].text for i in sequence.positions]
        sentence = Sentence(words, sequence.tags, doc_id(doc), sequence.number)
        if keep_lines:
            settings = doc_settings(doc)
            if sequence.first:
                lines, offset = settings.get("lines"), 0
                count = sum(1 for token in doc if not token.text.isspace())
                if not isinstance(lines, list | tuple) or len(lines) != count:
                    lines = None
                docstart = settings.get("docstart")
                sentence.docstart = None if docstart is None else str(docstart)
            if lines is not None:
                sentence.source_lines = [str(line) for line in lines[offset : offset + len(words)]]
            offset += len(words)
        yield sentence
    if sequence is None:
        raise InputFormatError("no sentence to read: every document is empty", path)


_KIND_NAMES = {"ents": "entities (doc.ents)", "pos": "token.pos_ tags", "tag": "token.tag_ tags"}


def _label_kind(doc: Any, tag_field: str) -> str | None:
    if doc.has_annotation("ENT_IOB"):
        return "ents"
    has_pos, has_tag = doc.has_annotation("POS"), doc.has_annotation("TAG")
    if has_pos and (tag_field == "upos" or not has_tag):
        return "pos"
    if has_tag:
        return "tag"
    return None


def _breaks(doc: Any, positions: list[int]) -> list[int]:
    """Indices (among the non-space tokens) where a new sentence starts."""
    breaks = []
    for sentence in list(doc.sents)[1:]:
        index = bisect_left(positions, sentence.start)
        if 0 < index < len(positions) and (not breaks or breaks[-1] != index):
            breaks.append(index)
    return breaks


def _entity_spans(doc: Any, positions: list[int], path: str | Path, number: int) -> list[Span]:
    for token in doc:
        if not token.text.isspace() and token.ent_iob == 0:
            raise InputFormatError(
                f"document {number}: token {token.i} {token.text!r} has no entity annotation "
                "(spaCy's missing value), while the file's first document has entities: a "
                "tagger needs every token's tag",
                path,
                number,
            )
    spans = []
    for entity in doc.ents:
        start = bisect_left(positions, entity.start)
        end = bisect_left(positions, entity.end)
        if start >= end:
            raise InputFormatError(
                f"document {number}: entity {entity.text!r} {entity.label_} holds only white space",
                path,
                number,
            )
        spans.append(Span(start, end, entity.label_))
    return spans


def _token_tags(
    doc: Any, positions: list[int], kind: str, path: str | Path, number: int
) -> list[str]:
    tags = []
    for i in positions:
        tag = doc[i].pos_ if kind == "pos" else doc[i].tag_
        if not tag:
            field = "token.pos_" if kind == "pos" else "token.tag_"
            raise InputFormatError(
                f"document {number}: token {i} {doc[i].text!r} has no {field}, while the file's "
                "first document has them: a tagger needs every token's tag",
                path,
                number,
            )
        tags.append(tag)
    return tags


def read_docbin_texts(path: str | Path) -> Iterator[TextExample]:
    """Labelled texts of a DocBin: `doc.text`, its tokens, and the category of `doc.cats` with
    the highest score (None when the document has no categories).

    Raises:
        InputFormatError: as `read_docbin_docs`; categories whose highest score is shared
            (multi-label annotation: a classifier takes one label).
    """
    for number, doc in read_docbin_docs(path):
        try:
            text, tokens, cats = doc.text, [t.text for t in doc if not t.text.isspace()], doc.cats
        except _CORRUPT as error:
            raise _corrupt_document(error, path, number) from None
        label = None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in cats.values()):
            raise InputFormatError(
                f"document {number}: doc.cats must map categories to numbers", path, number
            )
        if cats:
            best = max(cats.values())
            top = sorted(name for name, score in cats.items() if score == best)
            if len(top) > 1:
                raise InputFormatError(
                    f"document {number}: categories {', '.join(top)} share the highest score "
                    f"{best:g}: a classifier takes one label per text",
                    path,
                    number,
                )
            label = top[0]
        yield TextExample(text, tokens, label, doc_id(doc), number)
