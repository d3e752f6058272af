"""`bilstm-nlp select`: rank unlabelled documents by a tagger's uncertainty and write the N to
annotate next as pre-annotations for Label Studio, doccano or span JSONL."""

from __future__ import annotations

import sys
from pathlib import Path

from ._util import Arg, Opt, err_console, set_threads, setup_logging, user_errors
from .annotate import check_threads

STRATEGY_HELP = (
    "least-confident: 1 - P(Viterbi path)^(1/tokens), exact under the CRF (Shen et al.'s MNLP); "
    "entropy: exact entropy over whole tag sequences per token (nats); "
    "entity-margin: 1 - |2p - 1| of the most doubtful decision, p an entity's probability or, "
    "for a token outside every predicted entity, 1 - P(O); random: seeded by --seed"
)


def select_cli(
    model: str = Arg(..., help="Shipped model name or model directory (a tagger with entities)"),
    unlabeled: Path = Arg(
        ..., help="Unlabelled documents: a text file (one per line) or JSONL with a text field"
    ),
    n: int = Opt(200, "-n", "--number", help="How many documents to select"),
    output: Path = Opt(..., "--output", "-o", help="Output file (replaced)"),
    strategy: str = Opt(
        "least-confident", "--strategy", "-s", help=f"How to rank. {STRATEGY_HELP}"
    ),
    to: str = Opt(
        "labelstudio",
        "--to",
        "-t",
        help="labelstudio (JSON array of tasks with predictions), doccano (JSONL with label), "
        "jsonl (spans JSONL)",
    ),
    seed: int = Opt(0, "--seed", help="Seed of --strategy random"),
    exclude: list[Path] = Opt(
        [],
        "--exclude",
        help="Documents already labelled (.txt lines, .jsonl with text, Label Studio .json "
        "export): near-duplicates of them are skipped; repeatable",
    ),
    unit: str | None = Opt(
        None,
        "--unit",
        "-u",
        help="line: a document per line (default); jsonl: a JSON object per line (default for "
        ".jsonl)",
    ),
    text_field: str = Opt("text", "--text-field", help="JSONL key holding the text"),
    id_field: str = Opt("id", "--id-field", help="JSONL key holding the document id"),
    batch_size: int = Opt(256, "--batch-size", help="Sentences per batch"),
    threads: int | None = Opt(None, "--threads", help="torch CPU threads (default 1)"),
    progress: bool | None = Opt(
        None, "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)"
    ),
    verbose: bool = Opt(False, "--verbose", "-v", help="Debug logging"),
) -> None:
    """Rank UNLABELED documents by MODEL's uncertainty; write the N most uncertain, without
    near-duplicates (Jaccard >= 0.8 of word 3-shingles), as pre-annotations to correct.

    Every span carries the model's probability as its score and every document its uncertainty
    (higher: less sure) as its score, with its source line, rank and strategy. Empty lines are
    skipped and counted; invalid UTF-8 is replaced and counted. Ties rank in input order.
    """
    setup_logging(verbose)
    show_progress = sys.stderr.isatty() if progress is None else progress
    with user_errors():
        from ..annotation.preannotation import SelectOptions, select_file
        from ..serialize import load_model

        check_threads(threads)
        set_threads(threads or 1)
        options = SelectOptions(
            n=n,
            strategy=strategy,
            to=to,
            seed=seed,
            exclude=tuple(exclude),
            unit=unit,
            text_field=text_field,
            id_field=id_field,
            batch_size=batch_size,
            model_version=f"bilstm-nlp {model}",
        )
        options.check()
        stats = select_file(
            load_model(model), unlabeled, output, options, show_progress=show_progress
        )
    parts = [
        f"ranked {stats.ranked:,} of {stats.documents:,} documents ({strategy})",
        f"selected {stats.selected:,} into {output} ({to})",
        f"skipped {stats.duplicates:,} near-duplicates",
    ]
    if exclude:
        parts.append(f"{stats.excluded:,} already labelled")
    parts.append(f"{stats.empty:,} empty")
    if stats.too_long:
        parts.append(f"{stats.too_long:,} over 1 MB")
    if stats.invalid_utf8:
        parts.append(f"{stats.invalid_utf8:,} with invalid UTF-8 (replaced)")
    if stats.selected < n:
        parts.append(f"fewer than -n {n:,}: the pool ran out")
    err_console.print(
        "; ".join(parts) + f"; {stats.seconds:.1f} s", markup=False, highlight=False, soft_wrap=True
    )
