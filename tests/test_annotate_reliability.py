"""`annotate` under attack: outputs that are inputs under another name, two runs into one output,
missing or failing output folders, closed standard input, JSON that Python accepts and JSON does
not, output that must not depend on --window, --workers or other runs, killed parents."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp.annotation import annotator as annotate
from bilstm_nlp.annotation import jobs, workers
from bilstm_nlp.annotation import output as resume
from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths
from bilstm_nlp.annotation.writers import make_writer
from bilstm_nlp.cli import app
from bilstm_nlp.corpus.readers import documents
from bilstm_nlp.errors import ConfigError, InputFormatError, OutputError, ResumeError
from bilstm_nlp.serialize import load_model

sys.path.insert(0, str(Path(__file__).parent))
from test_annotate import tiny_model  # noqa: E402

runner = CliRunner()
WORDS = "EU rejects German call Peter Blackburn visited Paris ( ) and/or the said Zürich .".split()


@pytest.fixture(scope="session")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.getbasetemp() / "annotate_models", "ner")


@pytest.fixture(scope="session")
def ner(ner_dir: Path):
    return load_model(ner_dir)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def many_sentences(path: Path, lines: int, seed: int = 3) -> Path:
    rng = random.Random(seed)
    text = "".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 40))) + "\n"
        for _ in range(lines)
    )
    path.write_text(text, encoding="utf-8")
    return path


def fails_in_one_line(args: list, message: str, **kwargs) -> str:
    result = runner.invoke(app, [str(a) for a in args], **kwargs)
    assert result.exit_code == 1, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


# ---------------------------------------------------------------------------------------------
# 1. An output that is an input under another name


def test_a_hard_link_to_the_input_is_refused_and_the_input_kept(ner, tmp_path: Path) -> None:
    source = many_sentences(tmp_path / "in.txt", 5)
    content = source.read_bytes()
    os.link(source, tmp_path / "h.txt")
    with pytest.raises(ConfigError, match=r"h.txt \(it is .*in.txt under another name\)"):
        annotate_paths([source], ner, tmp_path / "h.txt")
    folder = tmp_path / "docs"
    folder.mkdir()
    os.link(source, folder / "a.txt")
    out = tmp_path / "out"
    out.mkdir()
    os.link(source, out / "a.jsonl")  # the file a folder run would write
    with pytest.raises(ConfigError, match="under another name"):
        annotate_paths([folder], ner, out)
    assert source.read_bytes() == content
    assert not list(tmp_path.glob("*.progress.json*")) and not list(tmp_path.glob("*.lock"))


def test_standard_input_redirected_from_the_output_is_refused(ner, tmp_path: Path) -> None:
    target = many_sentences(tmp_path / "st.txt", 5)
    content = target.read_bytes()
    with open(target, "rb") as stdin, pytest.raises(ConfigError, match="is standard input"):
        annotate_paths(["-"], ner, target, stdin=stdin)
    assert target.read_bytes() == content
    # A pipe or another file on standard input is fine.
    with open(many_sentences(tmp_path / "other.txt", 3), "rb") as stdin:
        assert annotate_paths(["-"], ner, target, stdin=stdin).documents == 3


@pytest.mark.parametrize(("fmt", "glob"), [("text", None), ("jsonl", "**/*")])
def test_an_output_inside_the_input_folder_is_not_read_by_the_next_run(
    ner, tmp_path: Path, fmt: str, glob: str | None
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    many_sentences(folder / "a.txt", 4, seed=1)
    many_sentences(folder / "b.txt", 3, seed=2)
    # Its files match the glob, and with "**/*" so does its progress file beside it.
    output = folder / "annotated"
    options = {"fmt": fmt, "glob": glob}

    def written() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(output.iterdir())}

    assert annotate_paths([folder], ner, output, AnnotateOptions(**options)).documents == 7
    first = written()
    assert len(first) == 2
    assert (folder / "annotated.progress.json").is_file()
    # Run again, and resume the finished run: the same two inputs, the same output.
    assert annotate_paths([folder], ner, output, AnnotateOptions(**options)).documents == 7
    assert written() == first
    resumed = annotate_paths([folder], ner, output, AnnotateOptions(**options, resume=True))
    assert resumed.documents == 0 and resumed.resumed_documents == 7
    assert written() == first


def test_an_output_that_is_the_input_itself_is_named_once(ner_dir: Path, tmp_path: Path) -> None:
    source = many_sentences(tmp_path / "a.txt", 2)
    content = source.read_bytes()
    message = fails_in_one_line(
        ["annotate", source, "-m", ner_dir, "-f", "text", "-o", tmp_path],
        f"--output would overwrite an input: {source}\n",
    )
    assert "another name" not in message
    assert source.read_bytes() == content


def test_cli_refuses_a_hard_linked_output_in_one_line(ner_dir: Path, tmp_path: Path) -> None:
    source = many_sentences(tmp_path / "in.txt", 5)
    content = source.read_bytes()
    os.link(source, tmp_path / "h.txt")
    fails_in_one_line(
        ["annotate", source, "-m", ner_dir, "-o", tmp_path / "h.txt"], "under another name"
    )
    assert source.read_bytes() == content


# ---------------------------------------------------------------------------------------------
# 4. The same input gives the same output, whatever --window, --workers and earlier runs


def test_scores_to_the_last_bit_do_not_depend_on_the_window(
    ner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    # Scores unrounded, so any difference in any float shows (rounded to 4 decimals, a tiny
    # model's differences hide; a real model's showed in 189 of 37,632 records).
    monkeypatch.setattr(annotate, "round", lambda value, digits: value, raising=False)
    monkeypatch.setattr(jobs, "BLOCK_DOCUMENTS", 100)
    source = many_sentences(tmp_path / "in.txt", 300)
    outputs = set()
    for window in (7, 100, 1000, 7):  # 7 again: what ran before in this process does not matter
        out = io.BytesIO()
        annotate_paths([source], ner, None, AnnotateOptions(window=window), stdout=out)
        outputs.add(out.getvalue())
    assert len(outputs) == 1


def test_resume_checks_the_whole_input(ner, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(jobs, "BLOCK_DOCUMENTS", 50)
    source = many_sentences(tmp_path / "in.txt", 3_000)
    assert source.stat().st_size > 2 * 65_536
    output = tmp_path / "out.jsonl"
    annotate_paths([source], ner, output)
    status = source.stat()
    data = bytearray(source.read_bytes())
    position = len(data) - 10
    data[position : position + 3] = b"EU " if data[position : position + 3] != b"EU " else b"Pa "
    source.write_bytes(bytes(data))
    os.utime(source, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert source.stat().st_size == status.st_size
    with pytest.raises(ResumeError, match="changed since the interrupted run"):
        annotate_paths([source], ner, output, AnnotateOptions(resume=True))


def test_resume_with_another_thread_count_is_refused(
    ner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = many_sentences(tmp_path / "in.txt", 10)
    output = tmp_path / "out.jsonl"
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        annotate_paths([source], ner, output)
        torch.set_num_threads(2)
        with pytest.raises(ResumeError, match=r"options differ .*threads"):
            annotate_paths([source], ner, output, AnnotateOptions(resume=True))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_one_or_two_workers_and_any_window_give_the_same_bytes(
    ner_dir: Path, tmp_path: Path
) -> None:
    source = many_sentences(tmp_path / "in.txt", 2_500)

    def run(name: str, *options: str) -> bytes:
        out = tmp_path / name
        result = runner.invoke(
            app, ["annotate", str(source), "-m", str(ner_dir), "-o", str(out), *options]
        )
        assert result.exit_code == 0, result.output
        return out.read_bytes()

    reference = run("w1.jsonl", "-w", "1")
    assert run("w2.jsonl", "-w", "2") == reference
    assert run("w2-window.jsonl", "-w", "2", "--window", "3000") == reference
    assert run("w1-window.jsonl", "--window", "7") == reference


@pytest.mark.slow
def test_more_model_threads_than_cpus_are_warned_of(
    ner: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, one_thread: None
) -> None:
    source = many_sentences(tmp_path / "in.txt", 3)
    cpus = len(os.sched_getaffinity(0))
    annotate_paths([source], ner, tmp_path / "fits.jsonl", AnnotateOptions(workers=1, threads=1))
    assert "take turns" not in caplog.text
    annotate_paths([source], ner, tmp_path / "over.jsonl", AnnotateOptions(workers=2, threads=cpus))
    assert (
        f"{2 * cpus} model threads (2 workers × {cpus} threads) on {cpus} CPUs take turns"
        in caplog.text
    )
    assert "-w 2 --threads 1 is faster" in caplog.text or cpus == 1


# ---------------------------------------------------------------------------------------------
# 5. Workers die with their parent; SIGTERM stops cleanly and resumably


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from bilstm_nlp.cli import main; main()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )


def _wait_for_workers(process: subprocess.Popen, count: int, progress: Path) -> set[int]:
    # Generous: on a loaded machine the first window can take minutes.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        workers = {pid for pid in _children(process.pid) if _children(pid) == set()}
        if len(_children(process.pid)) >= count and progress.is_file():
            state = json.loads(progress.read_text())["state"]
            if state["documents"] > 0:
                return workers | _children(process.pid)
        time.sleep(0.05)
    raise AssertionError(f"no workers: {process.stderr.read() if process.stderr else ''}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_workers_die_with_their_parent(ner_dir: Path, tmp_path: Path, how: str) -> None:
    source = many_sentences(tmp_path / "in.txt", 30_000)
    output = tmp_path / "out.jsonl"
    args = ["annotate", str(source), "-m", str(ner_dir), "-o", str(output), "-w", "2"]
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"TMPDIR": str(temporary)}
    process = _start([*args, "--no-progress"], env=env)
    progress = Path(str(output) + ".progress.json")
    children = _wait_for_workers(process, 2, progress)
    process.send_signal(getattr(signal, how))
    process.wait(timeout=60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "workers outlived their parent"
    if how == "SIGTERM":
        assert process.returncode == 143
        stderr = process.stderr.read()
        assert "error: stopped by SIGTERM; rerun with --resume" in stderr
        assert "Traceback" not in stderr
    # Killed, the run could not remove its results folder; the next run with workers does.
    left = list(temporary.glob("bilstm-nlp-results-*"))
    assert len(left) == (1 if how == "SIGKILL" else 0), left
    # Either way the run resumes to the output of an uninterrupted one.
    _resume_gives_an_uninterrupted_run(args, source, output, ner_dir, tmp_path, env)
    assert list(temporary.iterdir()) == []


class _Stopped(BaseException):
    pass


def test_signals_held_are_handled_as_the_block_ends() -> None:
    steps: list[str] = []

    def stop(signum, frame):
        steps.append(f"handled {signal.Signals(signum).name}")
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(_Stopped):
            with workers.signals_held():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
                time.sleep(0.01)  # a handler that was not held would have run by now
                steps.append("block ended")
        assert steps == ["block ended", "handled SIGTERM"]  # twice in the block: once
        assert signal.getsignal(signal.SIGTERM) is stop  # put back
        # Outside the block the handler runs at once, as before.
        with pytest.raises(_Stopped):
            signal.raise_signal(signal.SIGTERM)
            time.sleep(0.01)
        # Ctrl-C with Python's own handler is held too.
        with pytest.raises(KeyboardInterrupt):
            with workers.signals_held():
                signal.raise_signal(signal.SIGINT)
                time.sleep(0.01)
                steps.append("second block ended")
        assert steps[-1] == "second block ended"
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signals_are_not_held_outside_the_main_thread() -> None:
    # Only the main thread runs handlers, and only it may set them: elsewhere the block just runs.
    ran: list[object] = []

    def hold_in_a_thread() -> None:
        with workers.signals_held():
            ran.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=hold_in_a_thread)
    thread.start()
    thread.join()
    assert ran == [signal.getsignal(signal.SIGINT)]


_KILLED_WHILE_IT_OWNS_A_RESULTS_FOLDER = """
import contextlib, os, signal, sys
from bilstm_nlp.annotation import workers
run = contextlib.ExitStack()  # kept: a stack dropped would remove the folder at once
folder = workers._results_folder(run)
open(os.path.join(folder, "tmpresult.pickle"), "wb").write(b"a window's records")
print(folder, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_results_folders_of_killed_runs_are_removed_and_live_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_IT_OWNS_A_RESULTS_FOLDER],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    abandoned = Path(killed.stdout.strip())
    assert abandoned.parent == tmp_path and (abandoned / "tmpresult.pickle").is_file()
    # Folders from before owner files: removed once surely not being made right now.
    old_unowned = tmp_path / "bilstm-nlp-results-old"
    old_unowned.mkdir()
    os.utime(old_unowned, (time.time() - 3600, time.time() - 3600))
    new_unowned = tmp_path / "bilstm-nlp-results-new"
    new_unowned.mkdir()
    # Not a results folder, whatever its name.
    (tmp_path / "bilstm-nlp-results-file").write_text("a user's file")
    with contextlib.ExitStack() as live_run:
        live = Path(workers._results_folder(live_run))
        assert not abandoned.exists() and not old_unowned.exists()
        with contextlib.ExitStack() as another_run:
            another = Path(workers._results_folder(another_run))
            assert live.is_dir() and new_unowned.is_dir()
            assert (tmp_path / "bilstm-nlp-results-file").read_text() == "a user's file"
        assert not another.exists()
        assert live.is_dir()
    assert not live.exists()


# Sends the signal as the main thread starts to leave a `with lock:` block inside the executor:
# the moment where a handler that raises leaves the lock held for ever. `where` names the block:
# the work queue's put in `submit`, or the condition of a future not yet done in `result` (the
# run waits in short turns, leaving that lock each time).
_SIGNAL_INSIDE_THE_EXECUTOR = """
import signal, sys, threading
where, name, after = sys.argv.pop(1), sys.argv.pop(1), int(sys.argv.pop(1))
inside = {"submit": ("put", "submit"), "result": ("result", None)}[where]
seen = [0]

def tracer(frame, event, arg):
    code = frame.f_code
    if event != "call" or code.co_name != "__exit__" or code.co_filename != threading.__file__:
        return None
    caller = frame.f_back
    if caller.f_code.co_name != inside[0]:
        return None
    if inside[1] is not None and caller.f_back.f_code.co_name != inside[1]:
        return None
    if where == "result" and caller.f_locals["self"]._state == "FINISHED":
        return None
    seen[0] += 1
    if seen[0] == after:
        sys.settrace(None)
        print(f"sent {name} inside {where}", file=sys.stderr, flush=True)
        signal.raise_signal(getattr(signal, name))
    return None

from bilstm_nlp.cli import main
sys.settrace(tracer)
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize(("where", "how"), [("submit", "SIGTERM"), ("result", "SIGINT")])
def test_a_signal_inside_the_worker_pool_stops_the_run(
    ner_dir: Path, tmp_path: Path, where: str, how: str
) -> None:
    # Without the signals held there, the pool's manager thread waited for ever on the lock the
    # interrupted main thread still held, and the main thread waited for the manager thread.
    source = many_sentences(tmp_path / "in.txt", 30_000)
    output = tmp_path / "out.jsonl"
    args = ["annotate", str(source), "-m", str(ner_dir), "-o", str(output), "-w", "2"]
    process = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_INSIDE_THE_EXECUTOR, where, how, "8", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        process.wait(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()  # its workers die with it
        raise AssertionError(f"annotate -w 2 hung after {how} inside the pool's {where}") from None
    stderr = process.stderr.read()
    assert f"sent {how} inside {where}" in stderr, stderr
    assert process.returncode == (143 if how == "SIGTERM" else 130), stderr
    name = "SIGTERM" if how == "SIGTERM" else "Ctrl-C"
    assert f"error: stopped by {name}; rerun with --resume" in stderr
    assert "Traceback" not in stderr
    _resume_gives_an_uninterrupted_run(args, source, output, ner_dir, tmp_path)


def _ended_in_one_line(process: subprocess.Popen, returncode: int, message: str) -> None:
    stderr = process.stderr.read()
    assert process.returncode == returncode, stderr
    assert message in stderr and "Traceback" not in stderr


def _annotating_with_two_workers(
    ner_dir: Path, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, list[str], Path, Path, list[int]]:
    """`annotate -w 2` on 30,000 lines, started and past its first window: the process, its
    arguments, input, output, and its two worker processes."""
    source = many_sentences(tmp_path / "in.txt", 30_000)
    output = tmp_path / "out.jsonl"
    args = ["annotate", str(source), "-m", str(ner_dir), "-o", str(output), "-w", "2"]
    process = _start([*args, "--no-progress"], env=env)
    _wait_for_workers(process, 2, Path(str(output) + ".progress.json"))
    workers = sorted(p for p in _children(process.pid) if "spawn_main" in _cmdline(p))
    assert len(workers) == 2, [_cmdline(p) for p in _children(process.pid)]
    return process, args, source, output, workers


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_second_ctrl_c_stops_the_windows_in_progress_at_once(ner_dir: Path, tmp_path: Path):
    # After Ctrl-C the run waits for the windows in progress. Workers stopped here (SIGSTOP)
    # make that wait endless, as long windows make it long: a second Ctrl-C must end it. It
    # was held until the windows finished.
    process, args, source, output, workers = _annotating_with_two_workers(ner_dir, tmp_path)
    try:
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        process.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert process.poll() is None  # waiting for the windows the stopped workers hold
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("a second Ctrl-C did not stop the wait") from None
    finally:
        for pid in workers:  # SIGKILL ends a stopped process too
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _ended_in_one_line(process, 130, "error: stopped by Ctrl-C; rerun with --resume")
    _resume_gives_an_uninterrupted_run(args, source, output, ner_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_worker_killed_on_its_own_is_one_line_and_resumable(ner_dir: Path, tmp_path: Path):
    process, args, source, output, workers = _annotating_with_two_workers(ner_dir, tmp_path)
    # As the system's out-of-memory killer would: one worker goes, the parent stays.
    os.kill(workers[0], signal.SIGKILL)
    process.wait(timeout=120)
    _ended_in_one_line(process, 1, "error: a worker process died before it finished")
    _resume_gives_an_uninterrupted_run(args, source, output, ner_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_worker_killed_while_it_sends_its_result_is_one_line(ner_dir: Path, tmp_path: Path):
    # A worker killed halfway through sending a result must not leave the run waiting for the
    # rest of it. Freezing the parent stops it reading, so a worker that sends a large result
    # through a pipe blocks halfway; that worker is the one killed.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"TMPDIR": str(temporary)}
    process, args, source, output, workers = _annotating_with_two_workers(ner_dir, tmp_path, env)
    os.kill(process.pid, signal.SIGSTOP)
    try:
        _wait_until_blocked(workers)
        sending = [p for p in workers if "writ" in _wchan(p)]
        os.kill((sending or workers)[0], signal.SIGKILL)
    finally:
        os.kill(process.pid, signal.SIGCONT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the run hung after its worker was killed") from None
    _ended_in_one_line(process, 1, "error: a worker process died before it finished")
    assert list(temporary.iterdir()) == []  # no result a worker handed over is left behind
    _resume_gives_an_uninterrupted_run(args, source, output, ner_dir, tmp_path)


def _wait_until_blocked(pids: list[int]) -> None:
    """Until none of `pids` used CPU for a second (each waits on a pipe or a lock)."""
    deadline = time.monotonic() + 120
    last = None
    while time.monotonic() < deadline:
        used = [_cpu_ticks(p) for p in pids]
        if used == last:
            return
        last = used
        time.sleep(1.0)
    raise AssertionError(f"workers still busy: {[_wchan(p) for p in pids]}")


def _cpu_ticks(pid: int) -> int:
    # Fields after the command name: utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def _resume_gives_an_uninterrupted_run(
    args: list[str],
    source: Path,
    output: Path,
    ner_dir: Path,
    tmp_path: Path,
    env: dict[str, str] | None = None,
) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "from bilstm_nlp.cli import main; main()", *args, "--resume"],
        capture_output=True,
        text=True,
        env=None if env is None else {**os.environ, **env},
    )
    assert finished.returncode == 0, finished.stderr
    reference = tmp_path / "reference.jsonl"
    result = runner.invoke(app, ["annotate", str(source), "-m", str(ner_dir), "-o", str(reference)])
    assert result.exit_code == 0, result.output
    assert output.read_bytes() == reference.read_bytes()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# 6. One run at a time into an output


def test_a_second_run_into_a_locked_output_is_refused(ner, ner_dir: Path, tmp_path: Path) -> None:
    source = many_sentences(tmp_path / "in.txt", 5)
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"what the first run wrote\n")
    with open(str(output) + ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running annotate holds
        with pytest.raises(OutputError, match="another run is writing this output"):
            annotate_paths([source], ner, output)
        fails_in_one_line(
            ["annotate", source, "-m", ner_dir, "-o", output], "another run is writing"
        )
    assert output.read_bytes() == b"what the first run wrote\n"
    assert not Path(str(output) + ".progress.json").exists()
    # A lock file left by a killed run holds no lock: the next run goes ahead and removes it.
    assert annotate_paths([source], ner, output).documents == 5
    assert not Path(str(output) + ".lock").exists()
    # Another name for the output, a symbolic link, has the same lock.
    link = tmp_path / "link.jsonl"
    link.symlink_to(output)
    with open(str(output) + ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(OutputError, match="another run is writing this output"):
            annotate_paths([source], ner, link)


# ---------------------------------------------------------------------------------------------
# 8. Output folders that are missing, read-only or full; --threads; closed standard input


def test_a_second_run_into_the_same_file_under_another_name_is_refused(
    ner_dir: Path, tmp_path: Path
) -> None:
    # The lock beside an output goes by its name: a run into a hard link of a file another run
    # was writing took a lock of its own and cut the file under the other.
    source = many_sentences(tmp_path / "in.txt", 5)
    output, link = tmp_path / "out.jsonl", tmp_path / "h.jsonl"
    output.write_bytes(b"being written\n")
    os.link(output, link)
    with open(output, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the run writing out.jsonl holds it
        fails_in_one_line(["annotate", source, "-m", ner_dir, "-o", link], "under another name")
        assert output.read_bytes() == b"being written\n"
        assert not (tmp_path / "h.jsonl.progress.json").exists()
    # That run over, the file is free under either name, fresh or resumed.
    fresh = runner.invoke(app, ["annotate", str(source), "-m", str(ner_dir), "-o", str(link)])
    assert fresh.exit_code == 0, fresh.output
    assert output.read_bytes() == link.read_bytes() != b"being written\n"


def test_an_output_in_a_missing_folder_is_one_line(ner_dir: Path, tmp_path: Path) -> None:
    source = many_sentences(tmp_path / "in.txt", 3)
    missing = tmp_path / "missing"
    fails_in_one_line(
        ["annotate", source, "-m", ner_dir, "-o", missing / "out.jsonl"],
        f"{missing}: the folder of --output does not exist",
    )
    assert not missing.exists()
    (tmp_path / "file").write_text("x")
    fails_in_one_line(
        ["annotate", source, "-m", ner_dir, "-o", tmp_path / "file" / "out.jsonl"],
        "the folder of --output is not a folder",
    )


@pytest.mark.parametrize("error_number", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_the_first_progress_write_failing_is_one_line_and_leaves_nothing(
    ner_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error_number: int
) -> None:
    # Tests run as root, so a read-only folder proves nothing: the write itself is made to fail.
    def fail(*args, **kwargs):
        raise OSError(error_number, os.strerror(error_number))

    source = many_sentences(tmp_path / "in.txt", 3)
    output = tmp_path / "out.jsonl"
    if error_number == errno.ENOSPC:
        monkeypatch.setattr(resume.os, "fsync", fail)  # the .tmp exists, then the disk is full
    else:
        monkeypatch.setattr(resume, "open", fail, raising=False)
    fails_in_one_line(["annotate", source, "-m", ner_dir, "-o", output], os.strerror(error_number))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_bad_thread_counts_are_one_line(ner_dir: Path, tmp_path: Path) -> None:
    source = many_sentences(tmp_path / "in.txt", 3)
    fails_in_one_line(
        ["tag", "-m", ner_dir, "--threads", "-1", "EU"], "--threads must be 1 to 1024"
    )
    fails_in_one_line(["tag", "-m", ner_dir, "--threads", "0", "EU"], "--threads must be 1 to 1024")
    fails_in_one_line(
        ["annotate", source, "-m", ner_dir, "--threads", "-1", "-w", "2"],
        "--threads must be 1 to 1024, got -1",
    )


def test_closed_standard_input(ner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)  # what Python makes of `<&-`
    with pytest.raises(InputFormatError, match="standard input is closed"):
        annotate_paths(["-"], ner, stdout=io.BytesIO())
    # Files need no standard input.
    source = many_sentences(tmp_path / "in.txt", 3)
    assert annotate_paths([source], ner, stdout=io.BytesIO()).documents == 3


def test_tag_with_standard_input_closed_from_a_shell(ner_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from bilstm_nlp.cli import main; main()", "tag", "-m", ner_dir],
        stdin=None,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.close(0),
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == "error: -: standard input is closed; give input files or pipe text in\n"


# ---------------------------------------------------------------------------------------------
# 12. JSON that Python reads and JSON does not; a null text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": NaN, "text": "EU"}', "NaN is not a JSON value"),
        ('{"id": -Infinity, "text": "EU"}', "-Infinity is not a JSON value"),
        ('{"id": 1e999, "text": "EU"}', "1e999 is too large for a JSON number"),
        ('{"id": ' + "9" * 5_000 + ', "text": "EU"}', "not valid JSON: Exceeds the limit"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"text": null}', "expected a string in 'text', found null"),
        ('{"body": "EU"}', "expected a string in 'text', found no such key"),
    ],
)
def test_jsonl_input_that_is_not_json_is_refused_with_its_line(
    ner, tmp_path: Path, line: str, message: str
) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text('{"id": 1, "text": "EU rejects"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"docs.jsonl:2: .*") as error:
        annotate_paths([source], ner, tmp_path / "out.jsonl")
    assert message in str(error.value)


def test_records_are_always_json(ner, tmp_path: Path) -> None:
    source = tmp_path / "docs.jsonl"
    source.write_text('{"id": 1.5, "text": "EU rejects"}\n{"id": null, "text": ""}\n')
    out = io.BytesIO()
    annotate_paths([source], ner, stdout=out)
    for line in out.getvalue().decode().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} written"))


# ---------------------------------------------------------------------------------------------
# 11. A long document is read, annotated and written in pieces: memory for a piece only


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Documents past 3,000 bytes go in pieces of about 500; records the longest text the
    annotator was given at once."""
    monkeypatch.setattr(documents, "LONG_DOCUMENT_BYTES", 3_000)
    monkeypatch.setattr(documents, "PIECE_BYTES", 500)
    longest = [0]
    real = annotate.Annotator.__call__

    def call(self, texts, show_progress=False):
        longest[0] = max([longest[0], *map(len, texts)])
        return real(self, texts, show_progress)

    monkeypatch.setattr(annotate.Annotator, "__call__", call)
    return longest


def long_line(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).replace(" . ", ". ")


@pytest.mark.parametrize("unit", ["line", "file", "jsonl"])
def test_a_long_document_is_annotated_in_pieces_into_one_exact_record(
    ner, tmp_path: Path, small_pieces: list[int], unit: str
) -> None:
    from test_annotate import check_offsets

    from bilstm_nlp.annotation.writers import ConllWriter, TextWriter

    rng = random.Random(7)
    text = long_line(rng, 3_000)  # about 20,000 characters: some 40 pieces
    if unit == "line":
        source = tmp_path / "in.txt"
        source.write_text("\ufeffEU rejects\n" + text + "\r\nPeter visited Paris\n")
        index = 1
    elif unit == "file":
        source = tmp_path / "in.txt"
        source.write_text(text)
        index = 0
    else:
        source = tmp_path / "in.jsonl"
        source.write_text(
            json.dumps({"id": "x", "text": text}) + "\n{}\n".replace("{}", '{"text": "EU"}')
        )
        index = 0
    outputs = {}
    for fmt in ("jsonl", "conll", "text"):
        out = io.BytesIO()
        annotate_paths([source], ner, None, AnnotateOptions(unit=unit, fmt=fmt), stdout=out)
        outputs[fmt] = out.getvalue()
    assert small_pieces[0] <= 2 * 500 < len(text)
    records = [json.loads(line) for line in outputs["jsonl"].decode().splitlines()]
    record = records[index]
    assert record["text"] == text and len(records) == {"line": 3, "file": 1, "jsonl": 2}[unit]
    check_offsets(record)
    assert len(record["tokens"]) > 2_500 and len(record["sentences"]) > 40
    # Each format wrote the bytes it writes for the whole record.
    assert outputs["jsonl"].splitlines()[index] + b"\n" == make_writer("jsonl").encode(record)
    assert ConllWriter().encode(record) in outputs["conll"]
    assert outputs["text"].splitlines()[index] + b"\n" == TextWriter().encode(record)


@pytest.mark.parametrize("unit", ["line", "file"])
@pytest.mark.parametrize("raw", [b"\xe0" + b"\x80" * 4_000, b"\x80" * 4_000, b"a\xf0\x9f" * 2_000])
def test_a_long_run_of_invalid_utf8_is_cut_replaced_and_annotated(
    ner, tmp_path: Path, small_pieces: list[int], unit: str, raw: bytes
) -> None:
    # A run of UTF-8 continuation bytes with no character start to cut before hung the reader
    # (the cut walked back to the piece's start and stayed there) or went past the buffer.
    source = tmp_path / "in.txt"
    source.write_bytes(raw + b"\nEU rejects\n")
    out = io.BytesIO()
    annotate_paths([source], ner, None, AnnotateOptions(unit=unit), stdout=out)
    records = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    whole = raw.decode("utf-8", errors="replace")
    if unit == "line":
        assert [r["text"] for r in records] == [whole, "EU rejects"]
    else:
        assert [r["text"] for r in records] == [whole + "\nEU rejects"]


def test_a_long_document_where_pieces_cannot_go_is_one_clear_error(
    ner, tmp_path: Path, small_pieces: list[int]
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("EU rejects\n" + long_line(random.Random(1), 1_000) + "\n")
    with pytest.raises(InputFormatError, match=r"in.txt:2: a document of more than 3,000 bytes"):
        annotate_paths([source], ner, tmp_path / "out.spacy", AnnotateOptions(fmt="docbin"))


def test_a_run_killed_inside_a_long_document_resumes_byte_identical(
    ner, tmp_path: Path, small_pieces: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bilstm_nlp.annotation.writers import jsonl

    rng = random.Random(3)
    source = tmp_path / "in.txt"
    source.write_text("EU rejects\n" + long_line(rng, 2_000) + "\nParis\n")
    reference = tmp_path / "reference.jsonl"
    annotate_paths([source], ner, reference)
    output = tmp_path / "out.jsonl"
    real = jsonl.JsonlStream.add
    calls = []

    def add(self, *args):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt  # stands for a kill in the middle of the document
        return real(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(jsonl.JsonlStream, "add", add)
        with pytest.raises(KeyboardInterrupt):
            annotate_paths([source], ner, output)
    assert reference.read_bytes().startswith(output.read_bytes())
    annotate_paths([source], ner, output, AnnotateOptions(resume=True))
    assert output.read_bytes() == reference.read_bytes()


def test_a_folder_of_many_files_saves_its_progress_now_and_then_and_resumes_exactly(
    ner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The progress file fingerprints every input; saved after each of 20,000 files it was 5 MB
    # rewritten 20,000 times. Saved now and then, a run killed between saves resumes from the
    # last one and still writes what an uninterrupted run writes.
    folder = tmp_path / "in"
    folder.mkdir()
    rng = random.Random(5)
    for index in range(60):
        (folder / f"f{index:03}.txt").write_text(long_line(rng, 8) + "\n" + long_line(rng, 5))
    reference = tmp_path / "reference"
    annotate_paths([folder], ner, reference)
    saves = []
    real_save = resume.save_state
    monkeypatch.setattr(
        resume, "save_state", lambda *args: (saves.append(args[2].job), real_save(*args))
    )
    monkeypatch.setattr(resume, "SAVE_INTERVAL", 3600.0)
    output = tmp_path / "out"
    real_end = make_writer("jsonl").__class__.end
    ended = []

    def end(self, out):
        ended.append(1)
        if len(ended) == 40:
            raise KeyboardInterrupt  # a kill after 39 files, long after the last save
        return real_end(self, out)

    with monkeypatch.context() as patch:
        patch.setattr(make_writer("jsonl").__class__, "end", end)
        with pytest.raises(KeyboardInterrupt):
            annotate_paths([folder], ner, output)
    assert saves == [1]  # the first file's save only: the next is an hour away
    assert len(list(output.iterdir())) == 40
    annotate_paths([folder], ner, output, AnnotateOptions(resume=True))
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.iterdir():
        assert (output / path.name).read_bytes() == path.read_bytes()
    assert saves[-1] == 60  # the end of a run is always saved
    assert not list(tmp_path.glob("*.tmp"))
