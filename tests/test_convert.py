"""`bilstm-nlp convert` on real data (CoNLL-2003 dev): every span format and DocBin reads back the
same tokens and spans, CoNLL → DocBin → CoNLL is the file itself, a span that cuts a token is the
documented error, and training from a DocBin or span JSONL gives the CoNLL file's model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
from bilstm_nlp.corpus.convert import convert_file
from bilstm_nlp.corpus.formats import detect_format, read_sentences, read_texts
from bilstm_nlp.corpus.readers.conll import DOCSTART
from bilstm_nlp.errors import ConfigError, InputFormatError, OutputError
from bilstm_nlp.text.schemes import tags_to_spans
from bilstm_nlp.training.loop import train

runner = CliRunner()
SUFFIXES = {
    "spans": ".jsonl",
    "doccano": ".jsonl",
    "labelstudio": ".json",
    "docbin": ".spacy",
    "conll": ".txt",
    "jsonl": ".jsonl",
}


def convert(source: Path, target: Path, *options: str) -> str:
    result = runner.invoke(app, ["convert", str(source), str(target), *options])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def dev(shared_corpora: Path) -> Path:
    return shared_corpora / "conll2003" / "dev.txt"


@pytest.fixture(scope="module")
def converted(dev: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CoNLL-2003 dev converted once to each span format and to a DocBin, through the CLI."""
    folder = tmp_path_factory.mktemp("converted")
    paths = {}
    for fmt in ("spans", "doccano", "labelstudio", "docbin"):
        paths[fmt] = folder / f"dev.{fmt}{SUFFIXES[fmt]}"
        output = convert(dev, paths[fmt], "--to", fmt)
        assert f"conll → {fmt}" in output
    return paths


@pytest.fixture(scope="module")
def reference(dev: Path) -> list:
    return list(read_sentences(dev))


@pytest.mark.parametrize("fmt", ["spans", "doccano", "labelstudio", "docbin"])
def test_conll2003_dev_reads_back_the_same_tokens_and_spans(
    converted: dict[str, Path], reference: list, fmt: str
) -> None:
    assert detect_format(converted[fmt]) == fmt
    back = list(read_sentences(converted[fmt]))
    assert len(back) == len(reference) == 3250
    for original, read in zip(reference, back, strict=True):
        assert read.tokens == original.tokens
        assert tags_to_spans(read.tags) == tags_to_spans(original.tags)
        assert read.doc_id == original.doc_id  # the -DOCSTART- documents survive


def test_conll_to_docbin_to_conll_is_the_file_itself(
    converted: dict[str, Path], dev: Path, tmp_path: Path
) -> None:
    back = tmp_path / "dev.txt"
    output = convert(converted["docbin"], back, "--to", "conll")
    assert "tags in IOB1" in output
    original = dev.read_bytes()
    # The distributed dev.txt ends with an extra blank line (see its README); the writer ends a
    # file with the blank line after its last sentence.
    assert original.endswith(b"\n\n\n")
    assert back.read_bytes() == original[:-1]


def test_conll_to_conll_is_the_file_itself(dev: Path, tmp_path: Path) -> None:
    back = tmp_path / "dev.txt"
    convert(dev, back, "--to", "conll")
    assert back.read_bytes() == dev.read_bytes()[:-1]


def test_a_docbin_holds_the_documents_and_the_other_columns(converted: dict[str, Path]) -> None:
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    docs = list(DocBin().from_disk(converted["docbin"]).get_docs(Vocab()))
    assert len(docs) == 216  # one Doc per -DOCSTART- document
    first = docs[0]
    assert first.user_data["id"] == "doc-1"
    settings = first.user_data["bilstm_nlp"]
    assert settings["scheme"] == "IOB1" and settings["docstart"] == "-DOCSTART- -X- O O"
    assert settings["lines"][:2] == ("CRICKET NNP I-NP O", "- : O O")
    assert [e.text for e in first.ents][:2] == ["LEICESTERSHIRE", "LONDON"]
    assert len(list(first.sents)) > 1


def test_span_records_are_sentences_with_their_tokens(converted: dict[str, Path]) -> None:
    with converted["spans"].open() as lines:
        first = json.loads(next(lines))
    assert first["text"] == "CRICKET - LEICESTERSHIRE TAKE OVER AT TOP AFTER INNINGS VICTORY ."
    assert first["id"] == "doc-1"
    assert first["spans"] == [
        {"start": 10, "end": 24, "token_start": 2, "token_end": 2, "label": "ORG"}
    ]
    assert first["tokens"][2] == {
        "text": "LEICESTERSHIRE",
        "start": 10,
        "end": 24,
        "id": 2,
        "ws": True,
    }
    tasks = json.loads(converted["labelstudio"].read_text())
    assert tasks[0]["annotations"][0]["result"][0]["value"] == {
        "start": 10,
        "end": 24,
        "text": "LEICESTERSHIRE",
        "labels": ["ORG"],
    }


def test_docbin_to_spans_equals_conll_to_spans(converted: dict[str, Path], tmp_path: Path) -> None:
    for fmt in ("spans", "labelstudio"):
        from_docbin = tmp_path / f"from-docbin{SUFFIXES[fmt]}"
        convert(converted["docbin"], from_docbin, "--to", fmt)
        assert from_docbin.read_bytes() == converted[fmt].read_bytes()


def test_span_formats_convert_into_each_other_unchanged(
    converted: dict[str, Path], tmp_path: Path
) -> None:
    doccano = tmp_path / "d.jsonl"
    convert(converted["labelstudio"], doccano, "--to", "doccano")
    assert doccano.read_bytes() == converted["doccano"].read_bytes()
    spans = tmp_path / "s.jsonl"
    convert(doccano, spans, "--to", "spans")
    assert spans.read_bytes() == converted["spans"].read_bytes()


def test_spans_to_conll_keeps_tokens_tags_and_documents(
    converted: dict[str, Path], reference: list, tmp_path: Path
) -> None:
    back = tmp_path / "back.txt"
    output = convert(converted["spans"], back, "--to", "conll", "--scheme", "IOB1")
    assert "tags in IOB1" in output
    read = list(read_sentences(back))
    assert [(s.tokens, s.tags, s.doc_id) for s in read] == [
        (s.tokens, s.tags, s.doc_id) for s in reference
    ]
    lines = back.read_text().splitlines()
    assert lines[:3] == [f"{DOCSTART} doc-1", "", "CRICKET O"]


def test_scheme_conversion(dev: Path, tmp_path: Path) -> None:
    out = tmp_path / "bioes.jsonl"
    output = convert(dev, out, "--to", "jsonl", "--scheme", "BIOES")
    assert "tags in BIOES" in output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["tags"][2] == "S-ORG" and records[0]["doc_id"] == "doc-1"
    assert [r["tokens"] for r in records] == [s.tokens for s in read_sentences(dev)]


def test_bilou_is_written_as_bilou_in_every_format(tmp_path: Path) -> None:
    source = tmp_path / "g.conll"
    source.write_text("Peter\tB-PER\nBlackburn\tE-PER\nfrom\tO\nBrussels\tS-LOC\n\n")
    bilou = ["B-PER", "L-PER", "O", "U-LOC"]
    assert "tags in BILOU" in convert(
        source, tmp_path / "o.conll", "--to", "conll", "--scheme", "BILOU"
    )
    assert [s.tags for s in read_sentences(tmp_path / "o.conll")] == [bilou]
    convert(source, tmp_path / "o.jsonl", "--to", "jsonl", "--scheme", "bilou")
    assert json.loads((tmp_path / "o.jsonl").read_text())["tags"] == bilou
    # A DocBin records the scheme: its entities come back as BILOU tags.
    convert(source, tmp_path / "o.spacy", "--to", "docbin", "--scheme", "BILOU")
    back = convert(tmp_path / "o.spacy", tmp_path / "back.conll", "--to", "conll")
    assert "tags in BILOU" in back
    assert (tmp_path / "back.conll").read_text() == (tmp_path / "o.conll").read_text()
    # BILOU in, no --scheme: said as what it is, written as it was.
    assert "tags in BILOU" in convert(
        tmp_path / "o.conll", tmp_path / "same.conll", "--to", "conll"
    )


def test_a_docstart_token_cannot_go_to_conll(tmp_path: Path) -> None:
    source = tmp_path / "t.jsonl"
    source.write_text(
        '{"tokens": ["a"], "tags": ["DET"]}\n{"tokens": ["-DOCSTART-", "x"], "tags": ["X", "X"]}\n'
    )
    with pytest.raises(InputFormatError, match=r"t\.jsonl:2: a token '-DOCSTART-'"):
        convert_file(source, tmp_path / "o.conll", "conll")
    assert not (tmp_path / "o.conll").exists()
    convert_file(source, tmp_path / "o.conllu", "conllu")  # numbered lines hold it
    assert [s.tokens for s in read_sentences(tmp_path / "o.conllu")][1] == ["-DOCSTART-", "x"]


def test_conllu_fields_that_convert_does_not_carry_are_named(tmp_path: Path, caplog) -> None:
    source = tmp_path / "u.conllu"
    source.write_text(
        "# newdoc id = d1\n# sent_id = d1-1\n# text = I didn't go.\n# note = x\n"
        "1\tI\tI\tPRON\tPRP\tCase=Nom\t3\tnsubj\t3:nsubj\t_\n"
        "2-3\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_\n"
        "2\tdid\tdo\tAUX\tVBD\t_\t4\taux\t4:aux\t_\n"
        "3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t4:advmod\t_\n"
        "4\tgo\tgo\tVERB\tVB\t_\t0\troot\t0:root\tSpaceAfter=No\n"
        "5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t4:punct\t_\n\n"
    )
    convert_file(source, tmp_path / "o.conllu", "conllu")
    [note] = [r.getMessage() for r in caplog.records if "not carried over" in r.getMessage()]
    assert "LEMMA, FEATS, HEAD, DEPREL, DEPS, MISC; 1 multiword-token" in note
    assert "1 comment lines" in note
    # What it does carry reads back the same.
    read = [(s.tokens, s.tags) for s in read_sentences(tmp_path / "o.conllu")]
    assert read == [(["I", "did", "n't", "go", "."], ["PRON", "AUX", "PART", "VERB", "PUNCT"])]
    caplog.clear()
    convert_file(tmp_path / "o.conllu", tmp_path / "again.conllu", "conllu")
    assert "not carried over" not in caplog.text


def test_pos_tags_to_conllu_and_docbin(dev: Path, tmp_path: Path) -> None:
    conllu = tmp_path / "pos.conllu"
    convert(dev, conllu, "--to", "conllu", "--label-column", "1", "--tag-field", "xpos")
    pos = [s.tags for s in read_sentences(dev, label_column=1)]
    assert [s.tags for s in read_sentences(conllu, tag_field="xpos")] == pos
    docbin = tmp_path / "pos.spacy"
    convert(conllu, docbin, "--to", "docbin", "--tag-field", "xpos")
    assert [s.tags for s in read_sentences(docbin, tag_field="xpos")] == pos
    with pytest.raises(ConfigError, match="holds token tags, not entities: span formats hold"):
        convert_file(docbin, tmp_path / "x.jsonl", "spans")
    with pytest.raises(ConfigError, match="CoNLL-U holds POS tags"):
        convert_file(dev, tmp_path / "x.conllu", "conllu")
    with pytest.raises(ConfigError, match="holds plain labels .* span formats hold entity"):
        convert_file(conllu, tmp_path / "x.jsonl", "spans", tag_field="xpos")


def test_labelled_texts_to_docbin_and_back(shared_corpora: Path, tmp_path: Path) -> None:
    sst = shared_corpora / "sst" / "dev.txt"
    docbin = tmp_path / "sst.spacy"
    convert(sst, docbin, "--to", "docbin")
    jsonl = tmp_path / "sst.jsonl"
    convert(docbin, jsonl, "--to", "jsonl")
    original = list(read_texts(sst))
    assert [(e.text, e.label) for e in read_texts(docbin)] == [(e.text, e.label) for e in original]
    assert [(e.text, e.label) for e in read_texts(jsonl)] == [(e.text, e.label) for e in original]
    raw = tmp_path / "raw.spacy"
    convert(jsonl, raw, "--to", "docbin")
    assert [e.tokens for e in read_texts(raw)][0] == original[0].tokens
    with pytest.raises(ConfigError, match="holds labelled texts"):
        convert_file(sst, tmp_path / "x.conll", "conll")


# A span that cuts a token, on real data


@pytest.fixture(scope="module")
def cut_file(converted: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The span JSONL of dev with the entity of record 3 ('West Indian') ending inside 'Indian'."""
    lines = converted["spans"].read_text().splitlines()
    record = json.loads(lines[2])
    assert record["text"].startswith("West Indian all-rounder Phil Simmons")
    del record["tokens"]  # the text is tokenized as annotate does
    record["spans"][0]["end"] -= 2
    lines[2] = json.dumps(record)
    path = tmp_path_factory.mktemp("cut") / "cut.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_span_cut_inside_a_token_is_the_documented_error(cut_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["convert", str(cut_file), str(tmp_path / "o.txt"), "--to", "conll"]
    )
    assert result.exit_code == 1
    assert result.output.strip().replace("\n", " ") == (
        f"error: {cut_file}:3: span [0, 9) 'West Indi' MISC ends inside token 'Indian' [5, 11): "
        "a span must start and end on token edges (--misaligned expand widens it to whole tokens, "
        "--misaligned drop leaves it out)"
    )
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.txt").exists()


def test_a_span_cut_inside_a_token_expand_and_drop(
    cut_file: Path, reference: list, tmp_path: Path
) -> None:
    expanded = tmp_path / "expanded.txt"
    output = convert(cut_file, expanded, "--to", "conll", "--misaligned", "expand")
    assert "1 cutting a token (1 widened, 0 dropped)" in output
    dropped = tmp_path / "dropped.txt"
    output = convert(cut_file, dropped, "--to", "conll", "--misaligned", "drop")
    assert "1 cutting a token (0 widened, 1 dropped)" in output
    expanded_sentences, dropped_sentences = (
        list(read_sentences(expanded)),
        list(read_sentences(dropped)),
    )
    assert expanded_sentences[2].tags[:2] == ["B-MISC", "I-MISC"]
    assert dropped_sentences[2].tags[:2] == ["O", "O"]
    # spaCy's tokenizer splits 'all-rounder'; the other entities stay.
    assert dropped_sentences[2].tokens[2:5] == ["all", "-", "rounder"]
    assert tags_to_spans(dropped_sentences[2].tags)[0].label == "PER"
    # Every other sentence is untouched.
    for index, original in enumerate(reference):
        if index != 2:
            assert tags_to_spans(dropped_sentences[index].tags) == tags_to_spans(original.tags)


def test_corpus_stats_counts_spans_that_cut_a_token(cut_file: Path) -> None:
    result = runner.invoke(app, ["corpus", "stats", str(cut_file), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["input_format"] == "spans"
    assert stats["span_counts"]["records"] == 3250 and stats["span_counts"]["misaligned"] == 1
    assert stats["first_misaligned"].startswith(f"{cut_file}:3: span [0, 9) 'West Indi'")
    result = runner.invoke(
        app, ["corpus", "stats", str(cut_file), "--json", "--misaligned", "expand"]
    )
    assert json.loads(result.stdout)["span_counts"]["expanded"] == 1


def test_train_stops_at_a_span_cut_inside_a_token(cut_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--train", str(cut_file), "--output", str(tmp_path / "m"), "--epochs", "1"]
    )
    assert result.exit_code == 1
    assert f"error: {cut_file}:3: span [0, 9) 'West Indi' MISC ends inside" in result.output
    assert "Traceback" not in result.output


# Convert's own errors


def test_convert_refuses_to_overwrite_its_input(dev: Path, tmp_path: Path) -> None:
    copy = tmp_path / "dev.txt"
    copy.write_bytes(dev.read_bytes()[:2000])
    with pytest.raises(OutputError, match="is the input file itself"):
        convert_file(copy, copy, "conll")
    with pytest.raises(OutputError, match="does not exist"):
        convert_file(copy, tmp_path / "no" / "out.txt", "conll")


def test_convert_cli_errors_are_one_line(dev: Path, tmp_path: Path) -> None:
    for options, message in (
        (["--to", "brat"], "--to 'brat': expected one of conll, conllu, jsonl, spans"),
        (["--to", "conll", "--misaligned", "widen"], "misaligned must be one of"),
        (["--to", "conll", "--scheme", "IOB3"], "unknown tag scheme 'IOB3'"),
    ):
        result = runner.invoke(app, ["convert", str(dev), str(tmp_path / "o"), *options])
        assert result.exit_code == 1
        assert message in result.output and "Traceback" not in result.output


def test_a_token_with_white_space_cannot_go_to_conll(tmp_path: Path) -> None:
    record = {
        "text": "New York rains",
        "tokens": [{"start": 0, "end": 8}, {"start": 9, "end": 14}],
        "spans": [{"start": 0, "end": 8, "label": "LOC"}],
    }
    source = tmp_path / "s.jsonl"
    source.write_text(json.dumps(record) + "\n")
    with pytest.raises(InputFormatError, match=r"s\.jsonl:1: token 'New York' holds white space"):
        convert_file(source, tmp_path / "o.txt", "conll")
    convert_file(source, tmp_path / "o.jsonl", "jsonl")  # JSONL holds it


# Training from each format gives the same model


def tiny_config(train_file: Path, scheme: str | None) -> ExperimentConfig:
    return ExperimentConfig(
        data=DataConfig(train=str(train_file), scheme=scheme),
        model=ModelConfig(
            vectors=None, word_dim=16, hidden=16, char_hidden=8, char_dim=8, casing_dim=4
        ),
        train=TrainConfig(optimizer="adam", lr=0.01, batch_size=16, epochs=1, seed=3, threads=1),
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.mark.slow
def test_one_epoch_from_docbin_and_span_jsonl_equals_the_conll_model(
    dev: Path, tmp_path: Path
) -> None:
    # The first 400 sentences of dev (its first documents), as a CoNLL file of their own.
    lines, sentences, previous = [], 0, ""
    for line in dev.read_text().splitlines():
        lines.append(line)
        if not line and previous and not previous.startswith(DOCSTART):
            sentences += 1
            if sentences == 400:
                break
        previous = line
    conll = tmp_path / "part.txt"
    conll.write_text("\n".join(lines) + "\n")
    docbin, spans = tmp_path / "part.spacy", tmp_path / "part.jsonl"
    convert(conll, docbin, "--to", "docbin")
    convert(conll, spans, "--to", "spans")
    models = {}
    for name, path, scheme in (
        ("conll", conll, None),
        ("docbin", docbin, None),
        ("conll-bioes", conll, "BIOES"),
        ("spans-bioes", spans, "BIOES"),
        ("docbin-bioes", docbin, "BIOES"),
    ):
        train(tiny_config(path, scheme), tmp_path / name)
        models[name] = weights(tmp_path / name)
    for first, second in (
        ("conll", "docbin"),
        ("conll-bioes", "spans-bioes"),
        ("conll-bioes", "docbin-bioes"),
    ):
        assert models[first].keys() == models[second].keys()
        for key, tensor in models[first].items():
            assert torch.equal(tensor, models[second][key]), (first, second, key)
        for vocabulary in ("words.json", "chars.json", "labels.json"):
            assert (tmp_path / first / vocabulary).read_text() == (
                tmp_path / second / vocabulary
            ).read_text()
    # evaluate scores the span file as it scores the CoNLL file.
    scores = {}
    for name, path in (("conll", conll), ("spans", spans), ("docbin", docbin)):
        result = runner.invoke(
            app, ["evaluate", str(tmp_path / "conll-bioes"), str(path), "--json"]
        )
        assert result.exit_code == 0, result.output
        scores[name] = json.loads(result.stdout)
    assert scores["spans"]["f1"] == scores["conll"]["f1"] == scores["docbin"]["f1"]
    assert scores["spans"]["sentences"] == 400


# Property: any tokens and entity tags survive every format


_WORDS = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cs", "Zs", "Zl", "Zp", "Cc"], blacklist_characters="\ufeff\x85"
    ),
    min_size=1,
    max_size=6,
).filter(lambda word: word != DOCSTART and not any(c.isspace() for c in word))
_TAGS = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sentences=st.lists(
        st.lists(st.tuples(_WORDS, _TAGS), min_size=1, max_size=6), min_size=1, max_size=4
    )
)
@example(sentences=[[("{", "O")]])  # a CoNLL file whose first token opens a brace
def test_generated_sentences_survive_every_format(tmp_path: Path, sentences) -> None:
    conll = tmp_path / "gen.txt"
    conll.write_text(
        "\n\n".join("\n".join(f"{w} {t}" for w, t in sentence) for sentence in sentences) + "\n"
    )
    expected = [([w for w, _ in s], tags_to_spans([t for _, t in s])) for s in sentences]
    for fmt, suffix in (("spans", ".jsonl"), ("labelstudio", ".json"), ("docbin", ".spacy")):
        target = tmp_path / f"gen-{fmt}{suffix}"
        convert_file(conll, target, fmt)
        back = [(s.tokens, tags_to_spans(s.tags)) for s in read_sentences(target)]
        assert back == expected, fmt
        again = tmp_path / f"again-{fmt}.txt"
        convert_file(target, again, "conll", scheme="IOB2")
        assert [(s.tokens, tags_to_spans(s.tags)) for s in read_sentences(again)] == expected


def test_a_record_field_the_target_writes_itself_is_one_error_line(tmp_path: Path) -> None:
    # A span record's own `label` field, into doccano, whose `label` holds the spans.
    source = tmp_path / "spans.jsonl"
    records = [
        {"text": "Paris", "spans": [{"start": 0, "end": 5, "label": "LOC"}]},
        {"text": "Rome", "spans": [], "label": "GPE"},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    target = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["convert", str(source), str(target), "--to", "doccano"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{source}:2: the record's field(s) 'label' would be overwritten" in result.output
    assert not target.exists()


def test_doccano_output_leaves_out_documents_without_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # doccano's import refuses an empty or white-space text (doccano#720): the whole file fails.
    source = tmp_path / "spans.jsonl"
    texts = ["Paris", "", "Rome", " \n ", "Oslo"]
    records = [{"text": text, "spans": [], "id": n} for n, text in enumerate(texts)]
    records[0]["spans"] = [{"start": 0, "end": 5, "label": "LOC"}]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    target = tmp_path / "doccano.jsonl"
    output = convert(source, target, "--to", "doccano")
    assert "3 records" in output
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(r["id"], r["text"], r["label"]) for r in written] == [
        ("0", "Paris", [[0, 5, "LOC"]]),
        ("2", "Rome", []),
        ("4", "Oslo", []),
    ]
    assert "2 documents without text (empty or white space only) were left out" in caplog.text
    # The other shapes keep every document.
    convert(source, tmp_path / "spans-again.jsonl", "--to", "spans")
    assert len((tmp_path / "spans-again.jsonl").read_text().splitlines()) == 5
