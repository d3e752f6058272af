"""Model cards: the README.md beside a model: what it is, how it scored, how to rebuild it.

Training writes the card of the model it keeps; `export` adds a section on the shipped copy; the
shipped models' cards (`python bench/model_cards.py`) add the corpus and embedding licences and
figures measured outside training, the recipe's among them. The figures come from the model's
`ModelMeta` and the runs, never typed in by hand.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from ..config import ModelConfig
from ..corpus.registry import CorpusEntry
from ..nn.meta import ModelMeta
from ..nn.model import Classifier, Tagger

METRICS = {"ner": "entity F1", "chunking": "chunk F1", "pos": "token accuracy"}
"""What a task's dev figure measures; classifiers report accuracy."""


@dataclass(frozen=True)
class TrainingFacts:
    """What a finished training run contributes to its model's card."""

    best_epoch: int | None
    best_dev: float | None
    epochs_run: int
    total_seconds: float
    seconds_to_best: float
    weights_mb: float
    command: str | None


def schedule_note(config: dict) -> str:
    """`; learning rate annealed ...` for a cosine run, else empty (the inverse decay is the
    default every earlier model had)."""
    if config["train"].get("lr_schedule", "inverse") != "cosine":
        return ""
    return "; learning rate annealed to zero on a cosine (`train.lr_schedule: cosine`)"


def distillation_note(config: dict) -> str:
    """`; distilled from ...` for a model trained with teachers, else empty."""
    teachers = config["train"].get("distill_from") or []
    if not teachers:
        return ""
    weight = config["train"].get("distill_weight", 0.5)
    names = ", ".join(f"`{t}`" for t in teachers)
    if config.get("model", {}).get("task") == "classifier":
        theirs, gold = "class probabilities", "gold labels"
    else:
        theirs, gold = "CRF marginals", "gold tags"
    unlabeled = config.get("data", {}).get("unlabeled")
    return (
        f"; distilled from an ensemble of {len(teachers)} teachers ({names}): the target is "
        f"{weight:g} their averaged {theirs}, {1 - weight:g} the {gold}"
        + (
            f", and their {theirs} alone on the unlabeled sentences of `{unlabeled}`"
            if unlabeled
            else ""
        )
    )


def _head_name(task: str, head: str, pooling: str) -> str:
    """A tagger's head (`crf`, `softmax`); a classifier's pooling (`max-pooled`)."""
    return head if task == "tagger" else pooling + "-pooled"


def training_card(meta: ModelMeta, model_config: ModelConfig, facts: TrainingFacts) -> str:
    """The card of a freshly trained model (Markdown)."""
    provenance = meta.provenance
    config = provenance["config"]
    data = config["data"]
    averaged = meta.scores.get("averaged_epochs")
    if meta.trained_with_dev:
        protocol = (
            f"trained on train + dev for a fixed {facts.epochs_run} epochs (the recipe was "
            "chosen on dev beforehand); no dev figure, since dev was trained on"
        )
    else:
        protocol = "trained on train, the best epoch on dev kept"
    if averaged:
        protocol += f"; weights averaged over epochs {averaged[0]}-{averaged[1]}"
    protocol += schedule_note(config) + distillation_note(config)
    dev = facts.best_dev
    head = _head_name(model_config.task, model_config.head, model_config.pooling)
    lines = [
        f"# bilstm-nlp model: {meta.task}",
        "",
        f"- Task: {meta.task} ({model_config.task}, {head} head, scheme "
        f"{meta.scheme or 'plain labels'}; output scheme "
        f"{(meta.tags_in if meta.scheme else meta.output_scheme) or '-'})",
        f"- Training data: `{data['train']}`; dev: `{data['dev'] or data['dev_from_train']}`",
        f"- Protocol: {protocol}",
        f"- Dev {METRICS.get(meta.task, 'accuracy')} (best epoch {facts.best_epoch}): "
        + (f"**{dev:.2f}**" if dev is not None else "n/a"),
        f"- Training time: {facts.total_seconds / 60:.1f} min, best dev after "
        f"{facts.seconds_to_best / 60:.1f} min ({facts.epochs_run} epochs)",
        f"- Size: {facts.weights_mb:.1f} MB (`model.safetensors`)",
        f"- Seed: {config['train']['seed']}",
        "",
        "## Reproduce",
        "",
        "```",
        facts.command or "bilstm-nlp train --config train.json --output MODEL_DIR",
        "```",
        "",
        f"Trained with bilstm-nlp {provenance['library_version']}, "
        f"torch {provenance['torch_version']}, "
        f"on {provenance['trained_on']}; python {sys.version.split()[0]}.",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ExportFacts:
    """What `export` did, for the card's section on the shipped copy."""

    source: str
    target: str
    max_vectors: int | None
    half_embeddings: bool
    dev: str | None
    dev_from_train: str | None
    recipe_dev: float | None
    recipe_command: str | None
    dropped_vectors: int
    weights_mb: float
    scores: dict[str, float] | None
    trained_on_dev: bool
    quantize: str | None = None


def export_note(facts: ExportFacts) -> str:
    """The card section on an exported copy: the command, what it dropped, what it cost on dev."""
    scores = facts.scores
    note = [
        "## Shipped copy",
        "",
        f"Exported with `bilstm-nlp export {facts.source} {facts.target}"
        + (f" --max-vectors {facts.max_vectors}" if facts.max_vectors is not None else "")
        + ("" if facts.half_embeddings else " --no-half")
        + (f" --dev {facts.dev}" if facts.dev else "")
        + (f" --dev-from-train {facts.dev_from_train}" if facts.dev_from_train else "")
        + (f" --recipe-dev {facts.recipe_dev}" if facts.recipe_dev is not None else "")
        + (f" --recipe-command {shlex.quote(facts.recipe_command)}" if facts.recipe_command else "")
        + (f" --quantize {facts.quantize}" if facts.quantize else "")
        + "`: "
        + (
            f"{facts.dropped_vectors:,} pretrained-only word vectors dropped, "
            if facts.dropped_vectors
            else ""
        )
        + ("word embeddings stored as float16, " if facts.half_embeddings else "")
        + f"{facts.weights_mb:.1f} MB of weights"
        + (
            "; the LSTMs and linear layers are quantized to int8 when it loads."
            if facts.quantize
            else "."
        ),
    ]
    if scores is not None and not facts.trained_on_dev:
        note.append(
            f"Dev score of the shipped copy: **{scores['after']:.2f}** "
            f"(full model: {scores['before']:.2f}; "
            f"export cost {scores['before'] - scores['after']:+.2f})."
        )
    if facts.trained_on_dev:
        if scores is not None:
            note.append(
                f"On dev, which it was trained on: {scores['after']:.2f} (full model: "
                f"{scores['before']:.2f}); this checks the export, it is no held-out figure."
            )
        if facts.recipe_dev is not None:
            note.append(
                "Dev figure of its recipe (the same settings trained on train alone"
                + (f": `{facts.recipe_command}`" if facts.recipe_command else "")
                + f"): **{facts.recipe_dev:.2f}**."
            )
    return "\n".join(note)


@dataclass(frozen=True)
class RecipeFacts:
    """How the dev figure of a train + dev model's recipe was measured, as the bench recorded it.

    Attributes:
        commands: the commands that measure it again, in order.
        note: what the figure is and where it is recorded (Markdown, for the figure's line).
        reading: where the commands leave the figure (Markdown).
    """

    commands: tuple[str, ...]
    note: str
    reading: str


@dataclass(frozen=True)
class ShippedFacts:
    """What a shipped model's card says beyond its `ModelMeta`: the corpus, what the figure is,
    and the figures measured outside training."""

    name: str
    corpus: CorpusEntry
    metric: str
    dev_name: str
    evaluate_command: str
    weights_mb: float
    raw_text_f1: float | None = None
    raw_text_command: str | None = None
    speed: float | None = None
    speed_note: str | None = None
    embeddings: str | None = None
    embeddings_licence: str | None = None
    recipe: RecipeFacts | None = None


def _training_rows(count: int, config: dict) -> str:
    """What the rows a run trained on were: a classifier trained on SST phrases counts tree
    nodes, not sentences (dev adds whole sentences only)."""
    data = config["data"]
    if config["model"]["task"] != "classifier":
        return f"{count:,} training sentences"
    if not data.get("phrases"):
        return f"{count:,} training examples"
    kept = " with a non-neutral label" if data.get("sst_labels") == "sst2" else ""
    with_dev = "; and, as it trained on dev too, the dev sentences (whole sentences only)"
    return (
        f"{count:,} training examples: every node of the training trees{kept} (whole sentences "
        "and the phrases and single words inside them)"
        + (with_dev if data["train_with_dev"] else "")
    )


def _threads(config: dict) -> int:
    """The torch thread count a run recorded: its weights depend on it."""
    return config["train"]["threads"]


def _identity_note(provenance: dict, members: list[dict]) -> str:
    """What the Reproduce commands need besides themselves to give the shipped weights."""
    cpu = provenance.get("cpu")
    runs = "the runs" if members else "the run"
    return (
        "The weights come out bit-identical only with the same seed, bilstm-nlp and torch "
        "versions, thread count (the `--threads` above, as recorded) and CPU kind; "
        + (f"{runs} recorded {cpu}." if cpu else f"{runs} did not record the CPU.")
    )


def shipped_card(model: Tagger | Classifier, facts: ShippedFacts) -> str:
    """The card of a model shipped in `models/`: its figure, how to rebuild it, its licence."""
    meta, name = model.meta, facts.name
    settings = meta.provenance["config"]
    architecture = settings["model"]
    scores = meta.scores
    head = _head_name(architecture["task"], architecture["head"], architecture["pooling"])
    averaged = scores.get("averaged_epochs")
    averaging = f"; weights averaged over epochs {averaged[0]}-{averaged[1]}" if averaged else ""
    with_dev = meta.trained_with_dev
    if with_dev:
        # Trained on dev too: the figure that stands for it is its recipe's, on train alone.
        kept = (
            f"the average of epochs {averaged[0]}-{averaged[1]}'s weights kept"
            if averaged
            else "the last epoch's weights kept"
        )
        figure = (
            f"- **Protocol**: trained on train + dev for a fixed {settings['train']['epochs']} "
            f"epochs, {kept} (the epoch count and the settings were chosen "
            f"on dev first){schedule_note(settings)}{distillation_note(settings)}\n"
            f"- **Dev {facts.metric}** of the recipe on {facts.dev_name} (the same settings "
            "trained on train alone"
            + (f": {facts.recipe.note}" if facts.recipe else f", `{scores['recipe_command']}`")
            + "): "
            f"**{scores['recipe_dev']:.2f}**; this model itself has no held-out dev figure (on "
            f"dev, which it trained on: {scores['dev_trained_on']:.2f})"
        )
    else:
        before = scores.get("dev_before_export", scores["dev"])
        figure = (
            "- **Protocol**: trained on train, the best epoch on dev kept"
            f"{averaging}{schedule_note(settings)}{distillation_note(settings)}\n"
            f"- **Dev {facts.metric}** on {facts.dev_name}: **{scores['dev']:.2f}** "
            f"(full-precision model before export: {before:.2f})"
        )
    trained_in = f", trained in {meta.scheme}, answers in {meta.tags_in}"
    lines = [
        f"# `{name}`: {meta.task} model of bilstm-nlp",
        "",
        f"- **Task**: {meta.task}; labels: {', '.join(model.vocab.labels.items)}",
        f"- **Architecture**: BiLSTM ({architecture['hidden']} per direction, "
        f"{architecture['layers']} layer), {head} head"
        + (trained_in if meta.scheme else "")
        + f"; GloVe 6B 50d vectors, char {architecture['char_encoder']}, casing "
        f"{architecture['casing_dim']}"
        + (
            "; document memory (each word's other occurrences in its document: give documents "
            "when tagging)"
            if architecture.get("doc_memory")
            else ""
        )
        + (
            f"; an ensemble of {model.config.members} such classifiers, each with its own trained "
            "word vectors (the pretrained-only ones shared), answering with their mean "
            "probability"
            if model.config.members > 1
            else ""
        ),
        f"- **Corpus**: {facts.corpus.name} — licence: {facts.corpus.licence}",
        *([f"- **Embeddings**: {facts.embeddings}"] if facts.embeddings else []),
        figure,
    ]
    if facts.raw_text_f1 is not None and not with_dev:  # dev text is no test for it
        lines.append(
            f"- **Raw-text dev F1** (sentences detokenised, tokenized by us, scored by character "
            f"offsets; `{facts.raw_text_command}`): **{facts.raw_text_f1:.2f}**"
        )
    if facts.speed is not None:
        lines.append(
            f"- **Speed**: {facts.speed:,.0f} tokens/s on 24,000 pre-split tokens (batch 256, "
            f"{facts.speed_note})"
        )
    provenance = meta.provenance
    # An ensemble put together from runs of the recipe (`bilstm-nlp ensemble`): one per seed.
    members = provenance.get("ensemble_of") or []
    evaluate = facts.evaluate_command
    lines += [
        f"- **Size**: {facts.weights_mb:.1f} MB of weights (word embeddings in float16)",
        (
            f"- **Seeds**: {', '.join(str(m['seed']) for m in members)}, one per member; "
            if members
            else f"- **Seed**: {settings['train']['seed']}; "
        )
        + f"trained {provenance['trained_on']} with "
        f"bilstm-nlp {provenance['library_version']}, torch {provenance['torch_version']}, "
        + _training_rows(provenance["train_sentences"], settings),
        "",
        "## Reproduce",
        "",
        "From a checkout with `../shared/corpora` beside it:",
        "",
        "```bash",
        *(
            [
                *(
                    f"bilstm-nlp train --config models/{name}/train.json --seed {m['seed']} "
                    f"--threads {_threads(m.get('config') or settings)} "
                    f"--output runs/{name}-s{m['seed']}"
                    for m in members
                ),
                "bilstm-nlp ensemble "
                + " ".join(f"runs/{name}-s{m['seed']}" for m in members)
                + f" --output runs/{name}",
            ]
            if members
            else [
                # A distilled model's teachers come first (each trained as its card says).
                *(
                    f"{t['command']}  # teacher {number}"
                    for number, t in enumerate(provenance.get("teachers") or [], 1)
                    if t.get("command")
                ),
                f"bilstm-nlp train --config models/{name}/train.json "
                f"--threads {_threads(settings)} --output runs/{name}",
            ]
        ),
        f"bilstm-nlp export runs/{name} models/{name} --max-vectors "
        f"{architecture['max_vectors']} "
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
        # export writes the card of a trained model; the licences and the figures measured
        # outside training come from the corpus registry and the bench records.
        f"python bench/model_cards.py {name}",
        "```",
        "",
        _identity_note(provenance, members),
    ]
    if with_dev and facts.recipe:
        lines += [
            "",
            f"The recipe's dev figure, measured again ({facts.recipe.reading}):",
            "",
            "```bash",
            *facts.recipe.commands,
            "```",
        ]
    elif with_dev and members:
        lines += [
            "",
            "The recipe's dev figure comes from runs of the same config on train alone "
            f"(`bilstm-nlp train --config models/{name}/train.json --seed N "
            "--no-train-with-dev`, the last epoch of each: its `checkpoint/model`), put together "
            f"{len(members)} at a time as `bilstm-nlp ensemble` does (the members' mean "
            "probability) and scored on dev.",
        ]
    elif with_dev:
        lines += [
            "",
            "The recipe's dev figure comes from the same config trained on train alone: "
            f"`bilstm-nlp train --config models/{name}/train.json --no-train-with-dev "
            f"--output runs/{name}-recipe`, read at epoch {settings['train']['epochs']} of its "
            "`train_log.jsonl`.",
        ]
    lines += [
        "",
        f"The licence of its training corpus, `{facts.corpus.name}`, governs what you may do "
        f"with this model: {facts.corpus.licence}."
        + (
            f" Its word embeddings start from {facts.embeddings_licence}."
            if facts.embeddings_licence
            else ""
        ),
        "",
    ]
    return "\n".join(lines)
