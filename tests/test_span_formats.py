"""Span documents: the tool shapes written (`span_formats.py`) and read back (`readers/spans.py`).

Shapes are checked against what the tools import and export: Prodigy/spaCy span JSONL, doccano's
sequence-labelling JSONL (and its newer `entities` export), Label Studio's JSON export (a
hand-written task in the shape its export gives, with ids, `from_name`/`to_name`, `type:
labels` and `value.text`) and its pre-annotation import (`predictions` with `model_version` and
scores).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilstm_nlp.corpus.formats import detect_format, read_sentences
from bilstm_nlp.corpus.readers.spans import (
    SpanReadStats,
    read_span_documents,
    read_span_sentences,
)
from bilstm_nlp.corpus.span_formats import (
    SPAN_SHAPES,
    CharSpan,
    SpanDocument,
    span_document_record,
    write_span_documents,
)
from bilstm_nlp.errors import ConfigError, InputFormatError

TEXT = "Angela Merkel visited Paris."


def write_lines(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


# Label Studio's JSON export of a NER project (labeling config: <Labels name="label"
# toName="text"> over <Text name="text" value="$text"/>), written out by hand.
LABEL_STUDIO_EXPORT = [
    {
        "id": 101,
        "annotations": [
            {
                "id": 7,
                "completed_by": 1,
                "result": [
                    {
                        "value": {
                            "start": 0,
                            "end": 13,
                            "text": "Angela Merkel",
                            "labels": ["PER"],
                        },
                        "id": "wJq1X2aB3c",
                        "from_name": "label",
                        "to_name": "text",
                        "type": "labels",
                        "origin": "manual",
                    },
                    {
                        "value": {"start": 22, "end": 27, "text": "Paris", "labels": ["LOC"]},
                        "id": "Zx9QpL0mN1",
                        "from_name": "label",
                        "to_name": "text",
                        "type": "labels",
                        "origin": "manual",
                    },
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-11-30T10:12:44.512Z",
                "updated_at": "2026-11-30T10:12:44.512Z",
                "lead_time": 8.1,
                "prediction": {},
                "result_count": 0,
                "task": 101,
                "project": 3,
                "parent_prediction": None,
                "parent_annotation": None,
            }
        ],
        "file_upload": "0b1c2d-news.json",
        "drafts": [],
        "predictions": [],
        "data": {"text": TEXT},
        "meta": {},
        "created_at": "2026-11-30T10:10:02.001Z",
        "updated_at": "2026-11-30T10:12:44.600Z",
        "inner_id": 1,
        "total_annotations": 1,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 3,
        "updated_by": 1,
        "comment_authors": [],
    },
    {
        "id": 102,
        "annotations": [
            {"id": 8, "result": [], "was_cancelled": False, "completed_by": 1, "task": 102}
        ],
        "predictions": [],
        "data": {"text": "Nothing to see here."},
        "meta": {},
    },
]


# Writing the shapes


def test_spans_record_is_prodigy_shape_with_token_indices() -> None:
    document = SpanDocument(
        TEXT,
        [CharSpan(22, 27, "LOC", 0.9), CharSpan(0, 13, "PER")],
        doc_id="d1",
        meta={"source": "news"},
        tokens=[(0, 6), (7, 13), (14, 21), (22, 27), (27, 28)],
    )
    record = span_document_record(document, "spans")
    assert record["text"] == TEXT
    assert record["spans"] == [
        {"start": 0, "end": 13, "token_start": 0, "token_end": 1, "label": "PER"},
        {"start": 22, "end": 27, "token_start": 3, "token_end": 3, "label": "LOC", "score": 0.9},
    ]
    assert record["tokens"][1] == {"text": "Merkel", "start": 7, "end": 13, "id": 1, "ws": True}
    assert record["tokens"][3]["ws"] is False  # "Paris" is followed by "."
    assert record["id"] == "d1" and record["source"] == "news"


def test_doccano_record_keeps_scores_in_extra_keys() -> None:
    document = SpanDocument(TEXT, [CharSpan(0, 13, "PER", 0.5)], doc_id="7", score=0.25)
    record = span_document_record(document, "doccano")
    assert record == {
        "text": TEXT,
        "label": [[0, 13, "PER"]],
        "id": "7",
        "score": 0.25,
        "span_scores": [0.5],
    }


def test_labelstudio_task_without_scores_is_an_annotation() -> None:
    task = span_document_record(SpanDocument(TEXT, [CharSpan(0, 13, "PER")]), "labelstudio")
    assert task == {
        "data": {"text": TEXT},
        "annotations": [
            {
                "result": [
                    {
                        "id": "span-0",
                        "from_name": "label",
                        "to_name": "text",
                        "type": "labels",
                        "value": {
                            "start": 0,
                            "end": 13,
                            "text": "Angela Merkel",
                            "labels": ["PER"],
                        },
                    }
                ]
            }
        ],
    }


def test_labelstudio_task_with_scores_is_a_prediction() -> None:
    document = SpanDocument(TEXT, [CharSpan(0, 13, "PER", 0.97)], doc_id="a", score=0.4)
    task = span_document_record(document, "labelstudio", model_version="ner-v2")
    assert "annotations" not in task
    assert task["data"] == {"text": TEXT, "doc_id": "a"}
    [prediction] = task["predictions"]
    assert prediction["model_version"] == "ner-v2" and prediction["score"] == 0.4
    [region] = prediction["result"]
    assert region["score"] == 0.97 and region["value"]["labels"] == ["PER"]
    assert region["from_name"] == "label" and region["to_name"] == "text"


def test_a_model_version_alone_makes_predictions() -> None:
    task = span_document_record(SpanDocument(TEXT, []), "labelstudio", model_version="m")
    assert task["predictions"] == [{"model_version": "m", "result": []}]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (SpanDocument(TEXT, [CharSpan(5, 5, "PER")]), "empty or outside"),
        (SpanDocument(TEXT, [CharSpan(0, 99, "PER")]), "empty or outside"),
        (SpanDocument(TEXT, [], meta={"text": "x"}), "meta key"),
    ],
)
def test_bad_documents_are_programming_errors(document: SpanDocument, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        span_document_record(document, "spans")
    with pytest.raises(ValueError, match="unknown span shape"):
        span_document_record(SpanDocument(TEXT, []), "brat")


def test_write_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("previous\n")

    def documents():
        yield SpanDocument(TEXT, [])
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError):
        write_span_documents(documents(), path, "spans")
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.parametrize("shape", SPAN_SHAPES)
@pytest.mark.parametrize("with_tokens", [False, True])
def test_written_documents_read_back_equal(tmp_path: Path, shape: str, with_tokens: bool) -> None:
    documents = [
        SpanDocument(
            TEXT,
            [CharSpan(0, 13, "PER", 0.75), CharSpan(22, 27, "LOC", 0.5)],
            doc_id="n-1",
            score=0.125,
            meta={"source": "wire", "extra": [1, 2]},
            tokens=[(0, 6), (7, 13), (14, 21), (22, 27), (27, 28)] if with_tokens else None,
        ),
        SpanDocument("Über 😀 Zürich", [CharSpan(7, 13, "LOC", 1.0)], doc_id="n-2"),
    ]
    if shape == "labelstudio":
        # Scores make Label Studio predictions, which are no gold annotation (tested below).
        documents = [
            replace(d, spans=[replace(s, score=None) for s in d.spans], score=None)
            for d in documents
        ]
    path = tmp_path / ("tasks.json" if shape == "labelstudio" else "spans.jsonl")
    assert write_span_documents(documents, path, shape) == 2
    assert detect_format(path) == shape
    read = list(read_span_documents(path))
    for original, back in zip(documents, read, strict=True):
        spans, meta = original.spans, original.meta
        if shape == "doccano":
            # doccano's spans are annotations: the scores written for the annotator to see come
            # back as metadata.
            spans = [replace(s, score=None) for s in spans]
            meta = {**meta, "span_scores": [s.score for s in original.spans]}
        assert back.text == original.text
        assert back.spans == spans
        assert back.doc_id == original.doc_id
        assert back.tokens == original.tokens
        assert back.meta == meta
        assert back.score == original.score
    if shape == "labelstudio":
        tasks = json.loads(path.read_text())
        assert [t["data"]["doc_id"] for t in tasks] == ["n-1", "n-2"]


def test_label_studio_predictions_read_back_as_no_gold(tmp_path: Path) -> None:
    path = tmp_path / "pre.json"
    write_span_documents([SpanDocument(TEXT, [CharSpan(0, 13, "PER", 0.9)])], path, "labelstudio")
    stats = SpanReadStats()
    assert list(read_span_documents(path, stats=stats)) == []
    assert (stats.records, stats.unannotated) == (1, 1)


# Reading: the tool exports


def test_label_studio_export_reads_as_sentences(tmp_path: Path) -> None:
    path = tmp_path / "project-3-at-2026-11-30.json"
    path.write_text(json.dumps(LABEL_STUDIO_EXPORT, indent=2))
    assert detect_format(path) == "labelstudio"
    sentences = list(read_sentences(path))
    assert [s.tokens for s in sentences] == [
        ["Angela", "Merkel", "visited", "Paris", "."],
        ["Nothing", "to", "see", "here", "."],
    ]
    assert sentences[0].tags == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert sentences[1].tags == ["O"] * 5  # a submitted annotation with no region
    assert [s.doc_id for s in sentences] == ["101", "102"]
    assert sentences[0].line == 2 and sentences[1].line > sentences[0].line  # its own line


def test_label_studio_jsonl_of_tasks(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "tasks.jsonl", LABEL_STUDIO_EXPORT)
    assert detect_format(path) == "labelstudio"
    assert [s.line for s in read_sentences(path)] == [1, 2]


def test_label_studio_tasks_without_gold_are_left_out_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled = {
        "id": 5,
        "data": {"text": "Skipped task."},
        "annotations": [{"id": 9, "result": [], "was_cancelled": True}],
    }
    predicted = {
        "id": 6,
        "data": {"text": "Only a model's guess."},
        "annotations": [],
        "predictions": [{"model_version": "m", "result": []}],
    }
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps([LABEL_STUDIO_EXPORT[0], cancelled, predicted]))
    stats = SpanReadStats()
    with caplog.at_level(logging.WARNING):
        sentences = list(read_span_sentences(path, stats=stats))
    assert len(sentences) == 1
    assert (stats.records, stats.unannotated) == (3, 2)
    assert "2 of 3 records hold no gold annotation" in caplog.text


def test_label_studio_utf16_offsets_are_read_as_code_points(tmp_path: Path) -> None:
    # Older Label Studio front ends counted an emoji as two (UTF-16 code units).
    text = "I 😀 love New York"
    task = {
        "data": {"text": text},
        "annotations": [
            {
                "result": [
                    {
                        "type": "labels",
                        "from_name": "label",
                        "to_name": "text",
                        "value": {"start": 10, "end": 18, "text": "New York", "labels": ["LOC"]},
                    }
                ]
            }
        ],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps([task]))
    [document] = read_span_documents(path)
    assert document.spans == [CharSpan(9, 17, "LOC")]
    assert text[9:17] == "New York"


def test_label_studio_region_text_must_match(tmp_path: Path) -> None:
    task = json.loads(json.dumps(LABEL_STUDIO_EXPORT[0]))
    task["annotations"][0]["result"][0]["value"]["text"] = "Angela"
    path = tmp_path / "t.json"
    path.write_text(json.dumps([task], indent=1))
    with pytest.raises(InputFormatError, match=r"t\.json:2: task 1: result 0: 'value.text'"):
        list(read_span_documents(path))


def test_label_studio_region_with_two_labels_is_an_error(tmp_path: Path) -> None:
    task = json.loads(json.dumps(LABEL_STUDIO_EXPORT[0]))
    task["annotations"][0]["result"][0]["value"]["labels"] = ["PER", "ORG"]
    path = write_lines(tmp_path / "t.jsonl", [task])
    with pytest.raises(InputFormatError, match="exactly one label"):
        list(read_span_documents(path))


def test_label_studio_relations_and_choices_are_not_spans(tmp_path: Path) -> None:
    task = json.loads(json.dumps(LABEL_STUDIO_EXPORT[0]))
    task["annotations"][0]["result"] += [
        {"type": "relation", "from_id": "wJq1X2aB3c", "to_id": "Zx9QpL0mN1", "direction": "right"},
        {"type": "choices", "value": {"choices": ["news"]}, "from_name": "c", "to_name": "text"},
    ]
    path = write_lines(tmp_path / "t.jsonl", [task])
    [document] = read_span_documents(path)
    assert [s.label for s in document.spans] == ["PER", "LOC"]


def test_prodigy_rejected_and_ignored_answers_are_left_out(tmp_path: Path) -> None:
    records = [
        {"text": TEXT, "spans": [{"start": 0, "end": 13, "label": "PER"}], "answer": "accept"},
        {"text": "No.", "spans": [], "answer": "reject"},
        {"text": "Skip.", "spans": [], "answer": "ignore", "_input_hash": 1},
    ]
    stats = SpanReadStats()
    sentences = list(read_span_sentences(write_lines(tmp_path / "p.jsonl", records), stats=stats))
    assert len(sentences) == 1 and stats.unannotated == 2


def test_a_text_several_annotators_answered_is_trained_on_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prodigy with feed_overlap: each annotator's answer is a record with the text's _input_hash.
    merkel = {"start": 0, "end": 13, "label": "PER"}
    paris = {"start": 22, "end": 27, "label": "LOC"}

    def answer(input_hash: object, spans: list, session: str) -> dict:
        return {"text": TEXT, "spans": spans, "_input_hash": input_hash, "_session_id": session}

    records = [
        answer(7, [merkel, paris], "ann-a"),  # line 1: the one kept
        answer(7, [paris, merkel], "ann-b"),  # the same spans in another order: agrees
        {"text": "Rome.", "spans": [], "_input_hash": 8},
        answer(7, [merkel], "ann-c"),  # line 4: disagrees
        answer(None, [merkel], "ann-d"),  # no hash: always read
        {"text": TEXT, "spans": [merkel]},  # no hash field: always read
    ]
    path = write_lines(tmp_path / "p.jsonl", records)
    stats = SpanReadStats()
    with caplog.at_level(logging.INFO):
        sentences = list(read_span_sentences(path, stats=stats))
    assert [s.tags for s in sentences] == [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],
        ["O", "O"],
        ["B-PER", "I-PER", "O", "O", "O"],
        ["B-PER", "I-PER", "O", "O", "O"],
    ]
    assert [s.line for s in sentences] == [1, 3, 5, 6]
    assert (stats.records, stats.repeated, stats.conflicting) == (6, 1, 1)
    assert "1 records repeat the annotation of a text read before" in caplog.text
    assert "1 records annotate a text read before with other spans" in caplog.text
    assert "first at lines 1 and 4" in caplog.text
    # A conversion keeps every record: it is the annotators' answers, not training data.
    assert len(list(read_span_documents(path))) == 6


def test_prodigy_fields_are_kept_as_meta(tmp_path: Path) -> None:
    record = {
        "text": TEXT,
        "spans": [],
        "_input_hash": 12,
        "_task_hash": 34,
        "meta": {"source": "x"},
        "answer": "accept",
    }
    [document] = read_span_documents(write_lines(tmp_path / "p.jsonl", [record]))
    assert document.meta == {
        "_input_hash": 12,
        "_task_hash": 34,
        "meta": {"source": "x"},
        "answer": "accept",
    }


def test_doccano_entities_export(tmp_path: Path) -> None:
    record = {
        "id": 3,
        "text": TEXT,
        "entities": [{"id": 1, "label": "PER", "start_offset": 0, "end_offset": 13}],
        "relations": [],
        "Comments": [],
    }
    path = write_lines(tmp_path / "d.jsonl", [record])
    assert detect_format(path) == "doccano"
    [sentence] = read_sentences(path)
    assert sentence.tags == ["B-PER", "I-PER", "O", "O", "O"] and sentence.doc_id == "3"


# Tokens, sentences, alignment


def test_raw_text_is_split_into_sentences_as_annotate_does(tmp_path: Path) -> None:
    text = "Angela Merkel visited Paris. She met Emmanuel Macron there."
    spans = [{"start": 0, "end": 13, "label": "PER"}, {"start": 37, "end": 52, "label": "PER"}]
    path = write_lines(tmp_path / "s.jsonl", [{"text": text, "spans": spans, "id": 4}])
    sentences = list(read_sentences(path))
    assert [s.tokens for s in sentences] == [
        ["Angela", "Merkel", "visited", "Paris", "."],
        ["She", "met", "Emmanuel", "Macron", "there", "."],
    ]
    assert sentences[1].tags == ["O", "O", "B-PER", "I-PER", "O", "O"]
    assert {s.doc_id for s in sentences} == {"4"}


def test_a_span_across_a_sentence_break_joins_the_sentences(tmp_path: Path) -> None:
    text = "He said. Then left"
    path = write_lines(
        tmp_path / "s.jsonl", [{"text": text, "spans": [{"start": 3, "end": 13, "label": "X"}]}]
    )
    [sentence] = read_sentences(path)
    assert sentence.tokens == ["He", "said", ".", "Then", "left"]
    assert sentence.tags == ["O", "B-X", "I-X", "I-X", "O"]


def test_given_tokens_are_one_sequence_and_white_space_tokens_drop(tmp_path: Path) -> None:
    text = "New York.\n\nIt rains."
    tokens = [
        {"text": "New York", "start": 0, "end": 8},
        {"text": ".", "start": 8, "end": 9},
        {"text": "\n\n", "start": 9, "end": 11},
        {"text": "It", "start": 11, "end": 13},
        {"text": "rains.", "start": 14, "end": 20},
    ]
    record = {"text": text, "tokens": tokens, "spans": [{"start": 0, "end": 8, "label": "LOC"}]}
    [sentence] = read_sentences(write_lines(tmp_path / "s.jsonl", [record]))
    assert sentence.tokens == ["New York", ".", "It", "rains."]
    assert sentence.tags == ["B-LOC", "O", "O", "O"]


def misaligned_file(tmp_path: Path) -> Path:
    records = [
        {"text": TEXT, "spans": [{"start": 22, "end": 27, "label": "LOC"}]},
        {"text": TEXT, "spans": [{"start": 0, "end": 12, "label": "PER"}]},
    ]
    return write_lines(tmp_path / "cut.jsonl", records)


def test_a_span_cutting_a_token_is_an_error_with_file_line_and_text(tmp_path: Path) -> None:
    path = misaligned_file(tmp_path)
    with pytest.raises(InputFormatError) as caught:
        list(read_sentences(path))
    assert str(caught.value) == (
        f"{path}:2: span [0, 12) 'Angela Merke' PER ends inside token 'Merkel' [7, 13): a span "
        "must start and end on token edges (--misaligned expand widens it to whole tokens, "
        "--misaligned drop leaves it out)"
    )
    assert caught.value.line == 2


def test_expand_widens_and_drop_drops_and_both_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = misaligned_file(tmp_path)
    stats = SpanReadStats()
    with caplog.at_level(logging.WARNING):
        widened = list(read_sentences(path, misaligned="expand", span_stats=stats))
    assert widened[1].tags == ["B-PER", "I-PER", "O", "O", "O"]
    assert (stats.misaligned, stats.expanded, stats.dropped) == (1, 1, 0)
    assert "1 of 2 spans cut a token and were widened" in caplog.text
    stats = SpanReadStats()
    with caplog.at_level(logging.WARNING):
        dropped = list(read_sentences(path, misaligned="drop", span_stats=stats))
    assert dropped[1].tags == ["O"] * 5 and dropped[0].tags == ["O", "O", "O", "B-LOC", "O"]
    assert (stats.misaligned, stats.expanded, stats.dropped) == (1, 0, 1)
    assert "1 of 2 spans cut a token (or covered only white space) and were dropped" in caplog.text
    assert stats.first_misaligned is not None and ":2: span [0, 12)" in stats.first_misaligned
    # Without `log` (`corpus stats`, which counts them as misaligned, not dropped) no warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        list(read_sentences(path, misaligned="drop", span_stats=SpanReadStats(), log=False))
    assert "spans cut a token" not in caplog.text


def test_a_span_of_white_space_only_is_an_error_unless_dropped(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "w.jsonl", [{"text": TEXT, "spans": [{"start": 6, "end": 7, "label": "X"}]}]
    )
    for policy in ("error", "expand"):
        with pytest.raises(InputFormatError, match=r"w\.jsonl:1: span \[6, 7\) ' ' X covers no"):
            list(read_sentences(path, misaligned=policy))
    [sentence] = read_sentences(path, misaligned="drop")
    assert sentence.tags == ["O"] * 5


def test_overlapping_spans_are_an_error(tmp_path: Path) -> None:
    spans = [{"start": 0, "end": 13, "label": "PER"}, {"start": 7, "end": 21, "label": "ORG"}]
    path = write_lines(tmp_path / "o.jsonl", [{"text": TEXT, "spans": spans}])
    with pytest.raises(InputFormatError, match=r"o\.jsonl:1: spans \[0, 13\) .* overlap"):
        list(read_sentences(path))


def test_spans_overlapping_once_widened_are_an_error(tmp_path: Path) -> None:
    spans = [{"start": 0, "end": 9, "label": "PER"}, {"start": 10, "end": 13, "label": "ORG"}]
    path = write_lines(tmp_path / "o.jsonl", [{"text": TEXT, "spans": spans}])
    with pytest.raises(InputFormatError, match="share a token once widened"):
        list(read_sentences(path, misaligned="expand"))


def test_an_unknown_policy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="misaligned must be one of error, expand, drop"):
        list(read_sentences(misaligned_file(tmp_path), misaligned="widen"))


# Bad input: file and line in every error

BAD_RECORDS = [
    ({"text": 5, "spans": []}, r":1: field 'text' must be a string"),
    ({"spans": []}, r":1: record has no field 'text'"),
    ({"text": "ab", "spans": [{"start": 0, "end": 3, "label": "X"}]}, "outside the text of 2"),
    ({"text": "ab", "spans": [{"start": -1, "end": 1, "label": "X"}]}, "outside the text"),
    ({"text": "ab", "spans": [{"start": 1, "end": 1, "label": "X"}]}, "is empty: start must"),
    ({"text": "ab", "spans": [{"start": 2, "end": 1, "label": "X"}]}, "is empty: start must"),
    ({"text": "ab", "spans": [{"start": "0", "end": 1, "label": "X"}]}, "must be integers"),
    ({"text": "ab", "spans": [{"start": 0.0, "end": 1, "label": "X"}]}, "must be integers"),
    ({"text": "ab", "spans": [{"start": 0, "end": 1, "label": ""}]}, "non-empty string"),
    ({"text": "ab", "spans": [{"start": 0, "end": 1}]}, "non-empty string"),
    ({"text": "ab", "spans": {"start": 0}}, "must be an array of span objects"),
    ({"text": "ab", "spans": [], "tokens": [{"start": 0, "end": 5}]}, "inside the text"),
    ({"text": "ab", "spans": [], "tokens": [{"start": 0, "end": 1, "text": "b"}]}, "its text"),
    ({"text": "ab", "label": [[0, 1]]}, r"label 0: expected \[start, end, label\]"),
    ({"text": "ab", "label": ["positive"]}, "text-classification export"),
    ({"text": "ab", "labels": [[0, 1]]}, r"label 0: expected \[start, end, label\]"),
    ({"text": "ab", "entities": [[0, 1]]}, r"entity 0: expected \[start, end, label\] or an"),
    ({"text": "ab", "spans": [], "_view_id": "ner"}, "binary annotation"),
    ({"data": {"body": "ab"}}, r"record has no field 'data\.text'"),
    ({"data": {"text": "ab"}, "annotations": {}}, "must be an array"),
]


@pytest.mark.parametrize(("record", "message"), BAD_RECORDS)
def test_bad_records_name_file_and_line(tmp_path: Path, record: dict, message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [record])
    with pytest.raises(InputFormatError, match=message) as caught:
        list(read_sentences(path))
    assert caught.value.path == str(path) and caught.value.line == 1


def test_a_record_of_another_shape_later_in_the_file(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl", [{"text": "a", "spans": []}, {"text": "b", "label": []}]
    )
    with pytest.raises(InputFormatError, match=r"mixed\.jsonl:2: record has no field 'spans'"):
        list(read_sentences(path))


@pytest.mark.parametrize(
    ("content", "message", "line"),
    [
        ("", "empty file", None),
        ("\n\n", "empty file", None),
        ('{"text": "a", "spans": []}\n{"text": \n', "bad JSON", 2),
        ('{"text": "a", "spans": []}\n[1, 2]\n', "expected a JSON object", 2),
        ("[]", "empty file: no tasks", 1),
        ('[\n {"data": {"text": "a"}},\n {"data": \n]', "bad JSON", 4),
        ('[{"data": {"text": "a"}}] x', "text after the end", 1),
        ('[{"data": {"text": "a"}} {"data": {"text": "b"}}]', "expected ',' or ']'", 1),
        ('[{"data": {"text": "a"}},\n 7]', "expected a JSON object", 2),
    ],
)
def test_bad_files(tmp_path: Path, content: str, message: str, line: int | None) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputFormatError, match=message) as caught:
        list(read_span_sentences(path, "spans" if content.strip()[:1] == "{" else None))
    assert caught.value.line == line


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    good = json.dumps({"text": "ok", "spans": []}).encode()
    for suffix, content in (
        (".jsonl", good + b'\n{"text": "\xff", "spans": []}\n'),
        (".json", b'[\n{"data": {"text": "a"}},\n{"data": {"text": "\xff"}}]'),
    ):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(content)
        with pytest.raises(InputFormatError, match="not valid UTF-8") as caught:
            list(read_span_sentences(path, "spans" if suffix == ".jsonl" else None))
        assert caught.value.line == (2 if suffix == ".jsonl" else 3)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="no such file"):
        list(read_span_sentences(tmp_path / "none.jsonl"))


@pytest.mark.parametrize("first", ['{"text": "a b", "spans": []}\n', "[\n"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.text(alphabet='{}[]":,0123abtexspnlrd \n-', max_size=120))
def test_format_like_text_gives_sentences_or_input_format_error(
    tmp_path: Path, first: str, content: str
) -> None:
    path = tmp_path / "gen.json"
    path.write_text(first + content)
    try:
        list(read_span_sentences(path, misaligned="drop"))
    except InputFormatError as error:
        assert error.path == str(path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_give_sentences_or_input_format_error(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "gen.jsonl"
    path.write_bytes(b'{"text": "a", "spans": []}\n' + content)
    try:
        list(read_span_sentences(path))
    except InputFormatError as error:
        assert error.path == str(path)


def test_a_file_without_any_annotated_record_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"text": "No.", "spans": [], "answer": "reject"}])
    with pytest.raises(InputFormatError, match="no sentence to read: of 1 records, 1 hold no"):
        list(read_sentences(path))


def test_a_lone_surrogate_escape_in_a_task_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('[\n{"data": {"text": "a"}},\n{"data": {"text": "\\ud800"}}\n]')
    with pytest.raises(InputFormatError, match="lone UTF-16 surrogate") as caught:
        list(read_span_documents(path))
    assert caught.value.line == 3


def test_label_studio_json_min_export(tmp_path: Path) -> None:
    tasks = [
        {
            "id": 101,
            "text": TEXT,
            "label": [
                {"start": 0, "end": 13, "text": "Angela Merkel", "labels": ["PER"]},
                {"start": 22, "end": 27, "text": "Paris", "labels": ["LOC"]},
            ],
            "annotator": 1,
            "annotation_id": 7,
            "created_at": "2026-11-30T10:12:44.512Z",
            "updated_at": "2026-11-30T10:12:44.512Z",
            "lead_time": 8.1,
        },
        {"id": 102, "text": "Nothing here.", "annotator": 1, "annotation_id": 8},
        {"id": 103, "text": "Not annotated yet."},
    ]
    path = tmp_path / "project-3-min.json"
    path.write_text(json.dumps(tasks))
    assert detect_format(path) == "labelstudio"
    stats = SpanReadStats()
    sentences = list(read_span_sentences(path, stats=stats))
    assert [s.tags for s in sentences] == [["B-PER", "I-PER", "O", "B-LOC", "O"], ["O"] * 3]
    assert [s.doc_id for s in sentences] == ["101", "102"] and stats.unannotated == 1


def test_label_studio_json_min_of_a_control_not_named_label(tmp_path: Path) -> None:
    # JSON-MIN puts each control's regions under the control's name and flattens `data`
    # (label-studio-converter's convert_to_json_min): `<Labels name="ner" ...>`, our doc_id.
    tasks = [
        {
            "id": 5,
            "text": TEXT,
            "doc_id": "wire-9",
            "ner": [{"start": 22, "end": 27, "text": "Paris", "labels": ["LOC"]}],
            "annotator": 1,
            "annotation_id": 3,
            "lead_time": 2.5,
        }
    ]
    path = tmp_path / "min.json"
    path.write_text(json.dumps(tasks))
    (document,) = read_span_documents(path)
    assert document.spans == [CharSpan(22, 27, "LOC")] and document.doc_id == "wire-9"
    assert "ner" not in document.meta and "doc_id" not in document.meta


def test_label_studio_region_text_with_white_space_collapsed(tmp_path: Path) -> None:
    # label-studio#3078: the region's text is saved with runs of white space as one space,
    # while its offsets count every character.
    text = "Visit Berlin,  Germany soon"
    task = {
        "data": {"text": text},
        "annotations": [{"result": [_region(6, 22, "Berlin, Germany", "LOC")]}],
    }
    path = tmp_path / "ws.json"
    path.write_text(json.dumps([task]))
    (document,) = read_span_documents(path)
    assert document.spans == [CharSpan(6, 22, "LOC")]
    task["annotations"][0]["result"] = [_region(6, 22, "Berlin, Germanx", "LOC")]
    path.write_text(json.dumps([task]))
    with pytest.raises(InputFormatError, match="is not the text at"):
        list(read_span_documents(path))


def _region(start: int, end: int, text: str, label: str) -> dict:
    value = {"start": start, "end": end, "text": text, "labels": [label]}
    return {"from_name": "label", "to_name": "text", "type": "labels", "value": value}


def test_label_studio_skipped_completions_and_ground_truth(tmp_path: Path) -> None:
    tasks = [
        # Label Studio 0.x: `completions`, a skipped one marked `skipped`.
        {"data": {"text": TEXT}, "completions": [{"skipped": True, "result": []}]},
        # A reviewer's ground truth wins over the first submitted annotation.
        {
            "data": {"text": TEXT},
            "annotations": [
                {"result": [_region(0, 13, "Angela Merkel", "ORG")]},
                {"ground_truth": True, "result": [_region(0, 13, "Angela Merkel", "PER")]},
            ],
        },
    ]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(tasks))
    stats = SpanReadStats()
    documents = list(read_span_documents(path, stats=stats))
    assert [d.spans for d in documents] == [[CharSpan(0, 13, "PER")]]
    assert stats.unannotated == 1


# doccano issue #2290: doccano's offsets count UTF-16 code units.
DOCCANO_EMOJI = "👨🏻‍🚒 firemen drive firetrucks"


def test_doccano_offsets_are_utf16_code_units(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl", [{"text": DOCCANO_EMOJI, "label": [[22, 32, "VEHICLE"]]}]
    )
    (document,) = read_span_documents(path)
    assert document.spans == [CharSpan(19, 29, "VEHICLE")]
    # A file of code points (a Python script's), which only that count puts on word edges.
    write_lines(path, [{"text": DOCCANO_EMOJI, "label": [[19, 29, "VEHICLE"]]}])
    (document,) = read_span_documents(path)
    assert document.spans == [CharSpan(19, 29, "VEHICLE")]
    # Written back in doccano's count: the offsets index the text's UTF-16 encoding.
    out = tmp_path / "out.jsonl"
    write_span_documents([document], out, "doccano")
    record = json.loads(out.read_text())
    start, end, _ = record["label"][0]
    assert DOCCANO_EMOJI.encode("utf-16-le")[2 * start : 2 * end].decode("utf-16-le") == (
        "firetrucks"
    )


def test_doccano_1x_labels_intent_entities_and_repeated_spans(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            # doccano 1.x; a collaborative export lists each annotator's spans.
            {"id": 1, "text": TEXT, "meta": {}, "labels": [[0, 13, "PER"], [0, 13, "PER"]]},
            # The intent-detection export's entities as lists.
            {"id": 2, "text": TEXT, "entities": [[22, 27, "LOC"]], "cats": ["travel"]},
        ],
    )
    assert detect_format(path) == "doccano"
    documents = list(read_span_documents(path))
    assert [d.spans for d in documents] == [[CharSpan(0, 13, "PER")], [CharSpan(22, 27, "LOC")]]
    assert documents[1].meta == {"cats": ["travel"]}


def test_doccano_span_scores_stay_metadata_after_review(tmp_path: Path) -> None:
    # select --to doccano wrote one span with its score; the annotator added one, and doccano
    # exported the old scores back as metadata.
    record = {"text": TEXT, "label": [[0, 13, "PER"], [22, 27, "LOC"]], "span_scores": [0.6]}
    path = write_lines(tmp_path / "reviewed.jsonl", [record])
    (document,) = read_span_documents(path)
    assert document.spans == [CharSpan(0, 13, "PER"), CharSpan(22, 27, "LOC")]
    assert document.meta == {"span_scores": [0.6]}
    out = tmp_path / "tasks.json"
    write_span_documents([document], out, "labelstudio")
    assert list(json.loads(out.read_text())[0]) == ["data", "annotations"]
