"""`bilstm-nlp ensemble`: classifiers trained apart → one model answering with their mean."""

from __future__ import annotations

from pathlib import Path

from ._util import Arg, Opt, err_console, user_errors


def ensemble_cli(
    models: list[Path] = Arg(..., help="Classifier folders: one recipe's runs with other seeds"),
    output: Path = Opt(..., "--output", "-o", help="Folder to write the ensemble to"),
) -> None:
    """Make one classifier of several trained apart (the same recipe, other seeds): it answers
    with their mean class probability. Export it after (`bilstm-nlp export`) as any model."""
    with user_errors():
        from ..serialize import WEIGHTS_FILE
        from ..training.ensemble import assemble_ensemble

        assemble_ensemble(models, output)
    size = (output / WEIGHTS_FILE).stat().st_size / 1e6
    err_console.print(
        f"wrote {output}: an ensemble of {len(models)} classifiers ({size:.1f} MB of weights)",
        highlight=False,
        soft_wrap=True,
    )
