"""Active learning on CoNLL-2003: uncertainty sampling against random sampling.

Does uncertainty sampling reach random sampling's dev F1 with fewer labelled tokens?

    python bench/active_learning.py              # the full simulation: 2 seeds x 4 strategies
    python bench/active_learning.py --quick      # a smoke run of a few minutes (tiny settings)
    python bench/active_learning.py --start 50 --per-round 50 --rounds 2 --epochs 1 --seeds 1 \\
        --out /tmp/al.json                       # any settings; the plot goes beside --out

The pool is CoNLL-2003 train (14,041 sentences, -DOCSTART- dropped); every model is scored on dev
with the project's `evaluate_tagger` (seqeval, default mode). For each seed, the same `--start`
random sentences are labelled first; then for each strategy, `--rounds` rounds each add
`--per-round` sentences of the remaining pool, chosen by the strategy through
`bilstm_nlp.annotation.selection` (`rank_sentences` and `choose`: the ranking and the
near-duplicate rule `bilstm-nlp select` uses, with the sentences labelled so far excluded as
`select --exclude` does; `random` ranks the same way by seeded draws, without a model). After each
round a model is trained from scratch with `bilstm_nlp.training.loop.train` on the labelled
sentences: the `ner` recipe's architecture (bench/configs/ner.json: GloVe 50d, char CNN, 100
hidden per direction, CRF, BIOES, SGD) for a fixed `--epochs` epochs without dev selection (no dev
during training; the last epoch's model is scored and, for the next round, ranks the pool).

Writes the figures (every point of every run, and per strategy the labelled tokens at which its
mean curve first reaches random's final mean F1, as a fraction of random's tokens) to `--out`
(default bench/results/active_learning.json) and a plot of dev F1 against labelled tokens to
docs/active_learning.png (beside `--out` when it is given); prints a markdown table. Seeds run in
parallel processes (`--jobs`), one torch thread each.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "conll2003"
STRATEGIES = ("random", "least-confident", "entropy", "entity-margin")
DEFAULT_OUT = ROOT / "bench" / "results" / "active_learning.json"
DEFAULT_PLOT = ROOT / "docs" / "active_learning.png"
QUICK = {"start": 50, "per_round": 50, "rounds": 2, "epochs": 1, "seeds": "1"}


def read_sentences(path: Path) -> list[list[str]]:
    """The sentences of a CoNLL-2003 file as their token lines, `-DOCSTART-` dropped."""
    sentences, lines = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            if lines:
                sentences.append(lines)
            lines = []
        elif not line.startswith("-DOCSTART-"):
            lines.append(line)
    if lines:
        sentences.append(lines)
    return sentences


def simulate(seed: int, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Every strategy's curve for one seed: a list of runs, each with its points."""
    import datasets
    import torch

    from bilstm_nlp.annotation.selection import Candidate, choose, rank, rank_sentences
    from bilstm_nlp.config import ExperimentConfig
    from bilstm_nlp.corpus.loading import load_tagging
    from bilstm_nlp.evaluation.evaluate import evaluate_tagger
    from bilstm_nlp.serialize import load_model
    from bilstm_nlp.training.loop import train

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()
    workdir = Path(tempfile.mkdtemp(prefix=f"active-learning-s{seed}-", dir=args["workdir"]))
    datasets.config.HF_DATASETS_CACHE = workdir / "hf_datasets_cache"
    pool = read_sentences(CORPUS / "train.txt")
    tokens = [[line.split(" ")[0] for line in sentence] for sentence in pool]
    dev = load_tagging(dev=str(CORPUS / "dev.txt"))
    dev_tokens, dev_tags = dev["dev"]["tokens"][:], dev.tags("dev")
    recipe = ExperimentConfig.from_json(ROOT / "bench" / "configs" / "ner.json")
    config = ExperimentConfig(
        replace(recipe.data, dev=None),
        recipe.model,
        replace(
            recipe.train,
            epochs=args["epochs"],
            patience=0,
            max_minutes=0,
            seed=seed,
            threads=1,
        ),
    )

    def fit(labelled: list[int], name: str) -> tuple[Path, dict[str, Any]]:
        started = time.perf_counter()
        corpus = workdir / f"{name}.conll"
        corpus.write_text("".join("\n".join(pool[i]) + "\n\n" for i in labelled))
        run = replace(config, data=replace(config.data, train=str(corpus)))
        output = workdir / name
        train(run, output)
        model = load_model(output)
        scores = evaluate_tagger(model, dev_tokens, dev_tags)
        point = {
            "sentences": len(labelled),
            "tokens": sum(len(tokens[i]) for i in labelled),
            "f1": round(scores.main_score, 2),
            "seconds": round(time.perf_counter() - started, 1),
        }
        return output, point

    start = sorted(random.Random(seed).sample(range(len(pool)), args["start"]))
    first_model, first_point = fit(start, "start")
    print(f"seed {seed} start: {first_point}", flush=True)
    runs = []
    for strategy in args["strategies"]:
        labelled = list(start)
        model_dir = first_model
        points = [{"round": 0, **first_point}]
        for round_number in range(1, args["rounds"] + 1):
            started = time.perf_counter()
            chosen_set = set(labelled)
            remaining = [i for i in range(len(pool)) if i not in chosen_set]
            round_seed = seed * 1000 + round_number
            if strategy == "random":
                # No model needed: the same `rank` draws, in the remaining pool's order.
                candidates = [
                    Candidate(position, " ".join(tokens[i]), 0.0, ())
                    for position, i in enumerate(remaining)
                ]
                ranked = rank(candidates, strategy, round_seed)
            else:
                model = load_model(model_dir)
                ranked = rank_sentences(
                    model, [tokens[i] for i in remaining], strategy, seed=round_seed
                )
            labelled_texts = [" ".join(tokens[i]) for i in labelled]
            choice = choose(ranked, args["per_round"], exclude=labelled_texts)
            labelled += [remaining[c.index] for c in choice.selected]
            ranking_seconds = time.perf_counter() - started
            if model_dir != first_model:
                shutil.rmtree(model_dir, ignore_errors=True)
            model_dir, point = fit(labelled, f"{strategy}-r{round_number}")
            point |= {
                "round": round_number,
                "ranking_seconds": round(ranking_seconds, 1),
                "duplicates_skipped": choice.duplicates,
                "labelled_skipped": choice.excluded,
            }
            points.append(point)
            print(f"seed {seed} {strategy} round {round_number}: {point}", flush=True)
        if model_dir != first_model:
            shutil.rmtree(model_dir, ignore_errors=True)
        runs.append({"seed": seed, "strategy": strategy, "points": points})
    shutil.rmtree(workdir, ignore_errors=True)
    return runs


def mean_curve(runs: list[dict[str, Any]], strategy: str) -> list[tuple[float, float]]:
    """`(tokens, f1)` per round, each the mean over the strategy's seeds."""
    curves = [run["points"] for run in runs if run["strategy"] == strategy]
    return [
        (
            statistics.fmean(curve[r]["tokens"] for curve in curves),
            statistics.fmean(curve[r]["f1"] for curve in curves),
        )
        for r in range(len(curves[0]))
    ]


def tokens_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """Labelled tokens at which a mean curve first reaches `target` F1, linearly interpolated
    between rounds; None when it never does."""
    if curve[0][1] >= target:
        return curve[0][0]
    for (x0, y0), (x1, y1) in zip(curve, curve[1:], strict=False):
        if y1 >= target > y0:
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0)
    return None


def summarise(runs: list[dict[str, Any]], strategies: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if "random" not in strategies:
        return summary
    random_curve = mean_curve(runs, "random")
    random_tokens, random_f1 = random_curve[-1]
    for strategy in strategies:
        curve = mean_curve(runs, strategy)
        reached = tokens_to_reach(curve, random_f1)
        summary[strategy] = {
            "final_tokens": round(curve[-1][0]),
            "final_f1": round(curve[-1][1], 2),
            "tokens_to_reach_random_final_f1": None if reached is None else round(reached),
            "fraction_of_random_tokens": None
            if reached is None
            else round(reached / random_tokens, 3),
            "meets_aim": reached is not None and reached <= 0.6 * random_tokens,
        }
    return summary


def plot(runs: list[dict[str, Any]], strategies: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(
        zip(STRATEGIES, ["tab:gray", "tab:blue", "tab:orange", "tab:green"], strict=True)
    )
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for strategy in strategies:
        curve = mean_curve(runs, strategy)
        axis.plot(
            [x for x, _ in curve],
            [y for _, y in curve],
            "-",
            color=colours[strategy],
            label=f"{strategy} (mean of seeds)",
        )
        for run in (r for r in runs if r["strategy"] == strategy):
            axis.scatter(
                [p["tokens"] for p in run["points"]],
                [p["f1"] for p in run["points"]],
                s=12,
                color=colours[strategy],
                alpha=0.6,
            )
    if "random" in strategies:
        axis.axhline(mean_curve(runs, "random")[-1][1], color="tab:gray", linestyle=":", lw=1)
    axis.set_xlabel("labelled tokens (CoNLL-2003 train sentences chosen so far)")
    axis.set_ylabel("CoNLL-2003 dev entity F1")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=int, default=500, help="random sentences labelled first")
    parser.add_argument("--per-round", type=int, default=500, help="sentences added per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per training, from scratch")
    parser.add_argument("--seeds", default="1,2", help="comma-separated seeds")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: one a seed)")
    parser.add_argument("--out", type=Path, default=None, help=f"results JSON ({DEFAULT_OUT})")
    parser.add_argument("--workdir", default=None, help="temporary files (default: system tmp)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, a smoke run")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.out = args.out or DEFAULT_OUT.with_name("active_learning_quick.json")
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown or not seeds or min(args.start, args.per_round, args.rounds, args.epochs) < 1:
        parser.error(f"bad settings (unknown strategies: {unknown})")
    out = args.out or DEFAULT_OUT
    plot_path = DEFAULT_PLOT if args.out is None else out.with_suffix(".png")
    settings = {
        "start": args.start,
        "per_round": args.per_round,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "seeds": seeds,
        "strategies": strategies,
        "recipe": "bench/configs/ner.json, no dev during training, last epoch scored",
        "diversity": "Jaccard >= 0.8 of word 3-shingles, labelled sentences excluded",
    }
    options = {**settings, "workdir": args.workdir}
    started = time.perf_counter()
    jobs = args.jobs or min(len(seeds), multiprocessing.cpu_count())
    if jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            results = list(pool.map(simulate, seeds, [options] * len(seeds)))
    else:
        results = [simulate(seed, options) for seed in seeds]
    runs = [run for seed_runs in results for run in seed_runs]
    summary = summarise(runs, strategies)
    figures = {
        "settings": settings,
        "runs": runs,
        "summary": summary,
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    write_results(out, figures, machine_info(threads=1))
    title = (
        f"Active learning, CoNLL-2003: start {args.start}, +{args.per_round} sentences, "
        f"rounds {args.rounds}, epochs {args.epochs} each, seeds {','.join(map(str, seeds))}"
    )
    plot(runs, strategies, plot_path, title)
    print("\n| strategy | round | labelled tokens (mean) | dev F1 (mean) | per seed |")
    print("|---|---:|---:|---:|---|")
    for strategy in strategies:
        for r, (x, y) in enumerate(mean_curve(runs, strategy)):
            per_seed = ", ".join(
                f"{run['points'][r]['f1']:.2f}" for run in runs if run["strategy"] == strategy
            )
            print(f"| {strategy} | {r} | {x:,.0f} | {y:.2f} | {per_seed} |")
    if summary:
        random_final = summary["random"]["final_f1"]
        print(f"\nrandom's final mean dev F1: {random_final:.2f}")
        for strategy, row in summary.items():
            if strategy == "random":
                continue
            if row["tokens_to_reach_random_final_f1"] is None:
                print(f"- {strategy}: does not reach it (final {row['final_f1']:.2f})")
            else:
                print(
                    f"- {strategy}: reaches it at {row['tokens_to_reach_random_final_f1']:,} "
                    f"tokens, {row['fraction_of_random_tokens']:.0%} of random's "
                    f"({'meets' if row['meets_aim'] else 'misses'} the aim of at most 60%)"
                )
    print(f"\n{out}, {plot_path}; {figures['minutes']} minutes")


if __name__ == "__main__":
    main()
