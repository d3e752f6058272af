"""The `bilstm-nlp` command line: one typer app, one module per command.

Command modules define plain `*_cli` functions; they are registered here so no module imports
the app back (no import cycles). Each command parses options, calls one library function and
reports.
"""

from __future__ import annotations

import typer

from .annotate import annotate_cli
from .convert import convert_cli
from .corpus import corpus_stats_cli
from .ensemble import ensemble_cli
from .evaluate import evaluate_cli
from .models import export_cli, models_cli
from .select import select_cli
from .serve import serve_cli
from .spacy_config import spacy_config_cli
from .tag import tag_cli
from .train import train_cli

app = typer.Typer(
    name="bilstm-nlp",
    help="BiLSTM-CRF and BiLSTM-softmax taggers (NER, POS, chunking) and a BiLSTM sentence "
    "classifier.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("train")(train_cli)
app.command("evaluate")(evaluate_cli)
app.command("tag")(tag_cli)
app.command("annotate")(annotate_cli)
app.command("select")(select_cli)
app.command("models")(models_cli)
app.command("export")(export_cli)
app.command("ensemble")(ensemble_cli)
app.command("serve")(serve_cli)
app.command("convert")(convert_cli)
app.command("spacy-config")(spacy_config_cli)

corpus_app = typer.Typer(help="Inspect corpora.", no_args_is_help=True)
corpus_app.command("stats")(corpus_stats_cli)
app.add_typer(corpus_app, name="corpus")


def main() -> None:
    """Console-script entry point."""
    app()
