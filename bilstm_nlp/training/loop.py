"""The training loop: data → vocab → model → epochs scored on dev, early stopping, best model kept.

Reads top to bottom like minGPT's trainer. Everything that varies comes from one `ExperimentConfig`;
the seed is set once here, so the same config, data and thread count give the same model.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import random
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ExperimentConfig, TrainConfig
from ..errors import ConfigError, InputFormatError
from ..nn.encoding import encode_tokens
from ..nn.model import Classifier, Tagger
from ..serialize import (
    TRAINING_LOCK,
    TRAINING_LOG,
    WEIGHTS_FILE,
    folder_listing,
    load_model,
    read_meta,
    save_model,
    training_run_mark,
)
from .averaging import WeightAverage
from .cards import TrainingFacts, training_card
from .checkpoint import TrainingState, load_checkpoint, save_checkpoint
from .data import TrainingData, encode_training_rows, read_training_data
from .distill import TeacherLabelProbs, TeacherTargets, teacher_label_probs, teacher_targets
from .epochs import check_divergence, initial_loss, score_on_dev, train_epoch
from .setup import build_run_model, make_optimizer, run_meta

logger = logging.getLogger(__name__)

LOG_FILE = TRAINING_LOG
LOCK_FILE = TRAINING_LOCK


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (as minGPT's `utils.set_seed`)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EpochReport:
    epoch: int
    loss: float
    dev_score: float | None
    tokens_per_second: float
    seconds: float
    lr: float
    best: bool
    average_dev_score: float | None = None


@dataclass
class TrainResult:
    """What a finished training run produced."""

    output: Path
    best_epoch: int
    best_dev_score: float | None
    epochs: list[EpochReport]
    seconds_to_best: float
    total_seconds: float


def train(
    config: ExperimentConfig,
    output: str | Path,
    *,
    init_model: str | Path | None = None,
    resume: bool = False,
    command: str | None = None,
    show_progress: bool = False,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> TrainResult:
    """Train a tagger or classifier and keep the best model on dev in `output`.

    Args:
        config: data, model and training settings.
        output: the model directory to write (the best model, `train_log.jsonl`, `README.md`).
        init_model: a model directory (or shipped name) to start from; its vocabulary and
            labels are kept, and labels of the data it lacks are added (`setup.initial_run_model`).
        resume: continue the run in `output` from its last checkpoint (the config must be the
            same, but for epochs, max_minutes, patience and threads).
        command: the command line that started the run, recorded in the model card.
        show_progress: a rich progress bar per epoch on stderr.
        on_epoch: called after each epoch (the CLI prints a line).
    Raises:
        ConfigError, InputFormatError: bad settings or data.
    """
    output = Path(output)
    with _exclusive(output):
        return _train(config, output, init_model, resume, command, show_progress, on_epoch)


def _check_not_foreign(output: Path) -> None:
    """Refuse to train into a folder that holds files but no training run (a shipped or exported
    model, a project folder): the run would replace what is there. A run's own folder may be
    trained into again (or --resume continue it)."""
    if not output.is_dir() or training_run_mark(output) is not None:
        return
    listing = folder_listing(output)
    if listing:
        raise ConfigError(
            f"holds files but no training run ({listing}): the run would replace them; train "
            "into a new or empty folder",
            output,
        )


@contextlib.contextmanager
def _exclusive(output: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder, so two runs never write into one."""
    if output.exists() and not output.is_dir():
        raise ConfigError("the output must be a folder, and this is a file", output)
    _check_not_foreign(output)
    created = not output.exists()
    try:
        output.mkdir(parents=True, exist_ok=True)
        handle = os.open(output / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ConfigError(f"cannot write the output folder: {error.strerror}", output) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                "another training run is writing to this folder; wait for it to end or choose "
                "another --output",
                output,
            ) from None
        yield
    except BaseException:
        # A run that failed before saving a model leaves no folder of its own behind (a later
        # export or ensemble would take its log for a training run's).
        if created and not (output / WEIGHTS_FILE).exists():
            shutil.rmtree(output, ignore_errors=True)
        raise
    finally:
        os.close(handle)  # closing releases the lock


def _train(
    config: ExperimentConfig,
    output: Path,
    init_model: str | Path | None,
    resume: bool,
    command: str | None,
    show_progress: bool,
    on_epoch: Callable[[EpochReport], None] | None,
) -> TrainResult:
    settings = config.train
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = _device(settings.device)
    set_seed(settings.seed)
    data = read_training_data(config)
    dev_split = data.dev
    log_path = output / LOG_FILE
    average = WeightAverage()
    if resume:
        model, optimizer, state, rng, average = _resume(output, config, device)
    else:
        meta = run_meta(config, data, command)
        model = build_run_model(config, data, meta, init_model)
        model.to(device)
        optimizer = make_optimizer(model, config)
        state = TrainingState(0, None, 0, 0.0, 0.0, 0)
        rng = random.Random(settings.seed)
    # The log holds exactly the finished epochs (a killed run may have logged one more).
    log_path.write_text("".join(json.dumps(r) + "\n" for r in state.reports))
    encoded = encode_training_rows(data, model.vocab, model.config.max_word_chars)
    if not encoded or not any(len(e.word_ids) for e in encoded):
        raise InputFormatError("no training sentences: nothing to train on", config.data.train)
    labelled = encoded
    encoded = labelled + unlabeled_rows(data, model)
    teachers = _teachers(config, data, model, device, show_progress)
    documents = data.documents if model.config.doc_memory else None
    if documents is not None and len(set(documents)) == len(documents):
        logger.warning(
            "model.doc_memory: the training file marks no documents (-DOCSTART-, # newdoc), "
            "so every sentence is its own and the memory only sees repeats within a sentence"
        )
    if state.initial_loss is None:
        state.initial_loss = initial_loss(model, labelled, config, device)
    first_averaged = settings.epochs - settings.average_epochs + 1
    started = time.perf_counter() - state.seconds
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        lr = learning_rate(settings, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        epoch_start = time.perf_counter()
        loss, tokens = train_epoch(
            model,
            encoded,
            optimizer,
            config,
            rng,
            device,
            epoch,
            show_progress,
            teachers,
            documents,
        )
        seconds = time.perf_counter() - epoch_start
        check_divergence(loss, state, epoch, settings)
        dev_score = average_dev = None
        if dev_split is not None:
            dev_score = score_on_dev(model, dev_split, settings.eval_batch_size, device)
        averaging = settings.average_epochs > 0 and epoch >= first_averaged
        if averaging:
            average.update(model)
            if dev_split is not None:
                with average.swapped_into(model):
                    average_dev = score_on_dev(model, dev_split, settings.eval_batch_size, device)
        # The candidate this epoch offers: the averaged weights when they score higher on dev
        # (or, with no dev, whenever averaging has begun), else the weights as they are.
        use_average = averaging and (dev_split is None or average_dev > dev_score)
        score = average_dev if use_average else dev_score
        best = state.best_score
        improved = score is None or best is None or score > best
        if improved:
            state.best_score, state.best_epoch = score, epoch
            state.seconds_to_best = time.perf_counter() - started
            kept_scores = {
                "dev": score,
                "epoch": epoch,
                "averaged_epochs": [first_averaged, epoch] if use_average else None,
            }
            with average.swapped_into(model) if use_average else contextlib.nullcontext():
                save_model(model, output, replace(model.meta, scores=kept_scores))
            state.stale = 0
        else:
            state.stale += 1
        report = EpochReport(
            epoch, loss, dev_score, tokens / seconds, seconds, lr, improved, average_dev
        )
        state.reports.append(asdict(report))
        state.epoch = epoch
        state.seconds = time.perf_counter() - started
        with log_path.open("a") as log:
            log.write(json.dumps(asdict(report)) + "\n")
        # The checkpoint holds this epoch's own weights, whatever the run folder kept.
        epoch_scores = {"dev": dev_score, "epoch": epoch, "averaged_epochs": None}
        save_checkpoint(
            output,
            model,
            replace(model.meta, scores=epoch_scores),
            optimizer,
            state,
            rng,
            # Whole, stopping rules included: a cosine schedule's length must be checked on resume.
            config.to_dict(),
            average.checkpoint(),
        )
        if on_epoch:
            on_epoch(report)
        if settings.patience and state.stale >= settings.patience:
            logger.info("no better dev score for %d epochs: stopping", state.stale)
            break
        if settings.max_minutes and state.seconds / 60 >= settings.max_minutes:
            logger.info("time budget of %.1f minutes used: stopping", settings.max_minutes)
            break
    if settings.lr_schedule == "cosine" and state.epoch < settings.epochs:
        # Stopped by patience or the time budget: the schedule's low-rate end never came.
        last_lr = learning_rate(settings, state.epoch)
        logger.warning(
            "train.lr_schedule cosine: stopped after epoch %d of %d with the learning rate "
            "still at %.2g (%.0f%% of train.lr), so the run never annealed; the model kept is "
            "epoch %s's. `--resume --patience 0 --max-minutes 0` finishes the schedule",
            state.epoch,
            settings.epochs,
            last_lr,
            100 * last_lr / settings.lr,
            state.best_epoch,
        )
    total = time.perf_counter() - started
    reports = [EpochReport(**r) for r in state.reports]
    result = TrainResult(
        output, state.best_epoch, state.best_score, reports, state.seconds_to_best, total
    )
    # A resumed run ends with the weights of an uninterrupted one under its last settings: its
    # card gives that run's command.
    _finish(output, result, _without_resume(command) if resume else command)
    return result


def _teachers(
    config: ExperimentConfig,
    data: TrainingData,
    model: Tagger | Classifier,
    device: torch.device,
    show_progress: bool,
) -> TeacherTargets | TeacherLabelProbs | None:
    """The distillation targets of `train.distill_from`'s models, or None without teachers."""
    paths = config.train.distill_from
    if not paths:
        return None
    teachers = [load_model(path, device, quantized=False) for path in paths]
    logger.info("distilling from %d teachers: %s", len(teachers), ", ".join(paths))
    if isinstance(model, Classifier):
        return teacher_label_probs(
            teachers, data.token_lists, model.vocab.labels.items, device, show_progress
        )
    labelled = data.token_lists
    if config.train.distill_weight == 0 and not data.unlabeled_token_lists:
        logger.warning(
            "train.distill_weight is 0 and there are no unlabeled sentences (data.unlabeled): "
            "the teachers teach nothing, the model learns the gold tags alone"
        )
    return teacher_targets(
        teachers,
        labelled + data.unlabeled_token_lists,
        model.vocab.labels.items,
        model.scheme,
        device,
        show_progress,
        labelled=len(labelled),
        documents=data.documents,
        # At a share of 0 the labelled sentences learn from gold alone: not worth tagging.
        first=len(labelled) if config.train.distill_weight == 0 else 0,
    )


def unlabeled_rows(data: TrainingData, model: Tagger | Classifier) -> list:
    """The encoded `data.unlabeled` sentences, which follow the training rows. Their tags are
    placeholders, never a target (the teachers' share of their target is 1): O where the tags
    have one, so that `model.entity_word_dropout` treats their words as it does words outside
    entities."""
    outside = model.outside_id if isinstance(model, Tagger) else None
    placeholder = 0 if outside is None else outside
    return [
        encode_tokens(tokens, model.vocab, model.config.max_word_chars, [placeholder] * len(tokens))
        for tokens in data.unlabeled_token_lists
    ]


def learning_rate(settings: TrainConfig, epoch: int) -> float:
    """The learning rate of `epoch` (from 1) under `settings.lr_schedule`."""
    if settings.lr_schedule == "cosine":
        return settings.lr * (1 + math.cos(math.pi * (epoch - 1) / settings.epochs)) / 2
    return settings.lr / (1 + settings.lr_decay * (epoch - 1))


def _resumable(config: ExperimentConfig) -> dict[str, Any]:
    # What must match for a resume to continue the same run; stopping rules may change, and so
    # may the averaging window while it still lies ahead (`_check_averaging`).
    return _without_changeable(config.to_dict())


# Train settings a resume may change.
_CHANGEABLE_ON_RESUME = ("epochs", "max_minutes", "patience", "threads", "average_epochs")


def _without_changeable(values: dict[str, Any]) -> dict[str, Any]:
    # Checkpoints of earlier versions hold some of these keys too: drop them there as well.
    train = {k: v for k, v in values["train"].items() if k not in _CHANGEABLE_ON_RESUME}
    return values | {"train": train}


def _saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's settings with today's defaults for the keys added since it was written.

    A setting new in this version did not exist for the saved run, so the run had its default
    (new settings default to the old behaviour).
    """
    defaults = _without_changeable(ExperimentConfig().to_dict())
    return {
        section: defaults.get(section, {}) | values if isinstance(values, dict) else values
        for section, values in saved.items()
    }


def _check_averaging(
    average: WeightAverage, epoch: int, config: ExperimentConfig, output: Path
) -> None:
    """Refuse a resume whose averaging window disagrees with the average the checkpoint holds.

    A run continued for more epochs may start averaging (a run at its plateau, averaged over the
    epochs it goes on for), since averaging does not touch training: the continued run is the
    one that had the longer window from the start. A window that would reach back before the
    checkpoint, or one that moved after averaging began, cannot be rebuilt from it.
    """
    settings = config.train
    first_averaged = settings.epochs - settings.average_epochs + 1
    expected = max(0, epoch - first_averaged + 1) if settings.average_epochs else 0
    if average.count == expected:
        return
    if average.count:
        held = f"the checkpoint holds the average of epochs {epoch - average.count + 1}-{epoch}"
    else:
        held = "the checkpoint holds no weight average"
    wanted = (
        f"averaging epochs {first_averaged}-{settings.epochs}"
        if settings.average_epochs
        else "no averaging"
    )
    raise ConfigError(
        f"cannot resume after epoch {epoch} with train.average_epochs "
        f"{settings.average_epochs} ({wanted}): {held}; an averaging window can only be "
        "changed before it begins",
        output / "checkpoint",
    )


def _check_schedule(saved_epochs: int | None, config: ExperimentConfig, output: Path) -> None:
    """Refuse a resume that would change a cosine schedule's epochs: that schedule's rate at
    every epoch depends on the total, so the epochs already trained would belong to another run
    (the inverse schedule's rates do not, so its runs may be continued)."""
    settings = config.train
    if settings.lr_schedule == "cosine" and saved_epochs != settings.epochs:
        raise ConfigError(
            f"cannot resume with train.epochs {settings.epochs}: the checkpoint's run anneals "
            f"its learning rate over {saved_epochs} epochs (train.lr_schedule cosine); train a "
            "new run for a different length",
            output / "checkpoint",
        )


def _resume(output: Path, config: ExperimentConfig, device: torch.device):
    model, optimizer, state, rng, saved, averaged = load_checkpoint(
        output, lambda m: make_optimizer(m.to(device), config)
    )
    # Checkpoints written before the schedule existed hold no epochs; their runs were inverse.
    saved_epochs = saved["train"].get("epochs")
    saved, wanted = _saved_settings(_without_changeable(saved)), _resumable(config)
    if saved != wanted:
        changed = sorted(
            f"{section}.{key}"
            for section in saved.keys() | wanted.keys()
            for key in saved.get(section, {}).keys() | wanted.get(section, {}).keys()
            if saved.get(section, {}).get(key) != wanted.get(section, {}).get(key)
        )
        raise ConfigError(
            f"cannot resume with a different configuration (changed: {', '.join(changed)})",
            output / "checkpoint",
        )
    if config.train.epochs < state.epoch:
        raise ConfigError(
            f"the checkpoint is after epoch {state.epoch}: train.epochs {config.train.epochs} "
            f"would end before it; give at least {state.epoch}",
            output / "checkpoint",
        )
    _check_schedule(saved_epochs, config, output)
    average = WeightAverage.from_checkpoint(averaged)
    _check_averaging(average, state.epoch, config, output)
    logger.info("resuming after epoch %d", state.epoch)
    return model, optimizer, state, rng, average


def _device(name: str) -> torch.device:
    if name not in ("cpu", "cuda") and not re.fullmatch(r"cuda:[0-9]+", name):
        raise ConfigError(f"train.device must be cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device is {name} but no CUDA device is available")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device is {name} but there are {torch.cuda.device_count()} CUDA devices"
            )
    return torch.device(name)


def _without_resume(command: str | None) -> str | None:
    if command is None:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    return shlex.join(word for word in words if word != "--resume")


def _finish(output: Path, result: TrainResult, command: str | None) -> None:
    """Write the model card of the model the run kept."""
    model_config, meta = read_meta(output)
    facts = TrainingFacts(
        best_epoch=result.best_epoch,
        best_dev=result.best_dev_score,
        epochs_run=len(result.epochs),
        total_seconds=result.total_seconds,
        seconds_to_best=result.seconds_to_best,
        weights_mb=(output / WEIGHTS_FILE).stat().st_size / 1e6,
        command=command,
    )
    (output / "README.md").write_text(training_card(meta, model_config, facts))
