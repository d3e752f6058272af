"""Document-level consistency of NER predictions on CoNLL-2003 dev: two rules measured, no training.

    python bench/doc_consistency.py --model runs/ner-shipped-before --model ...

A name is often tagged in one sentence of a story and missed, or typed otherwise, in another. Both
rules read a model's predictions for a whole document (-DOCSTART- to -DOCSTART-):

- type vote: every predicted entity string takes, throughout its document, the type with the
  largest summed span probability there;
- fill: an entity string predicted somewhere in the document (its first token capitalised) is
  tagged, with that voted type, where it stands again in the document on tokens the model left
  outside every entity.

Each is scored on dev (entity P/R/F1, exact spans) against the model's own tags, tagged by
document (a model with document memory reads the whole story; others tag sentence by sentence).
Models trained on train alone: dev is held out from them. Writes bench/results/doc_consistency.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402
from doc_chunks import CORPUS, documents  # noqa: E402
from generalisation import prf  # noqa: E402

from bilstm_nlp import load, tag_sentences  # noqa: E402
from bilstm_nlp.decode import TaggedSentence  # noqa: E402
from bilstm_nlp.text.schemes import tags_to_spans  # noqa: E402

Entity = tuple[int, int, int, str]  # sentence index, start, end, type


def _scores(gold: set[Entity], predicted: set[Entity]) -> dict[str, float]:
    return prf(Counter(tp=len(gold & predicted), pred=len(predicted), gold=len(gold)))


def retyped(gold: set[Entity], found: dict[str, set[Entity]]) -> dict:
    """What the type vote changed: how many spans it retyped, how many of those were right before
    and after, and the type changes among those it broke (e.g. "LOC -> ORG")."""
    before = {entity[:3]: entity[3] for entity in found["as tagged"]}
    after = {entity[:3]: entity[3] for entity in found["type vote"]}
    changed = [span for span, label in after.items() if before[span] != label]
    broken = Counter(
        f"{before[span]} -> {after[span]}" for span in changed if (*span, before[span]) in gold
    )
    return {
        "retyped": len(changed),
        "right_before": sum(broken.values()),
        "right_after": sum((*span, after[span]) in gold for span in changed),
        "broken": dict(broken.most_common()),
    }


def consistent(tagged: list[TaggedSentence], doc_sizes: list[int]) -> dict[str, set[Entity]]:
    """The model's entities, those after the type vote, and those after the fill alone."""
    found: dict[str, set[Entity]] = {"as tagged": set(), "type vote": set(), "fill": set()}
    first = 0
    for size in doc_sizes:
        named = {
            index: [
                (span, " ".join(tagged[index].tokens[span.start : span.end]))
                for span in tagged[index].spans
            ]
            for index in range(first, first + size)
        }
        weight: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for spans in named.values():
            for span, text in spans:
                weight[text][span.label] += span.score or 0.0
        voted = {text: max(types, key=types.__getitem__) for text, types in weight.items()}
        for index, spans in named.items():
            result = tagged[index]
            taken = [False] * len(result.tokens)
            for span, text in spans:
                found["as tagged"].add((index, span.start, span.end, span.label))
                found["type vote"].add((index, span.start, span.end, voted[text]))
                found["fill"].add((index, span.start, span.end, span.label))
                taken[span.start : span.end] = [True] * (span.end - span.start)
            for text, label in voted.items():
                words = text.split(" ")
                if not words[0][:1].isupper():
                    continue
                for start in range(len(result.tokens) - len(words) + 1):
                    end = start + len(words)
                    if result.tokens[start:end] == words and not any(taken[start:end]):
                        found["fill"].add((index, start, end, label))
                        taken[start:end] = [True] * len(words)
        first += size
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="repeat for several")
    parser.add_argument("--dev", type=Path, default=CORPUS / "dev.txt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/doc_consistency.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    docs = documents(args.dev)
    lines = [sentence for doc in docs for sentence in doc]
    tokens = [[line.split()[0] for line in sentence] for sentence in lines]
    doc_of_sentence = [number for number, doc in enumerate(docs) for _ in doc]
    gold = {
        (index, span.start, span.end, span.label)
        for index, sentence in enumerate(lines)
        for span in tags_to_spans([line.split()[-1] for line in sentence])
    }
    rows = []
    for path in args.model:
        # By document: a model with document memory reads the whole story (others ignore it).
        tagged = tag_sentences(load(path), tokens, documents=doc_of_sentence)
        found = consistent(tagged, [len(doc) for doc in docs])
        rows.append(
            {
                "model": path,
                **{rule: _scores(gold, found[rule]) for rule in found},
                "type_vote_changes": retyped(gold, found),
            }
        )
    write_results(
        Path(args.out),
        {"dev": str(args.dev), "documents": len(docs), "gold_entities": len(gold), "models": rows},
        machine_info(args.threads),
    )
    print(
        f"{args.dev}: {len(docs)} documents, {len(gold):,} entities\n\n"
        "| model | rule | entities | P | R | F1 | F1 change |\n|---|---|---:|---:|---:|---:|---:|"
    )
    for row in rows:
        for rule in ("as tagged", "type vote", "fill"):
            scores = row[rule]
            print(
                f"| {row['model']} | {rule} | {scores['predicted']:,} | "
                f"{scores['precision']:.2f} | {scores['recall']:.2f} | {scores['f1']:.2f} | "
                f"{scores['f1'] - row['as tagged']['f1']:+.2f} |"
            )
    for row in rows:
        changes = row["type_vote_changes"]
        print(
            f"\n{row['model']}: the type vote retyped {changes['retyped']} entities, "
            f"{changes['right_before']} right before and {changes['right_after']} after; "
            f"those it broke: {changes['broken']}"
        )


if __name__ == "__main__":
    main()
