"""Dev figures of several models, of their ensemble, and of students distilled from it.

    python bench/ensemble.py --models runs/t1 runs/t2 runs/t3 [--students runs/s1 ...]
        [--dev ../shared/corpora/conll2003/dev.txt] [--device cpu]
        [--out bench/results/ensemble.json]

Taggers: the ensemble averages its members' tag marginals (what `train --distill-from` trains a
student towards) and decodes the path of highest summed log-marginal that the tag scheme allows
(minimum Bayes risk decoding per token, constrained). Each figure is seqeval's entity F1
(conlleval's) or token accuracy for plain labels, on the dev file as written.

Classifiers (e.g. `--dev ../shared/corpora/sst/dev.txt`): the ensemble averages the members' class
probabilities (a classifier student's target, and what `bilstm-nlp ensemble` ships) and takes the
likeliest label; each figure is accuracy on the dev file, read with the first member's reader
settings (as `evaluate` does). `--subsets 3` also scores every 3 of the members, so that an
ensemble's figure comes with its spread over which runs make it.

Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

from bilstm_nlp import Classifier, classify_sentences, load, tag_sentences  # noqa: E402
from bilstm_nlp.corpus.loading import load_tagging  # noqa: E402
from bilstm_nlp.evaluation.evaluate import read_labelled_texts  # noqa: E402
from bilstm_nlp.evaluation.metrics import entity_scores, token_accuracy  # noqa: E402
from bilstm_nlp.nn.crf import viterbi_decode  # noqa: E402
from bilstm_nlp.text.schemes import allowed_transitions, convert_tags  # noqa: E402
from bilstm_nlp.training.distill import teacher_targets  # noqa: E402


def _dev(path: str) -> tuple[list[list[str]], list[list[str]], str | None]:
    corpus = load_tagging(dev=path)
    split = corpus["dev"]
    names = split.features["tags"].feature.names
    gold = [[names[i] for i in row] for row in split["tags"][:]]
    return split["tokens"][:], gold, corpus.info.source_scheme


def _score(gold: list[list[str]], predicted: list[list[str]], scheme: str | None) -> float:
    if scheme is None:
        return token_accuracy(gold, predicted)
    return entity_scores(gold, predicted).f1


def ensemble_tags(models, token_lists, device: torch.device) -> list[list[str]]:
    """The members' averaged marginals decoded under the scheme, in the first member's scheme."""
    first = models[0]
    tags = list(first.vocab.labels.items)
    targets = teacher_targets(models, token_lists, tags, first.scheme, device)
    allowed = allowed_transitions(first.scheme, tags) if first.scheme else None
    forbidden = float("-inf")

    def scores(mask) -> torch.Tensor:
        return torch.where(torch.as_tensor(mask), 0.0, forbidden).double()

    if allowed is None:
        start = end = torch.zeros(len(tags), dtype=torch.float64)
        moves = torch.zeros(len(tags), len(tags), dtype=torch.float64)
    else:
        start, moves, end = scores(allowed.start), scores(allowed.transitions), scores(allowed.end)
    predicted = []
    for index, tokens in enumerate(token_lists):
        if not tokens:
            predicted.append([])
            continue
        log_marginals = torch.from_numpy(targets.tags[index]).double().clamp_min(1e-30).log()
        mask = torch.ones(1, len(tokens), dtype=torch.bool)
        ids, _ = viterbi_decode(log_marginals[None], mask, start, moves, end)
        predicted.append([tags[i] for i in ids[0].tolist()])
    return predicted


def _accuracy(gold: list[str], predicted: list[str]) -> float:
    return 100.0 * sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def _classifier_rows(args, device: torch.device) -> list[dict]:
    """Each member's and student's accuracy, the mean-probability ensemble's of all members, and
    that of every subset of each size in `args.subsets` (the spread of an ensemble of that size
    over which runs it is made of)."""
    rows = []
    member_probs = []
    token_lists = gold = labels = None
    for kind, paths in (("member", args.models), ("student", args.students)):
        for path in paths:
            model = load(path, device=device)
            if token_lists is None:
                token_lists, gold = read_labelled_texts(args.dev, model.meta.reader.to_json())
                labels = list(model.vocab.labels.items)
            results = classify_sentences(model, token_lists, device=device)
            rows.append(
                {
                    "kind": kind,
                    "model": path,
                    "dev": _accuracy(gold, [r.label for r in results]),
                }
            )
            if kind == "member":
                member_probs.append(
                    np.array([[r.probs[label] for label in labels] for r in results])
                )
    sizes = sorted({len(member_probs), *args.subsets})
    for size in sizes:
        if not 2 <= size <= len(member_probs):
            raise SystemExit(f"--subsets {size}: give 2 to {len(member_probs)}")
        for subset in itertools.combinations(range(len(member_probs)), size):
            summed = sum(member_probs[i] for i in subset)
            rows.append(
                {
                    "kind": "ensemble",
                    "model": f"mean probabilities of members {[i + 1 for i in subset]}",
                    "members": [args.models[i] for i in subset],
                    "dev": _accuracy(gold, [labels[i] for i in summed.argmax(1)]),
                    "members_mean_dev": statistics.mean(rows[i]["dev"] for i in subset),
                }
            )
    return rows


def _subset_summary(rows: list[dict]) -> dict[str, dict]:
    """Per ensemble size: the mean, spread and range of its subsets' figures, and their mean gain
    over their own members' mean."""
    by_size: dict[int, list[dict]] = {}
    for row in rows:
        if row["kind"] == "ensemble" and "members" in row:
            by_size.setdefault(len(row["members"]), []).append(row)
    summary = {}
    for size, group in sorted(by_size.items()):
        figures = [r["dev"] for r in group]
        gains = [r["dev"] - r["members_mean_dev"] for r in group]
        summary[str(size)] = {
            "subsets": len(group),
            "mean": statistics.mean(figures),
            "std": statistics.stdev(figures) if len(figures) > 1 else 0.0,
            "min": min(figures),
            "max": max(figures),
            "mean_gain_over_members": statistics.mean(gains),
        }
    return summary


def _tagger_rows(args, device: torch.device) -> list[dict]:
    """Each member's and student's dev figure and the mean-marginal ensemble's."""
    token_lists, gold, file_scheme = _dev(args.dev)
    rows = []
    members = []
    for kind, paths in (("member", args.models), ("student", args.students)):
        for path in paths:
            model = load(path, device=device)
            tagged = tag_sentences(model, token_lists, confidence=False, device=device)
            predicted = [t.tags for t in tagged]
            rows.append({"kind": kind, "model": path, "dev": _score(gold, predicted, file_scheme)})
            if kind == "member":
                members.append(model)
    started = time.perf_counter()
    predicted = ensemble_tags(members, token_lists, device)
    if file_scheme is not None:
        predicted = [convert_tags(tags, file_scheme) for tags in predicted]
    rows.append(
        {
            "kind": "ensemble",
            "model": f"mean marginals of {len(members)}",
            "dev": _score(gold, predicted, file_scheme),
            "seconds": time.perf_counter() - started,
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="the ensemble's members")
    parser.add_argument("--students", nargs="*", default=[], help="models distilled from them")
    parser.add_argument("--dev", default="../shared/corpora/conll2003/dev.txt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--subsets",
        type=int,
        nargs="*",
        default=[],
        help="classifiers: also score every subset of the members of these sizes",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/ensemble.json"))
    parser.add_argument("--command", help="the bench command that ran this, as recorded")
    args = parser.parse_args()
    device = torch.device(args.device)
    first = load(args.models[0], device=device)
    rows = (
        _classifier_rows(args, device)
        if isinstance(first, Classifier)
        else _tagger_rows(args, device)
    )
    member_scores = [r["dev"] for r in rows if r["kind"] == "member"]
    print(f"{'kind':9} {'dev':>7}  model")
    for row in rows:
        print(f"{row['kind']:9} {row['dev']:7.2f}  {row['model']}")
    print(f"{'members':9} {sum(member_scores) / len(member_scores):7.2f}  mean")
    figures = {
        "dev_file": args.dev,
        "rows": rows,
        "member_mean": sum(member_scores) / len(member_scores),
    }
    summary = _subset_summary(rows)
    if summary:
        figures["ensembles_by_size"] = summary
        for size, row in summary.items():
            print(
                f"ensembles of {size}: {row['subsets']} subsets, {row['mean']:.2f} ± "
                f"{row['std']:.2f} ({row['min']:.2f}-{row['max']:.2f}), "
                f"{row['mean_gain_over_members']:+.2f} over their members' mean"
            )
    machine = machine_info(torch.get_num_threads())
    if args.command:
        machine["bench_command"] = args.command
    write_results(args.out, figures, machine)


if __name__ == "__main__":
    main()
