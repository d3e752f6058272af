"""Two models' tagging speed side by side, interleaved, so a noisy machine hits both alike.

    python bench/model_speed_ab.py ner runs/ner-shipped-before [--repeats 7] [--threads 1]
        [--documents]
    python bench/model_speed_ab.py sentiment runs/sentiment-shipped-1204   # two classifiers

Each repeat tags the same pre-split CoNLL-2003 dev sentences (batch 256, with confidences) with A
then B; the table gives each model's median tokens/s with its range and the ratio A/B of the
medians. With --documents, a model with document memory tags them by document (-DOCSTART-), in
batches of whole documents. Two classifiers classify SST dev's sentences instead (`--data`: any
labelled-text file A reads). Writes bench/results/model_speed_ab.json (--documents:
model_speed_ab_documents.json) or --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, machine_info, write_results  # noqa: E402

from bilstm_nlp import Classifier, classify_sentences, load, tag_sentences  # noqa: E402
from bilstm_nlp.corpus.loading import document_numbers, load_tagging  # noqa: E402
from bilstm_nlp.evaluation.evaluate import read_labelled_texts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument(
        "--data",
        help="default: CoNLL-2003 dev for taggers, SST dev for classifiers",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--documents", action="store_true", help="tag by document")
    parser.add_argument(
        "--out",
        help="default bench/results/model_speed_ab.json (--documents: ..._documents.json)",
    )
    args = parser.parse_args()
    # One model against itself would be keyed once below and compared with itself, silently.
    if args.a == args.b or (
        Path(args.a).exists() and Path(args.a).resolve() == Path(args.b).resolve()
    ):
        parser.error(f"A and B are the same model ({args.a}): give two models to compare")
    if args.out is None:
        # By-document figures are another measurement: they must not overwrite the by-sentence file.
        name = "model_speed_ab_documents.json" if args.documents else "model_speed_ab.json"
        args.out = f"bench/results/{name}"
    torch.set_num_threads(args.threads)
    models = {args.a: load(args.a), args.b: load(args.b)}
    classifiers = [isinstance(m, Classifier) for m in models.values()]
    if len(set(classifiers)) != 1:
        raise SystemExit("compare two taggers or two classifiers")
    documents = None
    if classifiers[0]:
        args.data = args.data or "../shared/corpora/sst/dev.txt"
        reader = models[args.a].meta.reader.to_json()
        sentences = read_labelled_texts(args.data, reader)[0]

        def run(model, items) -> None:
            classify_sentences(model, items, batch_size=256)

    else:
        args.data = args.data or "../shared/corpora/conll2003/dev.txt"
        split = load_tagging(dev=args.data)["dev"]
        sentences = split["tokens"][:]
        documents = document_numbers(split["doc_id"][:]) if args.documents else None

        def run(model, items) -> None:
            tag_sentences(
                model,
                items,
                documents=documents if len(items) == len(sentences) else None,
                batch_size=256,
            )

    tokens = sum(len(s) for s in sentences)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up
        run(model, sentences[:512])
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            run(model, sentences)
            times[name].append(time.perf_counter() - started)
    rows = {
        name: {
            "median_tokens_per_s": tokens / statistics.median(values),
            "min_tokens_per_s": tokens / max(values),
            "max_tokens_per_s": tokens / min(values),
        }
        for name, values in times.items()
    }
    ratio = rows[args.a]["median_tokens_per_s"] / rows[args.b]["median_tokens_per_s"]
    figures = {
        "data": args.data,
        "tokens": tokens,
        "repeats": args.repeats,
        "by_document": args.documents,
        "models": rows,
    }
    figures["ratio_a_over_b"] = ratio
    write_results(Path(args.out), figures, machine_info(args.threads))
    print(
        f"{tokens:,} tokens of {args.data}, batch 256, with confidences, {args.threads} "
        f"thread(s), {cpu_model()}" + (", by document" if args.documents else "")
    )
    print("| model | median tokens/s | range |\n|---|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['median_tokens_per_s']:,.0f} | "
            f"{row['min_tokens_per_s']:,.0f}-{row['max_tokens_per_s']:,.0f} |"
        )
    print(f"\n{args.a} / {args.b}: {ratio:.3f}")


if __name__ == "__main__":
    main()
