"""`bilstm-nlp models` lists shipped and local models; `bilstm-nlp export` makes a small copy."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, ModelFileError
from ..serialize import describe_model, find_models, shipped_models
from ._util import Arg, Opt, err_console, user_errors


def models_cli(
    search: Path = Opt(Path("."), "--path", "-p", help="Folder searched for local models"),
    as_json: bool = Opt(False, "--json", help="Print JSON lines instead of a table"),
) -> None:
    """List the shipped models and the model directories found under --path (a broken one is
    listed with what is wrong with it)."""
    with user_errors():
        if not search.is_dir():
            raise ConfigError(
                f"--path {search}: " + ("is a file" if search.exists() else "no such folder")
            )
        rows = []
        shipped = shipped_models()
        for name, directory in shipped.items():
            rows.append(_describe(name, directory))
        shipped_folders = {directory.resolve() for directory in shipped.values()}
        for directory in find_models(search):
            if directory.resolve() not in shipped_folders:
                rows.append(_describe("-", directory))
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table()
    for column in ("name", "task", "head", "dev", "figure", "MB", "path"):
        table.add_column(column)
    for row in rows:
        if row["problem"] is not None:
            table.add_row(
                row["name"], "broken", "-", "-", "-", "-", f"{row['path']}: {row['problem']}"
            )
            continue
        dev = "-" if row["dev"] is None else f"{row['dev']:.2f}"
        table.add_row(
            row["name"],
            str(row["task"]),
            str(row["head"] or "-"),
            dev,
            row["figure"] or "-",
            str(row["size_mb"]),
            row["path"],
        )
    Console().print(table)
    if any((row.get("figure") or "").startswith("recipe") for row in rows):
        err_console.print(
            "recipe dev: the model was trained on train + dev; the figure is that of the same "
            "settings trained on train alone (see its model card)",
            highlight=False,
        )


def _describe(name: str, directory: Path) -> dict:
    """The row of one model; `problem` says why a broken one cannot be loaded (else None)."""
    try:
        return {"name": name, **describe_model(directory), "problem": None}
    except ModelFileError as error:
        return {
            "name": name,
            "path": str(directory),
            "task": None,
            "head": None,
            "dev": None,
            "figure": None,
            "figure_command": None,
            "size_mb": None,
            "trained_on": None,
            "problem": _problem(error),
        }


def _problem(error: ModelFileError) -> str:
    # The file inside the model folder and the line, as `config.json:3: not valid JSON`.
    if error.path is None:
        return error.message
    where = Path(error.path).name + (f":{error.line}" if error.line else "")
    return f"{where}: {error.message}"


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
    recipe_dev: float | None = Opt(
        None,
        "--recipe-dev",
        help="For a model trained on train + dev: the dev figure of its recipe (train alone)",
    ),
    recipe_command: str | None = Opt(
        None, "--recipe-command", help="The train-only command that measured --recipe-dev"
    ),
    fmt: str = Opt(
        "safetensors",
        "--format",
        "-f",
        help="safetensors (a smaller copy of the folder) or onnx (an ONNX graph and a numpy CRF)",
    ),
    quantize: str | None = Opt(
        None,
        "--quantize",
        help="int8: dynamic quantization of the LSTMs and linear layers (onnx: ~1/4 the size; "
        "safetensors: float weights kept, quantized on load)",
    ),
) -> None:
    """Copy a model into a smaller directory for shipping (pruned vectors, float16 embeddings),
    or export it to ONNX (--format onnx)."""
    if dev_from_train is not None and dev is None:
        with user_errors():
            raise ConfigError("--dev-from-train goes with --dev (the train file to carve it from)")
    if fmt == "onnx":
        ignored = [
            name
            for name, given in (
                ("--no-half", not half),
                ("--dev-from-train", dev_from_train is not None),
                ("--recipe-dev", recipe_dev is not None),
                ("--recipe-command", recipe_command is not None),
            )
            if given
        ]
        if ignored:
            with user_errors():
                raise ConfigError(
                    f"{', '.join(ignored)}: for a safetensors copy; an ONNX export keeps the "
                    "source's card and figures (export the copy to onnx)"
                )
        _export_onnx(source, target, max_vectors, dev, quantize)
        return
    with user_errors():
        from ..training.export import export_model

        if fmt != "safetensors":
            raise ConfigError(f"--format must be safetensors or onnx, got {fmt!r}")
        scores = export_model(
            source,
            target,
            max_vectors=max_vectors,
            half_embeddings=half,
            dev=dev,
            dev_from_train=dev_from_train,
            recipe_dev=recipe_dev,
            recipe_command=recipe_command,
            quantize=quantize,
        )
    size = (target / "model.safetensors").stat().st_size / 1e6
    message = f"wrote {target} ({size:.1f} MB of weights{', int8 on load' if quantize else ''})"
    if scores and recipe_dev is None:
        message += f"; dev {scores['before']:.2f} → {scores['after']:.2f}"
    elif scores:
        message += f"; on dev, trained on: {scores['before']:.2f} → {scores['after']:.2f}"
    err_console.print(message, highlight=False)


def _export_onnx(
    source: Path, target: Path, max_vectors: int | None, dev: str | None, quantize: str | None
) -> None:
    with user_errors():
        from ..integrations.runtime.export import ONNX_FILE, export_onnx

        if max_vectors is not None or dev is not None:
            raise ConfigError(
                "--max-vectors and --dev make a smaller safetensors copy; export that copy to onnx"
            )
        export_onnx(source, target, quantize=quantize)
    size = (target / ONNX_FILE).stat().st_size / 1e6
    checked = "int8, runs" if quantize else "checked against torch"
    err_console.print(f"wrote {target} ({size:.1f} MB ONNX graph, {checked})")
