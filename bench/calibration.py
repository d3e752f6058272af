"""How honest are entity confidences? Expected calibration error and a reliability diagram.

    python bench/calibration.py --model runs/ner-crf-s1 [--data ../shared/corpora/conll2003/dev.txt]

An entity counts as correct when its span and type both match a gold entity. ECE uses 10 equal-width
bins over the predicted entities' probabilities. Writes bench/results/calibration.json and
bench/results/calibration.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

from bilstm_nlp import load, tag_sentences  # noqa: E402
from bilstm_nlp.corpus.loading import load_tagging  # noqa: E402
from bilstm_nlp.text.schemes import tags_to_spans  # noqa: E402

BINS = 10


def expected_calibration_error(
    scores: list[float], correct: list[bool]
) -> tuple[float, list[dict]]:
    """ECE over equal-width bins, and the per-bin table (count, mean confidence, accuracy)."""
    bins = [
        {"low": i / BINS, "high": (i + 1) / BINS, "count": 0, "confidence": 0.0, "accuracy": 0.0}
        for i in range(BINS)
    ]
    for score, ok in zip(scores, correct, strict=True):
        row = bins[min(int(score * BINS), BINS - 1)]
        row["count"] += 1
        row["confidence"] += score
        row["accuracy"] += float(ok)
    ece = 0.0
    for row in bins:
        if row["count"]:
            row["confidence"] /= row["count"]
            row["accuracy"] /= row["count"]
            ece += row["count"] / len(scores) * abs(row["accuracy"] - row["confidence"])
    return ece, bins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="../shared/corpora/conll2003/dev.txt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/calibration")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model)
    split = load_tagging(dev=args.data, **_reader(model))["dev"]
    names = split.features["tags"].feature.names
    tokens = split["tokens"][:]
    gold = [[names[i] for i in row] for row in split["tags"][:]]
    tagged = tag_sentences(model, tokens)
    scores, correct = [], []
    for result, gold_tags in zip(tagged, gold, strict=True):
        gold_spans = {(s.start, s.end, s.label) for s in tags_to_spans(gold_tags)}
        for span in result.spans:
            scores.append(span.score)
            correct.append((span.start, span.end, span.label) in gold_spans)
    ece, bins = expected_calibration_error(scores, correct)
    figures = {
        "model": args.model,
        "data": args.data,
        "entities": len(scores),
        "precision": 100 * sum(correct) / max(len(correct), 1),
        "ece": ece,
        "bins": bins,
    }
    _plot(bins, ece, Path(args.out + ".png"))
    write_results(Path(args.out + ".json"), figures, machine_info(args.threads))
    print("| bin | entities | mean confidence | accuracy |\n|---|---:|---:|---:|")
    for row in bins:
        print(
            f"| {row['low']:.1f}-{row['high']:.1f} | {row['count']} | "
            f"{row['confidence']:.3f} | {row['accuracy']:.3f} |"
        )
    print(f"\nECE over {len(scores)} predicted entities: **{ece:.4f}**")


def _reader(model) -> dict:
    reader = model.meta.reader.to_json()
    return {
        "input_format": reader.get("input_format"),
        "label_column": reader.get("label_column"),
        "tag_field": reader.get("tag_field") or "upos",
    }


def _plot(bins: list[dict], ece: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    used = [b for b in bins if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in used]
    axis.bar(
        centres,
        [b["accuracy"] for b in used],
        width=1 / BINS,
        edgecolor="black",
        alpha=0.7,
        label="accuracy",
    )
    axis.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    axis.plot(centres, [b["confidence"] for b in used], "ro", label="mean confidence")
    axis.set_xlabel("entity probability (CRF)")
    axis.set_ylabel("share of entities correct")
    axis.set_title(f"Reliability, CoNLL-2003 dev (ECE {ece:.3f})")
    axis.legend(loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
