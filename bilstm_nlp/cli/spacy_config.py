"""`bilstm-nlp spacy-config`: a spaCy training config for our trainable pipe."""

from __future__ import annotations

from pathlib import Path

from ._util import Opt, err_console, user_errors


def spacy_config_cli(
    task: str = Opt(..., "--task", "-t", help="ner, pos, chunk or sentiment"),
    output: Path | None = Opt(
        None, "--output", "-o", help="Config file to write (default: standard output)"
    ),
    train: Path | None = Opt(
        None,
        "--train",
        exists=True,
        dir_okay=False,
        help="Training DocBin (.spacy): paths.train, and its sentences fix the steps per epoch",
    ),
    dev: Path | None = Opt(
        None, "--dev", exists=True, dir_okay=False, help="Dev DocBin (.spacy): paths.dev"
    ),
) -> None:
    """Write a spaCy training config that trains our BiLSTM-CRF with `python -m spacy train`."""
    with user_errors():
        from ..corpus._atomic import atomic_output
        from ..integrations.spacy_config import spacy_training_config

        text = spacy_training_config(task, train=train, dev=dev)
        if output is None:
            print(text, end="")
            return
        with atomic_output(output) as out:
            out.write(text)
    err_console.print(f"wrote {output}; train with: python -m spacy train {output} --output OUT")
