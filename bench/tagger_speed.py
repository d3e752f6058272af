"""Tagger speed: training seconds per CoNLL-2003 epoch and inference tokens/s, CRF vs softmax head.

    python bench/tagger_speed.py [--quick] [--threads 2] [--repeats 5] \
        [--log runs/ner-crf-s1/train_log.jsonl]

Inference is the model alone on pre-split tokens (CoNLL-2003 dev), batch sizes 1 and 256, with
entity confidences on (the forward-backward pass included) and off, each the median of --repeats
timed calls (5, no fewer; --quick: 1 at batch 1, 3 at 256, figures not for reporting) with their
range. Training time is one epoch
over CoNLL-2003 train (--quick: its first 3,000 sentences), same architecture, both heads. With
--log, the time to the best dev epoch of a finished run is read from its train_log.jsonl.
Writes bench/results/tagger_speed.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    MIN_REPEATS,
    QUICK_NOTE,
    check_repeats,
    machine_info,
    summary,
    timed,
    write_results,
)

from bilstm_nlp import tag_sentences  # noqa: E402
from bilstm_nlp.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig  # noqa: E402
from bilstm_nlp.training import prepare_training, run_epoch  # noqa: E402

CORPUS = Path("../shared/corpora/conll2003")


def _rate(row: dict) -> str:
    return f"{row['median_per_s']:,.0f} ({row['min_per_s']:,.0f}-{row['max_per_s']:,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="default 5, the least allowed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--log", help="train_log.jsonl of a finished run (time to best dev)")
    parser.add_argument("--out", default="bench/results/tagger_speed.json")
    args = parser.parse_args()
    if args.repeats is not None:
        check_repeats(parser, args.repeats, args.quick)
    torch.set_num_threads(args.threads)
    figures: dict = {"quick": args.quick, "inference": {}, "training": {}}
    for head in ("crf", "softmax"):
        config = ExperimentConfig(
            DataConfig(
                train=str(CORPUS / "train.txt"), dev=str(CORPUS / "dev.txt"), scheme="BIOES"
            ),
            ModelConfig(head=head),
            TrainConfig(batch_size=16, seed=1),
        )
        run = prepare_training(config, max_sentences=3000 if args.quick else None)
        model, encoded = run.model, run.encoded
        start = time.perf_counter()
        _, tokens = run_epoch(run, random.Random(1))
        seconds = time.perf_counter() - start
        figures["training"][head] = {
            "sentences": len(encoded),
            "tokens": tokens,
            "epoch_seconds": seconds,
            "tokens_per_s": tokens / seconds,
        }
        sentences = run.data.dev.token_lists
        if args.quick:
            sentences = sentences[:1000]
        dev_tokens = sum(len(s) for s in sentences)
        for batch_size in (1, 256):
            for confidence in (False, True):
                if batch_size == 1 and args.quick:
                    subset = sentences[:200]
                else:
                    subset = sentences
                units = sum(len(s) for s in subset)
                times = timed(
                    lambda m=model, s=subset, b=batch_size, c=confidence: tag_sentences(
                        m, s, batch_size=b, confidence=c
                    ),
                    repeats=args.repeats
                    or (1 if batch_size == 1 else 3 if args.quick else MIN_REPEATS),
                )
                key = f"batch{batch_size}_{'confidence' if confidence else 'tags'}"
                figures["inference"].setdefault(head, {})[key] = summary(times, units) | {
                    "tokens": units
                }
        figures["inference"][head]["dev_tokens"] = dev_tokens
    if args.log:
        epochs = [json.loads(line) for line in Path(args.log).read_text().splitlines()]
        best = max(epochs, key=lambda e: e["dev_score"] or 0)
        until_best = sum(e["seconds"] for e in epochs if e["epoch"] <= best["epoch"])
        figures["run"] = {
            "log": args.log,
            "best_epoch": best["epoch"],
            "best_dev": best["dev_score"],
            "training_seconds_to_best": until_best,
            "mean_epoch_seconds": sum(e["seconds"] for e in epochs) / len(epochs),
        }
    write_results(Path(args.out), figures, machine_info(args.threads))
    scope = " (first 3,000 train sentences)" if args.quick else ""
    print(f"threads {args.threads}; CoNLL-2003{scope}")
    print(
        "| head | train epoch s | train tok/s | infer b1 tok/s (range) | infer b256 tok/s (range) "
        "| b256 + confidence tok/s (range) |\n|---|---:|---:|---:|---:|---:|"
    )
    for head in ("crf", "softmax"):
        t, i = figures["training"][head], figures["inference"][head]
        print(
            f"| {head} | {t['epoch_seconds']:.1f} | {t['tokens_per_s']:,.0f} | "
            f"{_rate(i['batch1_tags'])} | {_rate(i['batch256_tags'])} | "
            f"{_rate(i['batch256_confidence'])} |"
        )
    if "run" in figures:
        run = figures["run"]
        print(
            f"\nrun {run['log']}: best dev {run['best_dev']:.2f} at epoch {run['best_epoch']}, "
            f"{run['training_seconds_to_best'] / 60:.1f} min of training to best"
        )
    if args.quick and (args.repeats or 1) < MIN_REPEATS:
        print(QUICK_NOTE)


if __name__ == "__main__":
    main()
