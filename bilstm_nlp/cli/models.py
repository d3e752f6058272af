"""`bilstm-nlp models` lists shipped and local models; `bilstm-nlp export` makes a small copy."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..serialize import SHIPPED_MODELS, describe_model, export_model, find_models
from ._util import Arg, Opt, err_console, user_errors


def models_cli(
    search: Path = Opt(Path("."), "--path", "-p", help="Folder searched for local models"),
    as_json: bool = Opt(False, "--json", help="Print JSON lines instead of a table"),
) -> None:
    """List the shipped models and the model directories found under --path."""
    with user_errors():
        rows = []
        shipped_root = resources.files("bilstm_nlp.models")
        for name in SHIPPED_MODELS:
            directory = shipped_root / name
            if (directory / "config.json").is_file():
                rows.append({"name": name, **describe_model(Path(str(directory)))})
        for directory in find_models(search):
            if directory.resolve().parent != Path(str(shipped_root)).resolve():
                rows.append({"name": "-", **describe_model(directory)})
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table()
    for column in ("name", "task", "head", "dev", "MB", "path"):
        table.add_column(column)
    for row in rows:
        dev = "-" if row["dev"] is None else f"{row['dev']:.2f}"
        table.add_row(
            row["name"],
            str(row["task"]),
            str(row["head"] or "-"),
            dev,
            str(row["size_mb"]),
            row["path"],
        )
    Console().print(table)


def export_cli(
    source: Path = Arg(..., help="Trained model directory"),
    target: Path = Arg(..., help="Directory to write the small copy to"),
    max_vectors: int | None = Opt(
        None, "--max-vectors", help="Keep this many pretrained-only words (training words stay)"
    ),
    half: bool = Opt(True, "--half/--no-half", help="Store word embeddings as float16"),
    dev: str | None = Opt(None, "--dev", help="Score before and after on this dev file"),
    dev_from_train: str | None = Opt(
        None, "--dev-from-train", help="With --dev a train file: score its carved-off dev part"
    ),
) -> None:
    """Copy a model into a smaller directory for shipping (pruned vectors, float16 embeddings)."""
    with user_errors():
        scores = export_model(
            source,
            target,
            max_vectors=max_vectors,
            half_embeddings=half,
            dev=dev,
            dev_from_train=dev_from_train,
        )
    size = (target / "model.safetensors").stat().st_size / 1e6
    message = f"wrote {target} ({size:.1f} MB of weights)"
    if scores:
        message += f"; dev {scores['before']:.2f} → {scores['after']:.2f}"
    err_console.print(message, highlight=False)
