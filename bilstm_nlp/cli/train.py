"""`bilstm-nlp train`: train a tagger or classifier from a JSON config, options overriding it."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

from ..config import ExperimentConfig
from ..errors import ConfigError
from ._util import Opt, err_console, setup_logging, user_errors


def train_cli(
    output: Path = Opt(..., "--output", "-o", help="Model directory to write"),
    config: Path | None = Opt(
        None, "--config", "-c", help="train.json with data/model/train sections"
    ),
    train_file: str | None = Opt(None, "--train", help="Training file (overrides data.train)"),
    dev_file: str | None = Opt(None, "--dev", help="Dev file (overrides data.dev)"),
    dev_from_train: str | None = Opt(
        None, "--dev-from-train", help="Carve dev off train, e.g. last:1000"
    ),
    input_format: str | None = Opt(
        None,
        "--input-format",
        help="conll, conllu, jsonl, csv, tsv, sst, spans, doccano, labelstudio or docbin "
        "(default: detect)",
    ),
    misaligned: str | None = Opt(
        None,
        "--misaligned",
        help="Span files: a span whose edge falls inside a token is an error (default), or "
        "expand (widen it to whole tokens) | drop (leave it out); both are counted",
    ),
    label_column: int | None = Opt(
        None, "--label-column", help="CoNLL label column (default: last)"
    ),
    tag_field: str | None = Opt(None, "--tag-field", help="CoNLL-U field: upos or xpos"),
    scheme: str | None = Opt(None, "--scheme", help="Train in IOB1, IOB2 or BIOES"),
    train_with_dev: bool | None = Opt(
        None,
        "--train-with-dev/--no-train-with-dev",
        help="Train on train + dev for exactly --epochs epochs, no dev selection (final models)",
    ),
    average_epochs: int | None = Opt(
        None, "--average-epochs", help="Average the weights of the last N epochs (0: off)"
    ),
    distill_from: list[str] | None = Opt(
        None,
        "--distill-from",
        help="A teacher model (repeat for an ensemble): learn from the average of their "
        "marginals beside the gold tags",
    ),
    distill_weight: float | None = Opt(
        None, "--distill-weight", help="The teachers' share of the target, 0-1 (default 0.5)"
    ),
    unlabeled: str | None = Opt(
        None,
        "--unlabeled",
        help="A file of further sentences (any tagging format, labels ignored) that the teachers "
        "tag for the model: it learns their marginals alone there",
    ),
    task: str | None = Opt(None, "--task", help="tagger or classifier"),
    head: str | None = Opt(None, "--head", help="crf or softmax"),
    epochs: int | None = Opt(None, "--epochs", help="Most epochs"),
    max_minutes: float | None = Opt(
        None, "--max-minutes", help="Wall-time budget in minutes (0: none, the config's default)"
    ),
    patience: int | None = Opt(
        None, "--patience", help="Stop after this many epochs without a better dev score (0: never)"
    ),
    lr: float | None = Opt(None, "--lr", help="Learning rate"),
    lr_schedule: str | None = Opt(
        None,
        "--lr-schedule",
        help="inverse (lr / (1 + lr_decay * (epoch - 1)), the default) or cosine (annealed to near "
        "zero by the last epoch)",
    ),
    seed: int | None = Opt(None, "--seed", help="Random seed"),
    threads: int | None = Opt(None, "--threads", help="torch CPU threads"),
    device: str | None = Opt(None, "--device", help="cpu or cuda"),
    init_model: Path | None = Opt(
        None,
        "--init-model",
        help="Start from this model (directory or shipped name) instead of fresh; labels of the "
        "data it lacks are added, its own keep their weights (mix in old data not to forget them)",
    ),
    resume: bool = Opt(False, "--resume", help="Continue a killed run from its last checkpoint"),
    progress: bool = Opt(True, "--progress/--no-progress", help="Progress bar per epoch"),
    verbose: bool = Opt(False, "--verbose", "-v", help="Debug logging"),
) -> None:
    """Train a model; the best epoch on dev is kept in OUTPUT with a model card and a JSONL log."""
    with user_errors():
        setup_logging(verbose, reads_corpora=True)
        from ..training.loop import train

        experiment = ExperimentConfig.from_json(config) if config else ExperimentConfig()
        data = _override(
            experiment.data,
            train=train_file,
            dev=dev_file,
            dev_from_train=dev_from_train,
            input_format=input_format,
            label_column=label_column,
            tag_field=tag_field,
            scheme=scheme,
            train_with_dev=train_with_dev,
            misaligned=misaligned,
            unlabeled=unlabeled,
        )
        model = _override(experiment.model, task=task, head=head)
        if head is not None and model.task == "classifier":
            raise ConfigError(
                "--head is a tagger's (crf or softmax); a classifier's is its pooling"
            )
        settings = _override(
            experiment.train,
            epochs=epochs,
            max_minutes=max_minutes,
            patience=patience,
            lr=lr,
            lr_schedule=lr_schedule,
            seed=seed,
            threads=threads,
            device=device,
            average_epochs=average_epochs,
            distill_from=distill_from or None,
            distill_weight=distill_weight,
        )
        if distill_weight is not None and not settings.distill_from:
            raise ConfigError(
                "--distill-weight is the teachers' share of the target: give them with "
                "--distill-from MODEL (or train.distill_from in the config)"
            )
        experiment = ExperimentConfig(data, model, settings)
        command = "bilstm-nlp " + " ".join(shlex.quote(a) for a in sys.argv[1:])

        def report(epoch) -> None:
            dev = "-" if epoch.dev_score is None else f"{epoch.dev_score:.2f}"
            mark = " *" if epoch.best else ""
            if epoch.average_dev_score is not None:
                dev += f" (averaged {epoch.average_dev_score:.2f})"
            err_console.print(
                f"epoch {epoch.epoch:3d}  loss {epoch.loss:8.4f}  dev {dev:>6}  "
                f"{epoch.tokens_per_second:8,.0f} tok/s  {epoch.seconds:6.1f} s{mark}",
                highlight=False,
            )

        result = train(
            experiment,
            output,
            init_model=init_model,
            resume=resume,
            command=command,
            show_progress=progress and err_console.is_terminal,
            on_epoch=report,
        )
    best = "-" if result.best_dev_score is None else f"{result.best_dev_score:.2f}"
    err_console.print(
        f"best dev {best} at epoch {result.best_epoch}; model in {result.output}", highlight=False
    )


def _override(section, **values):
    chosen = {k: v for k, v in values.items() if v is not None}
    try:
        return dataclasses.replace(section, **chosen)
    except TypeError as error:
        raise ConfigError(str(error)) from None
