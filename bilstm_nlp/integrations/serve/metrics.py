"""Counters and histograms of the service, in Prometheus' text format (version 0.0.4).

Sits beside the app: handlers record each request, the batcher each batch; `/metrics` renders
them. Written by hand (a few dozen lines) rather than adding prometheus_client for four series.
With `serve --workers N`, each process writes its figures to a folder the `serve` command made,
about once a second (`MetricsFolder`), and `/metrics` adds the other processes' figures to its
own, so that a scrape, whichever process answers it, counts the whole service.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def state(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "total": self.total, "count": self.count}

    def add(self, state: dict[str, Any]) -> None:
        self.counts = [a + b for a, b in zip(self.counts, state["counts"], strict=True)]
        self.total += state["total"]
        self.count += state["count"]

    def render(self, name: str, labels: str = "") -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            cumulative += count
            lines.append(
                f'{name}_bucket{{{labels}{"," if labels else ""}le="{bound}"}} {cumulative}'
            )
        suffix = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{suffix} {self.total:.6f}")
        lines.append(f"{name}_count{suffix} {self.count}")
        return lines


class Metrics:
    """The service's figures; thread-safe (handlers on the event loop, batches on their thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, _Histogram] = {}
        self.batch_requests = _Histogram(BATCH_BUCKETS)
        self.batch_items = _Histogram(BATCH_BUCKETS)
        self.tokens = 0
        self.tagging_seconds = 0.0
        self.largest_batch = 0
        self.changes = 0  # so that an idle process does not rewrite its file

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS)).observe(seconds)
            self.changes += 1

    def record_batch(self, requests: int, items: int, tokens: int, seconds: float) -> None:
        with self.lock:
            self.batch_requests.observe(requests)
            self.batch_items.observe(items)
            self.tokens += tokens
            self.tagging_seconds += seconds
            self.largest_batch = max(self.largest_batch, requests)
            self.changes += 1

    def state(self) -> dict[str, Any]:
        """The figures as JSON values, for another process to add to its own."""
        with self.lock:
            return {
                "requests": [[e, s, n] for (e, s), n in sorted(self.requests.items())],
                "latency": {e: h.state() for e, h in self.latency.items()},
                "batch_requests": self.batch_requests.state(),
                "batch_items": self.batch_items.state(),
                "tokens": self.tokens,
                "tagging_seconds": self.tagging_seconds,
                "largest_batch": self.largest_batch,
            }

    def add(self, state: dict[str, Any]) -> None:
        """Another process's figures (`state()`) added to these: counts and sums add up, the
        largest batch is the larger one."""
        with self.lock:
            for endpoint, status, count in state["requests"]:
                self.requests[(endpoint, status)] += count
            for endpoint, histogram in state["latency"].items():
                self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS)).add(histogram)
            self.batch_requests.add(state["batch_requests"])
            self.batch_items.add(state["batch_items"])
            self.tokens += state["tokens"]
            self.tagging_seconds += state["tagging_seconds"]
            self.largest_batch = max(self.largest_batch, state["largest_batch"])

    def render(self, others: Sequence[dict[str, Any]] = ()) -> str:
        """All series in Prometheus' text exposition format, with other processes' figures
        (`state()`) added."""
        if others:
            whole = Metrics()
            for state in (self.state(), *others):
                whole.add(state)
            return whole.render()
        with self.lock:
            lines = [
                "# HELP bilstm_requests_total HTTP requests by endpoint and status.",
                "# TYPE bilstm_requests_total counter",
            ]
            for (endpoint, status), count in sorted(self.requests.items()):
                lines.append(
                    f'bilstm_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                )
            lines += [
                "# HELP bilstm_request_seconds Request latency, from the handler's start.",
                "# TYPE bilstm_request_seconds histogram",
            ]
            for endpoint, histogram in sorted(self.latency.items()):
                lines += histogram.render("bilstm_request_seconds", f'endpoint="{endpoint}"')
            lines += [
                "# HELP bilstm_batch_requests Requests answered by one model batch.",
                "# TYPE bilstm_batch_requests histogram",
                *self.batch_requests.render("bilstm_batch_requests"),
                "# HELP bilstm_batch_items Texts or sentences in one model batch.",
                "# TYPE bilstm_batch_items histogram",
                *self.batch_items.render("bilstm_batch_items"),
                "# HELP bilstm_batch_requests_max The most requests one batch has answered.",
                "# TYPE bilstm_batch_requests_max gauge",
                f"bilstm_batch_requests_max {self.largest_batch}",
                "# HELP bilstm_tokens_total Tokens tagged.",
                "# TYPE bilstm_tokens_total counter",
                f"bilstm_tokens_total {self.tokens}",
                "# HELP bilstm_tagging_seconds_total Time the inference thread spent in batches.",
                "# TYPE bilstm_tagging_seconds_total counter",
                f"bilstm_tagging_seconds_total {self.tagging_seconds:.6f}",
                "# HELP bilstm_tokens_per_second Tokens per second of batch time, since start.",
                "# TYPE bilstm_tokens_per_second gauge",
                "bilstm_tokens_per_second "
                f"{self.tokens / self.tagging_seconds if self.tagging_seconds else 0.0:.1f}",
            ]
        return "\n".join(lines) + "\n"


class MetricsFolder:
    """The folder where each process of one service writes its figures (`<pid>-<id>.json`), and
    reads the others'. A process that ends leaves its file: counters never go down, and a
    worker uvicorn starts again in its place counts on from its predecessor's figures."""

    def __init__(self, path: str | Path, interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        # Not the PID alone: a worker started again may get a PID an ended one had.
        self.own = self.path / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = -1

    def write(self, metrics: Metrics) -> None:
        """This process's figures, if they changed, replacing its file whole (a reader never
        sees half of one)."""
        changes = metrics.changes
        if changes == self._written:
            return
        temporary = self.own.with_suffix(".tmp")
        temporary.write_text(json.dumps(metrics.state()))
        os.replace(temporary, self.own)
        self._written = changes

    def others(self) -> list[dict[str, Any]]:
        """The other processes' figures as they last wrote them."""
        states = []
        for file in sorted(self.path.glob("*.json")):
            if file == self.own:
                continue
            try:
                states.append(json.loads(file.read_text()))
            except (OSError, ValueError) as error:  # removed meanwhile, or not ours
                logger.warning("metrics of another worker not read (%s): %s", file.name, error)
        return states

    def start(self, metrics: Metrics) -> None:
        """Write this process's figures about every `interval_s` until `stop`."""

        def run() -> None:
            while not self._stop.wait(self.interval_s):
                self._write_logged(metrics)

        self._thread = threading.Thread(target=run, name="metrics-writer", daemon=True)
        self._thread.start()

    def stop(self, metrics: Metrics) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._write_logged(metrics)

    def _write_logged(self, metrics: Metrics) -> None:
        try:
            self.write(metrics)
        except OSError as error:  # a full disk must not stop the service
            logger.warning("metrics not written to %s: %s", self.path, error)
