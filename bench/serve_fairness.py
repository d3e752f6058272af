"""A small request's latency while large requests run: `bilstm-nlp serve` at this checkout
against another revision's, on the same text.

One client sends large requests back to back (64 texts of about 8,000 characters of CoNLL-2003
dev each, about 100,000 tokens a request); another sends one dev sentence at a time. Each
server is a uvicorn subprocess on 127.0.0.1 with one torch thread and its default settings; the
other revision runs from a temporary git worktree, with that revision's `models/`. Figures are
medians of the repeats, with their range; "alone" is the small client with no large requests.

    python bench/serve_fairness.py [--against REV] [--repeats 5] [--seconds 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import machine_info, revision_tree, write_results
from serve import free_port, sentences

ROOT = Path(__file__).resolve().parent.parent


def start(source: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "bilstm_nlp.cli", "serve", "-m", "ner", "--threads", "1"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if asyncio.run(request(port, b'{"text": "EU"}'))[0] == 200:
                return process, port
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the server from {source} did not start")


async def request(port: int, body: bytes) -> tuple[int, float]:
    """One POST /v1/annotate on its own connection: the status and the seconds it took."""
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/annotate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    answer = await reader.read()  # Connection: close: the answer ends with the stream
    writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, time.perf_counter() - began


async def small_client(port: int, texts: list[str], stop: float, latencies: list[float]) -> None:
    i = 0
    while time.perf_counter() < stop:
        body = json.dumps({"text": texts[i % len(texts)]}).encode()
        status, seconds = await request(port, body)
        if status != 200:
            raise RuntimeError(f"small request: {status}")
        latencies.append(seconds)
        i += 1


async def large_client(port: int, body: bytes, stop: float, latencies: list[float]) -> None:
    while time.perf_counter() < stop:
        status, seconds = await request(port, body)
        if status != 200:
            raise RuntimeError(f"large request: {status}")
        latencies.append(seconds)


async def measure(port: int, texts: list[str], large: bytes | None, seconds: float) -> dict:
    small: list[float] = []
    heavy: list[float] = []
    stop = time.perf_counter() + seconds
    clients = [small_client(port, texts, stop, small)]
    if large is not None:
        clients.append(large_client(port, large, stop, heavy))
    await asyncio.gather(*clients)
    small.sort()
    figures = {
        "small_p50_ms": 1000 * small[len(small) // 2],
        "small_p99_ms": 1000 * small[min(len(small) - 1, int(len(small) * 0.99))],
        "small_requests": len(small),
    }
    if heavy:
        figures["large_s"] = statistics.median(heavy)
    return figures


def large_body(texts: list[str], count: int = 64, chars: int = 8000) -> bytes:
    documents, current, i = [], [], 0
    while len(documents) < count:
        current.append(texts[i % len(texts)])
        i += 1
        if sum(len(t) + 1 for t in current) >= chars:
            documents.append(" ".join(current))
            current = []
    return json.dumps({"texts": documents}).encode()


def _cell(row: dict, key: str, scale: str = ".1f") -> str:
    if key not in row:
        return "-"
    f = row[key]
    return f"{f['median']:{scale}} ({f['min']:{scale}}-{f['max']:{scale}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="a revision to compare with (a temporary worktree)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each measure (≥ 5)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per repeat")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "serve_fairness.json"
    )
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    texts = sentences(2000)
    large = large_body(texts)
    sources = {"this checkout": ROOT}
    figures: dict[str, dict] = {}
    with contextlib.ExitStack() as trees:
        if args.against:
            sources[args.against] = trees.enter_context(revision_tree(args.against, ROOT))
        for name, source in sources.items():
            process, port = start(source)
            try:
                asyncio.run(measure(port, texts, large, 2.0))  # warm-up
                for label, body in (("alone", None), ("beside large", large)):
                    runs = [
                        asyncio.run(measure(port, texts, body, args.seconds))
                        for _ in range(args.repeats)
                    ]
                    figures[f"{name}, {label}"] = {
                        key: {
                            "median": statistics.median(r[key] for r in runs),
                            "min": min(r[key] for r in runs),
                            "max": max(r[key] for r in runs),
                        }
                        for key in runs[0]
                    }
            finally:
                process.terminate()
                process.wait(30)
    info = machine_info(threads=1)
    print(f"\nCPU: {info['cpu']} ({info['cores']} cores), server torch threads 1")
    print(f"large request: 64 texts, {len(large):,} bytes\n")
    print("| server | small p50 ms (range) | small p99 ms (range) | large s | small requests |")
    print("|---|---:|---:|---:|---:|")
    for name, row in figures.items():
        cells = [_cell(row, "small_p50_ms"), _cell(row, "small_p99_ms")]
        cells += [_cell(row, "large_s", ".2f"), _cell(row, "small_requests", ".0f")]
        print(f"| {name} | {' | '.join(cells)} |")
    write_results(args.out, figures, info)


if __name__ == "__main__":
    main()
