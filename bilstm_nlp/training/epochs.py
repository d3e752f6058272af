"""One epoch of training and what is checked after it: the loss (divergence) and the dev score."""

from __future__ import annotations

import math
import random
import time

import torch

from ..config import ExperimentConfig
from ..errors import ConfigError
from ..evaluation.evaluate import evaluate_classifier, evaluate_tagger
from ..nn.encoding import (
    EncodedSentence,
    batch_doc_ids,
    bucket_batches,
    collate,
    document_batches,
)
from ..nn.model import Tagger
from ..progress import progress_bar
from .checkpoint import TrainingState
from .data import DevSet
from .setup import PreparedRun

# An epoch whose mean loss is this many times the untrained model's, or the lowest epoch loss so
# far, has diverged: in healthy training the epoch loss falls, or wobbles by a few per cent.
DIVERGED_FACTOR = 2.0


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
    # A document-memory model trains on whole documents, as `train` does.
    documents = run.data.documents if model.config.doc_memory else None
    return train_epoch(
        model,
        run.encoded,
        run.optimizer,
        run.config,
        rng,
        torch.device(device),
        epoch,
        False,
        documents=documents,
    )


def train_epoch(
    model,
    encoded,
    optimizer,
    config,
    rng,
    device,
    epoch,
    show_progress,
    teachers=None,
    documents=None,
):
    """One pass over `encoded`; with `teachers` (`distill.TeacherTargets` of the same sentences)
    the loss blends their marginals with the gold tags; with `documents` (each sentence's
    document number) batches hold whole documents, for a model with document memory. Returns
    the mean loss per sentence and the tokens trained on."""
    settings = config.train
    sentence_labels = config.model.task == "classifier"
    model.train()
    if documents is not None:
        batches = list(document_batches(documents, settings.batch_size, rng))
    else:
        lengths = [len(e.word_ids) for e in encoded]
        batches = list(bucket_batches(lengths, settings.batch_size, rng))
    total_loss = 0.0
    tokens = 0
    progress = _epoch_progress(show_progress, len(batches), epoch)
    started = time.perf_counter()
    for step, indices in enumerate(batches, 1):
        batch = collate([encoded[i] for i in indices], sentence_labels)
        if documents is not None:
            batch.doc_ids = batch_doc_ids(
                [documents[i] for i in indices], config.model.doc_memory_dropout, rng
            )
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        if teachers is None:
            loss = model.loss(batch)
        else:
            marginals = teachers.batch(indices, batch.mask.size(1), device)
            weight = teachers.weights(indices, settings.distill_weight, device)
            loss = model.distill_loss(batch, marginals, weight)
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


def initial_loss(model, encoded: list[EncodedSentence], config: ExperimentConfig, device) -> float:
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


def check_divergence(loss: float, state: TrainingState, epoch: int, settings) -> None:
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

    return progress_bar(f"epoch {epoch}", total, count=True)


def score_on_dev(model, dev_split: DevSet, batch_size: int, device) -> float:
    if isinstance(model, Tagger):
        evaluation = evaluate_tagger(
            model,
            dev_split.token_lists,
            dev_split.labels,
            batch_size=batch_size,
            device=device,
            documents=dev_split.documents,
        )
    else:
        evaluation = evaluate_classifier(
            model, dev_split.token_lists, dev_split.labels, batch_size=batch_size, device=device
        )
    return float(evaluation.main_score)
