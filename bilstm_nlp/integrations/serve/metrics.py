"""Counters and histograms of the service, in Prometheus' text format (version 0.0.4).

Sits beside the app: handlers record each request, the batcher each batch; `/metrics` renders
them. Written by hand (a few dozen lines) rather than adding prometheus_client for four series.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter

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

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def record_batch(self, requests: int, items: int, tokens: int, seconds: float) -> None:
        with self.lock:
            self.batch_requests.observe(requests)
            self.batch_items.observe(items)
            self.tokens += tokens
            self.tagging_seconds += seconds
            self.largest_batch = max(self.largest_batch, requests)

    def render(self) -> str:
        """All series in Prometheus' text exposition format."""
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
