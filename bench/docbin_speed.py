"""`annotate -f docbin` against `-f jsonl` on the same text, in this checkout and (--against REV)
another revision's, in one run.

    python bench/docbin_speed.py [--against REV] [--tokens 50000] [--repeats 5] [--out FILE]

The text is the `# text` lines of UD EWT dev (../shared/corpora/ud_ewt/dev.conllu), repeated to
about `--tokens` spaCy tokens, one document per line. Each repeat runs, for every revision in turn,
`annotate_paths` into JSONL and into a DocBin (one process, 1 torch thread, the shipped `ner` of
that revision), in a fresh interpreter whose import path is that revision's tree (a temporary git
worktree for --against); the rounds alternate revisions so that a busy machine slows both alike.
Each setting's seconds exclude the interpreter's start and the model load, and come after a
warm-up on a tenth of the text. The table gives the median seconds, the range, and the DocBin
run's time as a multiple of the JSONL run's in the same round (median over rounds).

Writes bench/results/docbin_speed.json (or --out): figures, command, git commit, torch version,
CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    MIN_REPEATS,
    check_repeats,
    machine_info,
    revision_tree,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "docbin_speed.json"
FORMATS = ("jsonl", "docbin")

# Runs in the revision's tree: one warm-up and one timed run of each format, seconds as JSON.
ROUND = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths
from bilstm_nlp.serialize import load_model
source, warmup, folder = (Path(a) for a in sys.argv[1:4])
model = load_model("ner")
seconds = {}
for fmt in ("jsonl", "docbin"):
    extension = ".jsonl" if fmt == "jsonl" else ".spacy"
    options = AnnotateOptions(fmt=fmt)
    annotate_paths([warmup], model, folder / ("warmup" + extension), options)
    start = time.perf_counter()
    stats = annotate_paths([source], model, folder / ("out" + extension), options)
    seconds[fmt] = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "tokens": stats.tokens}))
"""


def build_text(target_tokens: int) -> str:
    sys.path.insert(0, str(ROOT))
    from annotate_speed import build_text as repeated
    from annotate_speed import ewt_lines

    return repeated(ewt_lines(), target_tokens)[0]


def one_round(tree: Path, source: Path, warmup: Path, folder: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", ROUND, str(source), str(warmup), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        cwd=tree,
        env=env,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="a revision to compare with (a temporary worktree)")
    parser.add_argument("--tokens", type=int, default=50_000, help="about this many tokens")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="rounds (at least 5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    check_repeats(parser, args.repeats)

    trees: dict[str, Path] = {"this checkout": ROOT}
    with contextlib.ExitStack() as stack:
        if args.against:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", args.against],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            trees[commit] = stack.enter_context(revision_tree(args.against, ROOT))
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="docbin_speed_")))
        text = build_text(args.tokens)
        source = folder / "text.txt"
        source.write_text(text, encoding="utf-8")
        warmup = folder / "warmup.txt"
        warmup.write_text(text[: len(text) // 10].rsplit("\n", 1)[0] + "\n", encoding="utf-8")
        for number in range(args.repeats):
            for name, tree in trees.items():
                rounds[name].append(one_round(tree, source, warmup, folder))
            print(f"  round {number + 1}/{args.repeats} done", file=sys.stderr)

    rows = []
    for name, runs in rounds.items():
        row: dict[str, Any] = {"revision": name, "tokens": runs[0]["tokens"]}
        for fmt in FORMATS:
            seconds = [run["seconds"][fmt] for run in runs]
            row[f"{fmt}_median_s"] = statistics.median(seconds)
            row[f"{fmt}_range_s"] = [min(seconds), max(seconds)]
        row["docbin_over_jsonl"] = statistics.median(
            run["seconds"]["docbin"] / run["seconds"]["jsonl"] for run in runs
        )
        rows.append(row)

    print(f"\n{rows[0]['tokens']:,} tokens, {args.repeats} rounds, 1 process, 1 thread")
    print("| revision | JSONL s (range) | DocBin s (range) | DocBin / JSONL |")
    print("|---|---:|---:|---:|")
    for row in rows:
        cells = [
            f"{row[f'{fmt}_median_s']:.2f} ({row[f'{fmt}_range_s'][0]:.2f}-"
            f"{row[f'{fmt}_range_s'][1]:.2f})"
            for fmt in FORMATS
        ]
        print(f"| {row['revision']} | {cells[0]} | {cells[1]} | {row['docbin_over_jsonl']:.2f}x |")
    figures = {"rows": rows, "command": shlex.join(["python", *sys.argv])}
    write_results(args.out, figures, machine_info(1))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
