"""`convert`: a corpus file in one format → another, through the readers and writers.

Token formats (CoNLL, CoNLL-U, JSONL), span formats (Prodigy/spaCy `spans`, `doccano`, Label
Studio) and spaCy DocBins convert into each other; labelled texts (JSONL, CSV/TSV, SST, DocBin
`cats`) into JSONL or DocBin. Lossless where both sides can hold the information:

- Span → span keeps each record as it is: text, spans, id, scores, tokens and other fields.
- Tokens → spans: one record per sentence, its text the tokens joined by single spaces, with the
  tokens themselves (Prodigy's `tokens`), so reading it back gives the same tokens and sentences;
  `doc_id` is the record id. Only entity tags become spans.
- Spans → tokens (and → DocBin): the span reader's tokenization, sentences and alignment, with
  its `misaligned` policy.
- CoNLL → DocBin → CoNLL gives the CoNLL file back byte for byte (every column, the `-DOCSTART-`
  lines), but that a file ends with one blank line.
- DocBin → spans: one record per sentence, its text cut from the `Doc`'s own text.

Tags keep the input's scheme unless `scheme` says otherwise. Every record read gets a record
written, or an error says why (records without gold annotation in a span file are counted and
logged: see `SpanReadStats.unannotated`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputFormatError, OutputError
from ..text import schemes
from .formats import INPUT_FORMATS, holds_texts, read_sentences, read_texts, resolve_format
from .readers import Sentence, TextExample
from .readers._lines import read_lines
from .readers.conll import DOCSTART
from .readers.docbin import (
    ID_KEY,
    USER_DATA_KEY,
    doc_id,
    doc_settings,
    docbin_sequences,
    read_docbin_docs,
)
from .readers.spans import (
    SPAN_FORMATS,
    SPAN_SCHEME,
    SpanReadStats,
    align_span_documents,
    check_misaligned_policy,
    log_span_stats,
    read_span_documents,
)
from .span_formats import RESERVED_KEYS, CharSpan, SpanDocument, write_span_documents
from .writers import (
    sentence_documents,
    sentences_to_doc,
    write_conll,
    write_conllu,
    write_docbin,
    write_jsonl_sentences,
    write_jsonl_texts,
)

logger = logging.getLogger(__name__)

TOKEN_FORMATS = ("conll", "conllu", "jsonl")
CONVERT_FORMATS = ("conll", "conllu", "jsonl", "spans", "docbin", "labelstudio", "doccano")


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion read and wrote.

    Attributes:
        input_format: the input's format.
        output_format: the format written.
        records: records written (sentences, documents, tasks or texts, by the format).
        scheme: the scheme of the tags written; None for plain tags, texts and span formats.
        span_stats: the span reader's counts (records, spans, misaligned, widened, dropped, left
            out), when the input is a span file.
    """

    input_format: str
    output_format: str
    records: int
    scheme: str | None = None
    span_stats: SpanReadStats | None = None


def convert_file(
    source: str | Path,
    target: str | Path,
    to: str,
    *,
    input_format: str | None = None,
    scheme: str | None = None,
    misaligned: str = "error",
    label_column: int | None = None,
    tag_field: str = "upos",
    model_version: str | None = None,
) -> ConvertResult:
    """Convert `source` into `target` in format `to` (see the module docstring).

    Args:
        source: the input file.
        target: the output file (replaced atomically; never the input).
        to: one of `CONVERT_FORMATS`.
        input_format: the input's format; default detected.
        scheme: write entity tags in this scheme (`IOB1`, `IOB2`, `BIOES`, `BILOU` or an
            alias); default the input's (IOB2 for span files and DocBins `convert` did not
            write).
        misaligned: span input: `error`, `expand` or `drop` for a span that cuts a token.
        label_column: CoNLL input: the label column (default the last).
        tag_field: `upos`/`xpos`: the CoNLL-U field read or written; for a DocBin without
            entities, `upos` prefers `token.pos_` and `xpos` takes `token.tag_`.
        model_version: Label Studio output: write the spans as predictions of this model.
    Returns:
        The `ConvertResult`.
    Raises:
        ConfigError: an unknown format or option; a conversion the formats cannot hold (plain
            tags into span formats, entity tags into CoNLL-U, texts into a token format).
        InputFormatError: the reader's errors; a token holding white space, for CoNLL.
        OutputError: the target is the source, or cannot be written.
    """
    if to not in CONVERT_FORMATS:
        raise ConfigError(f"--to {to!r}: expected one of {', '.join(CONVERT_FORMATS)}")
    check_misaligned_policy(misaligned)
    target_scheme = schemes.normalize_written_scheme(scheme) if scheme is not None else None
    if target_scheme is not None and to in SPAN_FORMATS:
        raise ConfigError(f"--scheme {scheme}: {to} holds character spans, not tags in a scheme")
    _check_target(Path(source), Path(target))
    fmt = resolve_format(source, input_format, [f for f in INPUT_FORMATS if f != "hub"], "a corpus")
    if holds_texts(source, fmt):
        return _convert_texts(source, target, fmt, to)
    stats = SpanReadStats() if fmt in SPAN_FORMATS else None
    read = _Reading(source, fmt, label_column, tag_field, misaligned, stats)
    result = _convert(read, Path(target), to, target_scheme, model_version)
    if stats is not None:
        log_span_stats(source, stats)
    if fmt == "conllu":
        _note_conllu_fields_left_out(source)
    return result


# CoNLL-U columns convert does not carry: LEMMA, FEATS, HEAD, DEPREL, DEPS, MISC (XPOS or UPOS,
# whichever --tag-field does not name, too, but a file without it is common).
_CONLLU_UNCARRIED = {2: "LEMMA", 5: "FEATS", 6: "HEAD", 7: "DEPREL", 8: "DEPS", 9: "MISC"}
_CONLLU_KEPT_COMMENTS = ("# newdoc", "# sent_id", "# text")


def _note_conllu_fields_left_out(source: str | Path) -> None:
    """Say what of a CoNLL-U file the conversion left behind: tokens, one tag field, sentences and
    documents are what `convert` carries; the rest of the columns, multiword-token lines and
    other comments are not (`# text` is rewritten from the tokens)."""
    columns: set[str] = set()
    multiword = comments = 0
    for _, line in read_lines(source):
        if line.startswith("#"):
            comments += not line.startswith(_CONLLU_KEPT_COMMENTS)
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            continue
        if "-" in fields[0] or "." in fields[0]:
            multiword += 1
            continue
        columns.update(name for i, name in _CONLLU_UNCARRIED.items() if fields[i] != "_")
    left = (
        [", ".join(sorted(columns, key=list(_CONLLU_UNCARRIED.values()).index))] if columns else []
    )
    if multiword:
        left.append(f"{multiword:,} multiword-token and empty-node lines")
    if comments:
        left.append(f"{comments:,} comment lines")
    if left:
        logger.warning(
            "%s: not carried over (convert keeps tokens, one tag field, sentences and documents): "
            "%s",
            source,
            "; ".join(left),
        )


def _convert(
    read: _Reading, target: Path, to: str, target_scheme: str | None, model_version: str | None
) -> ConvertResult:
    fmt, source, stats = read.fmt, read.source, read.stats
    if to in SPAN_FORMATS:
        documents = _without_meta_clash(_span_documents(read), read.source, to)
        count = write_span_documents(documents, target, to, model_version)
        return ConvertResult(fmt, to, count, None, stats)
    if to == "docbin":
        scheme_written, docs = _docs(read, target_scheme)
        return ConvertResult(fmt, to, write_docbin(docs, target), scheme_written, stats)
    sentences = list(read.sentences(keep_lines=to == "conll"))
    scheme_written = _scheme_of(sentences, target_scheme)
    sentences = _converted(sentences, target_scheme)
    if to == "conll":
        _check_no_white_space(sentences, source, "CoNLL columns")
        _check_no_docstart_token(sentences, source)
        column = read.label_column if fmt == "conll" else _docbin_label_column(source, fmt)
        count = write_conll(sentences, target, column)
    elif to == "conllu":
        if scheme_written is not None:
            raise ConfigError(
                f"{source} holds entity tags: CoNLL-U holds POS tags; convert entities to conll, "
                "jsonl, docbin or a span format"
            )
        _check_no_white_space(sentences, source, "CoNLL-U")
        count = write_conllu(sentences, target, read.tag_field)
    else:
        count = write_jsonl_sentences(sentences, target)
    return ConvertResult(fmt, to, count, scheme_written, stats)


@dataclass(frozen=True)
class _Reading:
    """The input of a conversion and the options it is read with."""

    source: str | Path
    fmt: str
    label_column: int | None
    tag_field: str
    misaligned: str
    stats: SpanReadStats | None

    def sentences(self, keep_lines: bool = False) -> Iterator[Sentence]:
        return read_sentences(
            self.source,
            self.fmt,
            self.label_column if self.fmt == "conll" else None,
            self.tag_field,
            misaligned=self.misaligned,
            span_stats=self.stats,
            keep_lines=keep_lines and self.fmt in ("conll", "docbin"),
            log=False,  # convert logs the counts once, at the end
        )


def _span_documents(read: _Reading) -> Iterator[SpanDocument]:
    if read.fmt in SPAN_FORMATS:  # span → span: every record as it is
        return read_span_documents(read.source, read.fmt, read.stats)
    if read.fmt == "docbin":
        return _docbin_span_documents(read.source, read.tag_field)
    return _sentence_span_documents(read.sentences(), read.source)


def _without_meta_clash(
    documents: Iterable[SpanDocument], source: str | Path, to: str
) -> Iterator[SpanDocument]:
    """The documents, refusing a record field the target shape writes itself (a Prodigy
    `label` into doccano, whose `label` holds the spans): it would be lost or misread."""
    for document in documents:
        clash = sorted(RESERVED_KEYS[to] & document.meta.keys())
        if clash:
            raise InputFormatError(
                f"the record's field(s) {', '.join(map(repr, clash))} would be overwritten: the "
                f"{to} format writes them itself; rename or remove them first",
                source,
                document.line,
            )
        yield document


def _docs(read: _Reading, target_scheme: str | None) -> tuple[str | None, Iterator[object]]:
    """The scheme written and the Docs of a conversion into a DocBin."""
    if read.fmt == "docbin":
        return target_scheme, _docbin_docs(read.source, target_scheme)
    if read.fmt in SPAN_FORMATS:
        scheme = target_scheme or SPAN_SCHEME
        return scheme, _span_docs(read, scheme)
    sentences = list(read.sentences(keep_lines=True))
    scheme = _scheme_of(sentences, target_scheme)
    return scheme, _sentence_docs(_converted(sentences, target_scheme), scheme, read.label_column)


def _check_target(source: Path, target: Path) -> None:
    if target.is_dir():
        raise OutputError("is a folder: the output needs a file name", target)
    if not target.parent.is_dir():
        raise OutputError(f"the folder {str(target.parent)!r} does not exist", target)
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise OutputError("is the input file itself: convert would overwrite it", target)


def _scheme_of(sentences: list[Sentence], target: str | None) -> str | None:
    """The scheme written: `target`, else the input's; None for plain tags."""
    tag_rows = [s.tags for s in sentences if s.tags is not None]
    if not tag_rows or not schemes.is_entity_tagset({t for row in tag_rows for t in row}):
        if target is not None:
            raise ConfigError(
                f"--scheme {target}: the input holds no entity tags (plain labels such as POS "
                "tags, or none), so there is nothing to write in a scheme"
            )
        return None
    if target is not None:
        return target
    detected = schemes.detect_scheme(tag_rows) or SPAN_SCHEME
    spelt_bilou = any(t[:2] in ("L-", "U-") for row in tag_rows for t in row)
    return "BILOU" if detected == "BIOES" and spelt_bilou else detected


def _converted(sentences: list[Sentence], target: str | None) -> list[Sentence]:
    if target is None:
        return sentences
    for sentence in sentences:
        if sentence.tags is not None and schemes.is_entity_tagset(sentence.tags):
            spans = schemes.tags_to_spans(sentence.tags)
            sentence.tags = schemes.written_tags(spans, len(sentence.tags), target)
    return sentences


def _check_no_white_space(sentences: Iterable[Sentence], source: str | Path, where: str) -> None:
    for sentence in sentences:
        for token in sentence.tokens:
            if any(c.isspace() for c in token):
                raise InputFormatError(
                    f"token {token!r} holds white space, which {where} cannot hold",
                    source,
                    sentence.line,
                )


def _check_no_docstart_token(sentences: Iterable[Sentence], source: str | Path) -> None:
    # A line starting with the token would be read back as a document's start, the token lost.
    for sentence in sentences:
        if DOCSTART in sentence.tokens:
            raise InputFormatError(
                f"a token {DOCSTART!r}: in CoNLL columns its line would be read back as the start "
                "of a document, and the token lost; convert to jsonl, conllu or docbin",
                source,
                sentence.line,
            )


def _docbin_label_column(source: str | Path, fmt: str) -> int | None:
    if fmt != "docbin":
        return None
    for _, doc in read_docbin_docs(source):
        column = doc_settings(doc).get("label_column")
        return column if isinstance(column, int) else None
    return None


# Into span formats


def _sentence_span_documents(
    sentences: Iterable[Sentence], source: str | Path
) -> Iterator[SpanDocument]:
    """One record per sentence: tokens joined by single spaces, the tokens kept."""
    for sentence in sentences:
        tags = sentence.tags or []
        if sentence.tags is not None and not schemes.is_entity_tagset(tags):
            raise ConfigError(
                f"{source} holds plain labels ({', '.join(sorted(set(tags))[:3])}...): span "
                "formats hold entity spans; convert it to conll, conllu, jsonl or docbin"
            )
        offsets, position = [], 0
        for token in sentence.tokens:
            offsets.append((position, position + len(token)))
            position += len(token) + 1
        spans = [
            CharSpan(offsets[s.start][0], offsets[s.end - 1][1], s.label)
            for s in schemes.tags_to_spans(tags)
        ]
        yield SpanDocument(
            text=" ".join(sentence.tokens),
            spans=spans,
            doc_id=sentence.doc_id,
            line=sentence.line,
            tokens=offsets,
        )


def _docbin_span_documents(source: str | Path, tag_field: str) -> Iterator[SpanDocument]:
    """One record per DocBin sequence, its text cut from the Doc's text."""
    for sequence in docbin_sequences(source, tag_field):
        if sequence.tags is not None and sequence.scheme is None:
            raise ConfigError(
                f"{source} holds token tags, not entities: span formats hold entity spans; "
                "convert it to conll, conllu, jsonl or docbin"
            )
        doc = sequence.doc
        first, last = doc[sequence.positions[0]], doc[sequence.positions[-1]]
        begin = first.idx
        text = doc.text[begin : last.idx + len(last.text)]
        tokens = [
            (doc[i].idx - begin, doc[i].idx - begin + len(doc[i].text)) for i in sequence.positions
        ]
        spans = [
            CharSpan(tokens[s.start][0], tokens[s.end - 1][1], s.label) for s in sequence.spans
        ]
        meta = doc_settings(doc).get("meta")
        yield SpanDocument(
            text=text,
            spans=spans,
            doc_id=doc_id(doc),
            line=sequence.number,
            meta=dict(meta) if isinstance(meta, dict) else {},
            tokens=tokens,
        )


# Into DocBins


def _sentence_docs(
    sentences: list[Sentence], scheme: str | None, label_column: int | None
) -> Iterator[object]:
    from spacy.vocab import Vocab

    vocab = Vocab()
    for group in sentence_documents(sentences):
        yield sentences_to_doc(vocab, group, scheme, label_column)


def _docbin_docs(source: str | Path, target_scheme: str | None) -> Iterator[object]:
    """A DocBin's documents as they are; `--scheme` recorded as the scheme to read them in."""
    for _, doc in read_docbin_docs(source):
        if target_scheme is not None:
            doc.user_data[USER_DATA_KEY] = {**doc_settings(doc), "scheme": target_scheme}
        yield doc


def _span_docs(read: _Reading, scheme: str) -> Iterator[object]:
    """One Doc per span record: its exact text, tokens, sentences and entities."""
    from spacy.tokens import Doc, Span
    from spacy.vocab import Vocab

    from ..text.tokenize import doc_words

    vocab = Vocab()
    stats = read.stats if read.stats is not None else SpanReadStats()
    documents = read_span_documents(read.source, read.fmt, stats)
    for aligned in align_span_documents(documents, read.source, read.misaligned, stats):
        document = aligned.document
        words, spaces, positions = doc_words(document.text, aligned.tokens)
        doc = Doc(vocab, words=words, spaces=spaces)
        starts = {start for start, _ in aligned.bounds}
        for index in range(len(doc)):
            doc[index].is_sent_start = index == 0
        for number, doc_index in enumerate(positions):
            doc[doc_index].is_sent_start = doc_index == 0 or (number in starts and number > 0)
        doc.ents = [
            Span(doc, positions[s.start], positions[s.end - 1] + 1, label=s.label)
            for s in aligned.spans
        ]
        if document.doc_id is not None:
            doc.user_data[ID_KEY] = document.doc_id
        settings: dict[str, object] = {"scheme": scheme}
        if document.meta:
            settings["meta"] = document.meta
        doc.user_data[USER_DATA_KEY] = settings
        yield doc


# Labelled texts


def _convert_texts(source: str | Path, target: str | Path, fmt: str, to: str) -> ConvertResult:
    if to not in ("jsonl", "docbin"):
        raise ConfigError(f"{source} holds labelled texts ({fmt}): convert them to jsonl or docbin")
    examples = list(read_texts(source, fmt))
    if to == "jsonl":
        return ConvertResult(fmt, to, write_jsonl_texts(examples, target))
    return ConvertResult(fmt, to, write_docbin(_text_docs(examples), target))


def _text_docs(examples: list[TextExample]) -> Iterator[object]:
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

    from ..text.tokenize import Tokenizer, doc_words

    labels = sorted({e.label for e in examples if e.label is not None})
    vocab = Vocab()
    tokenizer = None
    for example in examples:
        if example.tokens:
            doc = Doc(
                vocab,
                words=example.tokens,
                spaces=[True] * (len(example.tokens) - 1) + [False],
            )
        else:
            tokenizer = tokenizer or Tokenizer()
            offsets = [(t.start, t.end) for s in tokenizer.sentences(example.text) for t in s]
            words, spaces, _ = doc_words(example.text, offsets)
            doc = Doc(vocab, words=words, spaces=spaces)
        if example.label is not None:
            doc.cats = {label: float(label == example.label) for label in labels}
        if example.example_id is not None:
            doc.user_data[ID_KEY] = example.example_id
        yield doc
