"""Where does an NER model lose on unseen data? Dev F1 by entity novelty and by sentence kind.

    python bench/generalisation.py --model ner [--train ../shared/corpora/conll2003/train.txt]
        [--dev ../shared/corpora/conll2003/dev.txt]
    python bench/generalisation.py --model A --model B ... --out FILE   # one row per model

A model with document memory tags dev by document (-DOCSTART-), as `bilstm-nlp evaluate` does,
and gets a second row with every sentence tagged alone.

The official test split is held back, so this explains the dev/test gap from dev alone: an entity
is *seen* when the same token string with the same type is an entity somewhere in train; a
sentence is a *headline* when every token with a letter is written in capitals (CoNLL-2003's
headlines and sports tables). Precision, recall and F1 are computed within each part (a predicted
entity falls in the part of its own string). If unseen entities or headlines make up more of the
test split than of dev, the test figure falls by what this table predicts. Writes
bench/results/generalisation.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

from bilstm_nlp import load, tag_sentences  # noqa: E402
from bilstm_nlp.corpus.loading import document_numbers, load_tagging  # noqa: E402
from bilstm_nlp.decode import reads_documents  # noqa: E402
from bilstm_nlp.text.schemes import tags_to_spans  # noqa: E402


def tagged_sentences(path: str) -> tuple[list[list[str]], list[list[str]]]:
    split = load_tagging(dev=path)["dev"]
    names = split.features["tags"].feature.names
    return split["tokens"][:], [[names[i] for i in row] for row in split["tags"][:]]


def sentence_documents(path: str) -> list[int]:
    """The document of each sentence of a CoNLL file (`document_numbers` of its doc ids)."""
    return document_numbers(load_tagging(dev=path)["dev"]["doc_id"][:])


def _entities(tokens: list[str], tags: list[str]) -> set[tuple[int, int, str, str]]:
    return {
        (s.start, s.end, s.label, " ".join(tokens[s.start : s.end])) for s in tags_to_spans(tags)
    }


def _headline(tokens: list[str]) -> bool:
    words = [t for t in tokens if any(c.isalpha() for c in t)]
    return bool(words) and all(t.isupper() for t in words)


def prf(counts: Counter) -> dict[str, float]:
    precision = counts["tp"] / max(counts["pred"], 1)
    recall = counts["tp"] / max(counts["gold"], 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {
        "gold": counts["gold"],
        "predicted": counts["pred"],
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * f1,
    }


def seen_entities(train: str) -> set[tuple[str, str]]:
    """Every (type, token string) that is an entity somewhere in `train`."""
    seen = set()
    for tokens, tags in zip(*tagged_sentences(train), strict=True):
        seen |= {(label, text) for _, _, label, text in _entities(tokens, tags)}
    return seen


def novelty_counts(
    model,
    seen: set[tuple[str, str]],
    dev: tuple[list[list[str]], list[list[str]]],
    documents: list[int] | None = None,
) -> tuple[dict[str, Counter], int]:
    """Entity counts on dev (tokens, tags) by novelty against `seen` and by sentence kind, and
    the number of headline sentences; `documents` as `tag_sentences` takes them."""
    dev_tokens, dev_tags = dev
    tagged = tag_sentences(model, dev_tokens, documents=documents)
    parts: dict[str, Counter] = {
        name: Counter() for name in ("all", "seen", "unseen", "headline", "other sentences")
    }
    headline_sentences = 0
    for tokens, gold_tags, result in zip(dev_tokens, dev_tags, tagged, strict=True):
        gold = _entities(tokens, gold_tags)
        predicted = _entities(tokens, result.tags)
        kind = "headline" if _headline(tokens) else "other sentences"
        headline_sentences += kind == "headline"
        for entity in gold:
            novelty = "seen" if (entity[2], entity[3]) in seen else "unseen"
            for part in ("all", novelty, kind):
                parts[part]["gold"] += 1
                parts[part]["tp"] += entity in predicted
        for entity in predicted:
            novelty = "seen" if (entity[2], entity[3]) in seen else "unseen"
            for part in ("all", novelty, kind):
                parts[part]["pred"] += 1
    return parts, headline_sentences


def figures_of(
    model_path: str,
    seen: set[tuple[str, str]],
    dev: tuple[list[list[str]], list[list[str]]],
    documents: list[int] | None = None,
    model=None,
) -> dict:
    model = model if model is not None else load(model_path)
    parts, headline_sentences = novelty_counts(model, seen, dev, documents)
    total_gold = max(parts["all"]["gold"], 1)
    return {
        "model": model_path,
        # How dev was tagged: a model without document memory reads sentences only.
        "tagged": (
            ("by document" if documents is not None else "sentences alone")
            if reads_documents(model)
            else "sentences"
        ),
        "sentences": len(dev[0]),
        "headline_sentences": headline_sentences,
        "parts": {name: prf(counts) for name, counts in parts.items()},
        "unseen_share": 100 * parts["unseen"]["gold"] / total_gold,
        "headline_entity_share": 100 * parts["headline"]["gold"] / total_gold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="repeat to compare")
    parser.add_argument("--train", default="../shared/corpora/conll2003/train.txt")
    parser.add_argument("--dev", default="../shared/corpora/conll2003/dev.txt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/generalisation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seen, dev = seen_entities(args.train), tagged_sentences(args.dev)
    documents = sentence_documents(args.dev)
    if len(args.model) > 1:
        rows = []
        for path in args.model:
            model = load(path)
            rows.append(figures_of(path, seen, dev, documents, model))
            if reads_documents(model):
                rows.append(figures_of(path, seen, dev, None, model))
        write_results(
            Path(args.out),
            {"train": args.train, "dev": args.dev, "models": rows},
            machine_info(args.threads),
        )
        print(
            f"{args.dev}, seen against {args.train}\n\n| model | F1 | seen F1 | unseen F1 "
            "| headline F1 |\n|---|---:|---:|---:|---:|"
        )
        for row in rows:
            f1 = {name: part["f1"] for name, part in row["parts"].items()}
            name = row["model"] + (
                " (sentences alone)" if row["tagged"] == "sentences alone" else ""
            )
            print(
                f"| {name} | {f1['all']:.2f} | {f1['seen']:.2f} | {f1['unseen']:.2f} | "
                f"{f1['headline']:.2f} |"
            )
        return
    figures = {
        "train": args.train,
        "dev": args.dev,
        **figures_of(args.model[0], seen, dev, documents),
    }
    write_results(Path(args.out), figures, machine_info(args.threads))
    total_gold = max(figures["parts"]["all"]["gold"], 1)
    print(f"model {args.model[0]}, {args.dev}\n")
    print("| part | gold entities | share | P | R | F1 |\n|---|---:|---:|---:|---:|---:|")
    for name, row in figures["parts"].items():
        print(
            f"| {name} | {row['gold']:,} | {100 * row['gold'] / total_gold:.1f}% | "
            f"{row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} |"
        )


if __name__ == "__main__":
    main()
