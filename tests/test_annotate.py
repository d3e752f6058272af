"""Raw text → annotations, and batch annotation of files and folders (resumable), with tiny
models trained once per session in a few seconds."""

from __future__ import annotations

import gc
import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilstm_nlp.annotation import annotator as annotate
from bilstm_nlp.annotation.annotator import (
    Annotation,
    Annotator,
    annotate_text,
    annotate_texts,
    escapes_for,
)
from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths
from bilstm_nlp.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from bilstm_nlp.decode import tag_sentences
from bilstm_nlp.errors import ConfigError, InputFormatError
from bilstm_nlp.serialize import load_model

sys.path.insert(0, str(Path(__file__).parent))
from test_train import NER_SENTENCES, write_conll  # noqa: E402

# The NER corpus writes brackets, slashes and quotes as PTB escapes, as CoNLL-2000 and SST do.
PTB_SENTENCES = [
    [("-LRB-", "O"), ("EU", "I-ORG"), ("-RRB-", "O"), ("and\\/or", "O"), ("``", "O")]
    + [("Paris", "I-LOC"), ("''", "O")],
]
SENTIMENT = [
    ("a wonderful , moving film", "positive"),
    ("dull and lifeless", "negative"),
    ("an instant classic", "positive"),
    ("a waste of time", "negative"),
]
TEXTS = [
    "EU rejects German call. Peter Blackburn visited Paris.",
    "",
    '(EU) and/or "Paris" — 😀 Zürich 北京 Rabinovich met Werner Zwingmann.',
    "   ",
    "BRUSSELS 1996-08-22\tThe European Commission said",
]


def tiny_model(base: Path, kind: str) -> Path:
    """A tiny model directory, trained on first use and kept for the session under `base`.

    `ner`: a BIOES CRF tagger on the test_train NER sentences plus PTB-escaped ones;
    `sentiment`: a max-pooling classifier. No pretrained vectors; a few seconds each.
    """
    directory = base / f"tiny_{kind}"
    if (directory / "model.safetensors").is_file():
        return directory
    import datasets

    from bilstm_nlp.training.loop import train

    base.mkdir(parents=True, exist_ok=True)
    model = dict(vectors=None, word_dim=16, hidden=24, dropout=0.0, word_dropout=0.0)
    if kind == "ner":
        corpus = write_conll(base / "ner.conll", NER_SENTENCES + PTB_SENTENCES)
        data = DataConfig(train=str(corpus), dev=str(corpus), scheme="BIOES")
        model_config = ModelConfig(char_hidden=12, char_dim=8, head="crf", **model)
        epochs = 30
    else:
        corpus = base / "sentiment.jsonl"
        corpus.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in SENTIMENT))
        data = DataConfig(train=str(corpus), dev=str(corpus))
        model_config = ModelConfig(task="classifier", char_encoder="none", pooling="max", **model)
        epochs = 20
    config = ExperimentConfig(
        data=data,
        model=model_config,
        train=TrainConfig(
            optimizer="adam", lr=0.02, batch_size=4, epochs=epochs, patience=0, seed=7, threads=1
        ),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", base / "hf_datasets_cache")
        train(config, directory)
    return directory


@pytest.fixture(scope="session")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.getbasetemp() / "annotate_models", "ner")


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.getbasetemp() / "annotate_models", "sentiment")


@pytest.fixture(scope="session")
def ner(ner_dir: Path):
    return load_model(ner_dir)


@pytest.fixture(scope="session")
def sentiment(sentiment_dir: Path):
    return load_model(sentiment_dir)


def check_offsets(annotation: Annotation | dict) -> None:
    """Offsets of an annotation, or of its record as written, slice its text."""
    if isinstance(annotation, Annotation):
        if annotation.probs is None:  # a tagger
            assert len(annotation.tags) == len(annotation.tag_probs) == len(annotation.tokens)
        annotation = annotation.to_record()
    text, tokens, sentences = annotation["text"], annotation["tokens"], annotation["sentences"]
    for token in tokens:
        assert text[token["start"] : token["end"]] == token["text"]
    for span in annotation.get("spans") or []:
        assert text[span["start"] : span["end"]] == span["text"]
        assert tokens[span["token_start"]]["start"] == span["start"]
        assert tokens[span["token_end"] - 1]["end"] == span["end"]
    assert [s for s, _ in sentences] == sorted(s for s, _ in sentences)
    assert sum(e - s for s, e in sentences) == len(tokens)
    if "probs" not in annotation:  # a tagger
        assert all({"tag", "score"} <= set(token) for token in tokens)


def test_entity_offsets_slice_the_original_text(ner) -> None:
    annotations = annotate_texts(ner, TEXTS)
    assert len(annotations) == len(TEXTS)
    for annotation, text in zip(annotations, TEXTS, strict=True):
        assert annotation.text == text
        check_offsets(annotation)
    assert annotations[1].tokens == [] and annotations[1].spans == []
    assert annotations[3].tokens == []
    spans = [s for a in annotations for s in a.spans]
    assert {"EU", "Paris"} <= {s.text for s in spans}
    assert all(0.0 < s.score <= 1.0 + 1e-6 for s in spans)
    assert [s for s, _ in annotations[0].sentences] == [0, 5]


def test_annotating_leaves_garbage_collection_as_it_was(ner, monkeypatch) -> None:
    annotator = Annotator(ner)
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            annotator(TEXTS)
            assert gc.isenabled() == enabled
            # also when annotation fails half way
            monkeypatch.setattr(annotator, "annotate_sentences", _fail)
            with pytest.raises(RuntimeError):
                annotator(TEXTS)
            assert gc.isenabled() == enabled
            monkeypatch.undo()
        finally:
            gc.enable()


def _fail(*args, **kwargs):
    raise RuntimeError("fails half way")


def test_the_model_sees_ptb_escapes_and_the_output_keeps_the_text(ner) -> None:
    escapes = escapes_for(ner)
    assert escapes.brackets and escapes.slash_star and escapes.double_quotes
    text = '(EU) and/or "Paris"'
    annotation = annotate_text(ner, text)
    assert [t.text for t in annotation.tokens] == ["(", "EU", ")", "and/or", '"', "Paris", '"']
    escaped = ["-LRB-", "EU", "-RRB-", "and\\/or", "``", "Paris", "''"]
    [expected] = tag_sentences(ner, [escaped])
    assert annotation.tags == expected.tags
    assert [(s.token_start, s.token_end, s.label) for s in annotation.spans] == [
        (s.start, s.end, s.label) for s in expected.spans
    ]
    check_offsets(annotation)


def test_classifier_gives_label_and_probabilities(sentiment) -> None:
    annotations = annotate_texts(sentiment, ["a wonderful film (really)", "", "dull and lifeless"])
    first, empty, last = annotations
    for annotation in (first, last):
        assert annotation.label == max(annotation.probs, key=annotation.probs.get)
        assert sum(annotation.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert annotation.tags == [] and annotation.spans is None
        check_offsets(annotation)
    assert last.label == "negative"
    assert empty.label is None and empty.probs == {} and empty.tokens == []
    record = first.to_record("x")
    assert set(record) == {"id", "text", "tokens", "sentences", "label", "probs"}
    assert all(len(str(p).split(".")[-1]) <= 4 for p in record["probs"].values())
    with pytest.raises(ConfigError, match="need a tagger"):
        Annotator(sentiment, k_best=2)


def test_kbest_per_sentence_starts_with_the_viterbi_path(ner) -> None:
    annotation = Annotator(ner, k_best=3)(["EU rejects German call. Peter visited Paris."])[0]
    assert len(annotation.kbest) == len(annotation.sentences) == 2
    for (start, end), paths in zip(annotation.sentences, annotation.kbest, strict=True):
        assert paths[0][0] == annotation.tags[start:end]
        assert [p for _, p in paths] == sorted((p for _, p in paths), reverse=True)
    record = annotation.to_record(1)
    assert len(record["kbest"]) == 2 and set(record["kbest"][0][0]) == {"tags", "prob"}


def test_k_best_records_always_hold_kbest_an_empty_document_too(ner) -> None:
    records = Annotator(ner, k_best=2).records(["Paris.", ""], [1, 2])
    assert len(records[0]["kbest"]) == 1 and records[1]["kbest"] == []
    assert "kbest" not in Annotator(ner).records([""], [1])[0]


def test_a_docstart_token_in_conll_output_is_written_and_warned_of(ner, tmp_path, caplog) -> None:
    source = tmp_path / "a.txt"
    source.write_text("The string -DOCSTART- appears in Paris.\n")
    out = tmp_path / "a.conll"
    annotate_paths([source], ner, out, AnnotateOptions(fmt="conll"))
    assert "\n-DOCSTART-\t" in out.read_text()  # the token is not dropped from the output
    assert "1 tokens '-DOCSTART-' written as CoNLL lines" in caplog.text


def test_record_round_trip(ner, sentiment) -> None:
    for model in (ner, sentiment):
        for annotation in annotate_texts(model, TEXTS):
            record = annotation.to_record("doc")
            assert json.loads(json.dumps(record)) == record


def test_a_10000_token_document_and_a_100000_character_word(ner) -> None:
    words = ["Peter", "visited", "Paris", "and", "the", "EU", "(again)"]
    long_text = " ".join(words[i % len(words)] for i in range(10_000))
    no_spaces = "x" * 50_000 + "EU" + "y" * 49_998
    annotations = annotate_texts(ner, [long_text, no_spaces])
    for annotation in annotations:
        check_offsets(annotation)
    assert len(annotations[0].tokens) == 10_000 + 2 * long_text.count("(again)")
    assert max(e - s for s, e in annotations[0].sentences) <= annotate.MAX_SENTENCE_TOKENS
    assert "".join(t.text for t in annotations[1].tokens) == no_spaces


def write_lines(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_folder_gives_one_record_per_line_mirroring_the_tree(ner, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_lines(
        folder / "a.txt", b"\xef\xbb\xbfEU rejects German call.\r\n\nPeter \xff visited Paris\n"
    )
    write_lines(folder / "sub" / "b.txt", "(EU) and/or Zürich 😀\n\n\n".encode())
    write_lines(folder / "sub" / "skip.md", b"not matched by the glob\n")
    write_lines(folder / "c.txt", b"last line without a newline")
    stats = annotate_paths([folder], ner, tmp_path / "out", show_progress=True)
    outputs = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.*"))
    assert outputs == [Path("a.jsonl"), Path("c.jsonl"), Path("sub/b.jsonl")]
    a = read_records(tmp_path / "out" / "a.jsonl")
    assert [r["id"] for r in a] == [f"{folder / 'a.txt'}:{n}" for n in (1, 2, 3)]
    assert [r["text"] for r in a] == ["EU rejects German call.", "", "Peter \ufffd visited Paris"]
    b = read_records(tmp_path / "out" / "sub" / "b.jsonl")
    assert [r["text"] for r in b] == ["(EU) and/or Zürich 😀", "", ""]
    c = read_records(tmp_path / "out" / "c.jsonl")
    assert stats.documents == 7 and stats.invalid_utf8_lines == 1
    assert stats.tokens == sum(len(r["tokens"]) for r in a + b + c)
    # The same documents through annotate_texts give the same records.
    texts = [r["text"] for r in a + c + b]
    expected = [x.to_record(None) for x in annotate_texts(ner, texts)]
    assert [{**r, "id": None} for r in a + c + b] == expected
    for record in a + b + c:
        check_offsets(record)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=30), max_size=8).map(b"\n".join))
def test_one_record_per_input_line_whatever_the_bytes(ner, data: bytes) -> None:
    out = io.BytesIO()
    stats = annotate_paths(
        ["-"], ner, None, AnnotateOptions(window=3), stdin=io.BytesIO(data), stdout=out
    )
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    records = [json.loads(line) for line in out.getvalue().decode("utf-8").split("\n")[:-1]]
    assert len(records) == stats.documents == lines
    assert [r["id"] for r in records] == [f"<stdin>:{n}" for n in range(1, lines + 1)]
    for record in records:
        check_offsets(record)


def test_units_file_and_jsonl(ner, tmp_path: Path) -> None:
    doc = write_lines(tmp_path / "doc.txt", b"EU rejects German call.\nPeter visited Paris.\n")
    annotate_paths([doc], ner, tmp_path / "doc.jsonl", AnnotateOptions(unit="file"))
    [record] = read_records(tmp_path / "doc.jsonl")
    assert record["id"] == str(doc) and record["text"] == doc.read_text()
    check_offsets(record)
    rows = [{"key": "k1", "body": "EU rejects"}, {"body": "Paris"}]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    annotate_paths(
        [source],
        ner,
        tmp_path / "rows.out.jsonl",
        AnnotateOptions(text_field="body", id_field="key"),
    )
    records = read_records(tmp_path / "rows.out.jsonl")
    assert [r["id"] for r in records] == ["k1", f"{source}:2", f"{source}:3"]
    assert [r["text"] for r in records] == ["EU rejects", "Paris", ""]
    source.write_text(json.dumps(rows[0]) + "\n{broken\n")
    with pytest.raises(InputFormatError, match=r"rows.jsonl:2: not valid JSON"):
        annotate_paths([source], ner, tmp_path / "x.jsonl", AnnotateOptions(text_field="body"))
    with pytest.raises(InputFormatError, match=r"rows.jsonl:1: expected a string in 'text'"):
        annotate_paths([source], ner, tmp_path / "x.jsonl")


def test_standard_input_to_standard_output(ner) -> None:
    out = io.BytesIO()
    stats = annotate_paths(["-"], ner, stdin=io.BytesIO(b"EU rejects\n\nParis"), stdout=out)
    records = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert [r["id"] for r in records] == ["<stdin>:1", "<stdin>:2", "<stdin>:3"]
    assert stats.documents == 3
    with pytest.raises(ConfigError, match="can be resumed"):
        annotate_paths(
            ["-"],
            ner,
            None,
            AnnotateOptions(resume=True),
            stdin=io.BytesIO(b"x"),
            stdout=io.BytesIO(),
        )


def test_bad_inputs_are_user_errors(ner, tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="no such file or folder"):
        annotate_paths([tmp_path / "missing.txt"], ner)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError, match=r"no files match '\*\*/\*.txt'"):
        annotate_paths([tmp_path / "empty"], ner, tmp_path / "out")
    with pytest.raises(ConfigError, match="standard input"):
        annotate_paths(["-", tmp_path], ner)
    with pytest.raises(ConfigError, match="unknown unit"):
        annotate_paths([tmp_path], ner, None, AnnotateOptions(unit="page"))
