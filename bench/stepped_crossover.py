"""Where the stepped BiLSTM starts to beat `nn.LSTM`: tagging speed against batch size, both paths.

    python bench/stepped_crossover.py [--sizes 16 24 32 40 48 64] [--rounds 5]

For each batch size N: 40 batches of N UD EWT dev sentences drawn at random (seeded, mixed
lengths, as a caller's batch comes), tagged with the shipped `ner` (`tag_sentences(batch_size=N)`,
with confidences, 1 thread), once with every batch on `nn.LSTM` and once with every batch on the
stepped path (`STEPPED_MIN_BATCH` set out of the way, then to 1), alternating, `--rounds` times.
Prints the median tokens/s of each with its range and their ratio; writes
bench/results/stepped_crossover.json.
`nn/encoder.py`'s `STEPPED_MIN_BATCH` is the smallest size where the stepped path is no slower.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIN_REPEATS, check_repeats, machine_info, write_results  # noqa: E402

from bilstm_nlp import load, tag_sentences  # noqa: E402
from bilstm_nlp.corpus.loading import load_tagging  # noqa: E402
from bilstm_nlp.nn import encoder, model  # noqa: E402

EWT_DEV = Path("../shared/corpora/ud_ewt/dev.conllu")


def set_threshold(rows: int) -> None:
    # The model module holds its own name for the constant.
    encoder.STEPPED_MIN_BATCH = model.STEPPED_MIN_BATCH = rows


def tokens_per_second(tagger, batches: list[list[list[str]]], size: int) -> float:
    tag_sentences(tagger, batches[0], batch_size=size)  # warm-up
    start = time.perf_counter()
    for batch in batches:
        tag_sentences(tagger, batch, batch_size=size)
    return sum(len(t) for batch in batches for t in batch) / (time.perf_counter() - start)


def _range(bounds: list[float]) -> str:
    return f"{bounds[0]:,.0f}-{bounds[1]:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 24, 32, 40, 48, 64])
    parser.add_argument("--rounds", type=int, default=MIN_REPEATS, help="at least 5")
    parser.add_argument("--out", default="bench/results/stepped_crossover.json")
    args = parser.parse_args()
    check_repeats(parser, args.rounds, flag="--rounds")
    torch.set_num_threads(1)
    tagger = load("ner")
    sentences = [list(tokens) for tokens in load_tagging(dev=EWT_DEV)["dev"]["tokens"][:]]
    shipped = encoder.STEPPED_MIN_BATCH
    rng = random.Random(0)
    rows = []
    print("| batch | nn.LSTM tokens/s (range) | stepped tokens/s (range) | stepped / nn.LSTM |")
    print("|---:|---:|---:|---:|")
    try:
        for size in args.sizes:
            batches = [rng.sample(sentences, size) for _ in range(40)]
            plain, stepped = [], []
            for _ in range(args.rounds):
                set_threshold(10**9)
                plain.append(tokens_per_second(tagger, batches, size))
                set_threshold(1)
                stepped.append(tokens_per_second(tagger, batches, size))
            row = {
                "batch": size,
                "lstm_tokens_per_s": statistics.median(plain),
                "stepped_tokens_per_s": statistics.median(stepped),
                "lstm_range": [min(plain), max(plain)],
                "stepped_range": [min(stepped), max(stepped)],
            }
            row["ratio"] = row["stepped_tokens_per_s"] / row["lstm_tokens_per_s"]
            rows.append(row)
            print(
                f"| {size} | {row['lstm_tokens_per_s']:,.0f} ({_range(row['lstm_range'])}) "
                f"| {row['stepped_tokens_per_s']:,.0f} ({_range(row['stepped_range'])}) "
                f"| {row['ratio']:.2f} |"
            )
    finally:
        set_threshold(shipped)
    write_results(Path(args.out), {"rows": rows, "shipped_threshold": shipped}, machine_info(1))


if __name__ == "__main__":
    main()
