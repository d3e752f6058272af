"""Selection on real data: CoNLL-2003 dev sentences as raw text lines, ranked by the shipped `ner`
model. Uncertainties against enumeration of every tag path and against the CRF's own partition
function, the ranking and the near-duplicate rule against brute force, the written Label Studio,
doccano and span files, and the command line's handling of empty, invalid and missing input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp.annotation.annotator import Annotator, escapes_for
from bilstm_nlp.annotation.duplicates import jaccard, shingles
from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths
from bilstm_nlp.annotation.preannotation import SelectOptions, read_labelled_texts, select_file
from bilstm_nlp.annotation.selection import (
    Candidate,
    candidates_from,
    choose,
    document_uncertainty,
    rank,
    rank_sentences,
)
from bilstm_nlp.cli import app
from bilstm_nlp.errors import ConfigError, InputFormatError
from bilstm_nlp.nn.encoding import TokenEncoder, collate
from bilstm_nlp.serialize import load_model
from bilstm_nlp.text.schemes import spans_to_tags, tags_to_spans

POOL_SIZE = 400


@pytest.fixture(scope="module")
def ner():
    return load_model("ner")


@pytest.fixture(scope="module")
def dev_sentences(shared_corpora: Path) -> list[list[str]]:
    """CoNLL-2003 dev sentences (tokens), -DOCSTART- dropped."""
    sentences, tokens = [], []
    for line in (shared_corpora / "conll2003" / "dev.txt").read_text().splitlines():
        if not line.strip():
            if tokens:
                sentences.append(tokens)
            tokens = []
        elif not line.startswith("-DOCSTART-"):
            tokens.append(line.split(" ")[0])
    if tokens:
        sentences.append(tokens)
    return sentences


@pytest.fixture(scope="module")
def pool_lines(dev_sentences) -> list[str]:
    """The first POOL_SIZE dev sentences as raw text, one per line."""
    return [" ".join(tokens) for tokens in dev_sentences[:POOL_SIZE]]


@pytest.fixture(scope="module")
def pool(tmp_path_factory, pool_lines) -> Path:
    path = tmp_path_factory.mktemp("pool") / "pool.txt"
    path.write_text("".join(line + "\n" for line in pool_lines))
    return path


@pytest.fixture(scope="module")
def pool_annotations(ner, pool_lines):
    """The pool annotated in one block, as `select_file` annotates it."""
    return Annotator(ner, uncertainty=True)(pool_lines)


def emissions_of(model, tokens: list[str]) -> torch.Tensor:
    """`(len(tokens), num_tags)` float64 emissions of one sentence, computed on its own."""
    return document_emissions_of(model, [tokens])[0]


def document_emissions_of(model, sentences: list[list[str]]) -> list[torch.Tensor]:
    """Each sentence's float64 emissions, the sentences read as one document (a model with
    document memory reads the other sentences' occurrences of each word)."""
    encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
    batch = collate([encoder(tokens) for tokens in sentences])
    batch.doc_ids = torch.zeros(len(sentences), dtype=torch.long)
    with torch.inference_mode():
        emissions = model(batch).double()
    return [emissions[row, : len(tokens)] for row, tokens in enumerate(sentences)]


def enumerated_log_probs(model, emissions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every tag path of a short sentence and its log-probability under the CRF."""
    length, num_tags = emissions.shape
    with torch.no_grad():
        start, transitions, end = (s.double() for s in model.head.crf.scores())
    paths = torch.tensor(list(itertools.product(range(num_tags), repeat=length)))
    scores = start[paths[:, 0]] + end[paths[:, -1]] + emissions[torch.arange(length), paths].sum(1)
    scores = scores + transitions[paths[:, :-1], paths[:, 1:]].sum(1)
    return paths, scores.log_softmax(0)


def sentence_tokens(model, annotation) -> list[list[str]]:
    escapes = escapes_for(model)
    return [
        escapes.apply(annotation.text, annotation.tokens[start:end])
        for start, end in annotation.sentences
    ]


# Uncertainties against brute force.


def test_least_confident_and_entropy_equal_enumeration_of_every_path(ner, dev_sentences) -> None:
    texts = [" ".join(t) for t in dev_sentences if 2 <= len(t) <= 4][:40]
    # Short one-sentence documents only: 17 tags over 4 tokens are 83,521 paths.
    annotations = [
        a
        for a in Annotator(ner, uncertainty=True)(texts)
        if len(a.sentences) == 1 and 2 <= len(a.tokens) <= 4
    ][:6]
    assert len(annotations) == 6
    for annotation in annotations:
        [tokens] = sentence_tokens(ner, annotation)
        paths, log_probs = enumerated_log_probs(ner, emissions_of(ner, tokens))
        n = len(tokens)
        best = int(log_probs.argmax())
        decoded = spans_to_tags(tags_to_spans(annotation.tags), n, ner.scheme)
        assert paths[best].tolist() == ner.vocab.labels.ids(decoded)
        expected = -math.expm1(float(log_probs[best]) / n)
        assert document_uncertainty(annotation, "least-confident") == pytest.approx(
            expected, rel=1e-4, abs=1e-9
        )
        entropy = float(-(log_probs.exp() * log_probs).sum()) / n
        assert document_uncertainty(annotation, "entropy") == pytest.approx(
            entropy, rel=1e-4, abs=1e-9
        )


def test_multi_sentence_documents_equal_the_crfs_partition_function(ner, dev_sentences) -> None:
    # Three dev sentences to a line: the document's path probability is the product of its
    # sentences'; each sentence is scored with the CRF's own Viterbi and log Z, from its
    # emissions in its document.
    block = dev_sentences[20:50]
    texts = [" ".join(block[i] + block[i + 1] + block[i + 2]) for i in range(0, 30, 3)]
    annotations = Annotator(ner, uncertainty=True)(texts)
    assert sum(len(a.sentences) > 1 for a in annotations) >= 5
    crf = ner.head.crf
    for annotation in annotations:
        sentences = sentence_tokens(ner, annotation)
        log_prob = entropy = 0.0
        outside = []
        with torch.no_grad():
            for emissions in document_emissions_of(ner, sentences):
                emissions = emissions.unsqueeze(0)
                mask = torch.ones(emissions.shape[:2], dtype=torch.bool)
                path, _ = crf.viterbi_decode(emissions, mask)
                score = crf.path_scores(emissions, path, mask) - crf.log_partition(emissions, mask)
                log_prob += float(score)
                entropy += float(crf.entropy(emissions, mask))
                outside.extend(crf.marginals(emissions, mask)[0, :, ner.vocab.labels.id("O")])
        n = len(annotation.tokens)
        assert document_uncertainty(annotation, "least-confident") == pytest.approx(
            -math.expm1(log_prob / n), rel=1e-3, abs=1e-7
        )
        assert document_uncertainty(annotation, "entropy") == pytest.approx(
            entropy / n, rel=1e-3, abs=1e-7
        )
        # entity-margin: the most doubtful of the entities' and the outside tokens' decisions.
        covered = {t for s in annotation.spans for t in range(s.token_start, s.token_end)}
        decisions = [s.score for s in annotation.spans] + [
            1 - float(p) for t, p in enumerate(outside) if t not in covered
        ]
        expected = max(1 - abs(2 * p - 1) for p in decisions)
        assert document_uncertainty(annotation, "entity-margin") == pytest.approx(
            expected, abs=1e-5
        )


def test_a_document_without_entities_still_ranks_by_its_doubtful_tokens(ner) -> None:
    [annotation] = Annotator(ner, uncertainty=True)(["the wombat ate the grass"])
    assert annotation.spans == []
    score = document_uncertainty(annotation, "entity-margin")
    assert score == pytest.approx(
        max(1 - abs(2 * (1 - p) - 1) for p in annotation.uncertainty[0].outside_probs)
    )
    assert 0 < score < 1


# Ranking and choosing.


def brute_force_choice(ranked: list[Candidate], n: int, labelled: list[str] = ()) -> list[int]:
    """Walk the ranking; keep a candidate unless it is within 0.8 Jaccard of one kept or one
    labelled, compared pairwise."""
    kept: list[Candidate] = []
    for candidate in ranked:
        if len(kept) == n:
            break
        others = [c.text for c in kept] + list(labelled)
        own = shingles(candidate.text)
        if any(jaccard(own, shingles(other)) >= 0.8 for other in others):
            continue
        kept.append(candidate)
    return [c.index for c in kept]


def test_rank_sorts_by_score_with_ties_in_input_order() -> None:
    scores = [0.5, 0.9, 0.5, 0.1, 0.9, 0.5]
    candidates = [Candidate(i, f"text {i}", s, ()) for i, s in enumerate(scores)]
    ranked = rank(list(reversed(candidates)), "least-confident")
    assert [c.index for c in ranked] == [1, 4, 0, 2, 5, 3]
    again = rank(candidates, "random", seed=3)
    assert [c.index for c in again] == [c.index for c in rank(candidates, "random", seed=3)]
    assert [c.index for c in again] != [c.index for c in rank(candidates, "random", seed=4)]
    with pytest.raises(ConfigError, match="unknown strategy"):
        rank(candidates, "margin")


@pytest.mark.parametrize("strategy", ["least-confident", "entropy", "entity-margin", "random"])
def test_selected_are_the_most_uncertain_without_near_duplicates(
    ner, pool, pool_lines, pool_annotations, tmp_path, strategy
) -> None:
    out = tmp_path / "out.jsonl"
    stats = select_file(ner, pool, out, SelectOptions(n=60, strategy=strategy, to="jsonl", seed=5))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # The same ranking from the library's parts, and the same choice by brute force.
    lines = range(1, len(pool_lines) + 1)
    candidates = candidates_from(pool_annotations, strategy, lines=lines)
    ranked = rank(candidates, strategy, seed=5)
    scores = [c.score for c in ranked]
    assert scores == sorted(scores, reverse=True)
    expected = brute_force_choice(ranked, 60)
    assert [r["line"] - 1 for r in records] == expected
    assert [r["rank"] for r in records] == list(range(1, 61))
    assert all(r["strategy"] == strategy for r in records)
    by_index = {c.index: c for c in ranked}
    for record in records:
        assert record["score"] == pytest.approx(by_index[record["line"] - 1].score, rel=1e-5)
    # Never two near-duplicates in one selection, and the skipped ones are counted.
    for a, b in itertools.combinations(records, 2):
        assert jaccard(shingles(a["text"]), shingles(b["text"])) < 0.8
    assert (stats.documents, stats.ranked, stats.selected) == (POOL_SIZE, POOL_SIZE, 60)
    walked = ranked.index(by_index[expected[-1]]) + 1
    assert stats.duplicates == walked - 60 and stats.empty == 0


def test_random_is_reproducible_by_seed(ner, pool, tmp_path) -> None:
    outputs = []
    for seed in (1, 1, 2):
        out = tmp_path / f"random-{len(outputs)}.json"
        select_file(ner, pool, out, SelectOptions(n=20, strategy="random", seed=seed))
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]


def test_every_line_is_ranked_and_n_larger_than_the_pool_takes_them_all(
    ner, pool, pool_lines, tmp_path
) -> None:
    out = tmp_path / "all.jsonl"
    stats = select_file(ner, pool, out, SelectOptions(n=10 * POOL_SIZE, to="jsonl"))
    lines = {json.loads(line)["line"] for line in out.read_text().splitlines()}
    assert stats.ranked == POOL_SIZE and stats.selected == len(lines)
    assert stats.selected + stats.duplicates == POOL_SIZE
    # Those left out are exactly near-duplicates of one kept.
    kept = [pool_lines[line - 1] for line in lines]
    for number, text in enumerate(pool_lines, 1):
        if number not in lines:
            assert any(jaccard(shingles(text), shingles(k)) >= 0.8 for k in kept)


def test_rank_sentences_ranks_a_tokenized_pool_as_raw_lines(ner, dev_sentences) -> None:
    # Where spaCy splits a line back into the CoNLL tokens as one sentence, the tokenized
    # pool's uncertainty is the raw-text path's (up to batching).
    sentences = dev_sentences[:200]
    ranked = rank_sentences(ner, sentences, "entropy")
    assert sorted(c.index for c in ranked) == list(range(200))
    annotations = Annotator(ner, uncertainty=True)([" ".join(s) for s in sentences])
    raw = candidates_from(annotations, "entropy")
    compared = 0
    for candidate in ranked:
        annotation, other = annotations[candidate.index], raw[candidate.index]
        assert other.text == candidate.text
        if (
            len(annotation.sentences) == 1
            and [t.text for t in annotation.tokens] == sentences[candidate.index]
        ):
            assert candidate.score == pytest.approx(other.score, rel=1e-3, abs=1e-6)
            assert [(s.start, s.end, s.label) for s in candidate.spans] == [
                (s.start, s.end, s.label) for s in other.spans
            ]
            compared += 1
    assert compared > 100


def test_exclude_skips_what_is_labelled(ner, pool, pool_annotations, tmp_path) -> None:
    first = tmp_path / "first.json"
    select_file(ner, pool, first, SelectOptions(n=30))
    labelled = read_labelled_texts(first)
    assert len(labelled) == 30 and all(isinstance(t, str) for t in labelled)
    second = tmp_path / "second.json"
    stats = select_file(ner, pool, second, SelectOptions(n=30, exclude=(first,)))
    tasks = json.loads(second.read_text())
    assert stats.excluded >= 30
    for task in tasks:
        assert all(jaccard(shingles(task["data"]["text"]), shingles(t)) < 0.8 for t in labelled)
    # The same rule by brute force.
    ranked = rank(candidates_from(pool_annotations, "least-confident"), "least-confident")
    expected = brute_force_choice(ranked, 30, labelled)
    assert [task["data"]["line"] - 1 for task in tasks] == expected
    assert choose(ranked, 30, exclude=labelled).excluded == stats.excluded


# Files written.


def test_label_studio_tasks_carry_predictions_with_the_models_probabilities(
    ner, pool, tmp_path
) -> None:
    out = tmp_path / "tasks.json"
    select_file(ner, pool, out, SelectOptions(n=25, strategy="entity-margin", model_version="v1"))
    tasks = json.loads(out.read_text())
    assert isinstance(tasks, list) and len(tasks) == 25
    # The scores are those `annotate` gives the same lines.
    records = tmp_path / "records.jsonl"
    annotate_paths([pool], ner, records, AnnotateOptions())
    spans_by_line = {
        number: {(s["start"], s["end"], s["label"]): s["score"] for s in json.loads(line)["spans"]}
        for number, line in enumerate(records.read_text().splitlines(), 1)
    }
    regions = 0
    for task in tasks:
        data = task["data"]
        text = data["text"]
        assert data["doc_id"] == f"{pool}:{data['line']}"
        [prediction] = task["predictions"]
        assert prediction["model_version"] == "v1" and 0 < prediction["score"] <= 1
        expected = spans_by_line[data["line"]]
        assert len(prediction["result"]) == len(expected)
        for region in prediction["result"]:
            value = region["value"]
            assert value["text"] == text[value["start"] : value["end"]]
            assert (region["from_name"], region["to_name"], region["type"]) == (
                "label",
                "text",
                "labels",
            )
            [label] = value["labels"]
            assert region["score"] == expected[(value["start"], value["end"], label)]
            regions += 1
    assert regions > 0


def test_doccano_lines_hold_text_label_and_scores(ner, pool, tmp_path) -> None:
    out = tmp_path / "doccano.jsonl"
    select_file(ner, pool, out, SelectOptions(n=15, to="doccano"))
    lines = out.read_text().splitlines()
    assert len(lines) == 15
    for line in lines:
        record = json.loads(line)
        assert {"text", "label", "id", "score", "line", "rank", "strategy"} <= set(record)
        for start, end, label in record["label"]:
            assert 0 <= start < end <= len(record["text"]) and label in {
                "PER",
                "LOC",
                "ORG",
                "MISC",
            }
        # Every selected record is scored: span_scores is there, `[]` without spans.
        assert len(record["span_scores"]) == len(record["label"])
    assert any(not json.loads(line)["label"] for line in lines)


def test_jsonl_input_keeps_its_ids(ner, pool_lines, tmp_path) -> None:
    source = tmp_path / "docs.jsonl"
    rows = [{"text": text, "doc": f"d{i}"} for i, text in enumerate(pool_lines[:50])]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    select_file(ner, source, out, SelectOptions(n=5, to="jsonl", id_field="doc"))
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert rows[record["line"] - 1] == {"text": record["text"], "doc": record["id"]}


# The command line.


def run(args: list[str]):
    return CliRunner().invoke(app, args)


def test_cli_counts_empty_and_invalid_lines_and_a_short_pool(pool_lines, tmp_path) -> None:
    source = tmp_path / "mixed.txt"
    body = "\n".join(pool_lines[:8]).encode() + b"\n\n   \n\xff\xfeGermany beat Italy\n"
    source.write_bytes(body)
    out = tmp_path / "out.json"
    result = run(["select", "ner", str(source), "-n", "50", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    tasks = json.loads(out.read_text())
    assert "ranked 9 of 11 documents" in result.output
    assert "2 empty" in result.output and "1 with invalid UTF-8" in result.output
    assert "the pool ran out" in result.output
    assert len(tasks) + int(result.output.split("skipped ")[1].split()[0]) == 9
    assert any("\ufffd" in task["data"]["text"] for task in tasks)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ner", "{missing}", "-o", "{out}"], "missing.txt: no such file"),
        (["ner", "{pool}", "-o", "{out}", "-s", "margin"], "unknown strategy 'margin'"),
        (["ner", "{pool}", "-o", "{out}", "-t", "csv"], "unknown output format 'csv'"),
        (["ner", "{pool}", "-o", "{out}", "-n", "0"], "-n must be at least 1"),
        (["pos", "{pool}", "-o", "{out}"], "select ranks entity spans; this pos model"),
        (["sentiment", "{pool}", "-o", "{out}"], "this model is a classifier"),
        (["ner", "{pool}", "-o", "{pool}"], "the output would overwrite the input"),
        (["ner", "{pool}", "-o", "{out}", "--exclude", "{missing}"], "no such file"),
        (["ner", "{bad_jsonl}", "-o", "{out}"], "bad.jsonl:2:"),
    ],
)
def test_cli_user_mistakes_are_one_line(pool, tmp_path, args, message) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"no text": 1}\n')
    names = {
        "missing": str(tmp_path / "missing.txt"),
        "out": str(tmp_path / "out.json"),
        "pool": str(pool),
        "bad_jsonl": str(bad),
    }
    result = run(["select", *(arg.format(**names) for arg in args)])
    assert result.exit_code == 1
    assert "error: " in result.output and message in result.output
    assert "Traceback" not in result.output
    assert pool.stat().st_size > 0


def test_a_document_over_the_size_limit_is_counted_not_ranked(
    ner, pool_lines, tmp_path, monkeypatch
) -> None:
    from bilstm_nlp.corpus.readers import documents

    monkeypatch.setattr(documents, "LONG_DOCUMENT_BYTES", 2_000)
    monkeypatch.setattr(documents, "PIECE_BYTES", 500)
    source = tmp_path / "long.txt"
    source.write_text(
        pool_lines[0] + "\n" + " ".join(pool_lines[:80]) + "\n" + pool_lines[1] + "\n"
    )
    out = tmp_path / "out.jsonl"
    stats = select_file(ner, source, out, SelectOptions(n=5, to="jsonl"))
    assert (stats.documents, stats.ranked, stats.too_long) == (3, 2, 1)
    assert sorted(json.loads(line)["line"] for line in out.read_text().splitlines()) == [1, 3]


def test_select_refuses_bad_options_before_reading(ner, tmp_path) -> None:
    with pytest.raises(InputFormatError, match="no such file"):
        select_file(ner, tmp_path / "none.txt", tmp_path / "out.json", SelectOptions(n=3))
    with pytest.raises(ConfigError, match="unit"):
        select_file(ner, tmp_path / "none.txt", tmp_path / "o", SelectOptions(n=3, unit="file"))
