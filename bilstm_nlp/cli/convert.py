"""`bilstm-nlp convert`: a corpus file into another format (token, span and DocBin formats)."""

from __future__ import annotations

from pathlib import Path

from ._util import Arg, Opt, err_console, setup_logging, user_errors


def convert_cli(
    source: Path = Arg(..., help="Input corpus file"),
    target: Path = Arg(..., help="Output file (replaced atomically)"),
    to: str = Opt(
        ...,
        "--to",
        "-t",
        help="Output format: conll, conllu, jsonl, spans, docbin, labelstudio or doccano",
    ),
    input_format: str | None = Opt(
        None, "--input-format", "-f", help="Input format (default: detected from the file)"
    ),
    scheme: str | None = Opt(
        None,
        "--scheme",
        help="Write entity tags in IOB1, IOB2, BIOES or BILOU (default: the input's)",
    ),
    misaligned: str = Opt(
        "error",
        "--misaligned",
        help="Span input: a span whose edge falls inside a token is an error, or expand | drop",
    ),
    label_column: int | None = Opt(
        None, "--label-column", help="CoNLL input: label column (default: last)"
    ),
    tag_field: str = Opt("upos", "--tag-field", help="CoNLL-U field read or written: upos, xpos"),
    model_version: str | None = Opt(
        None,
        "--model-version",
        help="Label Studio output: write the spans as predictions of this model version",
    ),
    verbose: bool = Opt(False, "--verbose", "-v", help="Debug logging"),
) -> None:
    """Convert SOURCE into TARGET (CoNLL, CoNLL-U, JSONL, span JSONL, Label Studio, DocBin)."""
    setup_logging(verbose)
    with user_errors():
        from ..corpus.convert import convert_file

        result = convert_file(
            source,
            target,
            to,
            input_format=input_format,
            scheme=scheme,
            misaligned=misaligned,
            label_column=label_column,
            tag_field=tag_field,
            model_version=model_version,
        )
    scheme_note = f", tags in {result.scheme}" if result.scheme else ""
    err_console.print(
        f"{result.records:,} records: {result.input_format} → {result.output_format} "
        f"{target}{scheme_note}",
        highlight=False,
        soft_wrap=True,
    )
    stats = result.span_stats
    if stats is not None and (stats.misaligned or stats.unannotated or stats.empty):
        err_console.print(
            f"{stats.records:,} records read, {stats.unannotated:,} without annotation, "
            f"{stats.empty:,} without tokens; {stats.spans:,} spans, {stats.misaligned:,} "
            f"cutting a token ({stats.expanded:,} widened, {stats.dropped:,} dropped)",
            highlight=False,
            soft_wrap=True,
        )
