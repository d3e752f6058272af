"""Pre-annotations of the documents to annotate next: a file of unlabelled text in, the chosen
documents out in a form annotation tools import.

`select_file` is what `bilstm-nlp select` runs: read a file as `annotate` reads it (`jobs`,
`corpus/readers/documents.py`), annotate it in the same blocks (`Annotator` with sentence
uncertainty), rank and choose (`selection`), and write the chosen documents with the model's spans
as pre-annotations (`corpus.span_formats`: Label Studio predictions, doccano JSONL or span JSONL),
each span's probability its score and the document's uncertainty the document's score, so that an
annotator corrects instead of starting from nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..corpus.span_formats import CharSpan, SpanDocument, write_span_documents
from ..errors import ConfigError, InputFormatError
from ..nn.model import Classifier, Tagger
from ..progress import progress_bar
from . import jobs as _jobs
from .annotator import Annotator
from .jobs import plan_jobs, read_windows
from .selection import Candidate, candidates_from, check_model, check_strategy, choose, rank

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = {"labelstudio": "labelstudio", "doccano": "doccano", "jsonl": "spans"}
"""`--to` names and the `span_formats` shape each writes."""


@dataclass(frozen=True)
class SelectOptions:
    """How `select_file` ranks, chooses and writes.

    Attributes:
        n: documents to select.
        strategy: one of `STRATEGIES`.
        to: output format, a key of `OUTPUT_FORMATS` (`labelstudio`, `doccano`, `jsonl`).
        seed: the seed of `random`.
        exclude: files of texts already labelled (see `read_labelled_texts`).
        unit: `line` or `jsonl` (default: `jsonl` for a `.jsonl` file, else `line`).
        text_field: JSONL key of the text.
        id_field: JSONL key of the document id.
        batch_size: sentences per model batch.
        model_version: Label Studio's `model_version` of the predictions.
    """

    n: int
    strategy: str = "least-confident"
    to: str = "labelstudio"
    seed: int = 0
    exclude: tuple[str | Path, ...] = ()
    unit: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    batch_size: int = 256
    model_version: str | None = None

    def check(self) -> None:
        """Raises `ConfigError` for a value out of its choices or range."""
        check_strategy(self.strategy)
        if self.to not in OUTPUT_FORMATS:
            raise ConfigError(
                f"unknown output format {self.to!r}; choose from {', '.join(OUTPUT_FORMATS)}"
            )
        if self.n < 1:
            raise ConfigError(f"-n must be at least 1, got {self.n}")
        if self.unit not in (None, "line", "jsonl"):
            raise ConfigError(f"unknown unit {self.unit!r}; choose from line, jsonl")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if not 0 <= self.seed < 2**32:  # numpy's seeds
            raise ConfigError(f"--seed must be 0 to {2**32 - 1}, got {self.seed}")


@dataclass(frozen=True)
class SelectStats:
    """What `select_file` did.

    Attributes:
        documents: input lines read (documents, empty ones included).
        ranked: documents ranked (every one with a token, under the length limit).
        selected: documents written.
        duplicates: ranked documents skipped as near-duplicates of a selected one.
        excluded: ranked documents skipped as near-duplicates of an already labelled text.
        empty: documents without a token (empty or blank lines), skipped.
        too_long: documents over 1,000,000 bytes, skipped (split them to rank them).
        invalid_utf8: documents with invalid UTF-8 (bad bytes replaced by U+FFFD; still ranked).
        seconds: wall time.
    """

    documents: int
    ranked: int
    selected: int
    duplicates: int
    excluded: int
    empty: int
    too_long: int
    invalid_utf8: int
    seconds: float


def select_file(
    model: Tagger | Classifier,
    source: str | Path,
    output: str | Path,
    options: SelectOptions,
    *,
    show_progress: bool = False,
) -> SelectStats:
    """Rank the documents of a file by a tagger's uncertainty and write the `n` to annotate next.

    Documents are read as `bilstm-nlp annotate` reads them (a line each, or a JSONL record with
    `text` and optional `id`; invalid UTF-8 replaced and counted), annotated in the same blocks
    of 1,000 (so spans and probabilities equal `annotate`'s), ranked by `options.strategy`, and
    chosen without near-duplicates (`choose`). Every line is either ranked or counted in the
    stats (empty, too long).

    Args:
        model: a tagger with entity spans (a tag scheme).
        source: the unlabelled documents.
        output: the file to write (replaced atomically).
        options: see `SelectOptions`.
        show_progress: a progress bar on stderr.
    Returns:
        The counts.
    Raises:
        ConfigError: options out of range, a model without spans, output equal to the input.
        InputFormatError: a missing input, a bad JSONL line (file and line), a bad exclude file.
        OutputError: the output cannot be written.
    """
    started = time.perf_counter()
    options.check()
    check_model(model)
    path = Path(source)
    if not path.is_file():
        raise InputFormatError(
            "is a folder: give a file" if path.is_dir() else "no such file", path
        )
    if Path(output).resolve() == path.resolve():
        raise ConfigError("the output would overwrite the input; choose another -o", output)
    labelled = [text for name in options.exclude for text in read_labelled_texts(name)]
    jobs = plan_jobs([path], None, options.unit, None, ".jsonl", None)
    windows = read_windows(
        jobs, (0, 0, 0), _jobs.BLOCK_DOCUMENTS, options.text_field, options.id_field, None, True
    )
    annotator = Annotator(
        model, batch_size=options.batch_size, uncertainty=options.strategy != "random"
    )
    candidates: list[Candidate] = []
    documents = empty = too_long = invalid = 0
    progress = (
        progress_bar(
            "Ranking", path.stat().st_size, detail="{task.fields[documents]} documents", documents=0
        )
        if show_progress
        else None
    )
    read = 0
    try:
        for window in windows:
            invalid += window.invalid
            if window.piece is not None:
                # A document past 1 MB comes in pieces; it is counted once, never ranked.
                documents += window.piece.first
                too_long += window.piece.first
            else:
                lines = range(window.end_line - len(window.ids) + 1, window.end_line + 1)
                start = 0
                for size in window.blocks:
                    block = slice(start, start + size)
                    annotations = annotator(window.texts[block])
                    found = candidates_from(
                        annotations,
                        options.strategy,
                        first_index=documents,
                        ids=window.ids[block],
                        lines=lines[block],
                    )
                    candidates.extend(found)
                    empty += size - len(found)
                    documents += size
                    start += size
            if progress is not None:
                progress.update(
                    progress.task_ids[0],
                    advance=window.end_offset - read,
                    documents=f"{documents:,}",
                )
            read = window.end_offset
    finally:
        if progress is not None:
            progress.stop()
    if invalid:
        logger.warning(
            "%d input lines were not valid UTF-8; their bad bytes were replaced by U+FFFD", invalid
        )
    choice = choose(rank(candidates, options.strategy, options.seed), options.n, exclude=labelled)
    chosen = [
        _span_document(candidate, position, options.strategy)
        for position, candidate in enumerate(choice.selected, 1)
    ]
    write_span_documents(chosen, output, OUTPUT_FORMATS[options.to], options.model_version)
    return SelectStats(
        documents=documents,
        ranked=len(candidates),
        selected=len(chosen),
        duplicates=choice.duplicates,
        excluded=choice.excluded,
        empty=empty,
        too_long=too_long,
        invalid_utf8=invalid,
        seconds=time.perf_counter() - started,
    )


def read_labelled_texts(path: str | Path) -> list[str]:
    """The texts of a file of documents already labelled, for `SelectOptions.exclude`.

    `.json`: a JSON array of Label Studio tasks (`{"data": {"text": ...}}`) or of records with a
    `text` (Label Studio's JSON-MIN export); `.jsonl`: one object with a `text` per line (doccano,
    span JSONL, an earlier selection); anything else: one text per line.

    Raises:
        InputFormatError: a missing file, or a record without a text (file and line or record).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(
            "is a folder: give a file" if path.is_dir() else "no such file", path
        )
    if path.suffix == ".json":
        return _labelstudio_texts(path)
    unit = "jsonl" if path.suffix == ".jsonl" else "line"
    jobs = plan_jobs([path], None, unit, None, ".jsonl", None)
    return [
        text
        for window in read_windows(jobs, (0, 0, 0), _jobs.BLOCK_DOCUMENTS, "text", "id", None, True)
        for text in window.texts
        if window.piece is None and text.strip()
    ]


def _span_document(candidate: Candidate, position: int, strategy: str) -> SpanDocument:
    spans = [CharSpan(s.start, s.end, s.label, round(s.score, 4)) for s in candidate.spans]
    return SpanDocument(
        text=candidate.text,
        spans=spans,
        doc_id=candidate.doc_id,
        line=candidate.line,
        score=float(f"{candidate.score:.6g}"),
        meta={"line": candidate.line, "rank": position, "strategy": strategy},
    )


def _labelstudio_texts(path: Path) -> list[str]:
    try:
        tasks = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputFormatError(f"not a JSON array of tasks: {error}", path) from None
    if not isinstance(tasks, list):
        raise InputFormatError("expected a JSON array of Label Studio tasks", path)
    texts = []
    for number, task in enumerate(tasks, 1):
        record = task.get("data", task) if isinstance(task, dict) else None
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise InputFormatError(f"task {number} has no text (expected data.text or text)", path)
        texts.append(text)
    return texts
