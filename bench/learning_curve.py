"""CoNLL-2003 dev F1 against the amount of training data: what more annotated data would give.

    python bench/learning_curve.py --train          # train what is missing (about 40 minutes
                                                     # of 2 cores for the defaults), then report
    python bench/learning_curve.py                   # report the runs already in runs/

The `ner` recipe (bench/configs/ner.json, train alone, best epoch on dev) is trained on nested
subsets of CoNLL-2003 train: whole documents drawn in one seeded order, each subset the first
documents of that order up to its share of the sentences, so every subset holds the smaller ones.
Each model is scored on all of dev, and on the dev entities seen and unseen as entities in its
own subset (the split of bench/generalisation.py). The slope per doubling of the data, fitted on
the larger subsets, says what train + dev (1.23 times the sentences of train, the shipped
models' protocol) can be expected to add, and how much data a given gain would take. Writes
bench/results/learning_curve.json and bench/results/learning_curve.png.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402
from generalisation import novelty_counts, prf, seen_entities, tagged_sentences  # noqa: E402

from bilstm_nlp import load  # noqa: E402

TRAIN = Path("../shared/corpora/conll2003/train.txt")
DEV = Path("../shared/corpora/conll2003/dev.txt")
DEV_SENTENCES = 3250  # ../shared/corpora/conll2003/README.md
CONFIG = "bench/configs/ner.json"


def documents(path: Path) -> list[str]:
    """The file's documents as text, each starting at its -DOCSTART- line."""
    text = path.read_text(encoding="utf-8")
    starts = [match.start() for match in re.finditer(r"^-DOCSTART-", text, flags=re.MULTILINE)]
    if not starts or starts[0] != 0:
        raise SystemExit(f"{path}: expected -DOCSTART- on the first line")
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def sentence_count(document: str) -> int:
    blocks = document.split("\n\n")
    return sum(1 for b in blocks if b.strip() and not b.lstrip().startswith("-DOCSTART-"))


def write_subsets(fractions: list[float], folder: Path, order_seed: int) -> dict[float, dict]:
    """Nested subsets of train by whole documents; fraction 1 is the train file itself."""
    docs = documents(TRAIN)
    counts = [sentence_count(d) for d in docs]
    total = sum(counts)
    order = list(range(len(docs)))
    random.Random(order_seed).shuffle(order)
    folder.mkdir(parents=True, exist_ok=True)
    subsets = {}
    for fraction in fractions:
        if fraction >= 1:
            subsets[fraction] = {"path": str(TRAIN), "documents": len(docs), "sentences": total}
            continue
        chosen, sentences = [], 0
        for index in order:
            if sentences >= fraction * total:
                break
            chosen.append(index)
            sentences += counts[index]
        path = folder / f"train-{fraction:g}.txt"
        path.write_text("".join(docs[i] for i in sorted(chosen)), encoding="utf-8")
        subsets[fraction] = {"path": str(path), "documents": len(chosen), "sentences": sentences}
    return subsets


def train_missing(jobs: list[tuple[str, list[str]]], parallel: int) -> None:
    """Run the training commands, `parallel` at a time, in the order given (longest first);
    after a failure no further one starts."""
    failed = threading.Event()

    def train(job: tuple[str, list[str]]) -> None:
        name, command = job
        if failed.is_set():
            return
        print("$", " ".join(command[2:]), file=sys.stderr, flush=True)
        if (code := subprocess.run(command).returncode) != 0:
            failed.set()
            raise SystemExit(f"training {name} failed (exit {code})")

    with ThreadPoolExecutor(parallel) as pool:
        for _ in pool.map(train, jobs):  # raises the first failure in job order
            pass


def _last_doubling(rows: list[dict], fractions: list[float]) -> dict:
    """Split the gain between the two largest subsets into its two sources.

    Dev F1 is close to the share-weighted mean of the seen and unseen entities' F1. More data
    raises each part's F1 and also moves dev names from unseen to seen (more of them were in the
    larger subset); the first is what a test split of other days' names can expect.
    """
    means = {}
    for fraction in fractions:
        group = [r for r in rows if r["fraction"] == fraction]
        if not group:
            return {}
        unseen = statistics.mean(r["unseen_share"] for r in group) / 100
        means[fraction] = {
            "dev": statistics.mean(r["dev"] for r in group),
            "unseen_share": unseen,
            "seen_f1": statistics.mean(r["parts"]["seen"]["f1"] for r in group),
            "unseen_f1": statistics.mean(r["parts"]["unseen"]["f1"] for r in group),
        }
    small, large = (means[f] for f in fractions)
    at_old_share = (1 - small["unseen_share"]) * (large["seen_f1"] - small["seen_f1"]) + small[
        "unseen_share"
    ] * (large["unseen_f1"] - small["unseen_f1"])
    return {
        "fractions": fractions,
        "gain": large["dev"] - small["dev"],
        "gain_at_unchanged_share": at_old_share,
        "unseen_share": [small["unseen_share"], large["unseen_share"]],
    }


def plot(rows: list[dict], fit: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for part, colour in (("all", "C0"), ("seen", "C2"), ("unseen", "C3")):
        xs = [r["sentences"] for r in rows]
        ys = [r["dev"] if part == "all" else r["parts"][part]["f1"] for r in rows]
        axis.scatter(xs, ys, s=14, color=colour, label=f"{part} dev entities")
        by_size: dict[int, list[float]] = {}
        for x, y in zip(xs, ys, strict=True):
            by_size.setdefault(x, []).append(y)
        sizes = sorted(by_size)
        axis.plot(sizes, [statistics.mean(by_size[s]) for s in sizes], color=colour, lw=1)
    lo, hi = fit["fitted_on_sentences"][0], fit["train_with_dev_sentences"]
    axis.plot(
        [lo, hi],
        [fit["intercept"] + fit["slope_per_doubling"] * math.log2(x) for x in (lo, hi)],
        "k--",
        lw=1,
        label=f"fit: {fit['slope_per_doubling']:+.2f} F1 per doubling",
    )
    axis.axvline(hi, color="grey", lw=0.8, ls=":")
    axis.text(hi, axis.get_ylim()[0], " train + dev", rotation=90, va="bottom", fontsize=8)
    axis.set_xscale("log", base=2)
    sizes = sorted({r["sentences"] for r in rows})
    axis.set_xticks(sizes, [f"{n:,}" for n in sizes])
    axis.minorticks_off()
    axis.set_xlabel("training sentences (CoNLL-2003 train, whole documents)")
    axis.set_ylabel("dev F1")
    axis.set_title("ner recipe: dev F1 against training data")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train the runs that are missing")
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[0.0625, 0.125, 0.25, 0.5, 1.0]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--order-seed", type=int, default=1, help="seed of the document order")
    parser.add_argument(
        "--fit-from", type=float, default=0.25, help="fit the slope on fractions from this up"
    )
    parser.add_argument("--parallel", type=int, default=2, help="trainings at once, 1 thread each")
    parser.add_argument("--runs", default="runs/learning-curve")
    parser.add_argument("--threads", type=int, default=2, help="threads for scoring")
    parser.add_argument("--out", default="bench/results/learning_curve.json")
    args = parser.parse_args()
    runs = Path(args.runs)
    subsets = write_subsets(sorted(args.fractions), runs, args.order_seed)
    cli = [sys.executable, "-m", "bilstm_nlp.cli"]
    names = {
        (fraction, seed): f"conll2003-{fraction:g}-s{seed}"
        for fraction in sorted(args.fractions, reverse=True)
        for seed in args.seeds
    }
    jobs = []
    for (fraction, seed), name in names.items():
        if (runs / name / "README.md").is_file():
            continue
        jobs.append(
            (
                name,
                [
                    *cli,
                    "train",
                    "--config",
                    CONFIG,
                    "--train",
                    subsets[fraction]["path"],
                    "--seed",
                    str(seed),
                    "--threads",
                    "1",
                    "--no-train-with-dev",
                    "--output",
                    str(runs / name),
                    "--no-progress",
                ],
            )
        )
    if jobs and args.train:
        train_missing(jobs, args.parallel)
    torch.set_num_threads(args.threads)
    dev = tagged_sentences(str(DEV))
    seen: dict[float, set[tuple[str, str]]] = {}  # the seeds of a subset share its entities
    rows = []
    for (fraction, seed), name in sorted(names.items()):
        output = runs / name
        if not (output / "README.md").is_file():
            print(f"{name}: not trained (run with --train)", file=sys.stderr)
            continue
        evaluate = [
            *cli,
            "evaluate",
            str(output),
            str(DEV),
            "--json",
            "--threads",
            str(args.threads),
        ]
        scores = json.loads(
            subprocess.run(evaluate, check=True, capture_output=True, text=True).stdout
        )
        if fraction not in seen:
            seen[fraction] = seen_entities(subsets[fraction]["path"])
        parts, _ = novelty_counts(load(str(output)), seen[fraction], dev)
        log = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
        best = max(log, key=lambda e: e["dev_score"] or 0)
        rows.append(
            {
                "name": name,
                "fraction": fraction,
                "seed": seed,
                "documents": subsets[fraction]["documents"],
                "sentences": subsets[fraction]["sentences"],
                "dev": scores["f1"],
                "unseen_share": 100 * parts["unseen"]["gold"] / max(parts["all"]["gold"], 1),
                "parts": {part: prf(parts[part]) for part in ("seen", "unseen")},
                "epochs": len(log),
                "best_epoch": best["epoch"],
                "minutes": sum(e["seconds"] for e in log) / 60,
                "train_command": f"bilstm-nlp train --config {CONFIG} --train "
                f"{subsets[fraction]['path']} --seed {seed} --no-train-with-dev "
                f"--output {output}",
            }
        )
    if not rows:
        # runs/ is not committed: in a fresh checkout nothing is measured, and writing would
        # replace the recorded curve with an empty one.
        raise SystemExit(f"no run of the curve is trained in {runs}: {args.out} left as it is")
    fitted = [(r["sentences"], r["dev"]) for r in rows if r["fraction"] >= args.fit_from]
    fit = {}
    if len({n for n, _ in fitted}) >= 2:
        # Least squares of F1 on log2(sentences): F1 per doubling of the data.
        slope, intercept = statistics.linear_regression(
            [math.log2(n) for n, _ in fitted], [f for _, f in fitted]
        )
        full = subsets[max(subsets)]["sentences"]
        with_dev = full + DEV_SENTENCES
        fit = {
            "fitted_on_sentences": sorted({n for n, _ in fitted}),
            "slope_per_doubling": slope,
            "intercept": intercept,
            "train_sentences": full,
            "train_with_dev_sentences": with_dev,
            "predicted_gain_train_with_dev": slope * math.log2(with_dev / full),
            # Data needed for +1 F1 over train alone, if the line held that far.
            "data_factor_for_one_f1": 2 ** (1 / slope) if slope > 0 else None,
        }
    if fit:
        fit["last_doubling"] = _last_doubling(rows, sorted(args.fractions)[-2:])
    print(
        "| training sentences | share of train | seeds | dev F1 (mean, min-max) | unseen share "
        "| seen F1 | unseen F1 |\n|---:|---:|---:|---:|---:|---:|---:|"
    )
    for fraction in sorted(args.fractions):
        group = [r for r in rows if r["fraction"] == fraction]
        if not group:
            continue
        devs = [r["dev"] for r in group]
        print(
            f"| {group[0]['sentences']:,} | {fraction:g} | {len(group)} | "
            f"{statistics.mean(devs):.2f} ({min(devs):.2f}-{max(devs):.2f}) | "
            f"{statistics.mean(r['unseen_share'] for r in group):.1f}% | "
            f"{statistics.mean(r['parts']['seen']['f1'] for r in group):.2f} | "
            f"{statistics.mean(r['parts']['unseen']['f1'] for r in group):.2f} |"
        )
    if fit:
        factor = fit["data_factor_for_one_f1"]
        print(
            f"\nfit on {fit['fitted_on_sentences']} sentences: {fit['slope_per_doubling']:+.2f} "
            f"F1 per doubling; train + dev ({fit['train_with_dev_sentences']:,} sentences) "
            f"predicted {fit['predicted_gain_train_with_dev']:+.2f} over train alone"
            + (f"; +1 F1 would take {factor:.1f}x the data" if factor else "")
        )
        last = fit.get("last_doubling")
        if last:
            print(
                f"last doubling {last['gain']:+.2f}: {last['gain_at_unchanged_share']:+.2f} "
                f"from better seen and unseen F1 at an unchanged unseen share, the rest from the "
                f"unseen share falling from {100 * last['unseen_share'][0]:.1f}% to "
                f"{100 * last['unseen_share'][1]:.1f}%"
            )
        plot(rows, fit, Path(args.out).with_suffix(".png"))
    write_results(
        Path(args.out),
        {"config": CONFIG, "order_seed": args.order_seed, "runs": rows, "fit": fit},
        machine_info(args.threads),
    )


if __name__ == "__main__":
    main()
