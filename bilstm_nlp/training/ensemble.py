"""`bilstm-nlp ensemble`: separately trained classifiers → one model answering with their mean.

The classifiers must be runs of one recipe on one corpus (the same config but for the seed), so
that they share their vocabulary and pretrained-only word vectors; the ensemble (`model.members`)
stores those vectors once and each member's own weights beside them. Runs trained apart (their
own seeds, batch orders and dropout) disagree more usefully than members trained in one run on
the same batches, which is why the ensemble is assembled rather than trained whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..nn.model import Classifier
from ..serialize import (
    check_copy_target,
    load_model,
    refuse_onnx_source,
    resolve_model_path,
    save_model,
)
from .setup import run_facts

# Train settings that may differ between the members (the rest of the recipe may not).
_FREE_TRAIN_KEYS = ("seed", "threads", "device", "eval_batch_size")


def assemble_ensemble(sources: Sequence[str | Path], target: str | Path) -> Classifier:
    """Write to `target` one classifier made of the classifiers in `sources`, in that order.

    Returns:
        The ensemble, as saved.
    Raises:
        ConfigError: fewer than two sources, or sources that are not runs of one recipe (another
            architecture, vocabulary, label set, pretrained vectors or training setting than the
            seed).
        ModelFileError: a source is no loadable model, or `target` is a file.
    """
    if len(sources) < 2:
        raise ConfigError("an ensemble needs at least two classifiers")
    target = check_copy_target(target, sources)
    for source in sources:
        refuse_onnx_source(resolve_model_path(source))
    models = [load_model(source, quantized=False) for source in sources]
    first = models[0]
    for source, model in zip(sources, models, strict=True):
        _check_member(first, model, str(source))
    _check_distinct(sources, models)
    config = dataclasses.replace(first.config, members=len(models))
    provenance = dict(first.meta.provenance)
    # What made this model; each member's own training command is under `ensemble_of`.
    provenance["command"] = " ".join(
        ["bilstm-nlp ensemble", *map(str, sources), "--output", str(target)]
    )
    provenance["ensemble_of"] = [
        run_facts(str(s), m.meta.provenance) for s, m in zip(sources, models, strict=True)
    ]
    meta = dataclasses.replace(first.meta, provenance=provenance, scores={}, source=None)
    ensemble = Classifier(config, first.vocab, meta)
    state = dict(first.state_dict())
    for number, model in enumerate(models[1:]):
        for name, tensor in model.state_dict().items():
            if name != "embedder.fixed_embedding.weight":
                state[f"other_members.{number}.{name}"] = tensor
    ensemble.load_state_dict(state, strict=True)
    save_model(ensemble.eval(), target)
    return ensemble


def _check_member(first: Classifier, model: Any, where: str) -> None:
    if not isinstance(model, Classifier):
        raise ConfigError("an ensemble is made of classifiers; this is a tagger", where)
    if model.config.members != 1:
        raise ConfigError("is an ensemble already: give the classifiers it was made of", where)
    if model.config != first.config:
        raise ConfigError("has another architecture than the first classifier", where)
    vocab, other = first.vocab, model.vocab
    if vocab.labels.items != other.labels.items:
        raise ConfigError(
            f"has the labels {list(other.labels.items)}, the first classifier "
            f"{list(vocab.labels.items)}",
            where,
        )
    if (vocab.words.items, vocab.chars.items, vocab.trainable_words) != (
        other.words.items,
        other.chars.items,
        other.trainable_words,
    ):
        raise ConfigError(
            "has another vocabulary than the first classifier: train every member on the same "
            "data with the same settings",
            where,
        )
    if not torch.equal(
        first.embedder.fixed_embedding.weight, model.embedder.fixed_embedding.weight
    ):
        raise ConfigError(
            "has other pretrained-only word vectors than the first classifier (another vectors "
            "file?)",
            where,
        )
    changed = _recipe_differences(first.meta.provenance, model.meta.provenance)
    if changed:
        raise ConfigError(
            f"was trained with other settings than the first classifier ({', '.join(changed)}): "
            "an ensemble is one recipe's runs, differing in the seed",
            where,
        )


def _check_distinct(sources: Sequence[str | Path], models: Sequence[Classifier]) -> None:
    """Refuse two members with the same weights: the same run given twice, or a rerun of one
    seed on one machine (a seeded run repeats there). The copy would only double one vote."""
    states = [model.state_dict() for model in models]
    for later in range(1, len(models)):
        for earlier in range(later):
            a, b = states[earlier], states[later]
            if all(torch.equal(a[name], b[name]) for name in a):
                raise ConfigError(
                    f"has the same weights as {sources[earlier]} (the same run twice?): an "
                    "ensemble's members are runs with different seeds",
                    str(sources[later]),
                )


def _recipe_differences(first: dict, other: dict) -> list[str]:
    """The config keys, `section.key`, in which two runs differ beyond the free train keys."""
    ours, theirs = first.get("config") or {}, other.get("config") or {}
    changed = []
    for section in sorted(set(ours) | set(theirs)):
        a, b = ours.get(section) or {}, theirs.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if section == "train" and key in _FREE_TRAIN_KEYS:
                continue
            if a.get(key) != b.get(key):
                changed.append(f"{section}.{key}")
    return changed
