"""`bilstm-nlp corpus stats`: document, sentence, token, label and entity counts of a file."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._util import Arg, Opt, user_errors

if TYPE_CHECKING:
    from ..corpus.stats import CorpusStats


def corpus_stats_cli(
    path: str = Arg(..., help="Corpus file"),
    input_format: str | None = Opt(
        None,
        "--input-format",
        "-f",
        help="conll, conllu, jsonl, csv, tsv, sst, spans, doccano, labelstudio or docbin "
        "(default: detected from the file)",
    ),
    label_column: int | None = Opt(
        None,
        "--label-column",
        help="CoNLL label column: 1 = first after the word, negative from the end (default: last)",
    ),
    tag_field: str = Opt("upos", "--tag-field", help="CoNLL-U tag field: upos or xpos"),
    sst_labels: str = Opt("sst2", "--sst-labels", help="SST labels: sst2 or sst5"),
    misaligned: str = Opt(
        "error",
        "--misaligned",
        help="Span files: count spans that cut a token as training would treat them: error "
        "(counted, left out of the sentences; training stops at the first), expand or drop",
    ),
    json_output: bool = Opt(False, "--json", help="Print one JSON object instead of tables"),
) -> None:
    """Print sentence, token, label and entity counts of a corpus file."""
    with user_errors():
        # Imported here: datasets is heavy, and every other command (and each annotate worker,
        # which imports this package) would carry it.
        from ..corpus.stats import corpus_stats

        stats = corpus_stats(
            path,
            input_format,
            label_column=label_column,
            tag_field=tag_field,
            sst_labels=sst_labels,
            misaligned=misaligned,
        )
    if json_output:
        typer.echo(json.dumps(stats.to_dict(), ensure_ascii=False))
    else:
        _print_tables(stats, Console())


def _print_tables(stats: CorpusStats, console: Console) -> None:
    console.print(Text(f"{stats.path} ({stats.input_format})", style="bold"))
    summary = Table(show_header=False)
    summary.add_column("what")
    summary.add_column("count", justify="right")
    rows = [
        ("documents", stats.documents),
        ("sentences", stats.sentences),
        ("tokens (words)" if stats.input_format == "conllu" else "tokens", stats.tokens),
        ("scheme", stats.scheme),
        ("entities", stats.entities),
    ]
    spans = stats.span_counts or {}
    if spans:
        rows[:0] = [
            ("records", spans["records"]),
            ("records without annotation (left out)", spans["unannotated"]),
            ("records without tokens", spans["empty"]),
            ("spans", spans["spans"]),
            ("spans cutting a token", spans["misaligned"]),
            ("  widened to whole tokens", spans["expanded"]),
            ("  dropped", spans["dropped"]),
        ]
    for what, value in rows:
        if value is not None:
            summary.add_row(what, f"{value:,}" if isinstance(value, int) else value)
    console.print(summary)
    if stats.first_misaligned is not None:
        console.print(
            Text(
                f"first span cutting a token (train stops here by default): "
                f"{stats.first_misaligned}"
            )
        )
    console.print(_count_table("label", stats.label_counts))
    if stats.scheme is not None:
        console.print(_count_table("entity type", stats.entity_counts))


def _count_table(name: str, counts: dict[str, int]) -> Table:
    table = Table()
    table.add_column(name)
    table.add_column("count", justify="right")
    for key, count in counts.items():
        table.add_row(Text(key), f"{count:,}")  # Text: no rich markup in labels
    return table
