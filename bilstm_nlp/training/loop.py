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
from ..config import DataConfig, ExperimentConfig
from ..corpus.loading import corpus_info, load_tagging, load_texts
from ..corpus.registry import entry_for_file
from ..errors import ConfigError, InputFormatError
from ..evaluation.evaluate import evaluate_classifier, evaluate_tagger
from ..nn.embeddings import load_vectors, pretrained_matrix
from ..nn.encoding import EncodedSentence, bucket_batches, collate, encode_tokens
from ..nn.meta import ModelMeta, ReaderSettings, default_task
from ..nn.model import Classifier, Tagger, build_model
from ..nn.vocab import Vocab
from ..serialize import WEIGHTS_FILE, load_model, save_model
from ..text.tokenize import tokens_or_tokenized
from .cards import TrainingFacts, training_card
from .checkpoint import TrainingState, load_checkpoint, save_checkpoint

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


@dataclass
class _Split:
    token_lists: list[list[str]]
    labels: list[list[str]] | list[str]


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
    task = config.model.task
    train_split, dev_split, reader, label_names, scheme, file_scheme = _read_data(config)
    log_path = output / LOG_FILE
    average = _WeightAverage()
    if resume:
        model, optimizer, state, rng, average = _resume(output, config, device)
    else:
        meta = _declared_meta(
            task=_task_name(config, scheme),
            scheme=scheme,
            output_scheme=file_scheme,
            reader=ReaderSettings(**reader),
            provenance={
                "command": command,
                "config": config.to_dict(),
                "library_version": __version__,
                "torch_version": torch.__version__,
                "trained_on": time.strftime("%Y-%m-%d"),
                "train_sentences": len(train_split.token_lists),
                "dev_sentences": len(dev_split.token_lists) if dev_split else 0,
            },
        )
        model = _build(config, train_split, label_names, meta, init_model)
        model.to(device)
        optimizer = _optimizer(model, config)
        state = TrainingState(0, None, 0, 0.0, 0.0, 0)
        rng = random.Random(settings.seed)
    # The log holds exactly the finished epochs (a killed run may have logged one more).
    log_path.write_text("".join(json.dumps(r) + "\n" for r in state.reports))
    encoded = _encode(model, train_split, task)
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
    return model, optimizer, state, rng, _WeightAverage.from_checkpoint(averaged)


class _WeightAverage:
    """Running mean of a model's floating-point weights over the epochs it was given.

    Polyak averaging of the last epochs, as stochastic weight averaging does (Izmailov et al.
    2018): the average sits in a wider optimum than any single epoch's weights.
    """

    COUNT = "__count__"

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.count = 0

    def update(self, model: torch.nn.Module) -> None:
        self.count += 1
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue  # the CRF's allowed-transition masks and other fixed buffers
            value = value.detach().to(torch.float64)
            if name in self.tensors:
                self.tensors[name] += (value - self.tensors[name]) / self.count
            else:
                self.tensors[name] = value.clone()

    @contextlib.contextmanager
    def swapped_into(self, model: torch.nn.Module) -> Iterator[None]:
        """Put the averaged weights into `model` for the block, then the model's own back."""
        current = model.state_dict()
        kept = {name: current[name].detach().clone() for name in self.tensors}
        averaged = {name: t.to(current[name].dtype) for name, t in self.tensors.items()}
        model.load_state_dict(averaged, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(kept, strict=False)

    def checkpoint(self) -> dict[str, torch.Tensor]:
        if not self.count:
            return {}
        return self.tensors | {self.COUNT: torch.tensor(self.count, dtype=torch.int64)}

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor]) -> _WeightAverage:
        average = cls()
        if tensors:
            average.count = int(tensors.pop(cls.COUNT))
            average.tensors = tensors
        return average


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"train.device must be cpu or cuda, got {name!r}")
    return torch.device(name)


def reader_settings(data: DataConfig, task: str) -> dict[str, Any]:
    """The reader options a model keeps, so `evaluate` reads data the way training did."""
    keys = (
        ("input_format", "label_column", "tag_field")
        if task == "tagger"
        else ("input_format", "sst_labels", "text_field", "label_field")
    )
    return {key: getattr(data, key) for key in keys}


def _read_data(config: ExperimentConfig):
    """Train and dev splits through datasets, plus what the model must remember about them."""
    data = config.data
    task = config.model.task
    if data.train is None:
        raise ConfigError("data.train is required: the training file")
    if task not in ("tagger", "classifier"):
        raise ConfigError(f"model.task must be tagger or classifier, got {task!r}")
    if task == "tagger":
        splits = load_tagging(
            data.train,
            data.dev,
            input_format=data.input_format,
            label_column=data.label_column,
            tag_field=data.tag_field,
            scheme=data.scheme,
            dev_from_train=data.dev_from_train,
        )
        info = corpus_info(splits)
        file_scheme, scheme = info.source_scheme, info.scheme
        column = "tags"
    else:
        splits = load_texts(
            data.train,
            data.dev,
            input_format=data.input_format,
            sst_labels=data.sst_labels,
            phrases=data.phrases,
            text_field=data.text_field,
            label_field=data.label_field,
        )
        file_scheme = scheme = None
        column = "label"
    if data.train_with_dev and "dev" not in splits:
        raise ConfigError("data.train_with_dev needs a dev split (data.dev or data.dev_from_train)")
    label_feature = splits["train"].features[column]
    names = list(getattr(label_feature, "feature", label_feature).names)
    # The vocabulary holds the labels seen in training only: a dev-only label is a miss, not a
    # class (unless dev is trained on too).
    trained = ("train", "dev") if data.train_with_dev else ("train",)
    used = set()
    for name in trained:
        ids = splits[name][column][:]
        used |= {i for row in ids for i in row} if task == "tagger" else set(ids)
    label_names = [name for i, name in enumerate(names) if i in used]
    parts = {}
    for name in ("train", "dev"):
        if name not in splits:
            parts[name] = None
            continue
        split = splits[name]
        ids = split[column][:]
        if task == "tagger":
            labels = [[names[i] for i in row] for row in ids]
            tokens = split["tokens"][:]
        else:
            labels = [names[i] for i in ids]
            tokens = tokens_or_tokenized(split["tokens"][:], split["text"][:])
        parts[name] = _Split(tokens, labels)
    if data.train_with_dev:
        # Train on both, in file order (train, then dev); nothing is held out for selection.
        train_part, dev_part = parts["train"], parts["dev"]
        parts["train"] = _Split(
            train_part.token_lists + dev_part.token_lists, train_part.labels + dev_part.labels
        )
        parts["dev"] = None
    reader = reader_settings(data, task) | {"file_scheme": file_scheme}
    return parts["train"], parts["dev"], reader, label_names, scheme, file_scheme


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
    train_split: _Split,
    label_names: list[str],
    meta: ModelMeta,
    init_model: str | Path | None,
) -> Tagger | Classifier:
    if init_model is not None:
        initial = load_model(init_model)
        missing = sorted(set(label_names) - set(initial.vocab.labels.items))
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
    vocab = Vocab.build(train_split.token_lists, label_names, words, model_config.max_vectors)
    model = build_model(model_config, vocab, meta)
    if matrix is not None:
        weights = pretrained_matrix(vocab, words, matrix, config.train.seed)
        model.embedder.set_word_vectors(weights)
    return model


def _encode(model: Tagger | Classifier, split: _Split, task: str) -> list[EncodedSentence]:
    labels = model.vocab.labels
    max_chars = model.config.max_word_chars
    if task == "tagger":
        return [
            encode_tokens(tokens, model.vocab, max_chars, labels.ids(tags))
            for tokens, tags in zip(split.token_lists, split.labels, strict=True)
        ]
    return [
        encode_tokens(tokens, model.vocab, max_chars, [labels.id(label)])
        for tokens, label in zip(split.token_lists, split.labels, strict=True)
    ]


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


def _run_epoch(model, encoded, optimizer, config, rng, device, epoch, show_progress):
    settings = config.train
    sentence_labels = config.model.task == "classifier"
    model.train()
    lengths = [len(e.word_ids) for e in encoded]
    batches = list(bucket_batches(lengths, settings.batch_size, shuffle=True, rng=rng))
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


def _dev_score(model, dev_split: _Split, batch_size: int, device) -> float:
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
