"""Tagging without torch and datasets: an ONNX model folder through the CLI (`tag`, `annotate` in
every format), `bilstm_nlp.load`, the spaCy component and the service, in a process where
`import torch` and `import datasets` fail; a torch-only command there says what to install in one
line; `--threads` reaches the ONNX session; and the slim distribution (`packaging/runtime`)
installs into a fresh venv without torch and tags as the torch model does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bilstm_nlp.annotation.files import _threads_of
from bilstm_nlp.decode import tag_sentences
from bilstm_nlp.integrations.runtime.export import export_onnx
from bilstm_nlp.serialize import load_model

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "EU rejects German call to boycott British lamb."
TEXTS = [SENTENCE, "Peter Blackburn said in Brussels that the U.N. would meet in New York."]
MAX_PROB_DIFF = 1e-4
FORMATS = {
    "jsonl": ".jsonl",
    "conll": ".conll",
    "docbin": ".spacy",
    "html": ".html",
    "text": ".txt",
}

# Runs first in the child: every import of torch, datasets or seqeval fails as in an install
# without them (a finder ahead of the others refuses them by name).
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "datasets", "seqeval"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Refuse())
    """
)

# What the child does with the ONNX folder `onnx` (and the shipped torch `ner`), reported as one
# JSON object on its last line.
CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from typer.testing import CliRunner
    from bilstm_nlp.cli import app

    onnx, docs, out = sys.argv[1:4]
    texts = json.loads(sys.argv[4])
    formats = json.loads(sys.argv[5])
    runner = CliRunner()
    report = {}
    result = runner.invoke(app, ["tag", "--model", onnx, "-f", "jsonl", "-k", "3", *texts])
    report["tag"] = [result.exit_code, result.stdout]
    for fmt in formats:
        result = runner.invoke(
            app, ["annotate", docs, "--model", onnx, "-f", fmt, "-o", f"{out}/{fmt}"]
        )
        report["annotate-" + fmt] = [result.exit_code, result.stderr]
    # An engine's driver plans and writes parts here; its workers are processes of their own.
    result = runner.invoke(
        app, ["annotate", docs, "--model", onnx, "--engine", "dask", "-w", "1", "-o", f"{out}/dask"]
    )
    report["engine"] = [result.exit_code, result.stderr, repr(result.exception)]
    for name, args in {
        "tag-torch": ["tag", "--model", "ner", "x"],
        "train": ["train", "--train", docs, "-o", f"{out}/trained"],
        "export": ["export", "ner", f"{out}/exported", "--format", "onnx"],
    }.items():
        result = runner.invoke(app, args)
        report[name] = [result.exit_code, result.stderr, repr(result.exception)]

    import bilstm_nlp
    model = bilstm_nlp.load(onnx)
    tagged = bilstm_nlp.tag_sentences(model, [texts[0].rstrip(".").split() + ["."]])
    report["api"] = [[s.start, s.end, s.label, s.score] for s in tagged[0].spans]

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("bilstm_tagger", config={"model": onnx})
    report["spacy"] = [[e.start, e.end, e.label_] for e in nlp(texts[0]).ents]
    from fastapi.testclient import TestClient
    from bilstm_nlp.integrations.serve.app import ServeConfig, create_app
    served = create_app(ServeConfig(models=(onnx,), threads=1))
    with TestClient(served, base_url="http://localhost") as client:
        answer = client.post("/v1/annotate", json={"text": texts[0]})
        report["serve"] = [answer.status_code, answer.json()["records"]]

    report["modules"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("torch", "datasets", "seqeval")
    )
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def ner_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped NER model exported to ONNX (float32)."""
    target = tmp_path_factory.mktemp("runtime") / "ner-onnx"
    export_onnx("ner", target)
    return target


@pytest.fixture(scope="module")
def torch_tagged() -> list[dict]:
    """The shipped torch NER model's JSONL records for `TEXTS`, with the 3 best paths."""
    from typer.testing import CliRunner

    from bilstm_nlp.cli import app

    result = CliRunner().invoke(app, ["tag", "-f", "jsonl", "-k", "3", *TEXTS])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_same_records(found: list[dict], expected: list[dict]) -> None:
    """Same tokens, tags, spans and k-best paths; scores within MAX_PROB_DIFF (and the JSONL's
    rounding to 4 places)."""
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        assert [(t["text"], t["tag"]) for t in got["tokens"]] == [
            (t["text"], t["tag"]) for t in want["tokens"]
        ]
        assert [(s["start"], s["end"], s["label"]) for s in got["spans"]] == [
            (s["start"], s["end"], s["label"]) for s in want["spans"]
        ]
        for a, b in zip(got["spans"], want["spans"], strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=MAX_PROB_DIFF + 5e-5)
        assert [[p["tags"] for p in k] for k in got["kbest"]] == [
            [p["tags"] for p in k] for k in want["kbest"]
        ]


def run_blocked(args: list[str], tmp_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER + CHILD, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_onnx_folder_tags_annotates_and_serves_without_torch_or_datasets(
    ner_onnx: Path, torch_tagged: list[dict], tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("\n".join(TEXTS) + "\n")
    (docs / "b.txt").write_text("Germany and France met in Paris.\n")
    out = tmp_path / "out"
    out.mkdir()
    report = run_blocked(
        [str(ner_onnx), str(docs), str(out), json.dumps(TEXTS), json.dumps(list(FORMATS))],
        tmp_path,
    )
    assert report["modules"] == []
    exit_code, stdout = report["tag"]
    assert exit_code == 0
    assert_same_records([json.loads(line) for line in stdout.splitlines()], torch_tagged)
    for fmt, suffix in FORMATS.items():
        exit_code, stderr = report["annotate-" + fmt]
        assert exit_code == 0, stderr
        assert sorted(p.name for p in (out / fmt).iterdir()) == [f"a{suffix}", f"b{suffix}"]
    exit_code, stderr, exception = report["engine"]
    assert exit_code == 0, (stderr, exception)
    parts = b"".join(p.read_bytes() for p in sorted((out / "dask").glob("part-*.jsonl")))
    assert parts == b"".join((out / "jsonl" / name).read_bytes() for name in ("a.jsonl", "b.jsonl"))
    annotated = [json.loads(line) for line in (out / "jsonl" / "a.jsonl").read_text().splitlines()]
    assert_same_records(
        [{**r, "kbest": []} for r in annotated], [{**r, "kbest": []} for r in torch_tagged]
    )
    # A torch folder, training and export need torch: one line saying what to install.
    for name in ("tag-torch", "train", "export"):
        exit_code, stderr, exception = report[name]
        assert exit_code == 1, (name, exception)
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert "needs torch" in stderr or "needs datasets" in stderr
        assert (
            "install the full bilstm-nlp in another environment" in stderr
            and "Traceback" not in stderr
        )
    expected = tag_sentences(load_model("ner"), [SENTENCE.rstrip(".").split() + ["."]])[0]
    assert [s[:3] for s in report["api"]] == [[s.start, s.end, s.label] for s in expected.spans]
    for (*_, score), span in zip(report["api"], expected.spans, strict=True):
        assert score == pytest.approx(span.score, abs=MAX_PROB_DIFF)
    assert report["spacy"] == [[s.start, s.end, s.label] for s in expected.spans]
    status, records = report["serve"]
    assert status == 200
    assert_same_records([{**records[0], "kbest": []}], [{**torch_tagged[0], "kbest": []}])


def test_threads_set_the_onnx_sessions_intra_op_threads(ner_onnx: Path) -> None:
    for threads in (1, 3):
        model = load_model(ner_onnx, threads=threads)
        assert model.session.get_session_options().intra_op_num_threads == threads
        # What an annotate run records (and resumes against) as its thread count.
        assert _threads_of(model) == threads
    default = load_model(ner_onnx)
    assert default.session.get_session_options().intra_op_num_threads == 0
    [tagged] = tag_sentences(load_model(ner_onnx, threads=2), [SENTENCE.split()])
    [single] = tag_sentences(load_model(ner_onnx, threads=1), [SENTENCE.split()])
    assert tagged.tags == single.tags


@pytest.mark.slow
def test_runtime_distribution_installs_without_torch_and_tags(
    ner_onnx: Path, torch_tagged: list[dict], tmp_path: Path
) -> None:
    # A real venv and a real pip install of packaging/runtime, its dependencies from the
    # registry (the machine's pip cache makes it ~1 minute).
    shutil.rmtree(ROOT / "packaging" / "runtime" / "build", ignore_errors=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, command = venv / "bin" / "python", venv / "bin" / "bilstm-nlp"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT / "packaging" / "runtime")],
        check=True,
        timeout=900,
    )
    for package in ("torch", "datasets", "seqeval"):
        probe = subprocess.run([str(python), "-c", f"import {package}"], capture_output=True)
        assert probe.returncode == 1, f"{package} is installed in the runtime venv"
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(command), "tag", "--model", str(ner_onnx), "-f", "jsonl", "-k", "3", *TEXTS],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert_same_records([json.loads(line) for line in done.stdout.splitlines()], torch_tagged)
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import bilstm_nlp, sys; print(bilstm_nlp.__file__); "
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'datasets'))))",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert Path(where[0]).resolve().is_relative_to(venv.resolve())
    assert where[1] == "[]"
    # The shipped models are torch folders and not part of it: the default says what to do.
    default = subprocess.run(
        [str(command), "tag", SENTENCE], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert default.returncode == 1
    assert default.stderr.startswith("error: ") and "export" in default.stderr
    assert "Traceback" not in default.stderr
