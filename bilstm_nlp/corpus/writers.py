"""Corpus writers: tagged sentences and labelled texts → CoNLL, CoNLL-U, JSONL and spaCy DocBin
files that the readers read back. The inverse of `readers/`, used by `convert`.

Each writer writes its whole file atomically (`_atomic.atomic_output`) and returns how many
records it wrote. What each keeps:

- CoNLL: a `-DOCSTART-` line opens each document (the source's own line when it was kept, else
  `-DOCSTART- <doc id>`), a blank line ends each sentence. Lines kept from a CoNLL source
  (`Sentence.source_lines`) are written as they were, only the word and label columns replaced,
  so every other column and separator survives; other sentences get `word label` lines.
- CoNLL-U: one word line per token, the tag in the UPOS or XPOS column, `# newdoc id` and
  `# sent_id` comments. It holds POS tags, not entity tags.
- JSONL: `{"tokens", "tags", ("doc_id")}` per sentence; `{"text", "label", ("id")}` per text.
- DocBin: one `Doc` per document (consecutive sentences of one `doc_id`; a sentence without one
  is its own document), tokens joined by single spaces, sentence starts set; entities as
  `doc.ents`, plain tags as `token.tag_` (and `token.pos_` for a Universal POS tag); texts with
  `doc.cats` (1.0 for the label, 0.0 for every other label of the file). `doc.user_data["id"]`
  is the document id; `doc.user_data["bilstm_nlp"]` keeps the scheme, the source lines and the
  `-DOCSTART-` line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..text.schemes import is_entity_tagset, tags_to_spans
from ._atomic import atomic_output
from .readers import Sentence, TextExample
from .readers.conll import DOCSTART
from .readers.docbin import ID_KEY, USER_DATA_KEY

_FIELD = re.compile(r"[^ \t]+")


def write_conll(
    sentences: Iterable[Sentence], path: str | Path, label_column: int | None = None
) -> int:
    """Write sentences as CoNLL columns.

    Args:
        sentences: the sentences; `tags` None writes the word column only.
        path: the output file.
        label_column: the column of the labels in kept source lines (default the last).
    Returns:
        The number of sentences written.
    Raises:
        OutputError: the file cannot be written.
    """
    count = 0
    current: object = object()
    with atomic_output(path) as out:
        for sentence in sentences:
            if sentence.docstart is not None:
                out.write(sentence.docstart + "\n\n")
            elif sentence.doc_id is not None and sentence.doc_id != current:
                out.write(f"{DOCSTART} {'_'.join(sentence.doc_id.split())}".rstrip() + "\n\n")
            current = sentence.doc_id
            lines = sentence.source_lines
            if lines is None or len(lines) != len(sentence.tokens):
                lines = [None] * len(sentence.tokens)  # type: ignore[list-item]
            for index, (token, line) in enumerate(zip(sentence.tokens, lines, strict=True)):
                tag = sentence.tags[index] if sentence.tags is not None else None
                out.write(_conll_line(token, tag, line, label_column) + "\n")
            out.write("\n")
            count += 1
    return count


def _conll_line(token: str, tag: str | None, line: str | None, label_column: int | None) -> str:
    if line is not None:
        fields = list(_FIELD.finditer(line))
        label = len(fields) - 1 if label_column is None else label_column % max(len(fields), 1)
        if fields and (tag is None or 0 < label < len(fields)):
            pieces = []
            position = 0
            for index, field in enumerate(fields):
                value = field.group()
                if index == 0:
                    value = token
                elif index == label and tag is not None:
                    value = tag
                pieces.append(line[position : field.start()] + value)
                position = field.end()
            return "".join(pieces) + line[position:]
    return token if tag is None else f"{token} {tag}"


def write_conllu(sentences: Iterable[Sentence], path: str | Path, tag_field: str = "upos") -> int:
    """Write sentences as CoNLL-U word lines, each tag in the `tag_field` column.

    Returns:
        The number of sentences written.
    Raises:
        OutputError: the file cannot be written.
    """
    column = 3 if tag_field == "upos" else 4
    count = 0
    current: object = object()
    with atomic_output(path) as out:
        for sentence in sentences:
            if sentence.doc_id is not None and sentence.doc_id != current:
                out.write(f"# newdoc id = {sentence.doc_id}\n")
            current = sentence.doc_id
            count += 1
            out.write(f"# sent_id = {count}\n# text = {' '.join(sentence.tokens)}\n")
            for index, token in enumerate(sentence.tokens):
                fields = [str(index + 1), token] + ["_"] * 8
                if sentence.tags is not None:
                    fields[column] = sentence.tags[index]
                out.write("\t".join(fields) + "\n")
            out.write("\n")
    return count


def write_jsonl_sentences(sentences: Iterable[Sentence], path: str | Path) -> int:
    """Write `{"tokens", "tags", ("doc_id")}` records, one per sentence.

    Returns:
        The number of records written.
    """
    count = 0
    with atomic_output(path) as out:
        for sentence in sentences:
            record: dict[str, Any] = {"tokens": sentence.tokens}
            if sentence.tags is not None:
                record["tags"] = sentence.tags
            if sentence.doc_id is not None:
                record["doc_id"] = sentence.doc_id
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_jsonl_texts(examples: Iterable[TextExample], path: str | Path) -> int:
    """Write `{"text", "label", ("id")}` records, one per text.

    Returns:
        The number of records written.
    """
    count = 0
    with atomic_output(path) as out:
        for example in examples:
            record: dict[str, Any] = {"text": example.text}
            if example.label is not None:
                record["label"] = example.label
            if example.example_id is not None:
                record["id"] = example.example_id
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_docbin(docs: Iterable[Any], path: str | Path) -> int:
    """Write spaCy `Doc`s as one DocBin (user data kept).

    Returns:
        The number of documents written.
    """
    from spacy.tokens import DocBin

    docbin = DocBin(store_user_data=True)
    for doc in docs:
        docbin.add(doc)
    with atomic_output(path, binary=True) as out:
        out.write(docbin.to_bytes())
    return len(docbin)


def sentence_documents(sentences: Iterable[Sentence]) -> Iterator[list[Sentence]]:
    """Consecutive sentences grouped into documents: a `-DOCSTART-` line or a new `doc_id`
    opens one; a sentence without a `doc_id` is a document of its own."""
    group: list[Sentence] = []
    for sentence in sentences:
        new = (
            not group
            or sentence.docstart is not None
            or sentence.doc_id is None
            or sentence.doc_id != group[-1].doc_id
        )
        if new and group:
            yield group
            group = []
        group.append(sentence)
    if group:
        yield group


def sentences_to_doc(
    vocab: Any, sentences: Sequence[Sentence], scheme: str | None, label_column: int | None
) -> Any:
    """One spaCy `Doc` for a document's sentences (see the module docstring)."""
    from spacy.parts_of_speech import IDS as UNIVERSAL_POS
    from spacy.tokens import Doc, Span

    words = [token for sentence in sentences for token in sentence.tokens]
    doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False] if words else [])
    offset = 0
    entities = []
    for sentence in sentences:
        for index in range(len(sentence.tokens)):
            doc[offset + index].is_sent_start = index == 0
        tags = sentence.tags
        if tags is not None and is_entity_tagset(tags):
            entities.extend(
                Span(doc, offset + s.start, offset + s.end, label=s.label)
                for s in tags_to_spans(tags)
            )
        elif tags is not None:
            for index, tag in enumerate(tags):
                doc[offset + index].tag_ = tag
                if tag in UNIVERSAL_POS:
                    doc[offset + index].pos_ = tag
        offset += len(sentence.tokens)
    if any(s.tags is not None and is_entity_tagset(s.tags) for s in sentences):
        doc.ents = entities
    first = sentences[0]
    if first.doc_id is not None:
        doc.user_data[ID_KEY] = first.doc_id
    settings: dict[str, Any] = {}
    if scheme is not None:
        settings["scheme"] = scheme
    if all(s.source_lines is not None for s in sentences):
        settings["lines"] = [line for s in sentences for line in s.source_lines or []]
        if label_column is not None:
            settings["label_column"] = label_column
    if first.docstart is not None:
        settings["docstart"] = first.docstart
    if settings:
        doc.user_data[USER_DATA_KEY] = settings
    return doc
