"""Token scores of tags written in another scheme than the model's: before and since 2026-12-07.

    python bench/written_tag_scores.py --model runs/conll2003-docmem-dropout0.35-cosine-s1
        [--data ../shared/corpora/conll2003/dev.txt] [--out bench/results/written_tag_scores.json]

A tagger trained in BIOES on CoNLL-2003 writes its tags in IOB1, the file's scheme. Until
2026-12-07 each written tag's score was the marginal of the model's own BIOES tag (`E-ORG`'s
for a written `I-ORG`), a different event; now it is the probability of the tag as written. On
the predicted entity tokens of a held-out split (the model trained on train alone), this prints
how far the two differ and how well each is calibrated against the gold tags (a token is right
when its written tag is the gold one; ECE over 10 equal-width bins, `calibration.py`'s), and
writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402
from calibration import _reader, expected_calibration_error  # noqa: E402

from bilstm_nlp import load, tag_sentences  # noqa: E402
from bilstm_nlp.corpus.loading import load_tagging  # noqa: E402
from bilstm_nlp.text.schemes import convert_tags  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="../shared/corpora/conll2003/dev.txt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/written_tag_scores.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model)
    if not model.scheme or model.output_scheme in (None, model.scheme):
        sys.exit(f"{args.model} writes its tags in its own scheme: nothing to compare")
    split = load_tagging(dev=args.data, **_reader(model))["dev"]
    names = split.features["tags"].feature.names
    tokens = split["tokens"][:]
    gold = [[names[i] for i in row] for row in split["tags"][:]]
    written = tag_sentences(model, tokens)
    own = tag_sentences(model, tokens, scheme=model.scheme)
    before, since, correct, own_correct, moves = [], [], [], [], []
    for as_written, in_own, gold_tags in zip(written, own, gold, strict=True):
        gold_own = convert_tags(gold_tags, model.scheme)
        for tag, new, own_tag, old, right, own_right in zip(
            as_written.tags,
            as_written.tag_probs,
            in_own.tags,
            in_own.tag_probs,
            gold_tags,
            gold_own,
            strict=True,
        ):
            if tag == "O":
                continue  # the same event in every scheme, the same score
            before.append(old)
            since.append(new)
            correct.append(tag == right)
            own_correct.append(own_tag == own_right)
            moves.append((abs(new - old), tag, old, new))
    ece_before, bins_before = expected_calibration_error(before, correct)
    ece_since, bins_since = expected_calibration_error(since, correct)
    ece_own, _ = expected_calibration_error(before, own_correct)
    moves.sort(reverse=True)
    figures = {
        "model": args.model,
        "data": args.data,
        "written_scheme": model.output_scheme,
        "model_scheme": model.scheme,
        "entity_tokens": len(correct),
        "token_accuracy": 100 * sum(correct) / max(len(correct), 1),
        "moved_over_0.01": sum(m > 0.01 for m, *_ in moves),
        "moved_over_0.05": sum(m > 0.05 for m, *_ in moves),
        "mean_move": sum(m for m, *_ in moves) / max(len(moves), 1),
        "largest_moves": [
            {"tag": tag, "before": old, "since": new} for _, tag, old, new in moves[:5]
        ],
        "mean_score_before": sum(before) / max(len(before), 1),
        "mean_score_since": sum(since) / max(len(since), 1),
        "own_tag_accuracy": 100 * sum(own_correct) / max(len(own_correct), 1),
        "ece_own_tag_marginal_on_own_tags": ece_own,
        "ece_before": ece_before,
        "ece_since": ece_since,
        "bins_before": bins_before,
        "bins_since": bins_since,
    }
    write_results(Path(args.out), figures, machine_info(args.threads))
    print(
        f"{args.model} on {args.data}: {len(correct)} predicted entity tokens written in "
        f"{model.output_scheme} (model in {model.scheme}), {figures['token_accuracy']:.2f}% "
        "with the gold tag\n"
    )
    own_accuracy = figures["own_tag_accuracy"]
    print("| token score | mean | scored against | right | ECE (10 bins) |")
    print("|---|---:|---|---:|---:|")
    print(
        f"| the model's own tag's marginal | {figures['mean_score_before']:.4f} | the model's "
        f"own tags ({model.scheme}) | {own_accuracy:.2f}% | {ece_own:.4f} |"
    )
    print(
        f"| the same, shown beside the written tag (before) | {figures['mean_score_before']:.4f} "
        f"| the written tags | {figures['token_accuracy']:.2f}% | {ece_before:.4f} |"
    )
    print(
        f"| the written tag's probability (since) | {figures['mean_score_since']:.4f} "
        f"| the written tags | {figures['token_accuracy']:.2f}% | {ece_since:.4f} |"
    )
    print(
        f"\nmoved by more than 0.01: {figures['moved_over_0.01']}, by more than 0.05: "
        f"{figures['moved_over_0.05']}; largest: "
        + ", ".join(f"{t} {o:.3f} → {n:.3f}" for _, t, o, n in moves[:3])
    )


if __name__ == "__main__":
    main()
