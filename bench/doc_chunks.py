"""CoNLL-2003 with each document's consecutive sentences merged into sequences of at most N tokens.

The document-context experiment of the README's levers table: the tagger reads up to `--limit`
tokens of one document as one sequence (sentences are never split, documents never mixed), at
training and at scoring time.

    python bench/doc_chunks.py                 # writes runs/doc-context/{train,dev}.txt
    bilstm-nlp train --config bench/configs/ner-doc200.json --no-train-with-dev
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "conll2003"


def documents(path: Path) -> list[list[list[str]]]:
    """The file's documents, each a list of sentences, each a list of its CoNLL lines."""
    docs: list[list[list[str]]] = []
    doc: list[list[str]] = []
    sentence: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-DOCSTART-") or not line.strip():
            if sentence:
                doc.append(sentence)
                sentence = []
            if line.startswith("-DOCSTART-") and doc:
                docs.append(doc)
                doc = []
            continue
        sentence.append(line)
    if sentence:
        doc.append(sentence)
    if doc:
        docs.append(doc)
    return docs


def chunks(docs: list[list[list[str]]], limit: int) -> list[list[str]]:
    """Consecutive sentences of one document joined while the sequence stays within `limit`."""
    out: list[list[str]] = []
    for doc in docs:
        current: list[str] = []
        for sentence in doc:
            if current and len(current) + len(sentence) > limit:
                out.append(current)
                current = []
            current = current + sentence
        if current:
            out.append(current)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=200, help="most tokens per sequence")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "doc-context")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        docs = documents(CORPUS / f"{split}.txt")
        merged = chunks(docs, args.limit)
        (args.out / f"{split}.txt").write_text(
            "".join("\n".join(chunk) + "\n\n" for chunk in merged), encoding="utf-8"
        )
        sentences = sum(len(doc) for doc in docs)
        tokens = sum(len(chunk) for chunk in merged)
        print(
            f"{split}: {len(docs)} documents, {sentences} sentences -> {len(merged)} sequences, "
            f"mean {tokens / len(merged):.0f} tokens"
        )


if __name__ == "__main__":
    main()
