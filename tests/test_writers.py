"""Writers: records → JSONL, CoNLL, DocBin, HTML, text; write → read round trips."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import catalogue
import pytest
import spacy
import srsly
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from bilstm_nlp.annotation.writers import docbin as docbin_writer
from bilstm_nlp.annotation.writers import inline_text, make_writer
from bilstm_nlp.annotation.writers.docbin import ENTITY_SPAN_KEY, record_to_doc
from bilstm_nlp.corpus.readers.conll import DOCSTART, read_conll
from bilstm_nlp.errors import ConfigError, InputFormatError
from bilstm_nlp.text.tokenize import Tokenizer


def read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL output, split at LF only (U+2028 may sit inside a string)."""
    records = [json.loads(line) for line in path.read_bytes().decode("utf-8").split("\n")[:-1]]
    assert all(isinstance(record, dict) for record in records)
    return records


def read_conll_records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Records back from CoNLL output lines: `id` (a string), `tokens` (`text`, `tag`) and
    `sentences` (token index ranges). Character offsets are not in the format."""
    record: dict[str, Any] | None = None
    sentence_start = 0
    for line in lines:
        line = line.rstrip("\n").rstrip("\r")
        if line.startswith(DOCSTART):
            if record is not None:
                yield record
            record = {"id": line[len(DOCSTART) :].strip(), "tokens": [], "sentences": []}
            sentence_start = 0
            continue
        assert record is not None, f"expected a {DOCSTART} line first, got {line!r}"
        if not line:
            if len(record["tokens"]) > sentence_start:
                record["sentences"].append([sentence_start, len(record["tokens"])])
                sentence_start = len(record["tokens"])
            continue
        text, tag = line.split("\t")
        record["tokens"].append({"text": text, "tag": tag})
    if record is not None:
        if len(record["tokens"]) > sentence_start:
            record["sentences"].append([sentence_start, len(record["tokens"])])
        yield record


def tagger_record(doc_id: Any, text: str, entities: dict[tuple[int, int], str]) -> dict[str, Any]:
    """A record as `Annotation.to_record` writes it, with entities given as token ranges."""
    sentences = Tokenizer().sentences(text)
    tokens = [t for s in sentences for t in s]
    tags = ["O"] * len(tokens)
    spans = []
    for (start, end), label in sorted(entities.items()):
        tags[start:end] = [f"I-{label}"] * (end - start)
        first, last = tokens[start], tokens[end - 1]
        spans.append(
            {
                "start": first.start,
                "end": last.end,
                "label": label,
                "text": text[first.start : last.end],
                "score": 0.9876,
                "token_start": start,
                "token_end": end,
            }
        )
    return plain_record(doc_id, text, sentences, tags) | {"spans": spans}


def plain_record(doc_id: Any, text: str, sentences: list, tags: list[str]) -> dict[str, Any]:
    """A tagger's record without spans (as for POS), from tokenized sentences and a tag per
    token."""
    tokens = [t for s in sentences for t in s]
    ranges, position = [], 0
    for sentence in sentences:
        ranges.append([position, position + len(sentence)])
        position += len(sentence)
    return {
        "id": doc_id,
        "text": text,
        "tokens": [
            {"text": t.text, "start": t.start, "end": t.end, "tag": tag, "score": 0.5}
            for t, tag in zip(tokens, tags, strict=True)
        ],
        "sentences": ranges,
    }


RECORDS = [
    tagger_record(
        "a.txt:1",
        "EU rejects German call. Peter Blackburn  visited\tParis.",
        {(0, 1): "ORG", (2, 3): "MISC", (5, 7): "PER", (8, 9): "LOC"},
    ),  # fmt: skip
    tagger_record("a.txt:2", "", {}),
    tagger_record(
        "a.txt:3", "  Zürich 😀 (北京) \u2028 <b>&amp;</b> ", {(0, 1): "LOC", (3, 4): "LOC"}
    ),
]
CLASSIFIED = {
    "id": 7,
    "text": "a wonderful film",
    "tokens": [{"text": "a", "start": 0, "end": 1}, {"text": "wonderful", "start": 2, "end": 11}],
    "sentences": [[0, 2]],
    "label": "positive",
    "probs": {"negative": 0.0312, "positive": 0.9688},
}
POS_RECORD = {
    "id": "p:1",
    "text": "EU rejects",
    "tokens": [
        {"text": "EU", "start": 0, "end": 2, "tag": "PROPN", "score": 0.99},
        {"text": "rejects", "start": 3, "end": 10, "tag": "VBZ", "score": 0.98},
    ],
    "sentences": [[0, 2]],
}


def write(fmt: str, records: list[dict[str, Any]], path: Path) -> Path:
    writer = make_writer(fmt)
    with open(path, "wb") as out:
        writer.begin(out)
        for record in records:
            writer.add(out, writer.encode(record))
        writer.end(out)
    return path


def test_jsonl_round_trip(tmp_path: Path) -> None:
    records = RECORDS + [CLASSIFIED, POS_RECORD]
    path = write("jsonl", records, tmp_path / "out.jsonl")
    assert list(read_jsonl_records(path)) == records
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == len(records) + 1 and lines[-1] == b""  # U+2028 stays inside its line


def test_conll_round_trip_and_project_reader(tmp_path: Path) -> None:
    path = write("conll", RECORDS, tmp_path / "out.conll")
    back = list(read_conll_records(path.read_text(encoding="utf-8").splitlines(keepends=True)))
    assert [r["id"] for r in back] == [r["id"] for r in RECORDS]
    for record, read in zip(RECORDS, back, strict=True):
        assert read["sentences"] == record["sentences"]
        assert read["tokens"] == [{"text": t["text"], "tag": t["tag"]} for t in record["tokens"]]
    # The project's own CoNLL reader reads it: sentences, tokens and tags, documents by -DOCSTART-.
    sentences = list(read_conll(path))
    expected = [
        ([t["text"] for t in r["tokens"][s:e]], [t["tag"] for t in r["tokens"][s:e]])
        for r in RECORDS
        for s, e in r["sentences"]
    ]
    assert [(s.tokens, s.tags) for s in sentences] == expected
    with pytest.raises(ValueError):
        make_writer("conll").encode(CLASSIFIED)


def test_docbin_loads_with_spacy_with_text_entities_sentences(tmp_path: Path) -> None:
    path = write("docbin", RECORDS + [CLASSIFIED, POS_RECORD], tmp_path / "out.spacy")
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    assert len(docs) == len(RECORDS) + 2
    for doc, record in zip(docs, RECORDS, strict=False):
        assert doc.text == record["text"]
        assert doc.user_data["id"] == record["id"]
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
            (s["start"], s["end"], s["label"]) for s in record["spans"]
        ]
        assert doc.spans[ENTITY_SPAN_KEY].attrs["scores"] == [s["score"] for s in record["spans"]]
    first = docs[0]
    assert [s.text for s in first.sents] == [
        "EU rejects German call.",
        "Peter Blackburn  visited\tParis.",
    ]
    assert docs[-2].cats == CLASSIFIED["probs"]
    assert [(t.tag_, t.pos_) for t in docs[-1]] == [("PROPN", "PROPN"), ("VBZ", "")]


def test_docbin_collects_msgpack_plugins_once_and_the_same_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # srsly collected its msgpack encoders and decoders (every installed package's entry points,
    # catalogue's whole registry) 13 times per Doc: most of a DocBin run's time.
    records = RECORDS * 20
    expected = write("docbin", records, tmp_path / "plain.spacy").read_bytes()
    collected: list[tuple[str, ...]] = []
    real_get_all = catalogue.Registry.get_all

    def counted(registry):
        if registry.namespace[0] == "srsly":
            collected.append(registry.namespace)
        return real_get_all(registry)

    monkeypatch.setattr(catalogue.Registry, "get_all", counted)
    docbin_writer._MSGPACK_PLUGINS.clear()
    assert write("docbin", records, tmp_path / "again.spacy").read_bytes() == expected
    assert sorted(collected) == [("srsly", "msgpack_decoders"), ("srsly", "msgpack_encoders")]
    # Outside the writer srsly is as it was: it collects them on each call.
    assert "get_all" not in vars(srsly.msgpack_encoders)
    srsly.msgpack_dumps({"a": 1})
    assert len(collected) == 3
    # A plugin registered since is used: a Doc whose user data only that encoder can pack.
    key = ("srsly", "msgpack_encoders", "bilstm_nlp_test_set")
    assert key not in catalogue.REGISTRY

    def encode_set(obj, chain=None):
        if isinstance(obj, set):
            return sorted(obj)
        return obj if chain is None else chain(obj)

    srsly.msgpack_encoders.register("bilstm_nlp_test_set", func=encode_set)
    try:
        record = {**RECORDS[0], "id": {"b", "a"}}
        assert Doc(Vocab()).from_bytes(make_writer("docbin").encode(record)).user_data["id"] == [
            "a",
            "b",
        ]
    finally:
        del catalogue.REGISTRY[key]


@pytest.mark.parametrize("text", ["", "   ", " a  b\n\n c ", "\ta", "a\r\n", "x\u3000y "])
def test_docbin_doc_text_is_exact(text: str) -> None:
    record = tagger_record("t", text, {})
    doc = record_to_doc(spacy.blank("en").vocab, record)
    assert doc.text == text
    assert [t.text for t in doc if not t.is_space] == [t["text"] for t in record["tokens"]]


def test_html_page_has_each_document_escaped(tmp_path: Path) -> None:
    path = write("html", RECORDS + [CLASSIFIED], tmp_path / "out.html")
    page = path.read_text(encoding="utf-8")
    assert page.lstrip().startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<h2") == len(RECORDS) + 1
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in page and "<b>" not in page
    assert "positive 0.9688" in page
    assert page.count('class="entity"') == sum(len(r["spans"]) for r in RECORDS)


def test_inline_text() -> None:
    assert inline_text(RECORDS[0]) == (
        "[EU ORG 0.99] rejects [German MISC 0.99] call. "
        "[Peter Blackburn PER 0.99]  visited\t[Paris LOC 0.99]."
    )
    assert inline_text(CLASSIFIED) == "positive 0.97\ta wonderful film"
    assert inline_text(POS_RECORD) == "EU/PROPN rejects/VBZ"
    encoded = make_writer("text").encode({**RECORDS[1], "text": ""})
    assert encoded == b"\n"
    multi = tagger_record("m", "one\ntwo\r\nthree", {})
    assert make_writer("text").encode(multi) == b"one two three\n"


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown output format 'xml'"):
        make_writer("xml")


def test_writers_only_append_unless_atomic() -> None:
    for fmt in ("jsonl", "conll", "text"):
        writer = make_writer(fmt)
        out = io.BytesIO()
        writer.begin(out)
        assert out.getvalue() == b"" and not writer.atomic
    assert make_writer("docbin").atomic and make_writer("html").atomic
    assert json.loads(make_writer("jsonl").encode(CLASSIFIED)) == CLASSIFIED


# Properties: whatever text and tags, what is written reads back


# One tag family per file: entity tags in a scheme, or plain labels (the reader refuses a mix).
_TAG_FAMILIES = [
    ["O", "B-PER", "I-PER", "B-ORG", "E-ORG", "S-creative-work"],
    ["NOUN", "VERB", "X"],
]
_RECORD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60
)  # every code point but lone surrogates, which cannot be UTF-8


@st.composite
def _tagged_records(draw: st.DrawFn, tags: st.SearchStrategy[str]) -> dict[str, Any]:
    text = draw(_RECORD_TEXT)
    sentences = _TOKENIZER.sentences(text)
    tokens = [t for s in sentences for t in s]
    token_tags = draw(st.lists(tags, min_size=len(tokens), max_size=len(tokens)))
    doc_id = draw(st.one_of(st.integers(), _RECORD_TEXT))
    return plain_record(doc_id, text, sentences, token_tags)


_TOKENIZER = Tokenizer()


@st.composite
def _record_lists(draw: st.DrawFn, min_size: int = 0) -> list[dict[str, Any]]:
    tags = st.sampled_from(draw(st.sampled_from(_TAG_FAMILIES)))
    return draw(st.lists(_tagged_records(tags), min_size=min_size, max_size=4))


@settings(max_examples=100, deadline=None)
@given(records=_record_lists())
def test_jsonl_writes_any_records_and_reads_them_back(records: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write("jsonl", records, Path(folder) / "out.jsonl")
        assert list(read_jsonl_records(path)) == records


@settings(max_examples=100, deadline=None)
@given(records=_record_lists(min_size=1))
def test_conll_writes_any_records_and_both_readers_read_them_back(
    records: list[dict[str, Any]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = write("conll", records, Path(folder) / "out.conll")
        with open(path, encoding="utf-8", newline="") as handle:
            back = list(read_conll_records(handle))
        assert len(back) == len(records)
        for record, read in zip(records, back, strict=True):
            assert read["id"] == " ".join(str(record["id"]).split())
            assert read["sentences"] == record["sentences"]
            assert read["tokens"] == [
                {"text": t["text"], "tag": t["tag"]} for t in record["tokens"]
            ]
        # The training reader sees the same sentences (it skips the -DOCSTART- lines).
        expected = [
            ([t["text"] for t in r["tokens"][s:e]], [t["tag"] for t in r["tokens"][s:e]])
            for r in records
            for s, e in r["sentences"]
        ]
        if not expected:
            return
        if b"\0" in path.read_bytes():  # corpus readers refuse NUL bytes, naming the line
            with pytest.raises(InputFormatError, match="NUL byte"):
                list(read_conll(path))
            return
        assert [(s.tokens, s.tags) for s in read_conll(path)] == expected
