"""Model cards: the README.md beside a model: what it is, how it scored, how to rebuild it.

Training writes the card of the model it keeps; `export` adds a section on the shipped copy. The
figures come from the model's `ModelMeta` and the run, never typed in by hand.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from ..config import ModelConfig
from ..nn.meta import ModelMeta

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
    dev = facts.best_dev
    lines = [
        f"# bilstm-nlp model: {meta.task}",
        "",
        f"- Task: {meta.task} ({model_config.task}, {model_config.head} head, scheme "
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
        + "`: "
        + (
            f"{facts.dropped_vectors:,} pretrained-only word vectors dropped, "
            if facts.dropped_vectors
            else ""
        )
        + ("word embeddings stored as float16, " if facts.half_embeddings else "")
        + f"{facts.weights_mb:.1f} MB of weights.",
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
