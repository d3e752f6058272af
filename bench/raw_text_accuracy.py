"""Raw-text accuracy: gold sentences detokenised to text, annotated, scored by character offsets.

    python bench/raw_text_accuracy.py --model ner [--data ../shared/corpora/conll2003/dev.txt]

The figure users live with: our tokenizer, not the corpus's, decides the tokens. Each dev sentence
becomes one line of text (no space before closing punctuation and clitics, none after opening
brackets); gold entities become character spans of that line; predicted entities count as correct
when start, end and type all match. Writes bench/results/raw_text_accuracy.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

from bilstm_nlp import load  # noqa: E402
from bilstm_nlp.annotation.annotator import annotate_texts  # noqa: E402
from bilstm_nlp.corpus.loading import load_tagging  # noqa: E402
from bilstm_nlp.text.schemes import tags_to_spans  # noqa: E402

NO_SPACE_BEFORE = {
    ".",
    ",",
    ";",
    ":",
    "?",
    "!",
    ")",
    "]",
    "}",
    "'s",
    "'S",
    "n't",
    "'re",
    "'ve",
    "'ll",
    "'d",
    "'m",
    "%",
    "''",
}
NO_SPACE_AFTER = {"(", "[", "{", "$", "``"}
PTB = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
    "``": '"',
    "''": '"',
}


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Plain text and each token's character offsets in it."""
    text = ""
    offsets = []
    previous = None
    for token in tokens:
        surface = PTB.get(token, token)
        if previous is not None and token not in NO_SPACE_BEFORE and previous not in NO_SPACE_AFTER:
            text += " "
        offsets.append((len(text), len(text) + len(surface)))
        text += surface
        previous = token
    return text, offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner")
    parser.add_argument("--data", default="../shared/corpora/conll2003/dev.txt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/raw_text_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model)
    reader = model.meta.reader.to_json()
    split = load_tagging(
        dev=args.data,
        input_format=reader.get("input_format"),
        label_column=reader.get("label_column"),
    )["dev"]
    names = split.features["tags"].feature.names
    texts, gold = [], []
    for tokens, tag_ids in zip(split["tokens"][:], split["tags"][:], strict=True):
        text, offsets = detokenize(tokens)
        texts.append(text)
        gold.append(
            {
                (offsets[s.start][0], offsets[s.end - 1][1], s.label)
                for s in tags_to_spans([names[i] for i in tag_ids])
            }
        )
    annotations = annotate_texts(model, texts)
    true_positive = predicted = expected = 0
    for annotation, gold_spans in zip(annotations, gold, strict=True):
        found = {(s.start, s.end, s.label) for s in annotation.spans or []}
        true_positive += len(found & gold_spans)
        predicted += len(found)
        expected += len(gold_spans)
    precision = 100 * true_positive / max(predicted, 1)
    recall = 100 * true_positive / max(expected, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    figures = {
        "model": args.model,
        "data": args.data,
        "sentences": len(texts),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "gold_entities": expected,
        "predicted_entities": predicted,
    }
    write_results(Path(args.out), figures, machine_info(args.threads))
    print(
        "| data | sentences | precision | recall | F1 (character offsets) |\n"
        "|---|---:|---:|---:|---:|"
    )
    print(f"| {args.data} | {len(texts)} | {precision:.2f} | {recall:.2f} | **{f1:.2f}** |")


if __name__ == "__main__":
    main()
