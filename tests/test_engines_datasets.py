"""Hugging Face `datasets.map(BatchAnnotator(...), batched=True, num_proc=2)` against the local
`annotate -f jsonl` run on 2,000 CoNLL-2003 dev sentences plus an empty and a bad-UTF-8 line."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bilstm_nlp.cli import app
from bilstm_nlp.integrations.engines import BatchAnnotator
from tests.engine_data import DOCUMENTS, assert_records_equal, read_records, write_input

datasets = pytest.importorskip("datasets")
runner = CliRunner()


def test_datasets_map_with_two_processes_equals_local(
    shared_corpora: Path, tmp_path: Path, datasets_cache: Path
) -> None:
    from datasets.fingerprint import Hasher

    source = write_input(shared_corpora, tmp_path / "dev.txt")
    output = tmp_path / "local.jsonl"
    result = runner.invoke(app, ["annotate", str(source), "-o", str(output)])
    assert result.exit_code == 0, result.output
    expected = read_records(output.read_bytes().splitlines())
    lines = source.read_bytes().split(b"\n")[:-1]
    texts = [line.decode("utf-8", errors="replace") for line in lines]
    ids = [f"{source}:{number}" for number in range(1, len(lines) + 1)]
    assert len(texts) == DOCUMENTS + 2 and texts[-2] == "" and "\ufffd" in texts[-1]

    annotator = BatchAnnotator("ner", id_column="id")
    # datasets hashes the callable (with dill) for its cache: plain values hash fast and stably,
    # so equal annotators get one fingerprint (an unhashable one would get a random fingerprint).
    started = time.perf_counter()
    assert Hasher.hash(annotator) == Hasher.hash(BatchAnnotator("ner", id_column="id"))
    assert time.perf_counter() - started < 1.0
    assert Hasher.hash(annotator) != Hasher.hash(BatchAnnotator("pos", id_column="id"))

    dataset = datasets.Dataset.from_dict({"text": texts, "id": ids})
    annotated = dataset.map(annotator, batched=True, batch_size=500, num_proc=2)
    assert annotated.num_rows == DOCUMENTS + 2
    assert annotated["id"] == ids  # every line one record, in input order
    found = [json.loads(text) for text in annotated["annotation"]]
    assert_records_equal(found, expected)
    # The model was loaded in the worker processes; the callable still holds plain values only.
    assert b"torch" not in pickle.dumps(annotator)
