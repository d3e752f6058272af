"""Training checkpoints without pickle: optimizer tensors in safetensors, the rest as JSON.

Written at the end of every epoch into `MODEL_DIR/checkpoint/` so `bilstm-nlp train --resume`
continues a killed run from its last finished epoch with the same weights, optimizer state and
random-number states; with one thread the resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import ModelFileError
from ..nn.meta import ModelMeta
from ..nn.model import Classifier, Tagger
from ..serialize import TRAINING_CHECKPOINT, load_model, save_model

CHECKPOINT_DIR = TRAINING_CHECKPOINT
STATE_FILE = "state.json"
TENSORS_FILE = "optimizer.safetensors"
AVERAGE_FILE = "average.safetensors"


@dataclass
class TrainingState:
    """Where a run stands after an epoch."""

    epoch: int
    best_score: float | None
    best_epoch: int
    seconds_to_best: float
    seconds: float
    stale: int
    reports: list[dict[str, Any]] = field(default_factory=list)
    initial_loss: float | None = None


def save_checkpoint(
    directory: Path,
    model: Tagger | Classifier,
    meta: ModelMeta,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    batch_rng: random.Random,
    config: dict[str, Any],
    average: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write the checkpoint; a kill while writing leaves the previous one whole.

    `meta` is what the checkpoint's model folder records (this epoch's scores); `average` holds
    extra tensors of the run (the running weight average), restored by `load_checkpoint`.
    """
    final = directory / CHECKPOINT_DIR
    staging = directory / (CHECKPOINT_DIR + ".tmp")
    if staging.exists():
        _remove_tree(staging)
    save_model(model, staging / "model", meta)
    tensors, optimizer_json = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, str(staging / TENSORS_FILE))
    if average:
        save_file({k: v.contiguous() for k, v in average.items()}, str(staging / AVERAGE_FILE))
    document = {
        "state": asdict(state),
        "optimizer": optimizer_json,
        "config": config,
        "rng": {
            "python": _jsonable(random.getstate()),
            "batches": _jsonable(batch_rng.getstate()),
            "numpy": _jsonable(np.random.get_state()),
            "torch": torch.get_rng_state().tolist(),
        },
    }
    (staging / STATE_FILE).write_text(json.dumps(document))
    _fsync_tree(staging)
    # Swap in one rename: the old checkpoint is moved aside first, then dropped.
    old = directory / (CHECKPOINT_DIR + ".old")
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        _remove_tree(old)


def load_checkpoint(
    directory: Path, optimizer_factory
) -> tuple[
    torch.nn.Module,
    torch.optim.Optimizer,
    TrainingState,
    random.Random,
    dict[str, Any],
    dict[str, torch.Tensor],
]:
    """Read a checkpoint back and restore the global random states.

    Args:
        directory: the run's output directory.
        optimizer_factory: builds a fresh optimizer for a model (its state is then loaded).
    Raises:
        ModelFileError: no checkpoint, or a damaged one.
    """
    path = directory / CHECKPOINT_DIR
    if not (path / STATE_FILE).is_file():
        old = directory / (CHECKPOINT_DIR + ".old")
        if (old / STATE_FILE).is_file():
            path = old  # killed between the two renames
        else:
            raise ModelFileError("no checkpoint to resume from (train without --resume)", path)
    try:
        document = json.loads((path / STATE_FILE).read_text())
        model = load_model(path / "model")
        model.train()
        optimizer = optimizer_factory(model)
        tensors = load_file(str(path / TENSORS_FILE))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, document["optimizer"]))
        state = TrainingState(**document["state"])
        rng = document["rng"]
        random.setstate(_tupled(rng["python"]))
        batch_rng = random.Random()
        batch_rng.setstate(_tupled(rng["batches"]))
        numpy_state = rng["numpy"]
        np.random.set_state(
            (numpy_state[0], np.asarray(numpy_state[1], dtype=np.uint32), *numpy_state[2:])
        )
        torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
        average = load_file(str(path / AVERAGE_FILE)) if (path / AVERAGE_FILE).is_file() else {}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelFileError(f"damaged checkpoint: {error}", path) from None
    return model, optimizer, state, batch_rng, document["config"], average


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        plain[str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[str(index)][name] = value
    return tensors, {"state": plain, "param_groups": state_dict["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    return {"state": state, "param_groups": plain["param_groups"]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tupled(value: Any) -> Any:
    # random.setstate wants tuples where getstate gave tuples.
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())


def _remove_tree(path: Path) -> None:
    for file in sorted(path.rglob("*"), reverse=True):
        file.rmdir() if file.is_dir() else file.unlink()
    path.rmdir()
