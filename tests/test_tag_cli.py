"""`bilstm-nlp tag` and `bilstm-nlp annotate` from the command line: outputs, exit codes, one-line
errors, and kill -9 at random moments followed by `--resume`."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import DocBin
from typer.testing import CliRunner

from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths
from bilstm_nlp.cli import app
from bilstm_nlp.serialize import load_model
from bilstm_nlp.text.schemes import convert_tags, spelt_bilou

sys.path.insert(0, str(Path(__file__).parent))
from test_annotate import tiny_model  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="session")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.getbasetemp() / "annotate_models", "ner")


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.getbasetemp() / "annotate_models", "sentiment")


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_tag_prints_entities_inline(ner_dir: Path) -> None:
    result = runner.invoke(
        app, ["tag", "EU rejects German call.", "Peter Blackburn visited Paris.", "-m", ner_dir]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[EU ORG 0.") and "[Paris LOC 0." in lines[1]
    assert re.sub(r"\[(.+?) [A-Z]+ \d\.\d\d\]", r"\1", lines[1]) == "Peter Blackburn visited Paris."


def test_tag_reads_standard_input_a_document_per_line(ner_dir: Path) -> None:
    result = runner.invoke(
        app, ["tag", "-m", str(ner_dir), "-f", "jsonl"], input=b"EU rejects\n\n\xff Paris\r\n"
    )
    assert result.exit_code == 0, result.output
    out = records(result.stdout)
    assert [r["id"] for r in out] == ["<stdin>:1", "<stdin>:2", "<stdin>:3"]
    assert [r["text"] for r in out] == ["EU rejects", "", "\ufffd Paris"]
    result = runner.invoke(app, ["tag", "-m", str(ner_dir), "-f", "conll", "EU rejects"])
    assert result.stdout.startswith("-DOCSTART- 1\n\nEU\t")


def test_annotate_folder_equals_tag_on_the_same_documents(ner_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text('EU rejects German call.\n\n(EU) and/or "Paris" 😀 Zürich\n')
    (folder / "sub" / "b.txt").write_text("Peter Blackburn visited Paris.\n北京 EU\n")
    result = runner.invoke(app, ["annotate", str(folder), "-m", str(ner_dir), "-o", tmp_path / "o"])
    assert result.exit_code == 0, result.output
    assert "5 documents" in result.stderr
    annotated = records((tmp_path / "o" / "a.jsonl").read_text())
    annotated += records((tmp_path / "o" / "sub" / "b.jsonl").read_text())
    lines = (folder / "a.txt").read_text() + (folder / "sub" / "b.txt").read_text()
    tagged = runner.invoke(app, ["tag", "-m", str(ner_dir), "-f", "jsonl"], input=lines)
    assert tagged.exit_code == 0, tagged.output
    assert [{**r, "id": 0} for r in annotated] == [{**r, "id": 0} for r in records(tagged.stdout)]
    assert annotated[1]["tokens"] == [] and annotated[1]["text"] == ""
    for record in annotated:
        for span in record["spans"]:
            assert record["text"][span["start"] : span["end"]] == span["text"]


def test_annotate_docbin_has_the_entities_of_the_jsonl(ner_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("EU rejects German call.\n\nPeter Blackburn visited Paris (France).\n")
    for fmt, name in (("jsonl", "out.jsonl"), ("docbin", "out.spacy")):
        result = runner.invoke(
            app, ["annotate", str(source), "-m", str(ner_dir), "-f", fmt, "-o", tmp_path / name]
        )
        assert result.exit_code == 0, result.output
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("en").vocab))
    expected = records((tmp_path / "out.jsonl").read_text())
    assert [d.text for d in docs] == [r["text"] for r in expected]
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs] == [
        [(s["start"], s["end"], s["label"]) for s in r["spans"]] for r in expected
    ]


def test_classifier_output(sentiment_dir: Path) -> None:
    result = runner.invoke(
        app, ["tag", "-m", str(sentiment_dir), "dull and lifeless", "-f", "jsonl"]
    )
    assert result.exit_code == 0, result.output
    [record] = records(result.stdout)
    assert record["label"] == "negative" and set(record["probs"]) == {"negative", "positive"}
    result = runner.invoke(app, ["tag", "-m", str(sentiment_dir), "x", "-f", "conll"])
    assert result.exit_code == 1 and "for a classifier use jsonl" in result.stderr


def test_annotate_a_file_with_no_flags(tmp_path: Path) -> None:
    source = tmp_path / "file.txt"
    source.write_text("EU rejects German call.\n")
    result = runner.invoke(app, ["annotate", str(source)])
    try:
        load_model("ner")
    except Exception:
        # The shipped model is not built in this checkout: a one-line error naming it.
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and "ner" in result.stderr
        assert "Traceback" not in result.output
    else:
        assert result.exit_code == 0, result.output
        assert len(records(result.stdout)) == 1


def test_user_errors_are_one_line_with_exit_code_1(ner_dir: Path, tmp_path: Path) -> None:
    def fails(args: list, message: str, **kwargs) -> None:
        result = runner.invoke(app, [str(a) for a in args], **kwargs)
        assert result.exit_code == 1, result.output
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1

    model = ["-m", ner_dir]
    fails(["annotate", tmp_path / "missing.txt", *model], "missing.txt: no such file or folder")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "EU"}\n{"text": 3}\n')
    fails(["annotate", rows, *model], f"{rows}:2: expected a string in 'text', found a int")
    fails(["annotate", rows, *model, "-f", "xml"], "unknown output format 'xml'")
    fails(["tag", *model, "-m", tmp_path / "nowhere", "x"], "no such model directory")
    source = tmp_path / "in.txt"
    source.write_text("EU rejects\n")
    out = tmp_path / "out.jsonl"
    assert (
        runner.invoke(app, ["annotate", str(source), *map(str, model), "-o", str(out)]).exit_code
        == 0
    )
    other = tmp_path / "other"
    shutil.copytree(ner_dir, other)
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")
    fails(
        ["annotate", source, "-m", other, "-o", out, "--resume"],
        "cannot resume: the model differs from the interrupted run's",
    )
    source.write_text("EU rejects Paris\n")
    fails(["annotate", source, *model, "-o", out, "--resume"], "changed since the interrupted run")


def test_tags_are_written_in_the_scheme_asked_for(
    ner_dir: Path, sentiment_dir: Path, tmp_path: Path
) -> None:
    text = "EU rejects German call.\nPeter Blackburn visited Paris and the European Union.\n"

    def tagged(*args: str) -> list[dict]:
        result = runner.invoke(app, ["tag", "-m", str(ner_dir), "-f", "jsonl", *args], input=text)
        assert result.exit_code == 0, result.output
        return records(result.stdout)

    def written_in(record: dict, scheme: str) -> list[str]:
        tags = [token["tag"] for token in record["tokens"]]
        target = "BIOES" if scheme == "BILOU" else scheme
        written = [
            tag
            for start, end in record["sentences"]
            for tag in convert_tags(tags[start:end], target)
        ]
        return spelt_bilou(written) if scheme == "BILOU" else written

    default = tagged("-k", "2")
    assert any(record["spans"] for record in default)
    for scheme in ("IOB1", "IOB2", "BIOES", "BILOU"):
        written = tagged("-k", "2", "--scheme", scheme.lower())
        for before, after in zip(default, written, strict=True):
            assert after["spans"] == before["spans"]
            assert [t["tag"] for t in after["tokens"]] == written_in(before, scheme)
            assert len(after["kbest"]) == len(before["kbest"])
    # The tiny model trains in BIOES: its own scheme gives its own probabilities; a single-token
    # entity's S- is its whole span, so the span's probability.
    bioes = tagged("--scheme", "BIOES")
    for record in bioes:
        for span in record["spans"]:
            if span["token_end"] - span["token_start"] == 1:
                token = record["tokens"][span["token_start"]]
                assert token["tag"] == "S-" + span["label"]
                assert token["score"] == pytest.approx(span["score"], abs=2e-4)
    # annotate, in worker processes too, writes what tag writes.
    source = tmp_path / "in.txt"
    source.write_text(text)
    out = tmp_path / "out.jsonl"
    args = ["annotate", str(source), "-m", str(ner_dir), "-o", str(out), "--scheme", "BIOES"]
    assert runner.invoke(app, [*args, "-w", "2"]).exit_code == 0
    assert [{**r, "id": 0} for r in records(out.read_text())] == [{**r, "id": 0} for r in bioes]
    # Resuming with another scheme than the interrupted run's is refused.
    result = runner.invoke(app, [*args[:-1], "IOB2", "--resume"])
    assert result.exit_code == 1 and "cannot resume" in result.stderr
    for model, scheme, message in (
        (sentiment_dir, "IOB2", "a classifier's output has no token tags"),
        (ner_dir, "BILOUX", "unknown tag scheme 'BILOUX'"),
    ):
        result = runner.invoke(app, ["tag", "-m", str(model), "--scheme", scheme, "x"])
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------
# kill -9 at random moments, then --resume


def generated_text(lines: int, seed: int = 5) -> str:
    rng = random.Random(seed)
    words = "EU rejects German call Peter Blackburn visited Paris ( ) and/or the said 😀 Zürich ."
    vocabulary = words.split() + ['"', "European", "Commission", "BRUSSELS", "1996-08-22"]
    return "".join(
        " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 30))) + "\n"
        for _ in range(lines)
    )


def progress_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["state"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return {"documents": 0, "output_offset": 0, "complete": False}


def start_cli(args: list[str]) -> subprocess.Popen:
    # A session of its own, so the kill reaches the worker processes too.
    return subprocess.Popen(
        [sys.executable, "-c", "from bilstm_nlp.cli import main; main()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def tree_bytes(path: Path) -> dict[str, bytes]:
    """A file's bytes, or every file's bytes under a folder by relative path (progress files and
    the like beside it are not inside)."""
    if path.is_file():
        return {"": path.read_bytes()}
    if not path.exists():
        return {}
    return {
        str(file.relative_to(path)): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def kill_and_resume(
    ner,
    ner_dir: Path,
    tmp_path: Path,
    source: Path,
    output: Path,
    workers: int,
    kills: int,
    fmt: str = "jsonl",
) -> None:
    """Annotate `source` (a file or a folder) into `output`, kill -9 the run `kills` times at
    random moments, resume each time, and check the result against an uninterrupted run."""
    options = ["--window", "40", "--threads", "1", "--workers", str(workers), "--no-progress"]
    options += ["--format", fmt]
    reference = tmp_path / ("reference" + output.suffix)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        annotate_paths([source], ner, reference, AnnotateOptions(window=40, fmt=fmt))
    finally:
        torch.set_num_threads(threads)
    expected = tree_bytes(reference)
    progress = Path(str(output) + ".progress.json")
    rng = random.Random(workers)
    args = ["annotate", str(source), "-m", str(ner_dir), "-o", str(output), *options]
    for attempt in range(kills):
        before = progress_state(progress)["documents"]
        process = start_cli(args + (["--resume"] if attempt else []))
        deadline = time.monotonic() + 50
        # Wait until this run has written a window, then kill it at a random moment.
        while process.poll() is None and time.monotonic() < deadline:
            if progress_state(progress)["documents"] > before:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # Whether the kill came before the run's end is timing; either outcome is checked.
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read()
        if process.returncode == 0:
            assert progress_state(progress)["complete"]
        # Output is deterministic and appended in order: whatever a killed run left (a
        # half-written record included) is a prefix of the uninterrupted output.
        for name, content in tree_bytes(output).items():
            assert name in expected and expected[name].startswith(content), name
        if output.is_file():
            state = progress_state(progress)
            assert len(output.read_bytes()) >= state["output_offset"]
    finished = subprocess.run(
        [sys.executable, "-c", "from bilstm_nlp.cli import main; main()", *args, "--resume"],
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stderr
    assert tree_bytes(output) == expected
    assert progress_state(progress)["complete"]


def write_source(tmp_path: Path, lines: int) -> Path:
    source = tmp_path / "in.txt"
    source.write_text(generated_text(lines), encoding="utf-8")
    return source


def write_small_files(tmp_path: Path, files: int) -> Path:
    """A folder tree of many small files: 0 to 12 lines each (some empty), in nested folders."""
    rng = random.Random(files)
    folder = tmp_path / "docs"
    for number in range(files):
        path = folder / f"part{number % 4}" / f"sub{number % 3}" / f"doc{number:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(generated_text(rng.randint(0, 12), seed=number), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_byte_identical(
    ner_dir: Path, tmp_path: Path
) -> None:
    source = write_source(tmp_path, 3_000)
    kill_and_resume(
        load_model(ner_dir), ner_dir, tmp_path, source, tmp_path / "out.jsonl", workers=1, kills=3
    )


@pytest.mark.slow
def test_kill_9_with_two_workers_then_resume_is_byte_identical(
    ner_dir: Path, tmp_path: Path
) -> None:
    source = write_source(tmp_path, 2_000)
    kill_and_resume(
        load_model(ner_dir), ner_dir, tmp_path, source, tmp_path / "out.jsonl", workers=2, kills=2
    )


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "fmt"), [(1, "conll"), (2, "jsonl")])
def test_kill_9_on_a_folder_of_many_small_files_then_resume_is_byte_identical(
    ner_dir: Path, tmp_path: Path, workers: int, fmt: str
) -> None:
    source = write_small_files(tmp_path, 400)
    output = tmp_path / f"out-{fmt}"
    kill_and_resume(load_model(ner_dir), ner_dir, tmp_path, source, output, workers, 3, fmt)


def test_tagging_from_the_cli_never_imports_datasets(ner_dir: Path, tmp_path: Path) -> None:
    # datasets costs about 100 MB per process, and every annotate worker imports the CLI's
    # package: tagging must not pull it in (only train, evaluate and corpus need it).
    source = tmp_path / "in.txt"
    source.write_text("EU rejects German call.\n", encoding="utf-8")
    probe = (
        "import sys\n"
        "from bilstm_nlp.cli import main\n"
        "sys.argv = ['bilstm-nlp', 'annotate', sys.argv[1], '-m', sys.argv[2], '-o', sys.argv[3]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as done:\n"
        "    assert not done.code, done.code\n"
        "print('datasets' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(source), str(ner_dir), str(tmp_path / "out.jsonl")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8").count("\n") == 1


def test_readme_quickstart_prints_what_the_readme_says() -> None:
    """The README's first command tags a sentence with the shipped `ner` and says what it
    prints: a retrained model must not leave that line behind."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    [text] = re.findall(r'bilstm-nlp tag "([^"]+)"\n```', readme)
    [printed] = re.findall(r"It prints `([^`]+)`", readme)
    result = runner.invoke(app, ["tag", text])
    assert result.exit_code == 0, result.output
    assert result.output.split() == printed.split()
