"""Write the model card (README.md) of each shipped model from its config and measured figures.

    python bench/model_cards.py [--speed]   # --speed: time each model on 24k tokens, 1 thread

Figures come from the model's own config.json (dev score of the shipped copy, training command,
seed) and bench/results/raw_text_accuracy.json (NER raw-text F1); nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bilstm_nlp import load  # noqa: E402
from bilstm_nlp.corpus.registry import load_registry  # noqa: E402

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


def card(name: str, speed: float | None) -> str:
    directory = Path("models") / name
    config = json.loads((directory / "config.json").read_text())
    meta = config["meta"]
    corpus_name, metric, dev_name, evaluate = MODELS[name]
    corpus = load_registry()[corpus_name]
    provenance = meta["provenance"]
    settings = provenance["config"]
    model = settings["model"]
    scores = meta["scores"]
    size = (directory / "model.safetensors").stat().st_size / 1e6
    labels = json.loads((directory / "labels.json").read_text())
    trained_in = f", trained in {config['scheme']}, answers in {config['output_scheme']}"
    head = model["head"] if model["task"] == "tagger" else model["pooling"] + "-pooled"
    with_dev = settings["data"].get("train_with_dev", False)
    if with_dev:
        # Trained on dev too: the figure that stands for it is its recipe's, on train alone.
        figure = (
            f"- **Protocol**: trained on train + dev for a fixed {settings['train']['epochs']} "
            f"epochs, the last epoch's weights kept (the epoch count and the settings were chosen "
            f"on dev first)\n"
            f"- **Dev {metric}** of the recipe on {dev_name} (the same settings trained on train "
            f"alone, `{scores['recipe_command']}`): **{scores['recipe_dev']:.2f}**; this model "
            f"itself has no held-out dev figure (on dev, which it trained on: "
            f"{scores['dev_trained_on']:.2f})"
        )
    else:
        before = scores.get("dev_before_export", scores["dev"])
        figure = (
            "- **Protocol**: trained on train, the best epoch on dev kept\n"
            f"- **Dev {metric}** on {dev_name}: **{scores['dev']:.2f}** "
            f"(full-precision model before export: {before:.2f})"
        )
    lines = [
        f"# `{name}`: {meta['task']} model of bilstm-nlp",
        "",
        f"- **Task**: {meta['task']}; labels: {', '.join(labels)}",
        f"- **Architecture**: BiLSTM ({model['hidden']} per direction, {model['layers']} layer), "
        f"{head} head"
        + (trained_in if config["scheme"] else "")
        + f"; GloVe 6B 50d vectors, char {model['char_encoder']}, casing {model['casing_dim']}",
        f"- **Corpus**: {corpus_name} — licence: {corpus.licence}",
        figure,
    ]
    raw = RAW_TEXT_RESULTS.get(name)
    if raw is not None and raw.is_file() and not with_dev:  # dev text is no test for it
        figures = json.loads(raw.read_text())["figures"]
        lines.append(
            f"- **Raw-text dev F1** (sentences detokenised, tokenized by us, scored by character "
            f"offsets; `python bench/raw_text_accuracy.py --model {name} --out {raw}`): "
            f"**{figures['f1']:.2f}**"
        )
    if speed is not None:
        lines.append(
            f"- **Speed**: {speed:,.0f} tokens/s on 24,000 pre-split tokens (batch 256, "
            f"1 CPU thread, load average {os.getloadavg()[0]:.1f} when measured on a "
            f"{os.cpu_count()}-core machine; `python bench/model_cards.py --speed`)"
        )
    lines += [
        f"- **Size**: {size:.1f} MB of weights (word embeddings in float16)",
        f"- **Seed**: {settings['train']['seed']}; trained {provenance['trained_on']} with "
        f"bilstm-nlp {provenance['library_version']}, torch {provenance['torch_version']}, "
        f"{provenance['train_sentences']:,} training sentences",
        "",
        "## Reproduce",
        "",
        "From a checkout with `../shared/corpora` beside it:",
        "",
        "```bash",
        f"bilstm-nlp train --config models/{name}/train.json --output runs/{name}",
        f"bilstm-nlp export runs/{name} models/{name} --max-vectors {model['max_vectors']} "
        + (
            f"--dev {evaluate.split(' ', 3)[3]}"
            if "--dev-from-train" not in evaluate
            else "--dev ../shared/corpora/conll2000/train.txt --dev-from-train last:1000"
        )
        + (
            f" --recipe-dev {scores['recipe_dev']} --recipe-command '{scores['recipe_command']}'"
            if with_dev
            else ""
        ),
        evaluate,
        "```",
    ]
    if with_dev:
        lines += [
            "",
            "The recipe's dev figure comes from the same config trained on train alone: "
            f"`bilstm-nlp train --config models/{name}/train.json --no-train-with-dev "
            f"--output runs/{name}-recipe`, read at epoch {settings['train']['epochs']} of its "
            "`train_log.jsonl`.",
        ]
    lines += [
        "",
        "The training corpus's licence (above) governs what you may do with this model:",
        "CoNLL-2003, CoNLL-2000 and SST are for research use only.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in MODELS:
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
