"""Dev figures of several models, of their ensemble, and of students distilled from it.

    python bench/ensemble.py --models runs/t1 runs/t2 runs/t3 [--students runs/s1 ...]
        [--dev ../shared/corpora/conll2003/dev.txt] [--device cpu]
        [--out bench/results/ensemble.json]

Taggers: the ensemble averages its members' tag marginals (what `train --distill-from` trains a
student towards) and decodes the path of highest summed log-marginal that the tag scheme allows
(minimum Bayes risk decoding per token, constrained). Each figure is seqeval's entity F1
(conlleval's) or token accuracy for plain labels, on the dev file as written.

Classifiers (e.g. `--dev ../shared/corpora/sst/dev.txt`): the ensemble averages the members' class
probabilities (a classifier student's target) and takes the likeliest label; each figure is
accuracy on the dev file, read with the first member's reader settings (as `evaluate` does).

Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

from bilstm_nlp import Classifier, classify_sentences, load, tag_sentences  # noqa: E402
from bilstm_nlp.corpus.loading import load_tagging, load_texts  # noqa: E402
from bilstm_nlp.evaluation.metrics import entity_scores, token_accuracy  # noqa: E402
from bilstm_nlp.nn.crf import viterbi_decode  # noqa: E402
from bilstm_nlp.text.schemes import allowed_transitions, convert_tags  # noqa: E402
from bilstm_nlp.text.tokenize import tokens_or_tokenized  # noqa: E402
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


def _classifier_dev(path: str, model: Classifier) -> tuple[list[list[str]], list[str]]:
    reader = model.meta.reader.to_json()
    corpus = load_texts(
        None,
        path,
        input_format=reader.get("input_format"),
        sst_labels=reader.get("sst_labels") or "sst2",
        text_field=reader.get("text_field") or "text",
        label_field=reader.get("label_field") or "label",
    )
    split = corpus["dev"]
    return tokens_or_tokenized(split["tokens"][:], split["text"][:]), corpus.labels("dev")


def _accuracy(gold: list[str], predicted: list[str]) -> float:
    return 100.0 * sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def _classifier_rows(args, device: torch.device) -> list[dict]:
    """Each member's and student's accuracy and the mean-probability ensemble's."""
    rows = []
    summed = None
    token_lists = gold = labels = None
    for kind, paths in (("member", args.models), ("student", args.students)):
        for path in paths:
            model = load(path, device=device)
            if token_lists is None:
                token_lists, gold = _classifier_dev(args.dev, model)
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
                probs = np.array([[r.probs[label] for label in labels] for r in results])
                summed = probs if summed is None else summed + probs
    predicted = [labels[i] for i in summed.argmax(1)]
    rows.append(
        {
            "kind": "ensemble",
            "model": f"mean probabilities of {len(args.models)}",
            "dev": _accuracy(gold, predicted),
        }
    )
    return rows


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
    parser.add_argument("--out", type=Path, default=Path("bench/results/ensemble.json"))
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
    write_results(args.out, figures, machine_info(torch.get_num_threads()))


if __name__ == "__main__":
    main()
