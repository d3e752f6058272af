"""spaCy DocBin files as corpora (`readers/docbin.py`): entities, tags, categories, sentences,
and clear errors for what cannot be trained on."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

from bilstm_nlp.corpus.formats import detect_format, holds_texts, read_sentences, read_texts
from bilstm_nlp.errors import InputFormatError

VOCAB = Vocab()


def save(path: Path, docs: list[Doc]) -> Path:
    DocBin(store_user_data=True, docs=docs).to_disk(path)
    return path


def ner_doc(words: list[str], ents: list[tuple[int, int, str]], sent_starts=None) -> Doc:
    doc = Doc(VOCAB, words=words, sent_starts=sent_starts)
    doc.ents = [Span(doc, s, e, label=label) for s, e, label in ents]
    return doc


def test_entities_become_iob2_tags(tmp_path: Path) -> None:
    doc = ner_doc(["Angela", "Merkel", "visited", "Paris", "."], [(0, 2, "PER"), (3, 4, "LOC")])
    doc.user_data["id"] = "d-7"
    path = save(tmp_path / "ner.spacy", [doc, ner_doc(["Nothing", "."], [])])
    assert detect_format(path) == "docbin" and not holds_texts(path, "docbin")
    sentences = list(read_sentences(path))
    assert sentences[0].tags == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert sentences[0].doc_id == "d-7" and sentences[0].line == 1
    assert sentences[1].tags == ["O", "O"] and sentences[1].line == 2


def test_sentence_starts_split_and_an_entity_across_them_joins(tmp_path: Path) -> None:
    words = ["He", "left", ".", "Then", "Paris", "Saint", "Germain", "won", "."]
    starts = [True, False, False, True, False, True, False, False, False]
    doc = ner_doc(words, [(4, 7, "ORG")], starts)
    plain = ner_doc(["A", ".", "B", "."], [], [True, False, True, False])
    sentences = list(read_sentences(save(tmp_path / "s.spacy", [doc, plain])))
    assert [s.tokens for s in sentences] == [
        ["He", "left", "."],
        ["Then", "Paris", "Saint", "Germain", "won", "."],
        ["A", "."],
        ["B", "."],
    ]
    assert sentences[1].tags == ["O", "B-ORG", "I-ORG", "I-ORG", "O", "O"]


def test_without_sentence_starts_the_sentencizer_splits_as_annotate_does(tmp_path: Path) -> None:
    doc = ner_doc(["It", "rains", ".", "We", "stay", "."], [])
    assert not doc.has_annotation("SENT_START")
    sentences = list(read_sentences(save(tmp_path / "s.spacy", [doc])))
    assert [s.tokens for s in sentences] == [["It", "rains", "."], ["We", "stay", "."]]


def test_white_space_tokens_are_left_out(tmp_path: Path) -> None:
    doc = Doc(VOCAB, words=["Paris", "\n\n", "rains"], spaces=[False, False, False])
    doc.ents = [Span(doc, 0, 1, label="LOC")]
    [sentence] = read_sentences(save(tmp_path / "w.spacy", [doc]))
    assert sentence.tokens == ["Paris", "rains"] and sentence.tags == ["B-LOC", "O"]


def test_the_scheme_convert_recorded_is_used(tmp_path: Path) -> None:
    doc = ner_doc(["A", "B", "c"], [(0, 1, "PER"), (1, 2, "PER")])
    doc.user_data["bilstm_nlp"] = {"scheme": "IOB1"}
    [sentence] = read_sentences(save(tmp_path / "s.spacy", [doc]))
    assert sentence.tags == ["I-PER", "B-PER", "O"]


def test_pos_and_tag_files(tmp_path: Path) -> None:
    doc = Doc(VOCAB, words=["I", "run"], pos=["PRON", "VERB"], tags=["PRP", "VBP"])
    path = save(tmp_path / "pos.spacy", [doc])
    assert next(iter(read_sentences(path))).tags == ["PRON", "VERB"]
    assert next(iter(read_sentences(path, tag_field="xpos"))).tags == ["PRP", "VBP"]
    only_tags = Doc(VOCAB, words=["I", "run"], tags=["PRP", "VBP"])
    path = save(tmp_path / "tag.spacy", [only_tags])
    assert next(iter(read_sentences(path))).tags == ["PRP", "VBP"]


def test_a_document_without_the_files_annotation_is_an_error(tmp_path: Path) -> None:
    first = ner_doc(["Paris"], [(0, 1, "LOC")])
    second = Doc(VOCAB, words=["Rome", "too"])  # never given entities: spaCy's missing value
    path = save(tmp_path / "m.spacy", [first, second])
    with pytest.raises(InputFormatError, match=r"m\.spacy:2: document 2: token 0 'Rome' has no"):
        list(read_sentences(path))
    tagged = Doc(VOCAB, words=["I", "run"], tags=["PRP", "VBP"])
    untagged = Doc(VOCAB, words=["We", "go"])
    with pytest.raises(InputFormatError, match="has no token.tag_"):
        list(read_sentences(save(tmp_path / "t.spacy", [tagged, untagged])))
    # The other order: a first document without annotation would make the file words only.
    with pytest.raises(InputFormatError, match=r"r\.spacy:2: document 2 has entities"):
        list(read_sentences(save(tmp_path / "r.spacy", [second, first])))
    with pytest.raises(InputFormatError, match="document 2 has token.tag_ tags"):
        list(read_sentences(save(tmp_path / "u.spacy", [untagged, tagged])))


def test_categories_make_labelled_texts(tmp_path: Path) -> None:
    good = Doc(VOCAB, words=["Great", "film", "!"], spaces=[True, False, False])
    good.cats = {"pos": 0.9, "neg": 0.1}
    bad = Doc(VOCAB, words=["Dull"], spaces=[False])
    bad.cats = {"pos": 0.0, "neg": 1.0}
    bad.user_data["id"] = "r2"
    path = save(tmp_path / "cats.spacy", [good, bad])
    assert holds_texts(path, "docbin")
    examples = list(read_texts(path))
    assert [(e.text, e.label, e.example_id) for e in examples] == [
        ("Great film!", "pos", None),
        ("Dull", "neg", "r2"),
    ]
    assert examples[0].tokens == ["Great", "film", "!"]


def test_a_shared_highest_category_is_an_error(tmp_path: Path) -> None:
    doc = Doc(VOCAB, words=["Meh"])
    doc.cats = {"pos": 1.0, "neg": 1.0}
    with pytest.raises(InputFormatError, match="categories neg, pos share the highest score"):
        list(read_texts(save(tmp_path / "c.spacy", [doc])))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a spaCy DocBin"),
        (b"plain text, not a DocBin\n", "not a spaCy DocBin"),
        (zlib.compress(b"\x93\x01\x02\x03"), "not a spaCy DocBin"),
        (zlib.compress(b"\x81\xa5attrs\x90"), "not a spaCy DocBin"),
    ],
)
def test_a_corrupt_file_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.spacy"
    path.write_bytes(content)
    with pytest.raises(InputFormatError, match=message) as caught:
        list(read_sentences(path))
    assert caught.value.path == str(path)


def test_a_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = save(tmp_path / "ok.spacy", [ner_doc(["Paris"], [(0, 1, "LOC")])] * 50)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InputFormatError, match="not a spaCy DocBin .* or a corrupt one"):
        list(read_sentences(path))


def test_an_empty_docbin_and_empty_documents(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="empty file: no documents"):
        list(read_sentences(save(tmp_path / "e.spacy", [])))
    with pytest.raises(InputFormatError, match="every document is empty"):
        list(read_sentences(save(tmp_path / "e2.spacy", [Doc(VOCAB, words=[])])))


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="no such file"):
        list(read_sentences(tmp_path / "none.spacy"))


def _valid_docbin_payload() -> bytes:
    docs = []
    for number in range(3):
        doc = ner_doc(
            ["Angela", "Merkel", "visited", "Paris", "."],
            [(0, 2, "PER"), (3, 4, "LOC")],
            [True, False, False, False, False],
        )
        doc.user_data["id"] = f"d{number}"
        docs.append(doc)
    return zlib.decompress(DocBin(store_user_data=True, docs=docs).to_bytes())


_PAYLOAD = _valid_docbin_payload()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_PAYLOAD) - 1), st.integers(0, 255)), min_size=1, max_size=4
    )
)
@example(edits=[(1800, 0)])  # a span-group table that decodes to an integer
def test_a_mutated_docbin_gives_sentences_or_input_format_error(
    tmp_path: Path, edits: list[tuple[int, int]]
) -> None:
    # Bytes changed inside the (decompressed) msgpack payload, so the file still unzips.
    payload = bytearray(_PAYLOAD)
    for position, value in edits:
        payload[position] = value
    path = tmp_path / "m.spacy"
    path.write_bytes(zlib.compress(bytes(payload)))
    try:
        list(read_sentences(path))
    except InputFormatError as error:
        assert error.path == str(path)


def test_a_docbin_of_categories_loads_as_a_text_corpus(tmp_path: Path) -> None:
    from bilstm_nlp.corpus.loading import load_texts

    docs = []
    for words, label in ((["Great", "film"], "pos"), (["Dull", "plot"], "neg")):
        doc = Doc(VOCAB, words=words)
        doc.cats = {"pos": float(label == "pos"), "neg": float(label == "neg")}
        docs.append(doc)
    corpus = load_texts(save(tmp_path / "cats.spacy", docs))
    assert corpus.info.input_format == "docbin"
    assert corpus.labels("train") == ["pos", "neg"]
    assert corpus["train"]["tokens"][:] == [["Great", "film"], ["Dull", "plot"]]
