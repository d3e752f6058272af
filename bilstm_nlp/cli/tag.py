"""`bilstm-nlp tag`: tag the texts given, or standard input (a document per line), and print the
result: entities inline (`[EU ORG 0.99] rejects ...`) or JSONL, CoNLL, HTML."""

from __future__ import annotations

import sys

from ._util import Arg, Opt, load_with_threads, setup_logging, user_errors
from .annotate import check_threads, stdout_may_close


def tag_cli(
    texts: list[str] | None = Arg(
        None, help="Texts to tag, a document each (default: standard input, a document per line)"
    ),
    model: str = Opt("ner", "--model", "-m", help="Shipped model name or model directory"),
    fmt: str = Opt("text", "--format", "-f", help="text (inline), jsonl, conll, html or docbin"),
    k_best: int = Opt(0, "--k-best", "-k", help="Also the k best tag sequences (JSONL)"),
    scheme: str | None = Opt(
        None,
        "--scheme",
        help="Write tags in IOB1, IOB2, BIOES or BILOU, with each tag's probability as written "
        "(default: the training file's scheme; ner's is IOB1)",
    ),
    batch_size: int = Opt(256, "--batch-size", help="Sentences per batch"),
    threads: int | None = Opt(
        None, "--threads", help="CPU threads (torch's, or the ONNX session's intra-op threads)"
    ),
    progress: bool | None = Opt(
        None, "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)"
    ),
    verbose: bool = Opt(False, "--verbose", "-v", help="Debug logging"),
) -> None:
    """Tag TEXTS (or standard input) with a model and print the result on stdout."""
    setup_logging(verbose)
    show_progress = sys.stderr.isatty() if progress is None else progress
    with user_errors(), stdout_may_close():
        check_threads(threads)
        loaded = load_with_threads(model, threads)
        if texts:
            from ..annotation.annotator import annotate_texts, write_annotations

            annotations = annotate_texts(
                loaded,
                texts,
                batch_size=batch_size,
                k_best=k_best,
                show_progress=show_progress,
                scheme=scheme,
            )
            ids = list(range(1, len(texts) + 1))
            write_annotations(annotations, ids, fmt, sys.stdout.buffer, loaded.meta.task)
        else:
            from ..annotation.files import AnnotateOptions, annotate_paths

            options = AnnotateOptions(fmt=fmt, k_best=k_best, scheme=scheme, batch_size=batch_size)
            annotate_paths(["-"], loaded, None, options, show_progress=show_progress)
