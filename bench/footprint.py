"""Footprint of a serving host: MB installed and peak RSS of a `tag` process, for the full
distribution (torch) and the slim one (bilstm-nlp-runtime, ONNX only).

    .venv/bin/python bench/footprint.py            # two fresh venvs in a temporary folder
    .venv/bin/python bench/footprint.py --keep DIR # keep (and reuse) the venvs in DIR

Two venvs made from scratch (`python -m venv`, then pip from the registry; the machine's pip cache
makes it minutes, not more):

- full: `torch==<this interpreter's torch version>` first (the CPU build, as bench/run.py's peer
  venv), then `pip install ".[onnx]"` (this checkout: torch, spaCy, datasets, seqeval, ... and
  the onnx extra, onnx and onnxruntime, so that it runs both backends). The onnx extra's share is
  reported beside the total: `pip install bilstm-nlp` without it is the total less that.
- runtime: `pip install ./packaging/runtime` (numpy, onnxruntime, spaCy, safetensors, typer, rich).

Installed size: `du` of each venv's site-packages in MB (apparent size of the files), with the
ten largest distributions. RSS: the peak resident memory of `bilstm-nlp tag "<sentence>"`
(`getrusage(RUSAGE_CHILDREN).ru_maxrss` in a small launcher process), median of --repeats runs:
the full venv with the shipped torch `ner` and with its ONNX export (float32; spaCy imports torch
there too), the runtime venv with the ONNX float32 and int8 exports (made by this interpreter
with `bilstm-nlp export`). Prints a markdown table; writes bench/results/footprint.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from _common import machine_info, write_results  # noqa: E402
from cold_start import SENTENCE, export_models, run_measured  # noqa: E402


def make_venv(folder: Path, requirements: list[list[str]]) -> Path:
    """A venv at `folder` with each requirement list pip-installed in turn (reused when its
    marker says it was made with the same lists)."""
    python = folder / "bin" / "python"
    marker = folder / ".footprint-requirements"
    wanted = json.dumps(requirements)
    if python.is_file() and marker.is_file() and marker.read_text() == wanted:
        return python
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    for requirement in requirements:
        print(f"pip install {' '.join(requirement)} into {folder.name}", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *requirement], check=True)
    marker.write_text(wanted)
    return python


def site_packages(python: Path) -> Path:
    return Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )


def size_mb(path: Path) -> float:
    total = sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def installed(python: Path) -> dict[str, Any]:
    """Size of site-packages and of its largest top-level entries."""
    root = site_packages(python)
    entries = {p.name: size_mb(p) if p.is_dir() else p.stat().st_size / 1e6 for p in root.iterdir()}
    largest = dict(sorted(entries.items(), key=lambda item: -item[1])[:10])
    has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
    onnx_extra = ("onnx", "onnxruntime")
    return {
        "site_packages_mb": sum(entries.values()),
        "onnx_and_onnxruntime_mb": sum(entries.get(name, 0.0) for name in onnx_extra),
        "largest_mb": largest,
        "torch_installed": has_torch.returncode == 0,
    }


def peak_rss(command: list[str], repeats: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    runs = [run_measured(command, env) for _ in range(repeats)]
    return {
        "command": command,
        "peak_rss_mb": statistics.median(rss for _, rss, _ in runs),
        "answer": runs[-1][2].strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="make (or reuse) the venvs in this folder")
    parser.add_argument("--repeats", type=int, default=3, help="tag runs per RSS figure")
    parser.add_argument(
        "--output", type=Path, default=BENCH / "results" / "footprint.json", help="JSON file"
    )
    args = parser.parse_args()
    import torch

    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    with tempfile.TemporaryDirectory() as scratch:
        venvs = args.keep or Path(scratch)
        venvs.mkdir(parents=True, exist_ok=True)
        # setuptools reuses build/: a module deleted since the last build would ride along.
        shutil.rmtree(ROOT / "build", ignore_errors=True)
        shutil.rmtree(ROOT / "packaging" / "runtime" / "build", ignore_errors=True)
        full = make_venv(venvs / "full", [[torch_pin], [f"{ROOT}[onnx]"]])
        runtime = make_venv(venvs / "runtime", [[str(ROOT / "packaging" / "runtime")]])
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        onnx = export_models(sys.executable, env, Path(scratch) / "models")
        sizes = {"full": installed(full), "runtime": installed(runtime)}
        tag = {
            name: [str(p.parent / "bilstm-nlp"), "tag"]
            for name, p in (("full", full), ("runtime", runtime))
        }
        rss = {
            "full venv, torch ner": peak_rss([*tag["full"], SENTENCE], args.repeats),
            "full venv, ONNX f32": peak_rss(
                [*tag["full"], "--model", str(onnx["onnx-f32"]), SENTENCE], args.repeats
            ),
            "runtime venv, ONNX f32": peak_rss(
                [*tag["runtime"], "--model", str(onnx["onnx-f32"]), SENTENCE], args.repeats
            ),
            "runtime venv, ONNX int8": peak_rss(
                [*tag["runtime"], "--model", str(onnx["onnx-int8"]), SENTENCE], args.repeats
            ),
        }
    lines = [
        "| install | site-packages MB | of which onnx + onnxruntime | torch |",
        "|---|---:|---:|---|",
    ]
    for name, size in sizes.items():
        lines.append(
            f"| {name} | {size['site_packages_mb']:.0f} | {size['onnx_and_onnxruntime_mb']:.0f} "
            f"| {size['torch_installed']} |"
        )
    lines += ["", "| tag process | peak RSS MB |", "|---|---:|"]
    lines += [f"| {name} | {figure['peak_rss_mb']:.0f} |" for name, figure in rss.items()]
    for name, size in sizes.items():
        lines += ["", f"Largest in {name}:", ""]
        lines += [f"- {entry}: {mb:.0f} MB" for entry, mb in size["largest_mb"].items()]
    print("\n".join(lines))
    write_results(args.output, {"installed": sizes, "rss": rss}, machine_info(threads=1))
    print(f"\nwrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
