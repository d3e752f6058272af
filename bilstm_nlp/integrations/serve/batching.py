"""Requests → micro-batches → the annotation core, on one inference thread.

Sits between the HTTP handlers (`app.py`) and `Annotator`/`tag_sentences`. Handlers submit a
`Job` (one request's texts or pre-tokenized sentences) and await its future; one thread takes the
oldest job and the jobs queued behind it with the same model, endpoint and k, up to
`max_batch_tokens`, runs them as one call of the core and answers each caller with its own slice.
A job larger than the budget runs in pieces of whole items, and goes to the back of the queue
after each piece, so one large request delays the others by one piece, not by all of it, and its
pieces not yet run are dropped when its caller stops waiting. A batch starts as soon as the
thread is free: the jobs that arrived while the previous batch ran form the next one, so a lone
request on an idle server never waits, and under load batches grow by themselves. The oldest job
waits (at most `max_wait_ms`) only for requests the service is still reading
(`expect`/`arrived`), never for requests that may or may not come. One thread owns
the models and the torch threads, so batches never compete for cores, and a request's records
are what `annotate -f jsonl` writes for its texts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...annotation.annotator import Annotator
from ...decode import tag_sentences

if TYPE_CHECKING:
    from ...nn.model import Classifier, Tagger

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The batcher holds its limit of waiting jobs; the caller should retry later."""


@dataclass
class Job:
    """One request's work.

    Attributes:
        model: the model's name.
        kind: `annotate` (raw texts) or `tag` (pre-tokenized sentences).
        k: k best tag sequences per sentence (0: none).
        items: texts (`annotate`) or token lists (`tag`).
        tokens: each item's size in tokens (estimated for raw text), for `max_batch_tokens`.
        future: answered with the job's records, in order.
        loop: the event loop that awaits `future`.
        done: items already taken into a batch (a job larger than a batch runs in pieces).
        records: the records of the pieces run so far.
    """

    model: str
    kind: str
    k: int
    items: list[Any]
    tokens: list[int]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    scheme: str | None = None
    queued_at: float = field(default_factory=time.perf_counter)
    done: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.items):
            raise ValueError(f"{len(self.items)} items but {len(self.tokens)} token counts")

    @property
    def key(self) -> tuple[str, str, int, str | None]:
        return (self.model, self.kind, self.k, self.scheme)


@dataclass
class Piece:
    """Items `start:stop` of a job, as one batch runs them."""

    job: Job
    start: int
    stop: int

    @property
    def finishes(self) -> bool:
        return self.stop == len(self.job.items)


@dataclass
class BatchStats:
    """What one batch did, for the metrics."""

    requests: int
    items: int
    tokens: int
    seconds: float


class MicroBatcher:
    """Gathers concurrent jobs into batches and runs them on one thread.

    Args:
        models: loaded models by name.
        max_wait_ms: how long the oldest job waits at most for requests still being read to
            join its batch (0: never waits).
        max_batch_tokens: a batch closes once it holds this many tokens (a job larger than this
            runs in pieces of whole items, taking turns with the jobs behind it; 0: every job
            runs alone and whole, batching off).
        max_queue: jobs waiting at most; `submit` raises `QueueFull` beyond.
        batch_size: sentences per model batch inside a call of the core.
        on_batch: called on the inference thread after each batch (metrics).
        encode: called on the inference thread on each job's records; the job's future gets
            what it returns (the service encodes JSON there, off the event loop). None: the
            records themselves.
    """

    def __init__(
        self,
        models: dict[str, Tagger | Classifier],
        *,
        max_wait_ms: float = 5.0,
        max_batch_tokens: int = 4096,
        max_queue: int = 1024,
        batch_size: int = 256,
        on_batch: Callable[[BatchStats], None] | None = None,
        encode: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> None:
        self.models = models
        self.max_wait = max_wait_ms / 1000
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.encode = encode
        # Requests the service has begun to read and not yet submitted (or refused).
        self.incoming = 0
        # Annotators keep the tokenizer and token-encoder caches; k is fixed per annotator.
        self.annotators: dict[tuple[str, int, str | None], Annotator] = {}
        self.queue: deque[Job] = deque()
        self.condition = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="serve-batcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Answer the jobs already queued, then end the thread."""
        with self.condition:
            self.stopping = True
            self.condition.notify_all()
        self.thread.join()

    def pending(self) -> int:
        return len(self.queue)

    def expect(self) -> None:
        """A request is being read: a batch waits (at most `max_wait_ms`) until it `arrived`."""
        with self.condition:
            self.incoming += 1

    def arrived(self) -> None:
        """The request `expect` announced is read (its job is about to be submitted) or refused."""
        with self.condition:
            self.incoming -= 1
            if self.incoming == 0:
                self.condition.notify()

    def submit(self, job: Job) -> None:
        """Queue a job; its future is answered from the inference thread.

        Raises:
            QueueFull: `max_queue` jobs are waiting already (or the batcher is stopping).
        """
        with self.condition:
            if self.stopping or len(self.queue) >= self.max_queue:
                raise QueueFull
            self.queue.append(job)
            self.condition.notify()

    def withdraw(self, job: Job) -> bool:
        """Take a job out of the queue (its caller gave up waiting), so that no batch computes
        it, or its pieces not yet run, for nobody; False when a batch holds all that is left."""
        with self.condition:
            try:
                self.queue.remove(job)
            except ValueError:
                return False
            return True

    def _next_batch(self) -> list[Piece] | None:
        with self.condition:
            while True:
                while not self.queue:
                    if self.stopping:
                        return None
                    self.condition.wait()
                first = self.queue[0]
                deadline = first.queued_at + self.max_wait
                while True:
                    batch, tokens = self._gather(first.key)
                    full = tokens >= self.max_batch_tokens or self.max_batch_tokens == 0
                    remaining = deadline - time.perf_counter()
                    # Nothing more is being read: waiting could only add latency.
                    if full or remaining <= 0 or self.stopping or self.incoming == 0:
                        break
                    self.condition.wait(remaining)
                    if not self.queue or self.queue[0] is not first:
                        break  # the oldest job was withdrawn while waiting: start again
                if not self.queue or self.queue[0] is not first:
                    continue
                taken = {id(piece.job) for piece in batch}
                self.queue = deque(job for job in self.queue if id(job) not in taken)
                for piece in batch:
                    piece.job.done = piece.stop
                    if not piece.finishes:  # the rest waits its turn behind the others
                        self.queue.append(piece.job)
                return batch

    def _gather(self, key: tuple[str, str, int, str | None]) -> tuple[list[Piece], int]:
        """The oldest job and those behind it with the same key, within the token budget; a
        job that does not fit whole gives the items that fit (at least one, in a batch of its
        own)."""
        batch: list[Piece] = []
        tokens = 0
        for job in self.queue:
            if job.key != key:
                continue
            if self.max_batch_tokens == 0:  # batching off: the job alone and whole
                return [Piece(job, job.done, len(job.items))], sum(job.tokens[job.done :])
            stop = job.done
            while stop < len(job.items) and (
                tokens + job.tokens[stop] <= self.max_batch_tokens
                or (not batch and stop == job.done)
            ):
                tokens += job.tokens[stop]
                stop += 1
            if stop == job.done:
                break
            batch.append(Piece(job, job.done, stop))
            if stop < len(job.items):
                break
        return batch, tokens

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            start = time.perf_counter()
            try:
                results = self._process(batch)
                for piece, records in zip(batch, results, strict=True):
                    piece.job.records.extend(records)
                finished = [piece.job for piece in batch if piece.finishes]
                answers = [
                    job.records if self.encode is None else self.encode(job.records)
                    for job in finished
                ]
            except Exception as error:  # a bug: each caller gets it, the thread goes on
                logger.exception("batch failed")
                failed = [piece.job for piece in batch]
                for job in failed:
                    self.withdraw(job)  # no more pieces of a job whose caller has its error
                _answer(failed, [error] * len(failed), _set_exception)
                continue
            seconds = time.perf_counter() - start
            _answer(finished, answers, _set_result)
            if self.on_batch is not None:
                self.on_batch(
                    BatchStats(
                        requests=len(batch),
                        items=sum(piece.stop - piece.start for piece in batch),
                        tokens=sum(_tokens(records) for records in results),
                        seconds=seconds,
                    )
                )

    def annotator(self, model: str, k: int, scheme: str | None = None) -> Annotator:
        annotator = self.annotators.get((model, k, scheme))
        if annotator is None:
            annotator = Annotator(
                self.models[model], batch_size=self.batch_size, k_best=k, scheme=scheme
            )
            self.annotators[(model, k, scheme)] = annotator
        return annotator

    def _process(self, batch: list[Piece]) -> list[list[dict[str, Any]]]:
        """Run the pieces' items as one call of the core and cut the records back per piece;
        a record's id is its item's place in its request, counted from 1."""
        model, kind, k, scheme = batch[0].job.key
        items = [item for p in batch for item in p.job.items[p.start : p.stop]]
        ids = [i for p in batch for i in range(p.start + 1, p.stop + 1)]
        annotator = self.annotator(model, k, scheme)
        if kind == "annotate":
            records = annotator.records(items, ids)
        else:
            records = [
                tagged_record(doc_id, result, k)
                for doc_id, result in zip(
                    ids,
                    tag_sentences(
                        annotator.model,
                        items,
                        batch_size=self.batch_size,
                        k=k,
                        encoder=annotator.encoder,
                        scheme=scheme,
                    ),
                    strict=True,
                )
            ]
        results, start = [], 0
        for piece in batch:
            size = piece.stop - piece.start
            results.append(records[start : start + size])
            start += size
        return results


def tagged_record(doc_id: int, result: Any, k: int = 0) -> dict[str, Any]:
    """A pre-tokenized sentence's record: the fields of `Annotation.to_record` that apply to
    tokens without text (token offsets only; scores rounded to 4 decimals); `kbest` when `k`
    paths were asked for, `[]` for an empty sentence."""
    record: dict[str, Any] = {
        "id": doc_id,
        "tokens": [
            {"text": token, "tag": tag, "score": round(p, 4)}
            for token, tag, p in zip(result.tokens, result.tags, result.tag_probs, strict=True)
        ],
        "spans": [
            {
                "token_start": s.start,
                "token_end": s.end,
                "label": s.label,
                "text": " ".join(result.tokens[s.start : s.end]),
                "score": round(s.score, 4),
            }
            for s in result.spans
        ],
    }
    if k:
        record["kbest"] = [{"tags": tags, "prob": round(prob, 4)} for tags, prob in result.kbest]
    return record


def _tokens(records: list[dict[str, Any]]) -> int:
    return sum(len(record["tokens"]) for record in records)


def _answer(batch: list[Job], values: list[Any], setter: Callable) -> None:
    """Answer each job's future: one wake-up of each event loop per batch, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
    for job, value in zip(batch, values, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, value))
    for loop, pairs in by_loop.items():
        loop.call_soon_threadsafe(_set_all, pairs, setter)


def _set_all(pairs: list[tuple[asyncio.Future, Any]], setter: Callable) -> None:
    for future, value in pairs:
        setter(future, value)


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():  # the caller may have timed out and cancelled it
        future.set_result(value)


def _set_exception(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
