"""`bilstm-nlp evaluate`: score a model on a data file (table, or one JSON object for scripts)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, InputFormatError
from ._util import Arg, Opt, load_with_threads, setup_logging, user_errors


def evaluate_cli(
    model: str = Arg(..., help="Model directory or shipped model name"),
    data: Path = Arg(..., help="Gold data file"),
    input_format: str | None = Opt(
        None, "--input-format", help="Override the model's reader format"
    ),
    label_column: int | None = Opt(None, "--label-column", help="CoNLL label column"),
    tag_field: str | None = Opt(None, "--tag-field", help="CoNLL-U field: upos or xpos"),
    dev_from_train: str | None = Opt(
        None,
        "--dev-from-train",
        help="Score the part of a train file carved off as dev, e.g. last:1000",
    ),
    misaligned: str | None = Opt(
        None,
        "--misaligned",
        help="Span files: error, expand or drop for a span that cuts a token (default: the "
        "model's setting)",
    ),
    as_json: bool = Opt(False, "--json", help="Print one JSON object instead of a table"),
    predictions: Path | None = Opt(
        None, "--predictions", help="Write 'token gold predicted' columns (conlleval input)"
    ),
    sentences_alone: bool = Opt(
        False,
        "--sentences-alone",
        help="Tag each sentence as a document of its own, not the file's documents "
        "(-DOCSTART-, # newdoc), for a model with document memory",
    ),
    batch_size: int = Opt(256, "--batch-size", help="Sentences per batch"),
    threads: int | None = Opt(
        None, "--threads", help="CPU threads (torch's, or the ONNX session's intra-op threads)"
    ),
    verbose: bool = Opt(False, "--verbose", "-v", help="Debug logging"),
) -> None:
    """Evaluate MODEL on DATA, read with the reader settings the model was trained with."""
    with user_errors():
        setup_logging(verbose, reads_corpora=True)
        from ..evaluation.evaluate import (
            TaggerEvaluation,
            check_predictions_path,
            evaluate_file,
            write_predictions,
        )

        if not data.exists():
            raise InputFormatError("no such file", data)
        if predictions is not None:
            check_predictions_path(predictions, data)  # before the evaluation, not after
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        loaded = load_with_threads(model, threads)
        if predictions is not None and loaded.meta.is_classifier:
            raise ConfigError(
                "--predictions writes token tags (conlleval's columns); a classifier has none"
            )
        result = evaluate_file(
            loaded,
            str(data),
            input_format=input_format,
            label_column=label_column,
            tag_field=tag_field,
            dev_from_train=dev_from_train,
            misaligned=misaligned,
            batch_size=batch_size,
            by_document=not sentences_alone,
        )
        if predictions is not None and isinstance(result, TaggerEvaluation):
            write_predictions(result, predictions)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    _print_table(result)


def _print_table(result) -> None:
    from ..evaluation.evaluate import TaggerEvaluation

    console = Console()
    if isinstance(result, TaggerEvaluation):
        console.print(
            f"{result.sentences} sentences, {result.tokens} tokens; "
            f"token accuracy {result.accuracy:.2f}"
        )
        if result.entities is not None:
            table = Table(title=f"Entities (seqeval {result.entities.mode})")
            for column in ("type", "precision", "recall", "F1", "support"):
                table.add_column(column, justify="right" if column != "type" else "left")
            for name, s in sorted(result.entities.per_type.items()):
                table.add_row(
                    name, f"{s.precision:.2f}", f"{s.recall:.2f}", f"{s.f1:.2f}", str(s.support)
                )
            e = result.entities
            support = sum(s.support for s in e.per_type.values())
            table.add_row(
                "overall", f"{e.precision:.2f}", f"{e.recall:.2f}", f"{e.f1:.2f}", str(support)
            )
            console.print(table)
        if result.confusions:
            console.print(
                "most frequent confusions (gold → predicted): "
                + ", ".join(f"{g}→{p} {n}" for g, p, n in result.confusions)
            )
        return
    s = result.scores
    console.print(
        f"{result.sentences} sentences; accuracy {s.accuracy:.2f}, macro-F1 {s.macro_f1:.2f}"
    )
    table = Table(title="Per class")
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column)
    for name, c in s.per_class.items():
        table.add_row(name, f"{c.precision:.2f}", f"{c.recall:.2f}", f"{c.f1:.2f}", str(c.support))
    console.print(table)
    matrix = Table(title="Confusion (rows gold, columns predicted)")
    matrix.add_column("")
    for name in s.labels:
        matrix.add_column(name)
    for name, row in zip(s.labels, s.confusion, strict=True):
        matrix.add_row(name, *map(str, row))
    console.print(matrix)
