"""Annotation throughput on one machine's engines: local `-w 2`, Ray, Spark and Dask.

    python bench/scale.py                      # 1 M tokens, 5 rounds (about 25 minutes on 2 cores)
    python bench/scale.py --tokens 200000 --rounds 3

The input: real sentences (CoNLL-2003, CoNLL-2000, UD EWT and WNUT-17 train, as text, a sentence
per line) until about `--tokens` whitespace tokens. Each round runs every engine once, in turn, as
the whole command a user types (`bilstm-nlp annotate IN -o OUT [--engine E] -w 2`, model `ner`,
1 torch thread per worker), on the big input and on a one-line input; the one-line run is the
engine's fixed cost (start the instance, load the model in each worker, stop). Reports the median
wall time with its range, tokens/s over the whole job, and tokens/s once started (tokens over wall
time less the fixed cost) per core. Every run's output is checked equal to the local run's.
Writes bench/results/scale.json.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, machine_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "corpora"
ENGINES = ("local", "ray", "spark", "dask")
SOURCES = (
    ("conll2003/train.txt", " "),
    ("conll2000/train.txt", " "),
    ("ud_ewt/train.conllu", "\t"),
    ("wnut17/train.txt", "\t"),
)


def corpus_lines(tokens_wanted: int) -> list[str]:
    """Sentences as lines until `tokens_wanted` tokens; the corpora again if they run out."""
    sentences: list[str] = []
    for name, _ in SOURCES:
        tokens: list[str] = []
        for line in (CORPORA / name).read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                continue
            columns = line.split("\t") if name.endswith(".conllu") else line.split()
            if not line.strip():
                if tokens and tokens != ["-DOCSTART-"]:
                    sentences.append(" ".join(tokens))
                tokens = []
            elif name.endswith(".conllu"):
                if columns[0].isdigit():
                    tokens.append(columns[1])
            else:
                tokens.append(columns[0])
    lines, count, index = [], 0, 0
    while count < tokens_wanted:
        sentence = sentences[index % len(sentences)]
        lines.append(sentence)
        count += len(sentence.split())
        index += 1
    return lines


def run(engine: str, source: Path, out: Path, workers: int, partitions: int) -> float:
    """Wall seconds of one `annotate` command."""
    command = [sys.executable, "-m", "bilstm_nlp.cli", "annotate", str(source), "-o", str(out)]
    command += ["-w", str(workers), "--no-progress"]
    if engine != "local":
        command += ["--engine", engine, "--partitions", str(partitions)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{done.stderr[-3000:]}")
    return seconds


def output_bytes(out: Path) -> bytes:
    if out.is_file():
        return out.read_bytes()
    return b"".join(p.read_bytes() for p in sorted(out.glob("part-*.jsonl")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--engines", nargs="*", default=list(ENGINES))
    parser.add_argument("--out", default="bench/results/scale.json")
    args = parser.parse_args()
    lines = corpus_lines(args.tokens)
    tokens = sum(len(line.split()) for line in lines)
    walls: dict[str, list[float]] = {engine: [] for engine in args.engines}
    fixed: dict[str, list[float]] = {engine: [] for engine in args.engines}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        big, tiny = work / "corpus.txt", work / "one.txt"
        big.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tiny.write_text(lines[0] + "\n", encoding="utf-8")
        reference: bytes | None = None
        for round_ in range(args.rounds):
            for engine in args.engines:
                out = work / f"{engine}-{round_}"
                walls[engine].append(run(engine, big, out, args.workers, args.partitions))
                result = output_bytes(out)
                reference = reference or result
                if result != reference:
                    raise SystemExit(f"{engine}'s output differs from the first run's")
                fixed[engine].append(
                    run(engine, tiny, work / f"{engine}-one-{round_}", args.workers, 1)
                )
                print(
                    f"round {round_ + 1}: {engine} {walls[engine][-1]:.1f} s, "
                    f"fixed {fixed[engine][-1]:.1f} s",
                    flush=True,
                )
    size = len(("\n".join(lines) + "\n").encode())
    rows = []
    for engine in args.engines:
        wall = statistics.median(walls[engine])
        start = statistics.median(fixed[engine])
        started_rate = tokens / max(wall - start, 1e-9)
        rows.append(
            {
                "engine": engine,
                "wall_s": wall,
                "wall_range_s": [min(walls[engine]), max(walls[engine])],
                "fixed_s": start,
                "fixed_range_s": [min(fixed[engine]), max(fixed[engine])],
                "tokens_per_s": tokens / wall,
                "tokens_per_s_started": started_rate,
                "tokens_per_s_per_core": started_rate / args.workers,
            }
        )
    # A calculation, not a measurement: 1 TB of such text on 100 nodes of 16 cores.
    tokens_per_byte = tokens / size
    best = max(rows[1:] or rows, key=lambda r: r["tokens_per_s_per_core"])
    corpus_tokens = 1e12 * tokens_per_byte
    hours = corpus_tokens / (best["tokens_per_s_per_core"] * 100 * 16) / 3600
    figures = {
        "tokens": tokens,
        "input_bytes": size,
        "workers": args.workers,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "rows": rows,
        "projection": {
            "note": "calculated from the measured per-core rate, not measured",
            "engine": best["engine"],
            "corpus_bytes": 1e12,
            "corpus_tokens": corpus_tokens,
            "nodes": 100,
            "cores_per_node": 16,
            "hours": hours,
        },
    }
    cpu = cpu_model()
    print(
        f"\n{tokens:,} tokens ({size / 1e6:.1f} MB), {args.workers} workers, "
        f"{args.rounds} rounds, {cpu}, {os.cpu_count()} cores\n"
    )
    print(
        "| engine | wall, median (range) | fixed cost | tokens/s "
        "| tokens/s once started, per core |"
    )
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        low, high = row["wall_range_s"]
        flow, fhigh = row["fixed_range_s"]
        print(
            f"| {row['engine']} | {row['wall_s']:.1f} s ({low:.1f}-{high:.1f}) | "
            f"{row['fixed_s']:.1f} s ({flow:.1f}-{fhigh:.1f}) | {row['tokens_per_s']:,.0f} | "
            f"{row['tokens_per_s_per_core']:,.0f} |"
        )
    print(
        f"\nCalculated, not measured: 1 TB of such text is {corpus_tokens / 1e9:,.0f} G tokens; "
        f"at {best['tokens_per_s_per_core']:,.0f} tokens/s per core ({best['engine']}) on 100 "
        f"nodes of 16 cores that is {hours:,.1f} hours."
    )
    write_results(ROOT / args.out, figures, machine_info(1) | {"cpu": cpu})
    print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
