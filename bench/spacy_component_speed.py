"""What the spaCy component costs over the annotate library on the same texts (tokens/s).

    python bench/spacy_component_speed.py --model runs/ner [--quick] [--threads 1] [--out FILE]

The texts are the `# text` lines of UD EWT dev (../shared/corpora/ud_ewt/dev.conllu), one
document each, repeated to about 50,000 tokens (--quick: 5,000). Two ways to annotate them with the
same model (`--model`: a model directory or a shipped model's name; required):

- annotate: `bilstm_nlp.annotation.annotator.Annotator(model)(texts)`, the library path of
  `bilstm-nlp annotate` (spaCy tokenizer and sentencizer, tagging with exact entity
  probabilities, `Annotation`s).
- component: `spacy.blank("en")` with `bilstm_tagger` (or `bilstm_textcat` for a classifier),
  `list(nlp.pipe(texts))` (`--docs-per-batch` docs per minibatch, spaCy's default 1,000): spaCy
  tokenizer, the component's sentences, tagging, `doc.ents` / span groups / tags / cats.

Both are built once and warmed up, then timed `--repeats` times (3; --quick: 1), alternating so
that load from other processes hits both alike. The table gives median tokens/s (non-space tokens)
with the range, and the ratio of median times (component ÷ annotate; the component should cost at
most 20% more, `within_budget` in the results). Writes bench/results/spacy_component_speed.json
(or --out): figures, command, git commit, torch version, threads, CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import spacy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine_info, summary, write_results  # noqa: E402
from annotate_speed import ewt_lines  # noqa: E402

from bilstm_nlp.annotation.annotator import Annotator  # noqa: E402
from bilstm_nlp.nn.model import Classifier  # noqa: E402
from bilstm_nlp.serialize import load_model  # noqa: E402
from bilstm_nlp.text.tokenize import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "spacy_component_speed.json"
BUDGET = 1.20  # the component may take at most 20% longer than annotate


def build_texts(lines: list[str], target_tokens: int) -> tuple[list[str], int]:
    """The lines, repeated in order until they hold at least `target_tokens` tokens."""
    tokenizer = Tokenizer()
    counts = [len(tokenizer.tokens(line)) for line in lines]
    texts: list[str] = []
    tokens = 0
    while tokens < target_tokens:
        for line, count in zip(lines, counts, strict=True):
            texts.append(line)
            tokens += count
            if tokens >= target_tokens:
                break
    return texts, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory or shipped model name")
    parser.add_argument("--quick", action="store_true", help="5,000 tokens, one repeat")
    parser.add_argument("--tokens", type=int, default=None, help="default 50,000 (quick 5,000)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch-size", type=int, default=256, help="sentences per model batch")
    parser.add_argument("--docs-per-batch", type=int, default=1000, help="nlp.pipe batch_size")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    target = args.tokens or (5_000 if args.quick else 50_000)
    repeats = args.repeats or (1 if args.quick else 3)
    torch.set_num_threads(args.threads)

    texts, tokens = build_texts(ewt_lines(), target)
    model = load_model(args.model)
    annotator = Annotator(model, batch_size=args.batch_size)
    factory = "bilstm_textcat" if isinstance(model, Classifier) else "bilstm_tagger"
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": str(args.model), "batch_size": args.batch_size})
    nlp.initialize()  # loads the model now, outside the timings

    def run_annotate() -> None:
        annotator(texts)

    def run_component() -> None:
        list(nlp.pipe(texts, batch_size=args.docs_per_batch))

    systems = {"annotate": run_annotate, "component": run_component}
    warm = texts[: max(1, len(texts) // 10)]
    annotator(warm)
    list(nlp.pipe(warm, batch_size=args.docs_per_batch))
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(repeats):
        for name, function in systems.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)

    figures: dict[str, Any] = {
        "model": str(args.model),
        "factory": factory,
        "documents": len(texts),
        "tokens": tokens,
        "repeats": repeats,
        "batch_size": args.batch_size,
        "docs_per_batch": args.docs_per_batch,
        "spacy": spacy.__version__,
    }
    for name, measured in times.items():
        figures[name] = summary(measured, tokens) | {"seconds": measured}
    ratio = figures["component"]["median_seconds"] / figures["annotate"]["median_seconds"]
    figures["time_ratio_component_to_annotate"] = ratio
    figures["within_budget"] = ratio <= BUDGET

    print(
        f"{len(texts):,} documents, {tokens:,} tokens, model {args.model}, "
        f"{args.threads} thread(s), median of {repeats}\n"
    )
    print("| path | tokens/s (median) | range | seconds | time ratio |")
    print("|---|---:|---:|---:|---:|")
    for name in systems:
        row = figures[name]
        own = row["median_seconds"] / figures["annotate"]["median_seconds"]
        print(
            f"| {name} | {row['median_per_s']:,.0f} | "
            f"{row['min_per_s']:,.0f}–{row['max_per_s']:,.0f} | "
            f"{row['median_seconds']:.2f} | {own:.2f} |"
        )
    verdict = "within" if figures["within_budget"] else "OVER"
    print(f"\ncomponent / annotate time: {ratio:.2f} ({verdict} the {BUDGET:.2f} budget)")
    write_results(args.out, figures, machine_info(args.threads))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
