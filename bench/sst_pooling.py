"""Summary of bench/sst_pooling.sh: SST-2 dev accuracy and macro-F1 per seed and pooling.

    python bench/sst_pooling.py --runs runs [--seeds 1 2 3 4 5] [--poolings max attention]
        [--epochs 8] [--device cpu] [--out bench/results/sst_pooling.json]

Reads what the script leaves in RUNS for each run `sst2-POOLING-sSEED`: the run's
`train_log.jsonl` (dev accuracy per epoch), `NAME.final_dev.json` (`bilstm-nlp evaluate --json` of
the final epoch's weights, the figure compared), `NAME.final_config.json` (those weights' config,
which names their epoch) and `NAME.best_dev.json` (of the epoch dev picked, for information). A
run that did not finish its epochs is listed as incomplete and left out of the means. Prints a
markdown table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

CONFIGS = {
    # The `sentiment` recipe up to 2026-12-04 (max pooling, dropout 0.5): what the others change.
    "max": "bench/configs/sst2-phrases-max.json",
    "attention": "bench/configs/sst2-phrases-attention.json",
    "mean": "bench/configs/sst2-phrases-mean.json",
    # The max-pooling recipe with another dropout; 0.3 is models/sentiment/train.json's since.
    "dropout0.3": "bench/configs/sst2-phrases-dropout0.3.json",
    "dropout0.65": "bench/configs/sst2-phrases-dropout0.65.json",
    # The dropout-0.3 recipe as an ensemble of three classifiers in one model (model.members).
    "members3": "bench/configs/sst2-phrases-members3.json",
}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_figures(runs: Path, pooling: str, seed: int, epochs: int) -> dict[str, Any]:
    """One run's figures: final epoch's dev accuracy and macro-F1, and the dev-picked epoch's."""
    name = f"sst2-{pooling}-s{seed}"
    log_path = runs / name / "train_log.jsonl"
    log = (
        [json.loads(line) for line in log_path.read_text().splitlines()]
        if log_path.is_file()
        else []
    )
    final = _read_json(runs / f"{name}.final_dev.json")
    best = _read_json(runs / f"{name}.best_dev.json")
    saved = _read_json(runs / f"{name}.final_config.json") or {}
    final_epoch = saved.get("meta", {}).get("scores", {}).get("epoch")
    # A run stopped between its log line and its checkpoint would score an earlier epoch.
    complete = len(log) == epochs and final is not None and final_epoch == epochs
    figures: dict[str, Any] = {
        "run": name,
        "config": CONFIGS[pooling],
        "complete": complete,
        "epochs_run": len(log),
        "final_epoch": final_epoch,
        "train_seconds": round(sum(r["seconds"] for r in log), 1),
    }
    if final is not None:
        figures["final_accuracy"] = final["accuracy"]
        figures["final_macro_f1"] = final["macro_f1"]
        if log:
            # The log scores the same weights during training: a check that evaluate agrees.
            figures["final_log_dev"] = round(log[-1]["dev_score"], 4)
    if log:
        # max() keeps the first of equal scores, as the loop keeps the first best epoch.
        picked = max(log, key=lambda r: r["dev_score"])
        figures["best_epoch"] = picked["epoch"]
        figures["best_accuracy"] = round(picked["dev_score"], 4)
        figures["dev_per_epoch"] = [round(r["dev_score"], 2) for r in log]
    if best is not None:
        figures["best_macro_f1"] = best["macro_f1"]
    return figures


def spread(values: list[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation (n - 1), min and max."""
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 4),
        "std": round(std, 4),
        "min": min(values),
        "max": max(values),
    }


def comparison(first: list[float], second: list[float]) -> dict[str, Any]:
    """`second` minus `first`: the difference of means, its standard error (Welch), Welch's t and
    degrees of freedom; beyond the seed spread when the difference exceeds two standard errors."""
    mean_gap = statistics.fmean(second) - statistics.fmean(first)
    var_first = statistics.variance(first) / len(first)
    var_second = statistics.variance(second) / len(second)
    error = math.sqrt(var_first + var_second)
    spread_of_spread = var_first**2 / (len(first) - 1) + var_second**2 / (len(second) - 1)
    return {
        "difference": round(mean_gap, 4),
        "standard_error": round(error, 4),
        "welch_t": round(mean_gap / error, 3) if error else None,
        "welch_dof": round((var_first + var_second) ** 2 / spread_of_spread, 1)
        if spread_of_spread
        else None,
        "beyond_two_standard_errors": abs(mean_gap) > 2 * error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--poolings", nargs="+", default=["max", "attention"], choices=CONFIGS)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--device-name", help="What the device was (default: asked of torch)")
    parser.add_argument("--parallel", default="0", help="Whether the runs ran at once (0/1)")
    parser.add_argument("--wall-seconds", type=int, help="Wall time of all runs together")
    parser.add_argument("--command", help="The bench command, as recorded")
    parser.add_argument("--out", type=Path, default=Path("bench/results/sst_pooling.json"))
    parser.add_argument(
        "--config-of",
        choices=CONFIGS,
        help="Print that variant's config path and stop (the script's lookup)",
    )
    args = parser.parse_args()
    if args.config_of:
        print(CONFIGS[args.config_of])
        return

    runs = {
        pooling: {
            str(seed): run_figures(args.runs, pooling, seed, args.epochs) for seed in args.seeds
        }
        for pooling in args.poolings
    }
    if not any("final_accuracy" in r or r["epochs_run"] for v in runs.values() for r in v.values()):
        # runs/ is not committed: in a fresh checkout nothing is measured, and writing would
        # replace the recorded figures with rows of missing runs.
        raise SystemExit(f"no run is scored in {args.runs}: {args.out} left as it is")
    summary: dict[str, Any] = {}
    for pooling, by_seed in runs.items():
        done = [r for r in by_seed.values() if r["complete"]]
        if not done:
            continue
        summary[pooling] = {
            metric: spread([r[metric] for r in done])
            for metric in ("final_accuracy", "final_macro_f1", "best_accuracy")
        }
    figures: dict[str, Any] = {"runs": runs, "summary": summary}

    def finals(pooling: str, metric: str) -> list[float]:
        return [r[metric] for r in runs[pooling].values() if r["complete"]]

    for other in (p for p in summary if p != "max"):
        if (
            "max" not in summary
            or min(summary[p]["final_accuracy"]["n"] for p in ("max", other)) < 2
        ):
            continue
        gap = {
            metric: comparison(finals("max", metric), finals(other, metric))
            for metric in ("final_accuracy", "final_macro_f1")
        }
        # Same seed: same batch order and same initial word vectors, so the pair shares some luck.
        gap["paired_final_accuracy_by_seed"] = [
            round(runs[other][s]["final_accuracy"] - runs["max"][s]["final_accuracy"], 4)
            for s in runs["max"]
            if s in runs[other] and runs["max"][s]["complete"] and runs[other][s]["complete"]
        ]
        figures[f"{other}_minus_max"] = gap

    device_name = args.device_name
    if device_name is None and args.device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(0)
    machine = machine_info(threads=1)
    machine["git_commit"] = machine["git_commit"] or os.environ.get("GIT_COMMIT")
    machine |= {
        "bench_command": args.command,
        "device": args.device,
        "device_name": device_name or machine["cpu"],
        "parallel": args.parallel == "1",
        "wall_seconds": args.wall_seconds,
        "epochs": args.epochs,
        "train_command": "bilstm-nlp train --config CONFIG --no-train-with-dev --epochs "
        f"{args.epochs} --seed SEED --device {args.device} --threads 1 --output RUNS/NAME; "
        "final figure: bilstm-nlp evaluate RUNS/NAME/checkpoint/model DEV --json",
    }
    write_results(args.out, figures, machine)
    _print_table(runs, summary, {k: v for k, v in figures.items() if k.endswith("_minus_max")})


def _print_table(runs, summary, gaps) -> None:
    poolings = list(runs)
    print("| seed | " + " | ".join(f"{p} acc (F1) [best ep]" for p in poolings) + " |")
    print("|---|" + "---:|" * len(poolings))
    for seed in next(iter(runs.values())):
        cells = []
        for pooling in poolings:
            r = runs[pooling][seed]
            if "final_accuracy" not in r:
                cells.append("missing")
                continue
            mark = "" if r["complete"] else f" incomplete ({r['epochs_run']} ep)"
            cells.append(
                f"{r['final_accuracy']:.2f} ({r['final_macro_f1']:.2f}) "
                f"[{r.get('best_epoch', '-')}: {r.get('best_accuracy', float('nan')):.2f}]{mark}"
            )
        print(f"| {seed} | " + " | ".join(cells) + " |")
    cells = []
    for pooling in poolings:
        s = summary.get(pooling)
        cells.append(
            "-"
            if s is None
            else f"{s['final_accuracy']['mean']:.2f} ± {s['final_accuracy']['std']:.2f} "
            f"({s['final_macro_f1']['mean']:.2f} ± {s['final_macro_f1']['std']:.2f})"
        )
    print("| mean ± std | " + " | ".join(cells) + " |")
    for name, gap in gaps.items():
        accuracy = gap["final_accuracy"]
        print(
            f"\n{name.removesuffix('_minus_max')} - max: {accuracy['difference']:+.2f} accuracy "
            f"(standard error {accuracy['standard_error']:.2f}, Welch t {accuracy['welch_t']}); "
            f"beyond two standard errors: {accuracy['beyond_two_standard_errors']}"
        )


if __name__ == "__main__":
    main()
