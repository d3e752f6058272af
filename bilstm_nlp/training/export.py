"""`bilstm-nlp export`: a trained model folder → a smaller copy for shipping, with what it cost.

The step after training: drop the rarest pretrained-only word vectors, store the word embeddings
as float16, score the copy on dev beside the original, and add a note to the model card.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from ..errors import ConfigError
from ..nn.model import Classifier, Tagger, build_model
from ..nn.quantize import QUANTIZATIONS
from ..nn.vocab import Index, Vocab
from ..serialize import (
    MODEL_CARD,
    WEIGHTS_FILE,
    check_copy_target,
    load_model,
    read_card,
    refuse_onnx_source,
    resolve_model_path,
    save_model,
    staged_folder,
)
from .cards import ExportFacts, export_note


def export_model(
    source: str | Path,
    target: str | Path,
    *,
    max_vectors: int | None = None,
    half_embeddings: bool = True,
    dev: str | None = None,
    dev_from_train: str | None = None,
    recipe_dev: float | None = None,
    recipe_command: str | None = None,
    quantize: str | None = None,
) -> dict[str, float] | None:
    """Copy a model directory into a smaller one for shipping, and say what that cost on dev.

    A model trained on train + dev (`data.train_with_dev`) has no held-out dev figure: its score
    on `dev` only checks the export (kept as `meta.scores.dev_trained_on`), and the figure that
    stands for it is its recipe's, measured by a run on train alone with the same settings and
    epoch count (`recipe_dev`, with that run's `recipe_command`).

    Args:
        source: a trained model directory.
        target: where to write the smaller copy.
        max_vectors: keep only this many pretrained-only words (the most frequent; training words
            are always kept). None keeps them all.
        half_embeddings: store word embeddings as float16.
        dev: a dev file to score the model on before and after (its figure on the copy becomes
            the copy's `meta.scores.dev`, and both go on its model card).
        dev_from_train: with `dev` a train file, score the part carved off as dev (`last:1000`).
        recipe_dev: the dev figure of the recipe (train+dev models only).
        recipe_command: the command of the train-only run that measured `recipe_dev`.
        quantize: `int8`: the copy loads with int8 LSTMs and linear layers (`nn.quantize`); its
            dev score is then the int8 model's. None keeps the source's choice.
    Returns:
        `{"before": ..., "after": ...}` dev scores when `dev` is given, else None.
    Raises:
        ConfigError: `max_vectors` is negative, or a recipe figure is given for a model that was
            not trained on dev.
        ModelFileError: `source` is no loadable model, or `target` is a file.
    """
    from ..evaluation.evaluate import evaluate_file

    if max_vectors is not None and (
        isinstance(max_vectors, bool) or not isinstance(max_vectors, int) or max_vectors < 0
    ):
        raise ConfigError(f"--max-vectors must be 0 or more, got {max_vectors!r}")
    directory = resolve_model_path(source)
    refuse_onnx_source(directory)
    target = check_copy_target(target, [source])
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize must be {' or '.join(QUANTIZATIONS)}, got {quantize!r}")
    original = load_model(source, quantized=False)
    card = read_card(directory)
    trained_on_dev = original.meta.trained_with_dev
    if (recipe_dev is not None or recipe_command is not None) and not trained_on_dev:
        raise ConfigError(
            "--recipe-dev is for models trained on train + dev; this one has a dev figure of "
            "its own"
        )
    if recipe_dev is not None and (not math.isfinite(recipe_dev) or not 0 <= recipe_dev <= 100):
        raise ConfigError(f"--recipe-dev must be a figure in [0, 100], got {recipe_dev!r}")
    model, dropped = _pruned(original, max_vectors)
    meta = dataclasses.replace(
        model.meta, half_embeddings=half_embeddings, int8=quantize == "int8" or model.meta.int8
    )
    with staged_folder(target) as stage:
        scores = None
        if dev is not None:
            # "before" is the source as it tags (int8 if its folder says so).
            before_model = load_model(source) if original.meta.int8 else original
            before = evaluate_file(before_model, dev, dev_from_train=dev_from_train).main_score
            save_model(model, stage, meta)
            after = evaluate_file(load_model(stage), dev, dev_from_train=dev_from_train).main_score
            scores = {"before": float(before), "after": float(after)}
            # A model trained on dev scores near 100 there: that only checks the export.
            prefix = "dev_trained_on" if trained_on_dev else "dev"
            meta = meta.with_scores(
                {prefix: scores["after"], f"{prefix}_before_export": scores["before"]}
            )
        if trained_on_dev:
            # The source's recipe figure and command stay unless new ones are given.
            kept = original.meta.scores
            meta = meta.with_scores(
                {
                    "dev": None,
                    "recipe_dev": recipe_dev if recipe_dev is not None else kept.get("recipe_dev"),
                    "recipe_command": recipe_command
                    if recipe_command is not None
                    else kept.get("recipe_command"),
                }
            )
        save_model(model, stage, meta)
        facts = ExportFacts(
            source=str(source),
            target=str(target),
            max_vectors=max_vectors,
            half_embeddings=half_embeddings,
            dev=dev,
            dev_from_train=dev_from_train,
            recipe_dev=recipe_dev,
            recipe_command=recipe_command,
            dropped_vectors=dropped,
            weights_mb=(stage / WEIGHTS_FILE).stat().st_size / 1e6,
            scores=scores,
            trained_on_dev=trained_on_dev,
            quantize=quantize,
        )
        (stage / MODEL_CARD).write_text(card.rstrip("\n") + "\n\n" + export_note(facts) + "\n")
    return scores


def _pruned(model: Tagger | Classifier, max_vectors: int | None) -> tuple[Tagger | Classifier, int]:
    """A copy of `model` keeping at most `max_vectors` pretrained-only words (the first, which
    are the most frequent), and how many it dropped; `model` itself when nothing is dropped."""
    vocab = model.vocab
    pretrained_only = len(vocab.words) - vocab.trainable_words
    if max_vectors is None or pretrained_only <= max_vectors:
        return model, 0
    keep = vocab.trainable_words + max_vectors
    smaller = Vocab(
        Index(vocab.words.items[:keep]), vocab.chars, vocab.labels, vocab.trainable_words
    )
    copy = build_model(model.config, smaller, model.meta)
    state = model.state_dict()
    state["embedder.fixed_embedding.weight"] = state["embedder.fixed_embedding.weight"][
        :max_vectors
    ]
    copy.load_state_dict(state, strict=True)
    return copy.eval(), pretrained_only - max_vectors
