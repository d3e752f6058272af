"""The plots of bench/run.py, drawn from its figures (also usable on a saved run.json).

    .venv/bin/python bench/plots.py bench/results/run.json              # redraw beside it
    .venv/bin/python bench/plots.py bench/results/run.json --out-dir /tmp  # draw elsewhere

`speed_accuracy`: raw text tokens/s (x, log) against CoNLL-2003 dev F1 (y) for our shipped NER model
at 1 and 2 cores; spaCy's speeds are vertical lines, since its NER (OntoNotes) has no comparable
CoNLL-2003 F1 and none is plotted. `batch_size`: our model-alone tokens/s against batch size, with
flair's figure at batch 256 beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _find(rows: list[dict], **where) -> dict | None:
    for row in rows:
        if all(row.get(k) == v for k, v in where.items()):
            return row
    return None


def _plain_numbers(axis) -> None:
    """Log-scale tick labels as 20,000 rather than 2 x 10^4."""
    import matplotlib.ticker

    def label(value: float, _position: int) -> str:
        return f"{value:,.0f}"

    def minor_label(value: float, _position: int) -> str:
        # Only 2 and 5 between the powers of ten, so the labels do not overlap.
        leading = f"{value:.0e}"[0]
        return f"{value:,.0f}" if leading in "25" else ""

    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(label))
    axis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor_label))


def _shown(path: Path) -> str:
    """A path relative to the checkout when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def plots(figures: dict[str, Any], folder: Path) -> list[str]:
    """Speed against accuracy (ours measured F1; peers' speeds as labelled vertical lines, since
    their CoNLL-2003 F1 is not measured) and ours tokens/s against batch size."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    raw = figures.get("raw_text")
    shipped = figures.get("accuracy", {}).get("shipped", {})
    if raw and "ner" in shipped:
        figure, axis = plt.subplots(figsize=(7.5, 4.8))
        f1 = shipped["ner"]["dev"]
        colours = {1: "tab:blue", 2: "tab:orange"}
        for cores in (1, 2):
            # With 2 cores, the faster of threads and worker processes (as in the summary).
            candidates = [r for r in raw["ours"] if r["cores"] == cores and "model" not in r]
            ours_row = max(candidates, key=lambda r: r["median_tokens_per_s"], default=None)
            if ours_row:
                axis.scatter(
                    ours_row["median_tokens_per_s"],
                    f1,
                    s=70,
                    color=colours[cores],
                    zorder=3,
                    label=f"bilstm-nlp ner, {cores} core{'s' if cores > 1 else ''}"
                    + (f" ({ours_row.get('short')})" if cores > 1 else "")
                    + f", CoNLL-2003 dev F1 {f1:.1f}",
                )
            for pipeline, style in (("ner", "--"), ("full", ":")):
                peer = _find(raw["spacy"]["results"], pipeline=pipeline, cores=cores)
                if peer:
                    axis.axvline(
                        peer["median_tokens_per_s"],
                        color=colours[cores],
                        linestyle=style,
                        label=f"spaCy sm {'NER only' if pipeline == 'ner' else 'full pipeline'}, "
                        f"{cores} core{'s' if cores > 1 else ''} (speed only)",
                    )
        large = next((r for r in raw["ours"] if r.get("model") == "ner-large"), None)
        if large and "ner-large" in shipped:
            large_f1 = shipped["ner-large"]["dev"]
            axis.scatter(
                large["median_tokens_per_s"],
                large_f1,
                s=70,
                marker="D",
                color=colours[1],
                zorder=3,
                label=f"bilstm-nlp ner-large, 1 core, CoNLL-2003 dev F1 {large_f1:.1f}",
            )
        axis.set_xscale("log")
        _plain_numbers(axis.get_xaxis())
        axis.set_xlabel("raw text → entities, tokens/s (log scale; UD EWT dev text)")
        axis.set_ylabel("CoNLL-2003 dev entity F1")
        axis.set_ylim(max(0, f1 - 15), min(100, f1 + 5))
        axis.set_title(
            "Speed vs accuracy, this machine, one run\n"
            "(spaCy's NER is trained on OntoNotes: its CoNLL-2003 F1 is not comparable, not shown)",
            fontsize=9,
        )
        axis.legend(fontsize=7, loc="lower left")
        axis.grid(alpha=0.3)
        path = folder / "run_speed_accuracy.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(_shown(path))
    batch_rows = figures.get("batch_size")
    if batch_rows:
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(
            [r["batch_size"] for r in batch_rows],
            [r["median_tokens_per_s"] for r in batch_rows],
            "o-",
            label="bilstm-nlp ner, tag_sentences, 1 thread",
        )
        flair_rows = (figures.get("model_alone") or {}).get("flair") or {}
        for row in flair_rows.get("predict", []):
            if row["threads"] == 1:
                axis.scatter(
                    [256],
                    [row["median_tokens_per_s"]],
                    marker="s",
                    color="tab:red",
                    label="flair same arch., batch 256, 1 thread",
                )
        axis.set_xscale("log", base=2)
        axis.set_xticks([r["batch_size"] for r in batch_rows])
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_yscale("log")
        _plain_numbers(axis.get_yaxis())
        axis.set_xlabel("batch size (sentences)")
        axis.set_ylabel("tokens/s (model alone, pre-split UD EWT dev)")
        axis.set_title("Ours: tokens/s against batch size", fontsize=10)
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
        path = folder / "run_batch_size.png"
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)
        written.append(_shown(path))
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The input is required: with none, the run's plots in bench/results were redrawn in place.
    parser.add_argument("source", type=Path, help="a run.json written by bench/run.py")
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="folder for the run_*.png files (default: the folder of SOURCE, as run.py draws them)",
    )
    args = parser.parse_args()
    out_dir = args.out_dir if args.out_dir is not None else args.source.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    print("\n".join(plots(json.loads(args.source.read_text())["figures"], out_dir)))
