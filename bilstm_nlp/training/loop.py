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
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..config import ExperimentConfig
from ..corpus.registry import entry_for_file
from ..errors import ConfigError, InputFormatError
from ..evaluation.evaluate import evaluate_classifier, evaluate_tagger
from ..nn.embeddings import load_vectors, pretrained_matrix
from ..nn.encoding import EncodedSentence, bucket_batches, collate
from ..nn.meta import ModelMeta, ReaderSettings, default_task
from ..nn.model import Classifier, Tagger, build_model
from ..nn.vocab import Vocab
from ..serialize import WEIGHTS_FILE, load_model, save_model
from .averaging import WeightAverage
from .cards import TrainingFacts, training_card
from .checkpoint import TrainingState, load_checkpoint, save_checkpoint
from .data import DevSet, TrainingData, encode_training_rows, read_training_data

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
LOCK_FILE = ".train.lock"
# An epoch whose mean loss is this many times the untrained model's, or the lowest epoch loss so
# far, has diverged: in healthy training the epoch loss falls, or wobbles by a few per cent.
DIVERGED_FACTOR = 2.0


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
        init_model: a model directory to start from (fine-tuning); its vocabulary and labels are
            kept.
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


@contextlib.contextmanager
def _exclusive(output: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder, so two runs never write into one."""
    if output.exists() and not output.is_dir():
        raise ConfigError("the output must be a folder, and this is a file", output)
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
    dev_split, scheme = data.dev, data.scheme
    log_path = output / LOG_FILE
    average = WeightAverage()
    if resume:
        model, optimizer, state, rng, average = _resume(output, config, device)
    else:
        meta = _declared_meta(
            task=_task_name(config, scheme),
            scheme=scheme,
            output_scheme=data.file_scheme,
            reader=ReaderSettings(**data.reader),
            provenance={
                "command": command,
                "config": config.to_dict(),
                "library_version": __version__,
                "torch_version": torch.__version__,
                "trained_on": time.strftime("%Y-%m-%d"),
                "train_sentences": len(data.train),
                "dev_sentences": len(dev_split.token_lists) if dev_split else 0,
            },
        )
        model = _build(config, data, meta, init_model)
        model.to(device)
        optimizer = _optimizer(model, config)
        state = TrainingState(0, None, 0, 0.0, 0.0, 0)
        rng = random.Random(settings.seed)
    # The log holds exactly the finished epochs (a killed run may have logged one more).
    log_path.write_text("".join(json.dumps(r) + "\n" for r in state.reports))
    encoded = encode_training_rows(data, model.vocab, model.config.max_word_chars)
    if not encoded or not any(len(e.word_ids) for e in encoded):
        raise InputFormatError("no training sentences: nothing to train on", config.data.train)
    if state.initial_loss is None:
        state.initial_loss = _initial_loss(model, encoded, config, device)
    first_averaged = settings.epochs - settings.average_epochs + 1
    started = time.perf_counter() - state.seconds
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        lr = settings.lr / (1 + settings.lr_decay * (epoch - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        epoch_start = time.perf_counter()
        loss, tokens = _run_epoch(
            model, encoded, optimizer, config, rng, device, epoch, show_progress
        )
        seconds = time.perf_counter() - epoch_start
        _check_divergence(loss, state, epoch, settings)
        dev_score = average_dev = None
        if dev_split is not None:
            dev_score = _dev_score(model, dev_split, settings.eval_batch_size, device)
        averaging = settings.average_epochs > 0 and epoch >= first_averaged
        if averaging:
            average.update(model)
            if dev_split is not None:
                with average.swapped_into(model):
                    average_dev = _dev_score(model, dev_split, settings.eval_batch_size, device)
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
            _resumable(config),
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
    total = time.perf_counter() - started
    reports = [EpochReport(**r) for r in state.reports]
    result = TrainResult(
        output, state.best_epoch, state.best_score, reports, state.seconds_to_best, total
    )
    _finish(output, result, command)
    return result


def _resumable(config: ExperimentConfig) -> dict[str, Any]:
    # What must match for a resume to continue the same run; stopping rules may change.
    values = config.to_dict()
    for key in ("epochs", "max_minutes", "patience", "threads"):
        values["train"].pop(key)
    return values


def _resume(output: Path, config: ExperimentConfig, device: torch.device):
    model, optimizer, state, rng, saved, averaged = load_checkpoint(
        output, lambda m: _optimizer(m.to(device), config)
    )
    if saved != _resumable(config):
        changed = sorted(
            f"{section}.{key}"
            for section in saved
            for key in saved[section]
            if saved[section][key] != _resumable(config)[section].get(key)
        )
        raise ConfigError(
            f"cannot resume with a different configuration (changed: {', '.join(changed)})",
            output / "checkpoint",
        )
    logger.info("resuming after epoch %d", state.epoch)
    return model, optimizer, state, rng, WeightAverage.from_checkpoint(averaged)


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"train.device must be cpu or cuda, got {name!r}")
    return torch.device(name)


def _declared_meta(**fields: Any) -> ModelMeta:
    try:
        return ModelMeta(**fields)
    except ValueError as error:  # data.task that does not fit the data
        raise ConfigError(f"data.task: {error}") from None


def _task_name(config: ExperimentConfig, scheme: str | None) -> str:
    """The task the model is trained for: `data.task`, else the corpus registry's entry for the
    training file, else the default of its kind (`ner` for tags with a scheme, `pos` without,
    `classification`). Never guessed from the tag names."""
    if config.data.task is not None:
        return config.data.task
    entry = entry_for_file(config.data.train) if config.data.train else None
    if entry is not None:
        return entry.task
    return default_task(config.model.task, scheme)


def _build(
    config: ExperimentConfig,
    data: TrainingData,
    meta: ModelMeta,
    init_model: str | Path | None,
) -> Tagger | Classifier:
    if init_model is not None:
        initial = load_model(init_model)
        missing = sorted(set(data.label_names) - set(initial.vocab.labels.items))
        if missing:
            raise ConfigError(
                f"the training data has labels the initial model lacks: {', '.join(missing)}",
                init_model,
            )
        if initial.scheme != meta.scheme:
            raise ConfigError(
                f"the initial model was trained in scheme {initial.scheme}, this run uses "
                f"{meta.scheme}",
                init_model,
            )
        # The same architecture and weights, declared as this run's model.
        model = build_model(initial.config, initial.vocab, meta)
        model.load_state_dict(initial.state_dict())
        return model
    model_config = config.model
    words: list[str] = []
    matrix = None
    if model_config.vectors:
        words, matrix = load_vectors(model_config.vectors)
        model_config = replace(model_config, word_dim=int(matrix.shape[1]))
    vocab = Vocab.build(data.token_lists, data.label_names, words, model_config.max_vectors)
    model = build_model(model_config, vocab, meta)
    if matrix is not None:
        weights = pretrained_matrix(vocab, words, matrix, config.train.seed)
        model.embedder.set_word_vectors(weights)
    return model


def _optimizer(model: torch.nn.Module, config: ExperimentConfig) -> torch.optim.Optimizer:
    settings = config.train
    parameters = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    if settings.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    raise ConfigError(f"train.optimizer must be sgd or adam, got {settings.optimizer!r}")


@dataclass
class PreparedRun:
    """A model ready to train on its encoded data: what `train` builds before its first epoch.

    Attributes:
        config: the settings.
        data: the training data read from `config`.
        model: the untrained model, built from `config` and the training rows.
        encoded: the training rows as ids.
        optimizer: the optimizer over the model's trainable parameters.
    """

    config: ExperimentConfig
    data: TrainingData
    model: Tagger | Classifier
    encoded: list[EncodedSentence]
    optimizer: torch.optim.Optimizer


def prepare_training(config: ExperimentConfig, *, max_sentences: int | None = None) -> PreparedRun:
    """Read the data, build the model and encode the training rows as `train` does (benches time
    the epochs that follow). Seed first (`set_seed`) for a reproducible model.

    Args:
        config: the settings.
        max_sentences: keep only the first this many training rows (the vocabulary is built
            from those).
    Raises:
        ConfigError, InputFormatError: bad settings or data.
    """
    data = read_training_data(config)
    if max_sentences is not None:
        data = data.head(max_sentences)
    meta = _declared_meta(
        task=_task_name(config, data.scheme),
        scheme=data.scheme,
        output_scheme=data.file_scheme,
        reader=ReaderSettings(**data.reader),
        provenance={"config": config.to_dict(), "library_version": __version__},
    )
    model = _build(config, data, meta, None)
    encoded = encode_training_rows(data, model.vocab, model.config.max_word_chars)
    return PreparedRun(config, data, model, encoded, _optimizer(model, config))


def run_epoch(
    run: PreparedRun, rng: random.Random, *, epoch: int = 1, device: str = "cpu"
) -> tuple[float, int]:
    """One training epoch over `run.encoded` in batches shuffled by `rng`.

    Returns:
        The mean loss per sentence and the number of tokens trained on.
    Raises:
        ConfigError: the loss became infinite or NaN (training diverged).
    """
    model = run.model.to(device)
    return _run_epoch(
        model, run.encoded, run.optimizer, run.config, rng, torch.device(device), epoch, False
    )


def _run_epoch(model, encoded, optimizer, config, rng, device, epoch, show_progress):
    settings = config.train
    sentence_labels = config.model.task == "classifier"
    model.train()
    lengths = [len(e.word_ids) for e in encoded]
    batches = list(bucket_batches(lengths, settings.batch_size, rng))
    total_loss = 0.0
    tokens = 0
    progress = _epoch_progress(show_progress, len(batches), epoch)
    started = time.perf_counter()
    for step, indices in enumerate(batches, 1):
        batch = collate([encoded[i] for i in indices], sentence_labels).to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        batch_loss = float(loss.detach())
        if not math.isfinite(batch_loss):
            raise _diverged(f"loss {batch_loss} at batch {step}", epoch, settings)
        (loss / len(indices)).backward()
        if settings.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        optimizer.step()
        total_loss += batch_loss
        tokens += batch.num_tokens
        if progress is not None:
            speed = tokens / max(time.perf_counter() - started, 1e-9)
            progress.update(
                progress.task_ids[0],
                advance=1,
                description=f"epoch {epoch} loss {total_loss / step / settings.batch_size:.3f} "
                f"{speed:,.0f} tok/s",
            )
    if progress is not None:
        progress.stop()
    return total_loss / max(len(encoded), 1), tokens


def _initial_loss(model, encoded: list[EncodedSentence], config: ExperimentConfig, device) -> float:
    """Mean loss per sentence of the model before training, on up to 512 training sentences
    spread over the data: what an epoch's mean loss is measured against to spot divergence."""
    step = max(1, len(encoded) // 512)
    sample = encoded[::step][:512]
    sentence_labels = config.model.task == "classifier"
    total = 0.0
    # In training mode (dropout on, as the epoch losses are measured), on a forked random state
    # so that the run itself draws the same numbers as it would without this measurement.
    model.train()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for start in range(0, len(sample), 64):
            batch = collate(sample[start : start + 64], sentence_labels).to(device)
            total += float(model.loss(batch))
    return total / len(sample)


def _check_divergence(loss: float, state: TrainingState, epoch: int, settings) -> None:
    """Stop when an epoch's mean loss is well above the untrained model's, or above the lowest
    epoch loss so far: training that works lowers it, so such growth means the steps overshoot.
    A loss that is merely huge escapes a NaN check, and such a model tags garbage."""
    references = [(state.initial_loss, "the untrained model's")] + [
        (report["loss"], f"epoch {report['epoch']}'s") for report in state.reports
    ]
    lowest, name = min(references, key=lambda reference: reference[0])
    if not math.isfinite(loss) or loss > DIVERGED_FACTOR * lowest:
        raise _diverged(
            f"mean loss {loss:.4g} per sentence, {loss / lowest:.1f} times {name} {lowest:.4g}",
            epoch,
            settings,
        )


def _diverged(what: str, epoch: int, settings) -> ConfigError:
    return ConfigError(
        f"training diverged at epoch {epoch} ({what}); lower train.lr (now {settings.lr:g}) or "
        f"set train.clip (now {settings.clip:g}); the best model so far, if any, is kept"
    )


def _epoch_progress(show: bool, total: int, epoch: int):
    if not show:
        return None
    from ..progress import progress_bar

    return progress_bar(f"epoch {epoch}", total, count=True)


def _dev_score(model, dev_split: DevSet, batch_size: int, device) -> float:
    if isinstance(model, Tagger):
        evaluation = evaluate_tagger(
            model, dev_split.token_lists, dev_split.labels, batch_size=batch_size, device=device
        )
    else:
        evaluation = evaluate_classifier(
            model, dev_split.token_lists, dev_split.labels, batch_size=batch_size, device=device
        )
    return float(evaluation.main_score)


def _finish(output: Path, result: TrainResult, command: str | None) -> None:
    """Write the model card of the model the run kept."""
    kept = load_model(output)
    facts = TrainingFacts(
        best_epoch=result.best_epoch,
        best_dev=result.best_dev_score,
        epochs_run=len(result.epochs),
        total_seconds=result.total_seconds,
        seconds_to_best=result.seconds_to_best,
        weights_mb=(output / WEIGHTS_FILE).stat().st_size / 1e6,
        command=command,
    )
    (output / "README.md").write_text(training_card(kept.meta, kept.config, facts))
