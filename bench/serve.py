"""Requests/s and p50/p99 latency of `bilstm-nlp serve` at 1, 8 and 64 concurrent clients.

Each client sends one CoNLL-2003 dev sentence per request: micro-batching on, batching off
(`--max-batch-tokens 0`), and spaCy's en_core_web_sm NER behind FastAPI (one `nlp(text)` per
request). Servers run as uvicorn subprocesses on 127.0.0.1 with one torch thread; clients are
keep-alive HTTP/1.1 connections on one asyncio loop in this process (so clients and server share
the machine's cores). Each figure is the median of the repeats, with their range.

    python bench/serve.py [--quick] [--out FILE]   # default bench/results/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import machine_info, write_results

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "corpora" / "conll2003" / "dev.txt"
SERVERS = {
    "batched": ["-m", "bilstm_nlp.cli", "serve", "-m", "ner", "--threads", "1"],
    "unbatched": ["-m", "bilstm_nlp.cli", "serve", "-m", "ner", "--threads", "1"]
    + ["--max-batch-tokens", "0"],
    "spacy_sm": ["-m", "uvicorn", "--app-dir", "bench/peers", "spacy_serve:app"]
    + ["--log-level", "warning"],
}


def sentences(count: int) -> list[str]:
    found, words = [], []
    for line in DEV.read_text().splitlines():
        if line.strip() and not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
        elif words:
            found.append(" ".join(words))
            words = []
        if len(found) == count:
            break
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    flag = ["--port", str(port)] + (["--host", "127.0.0.1"] if name == "spacy_sm" else [])
    process = subprocess.Popen(
        [sys.executable, *SERVERS[name], *flag], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                if b" 200 " in s.recv(100):
                    return process, port
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{name} did not start")


async def client(port: int, texts: list[str], offset: int, stop: float, latencies: list[float]):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    while time.perf_counter() < stop:
        body = json.dumps({"text": texts[i % len(texts)]}).encode()
        i += 1
        began = time.perf_counter()
        writer.write(
            b"POST /v1/annotate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode())
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - began)
    writer.close()


async def load(port: int, texts: list[str], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    began = time.perf_counter()
    await asyncio.gather(*(client(port, texts, i * 7, stop, latencies) for i in range(clients)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short repeats (smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    args = parser.parse_args()
    seconds, repeats = (0.5, 5) if args.quick else (1.5, 5)
    texts = sentences(500)
    figures: dict[str, dict] = {}
    for name in SERVERS:
        process, port = start(name)
        try:
            asyncio.run(load(port, texts, 8, 1.0))  # warm-up: caches, allocator
            for clients in (1, 8, 64):
                runs = [asyncio.run(load(port, texts, clients, seconds)) for _ in range(repeats)]
                figures[f"{name}@{clients}"] = {
                    key: {
                        "median": statistics.median(r[key] for r in runs),
                        "min": min(r[key] for r in runs),
                        "max": max(r[key] for r in runs),
                    }
                    for key in ("rps", "p50_ms", "p99_ms")
                }
        finally:
            process.terminate()
            process.wait(30)
    info = machine_info(threads=1)
    print(f"\nCPU: {info['cpu']} ({info['cores']} cores), server torch threads 1\n")
    print("| server | clients | requests/s (range) | p50 ms | p99 ms | req/s ÷ unbatched |")
    print("|---|---|---|---|---|---|")
    for key, f in figures.items():
        name, clients = key.split("@")
        ratio = f["rps"]["median"] / figures[f"unbatched@{clients}"]["rps"]["median"]
        print(
            f"| {name} | {clients} | {f['rps']['median']:.0f} ({f['rps']['min']:.0f}–"
            f"{f['rps']['max']:.0f}) | {f['p50_ms']['median']:.1f} | {f['p99_ms']['median']:.1f}"
            f" | {ratio:.2f}× |"
        )
    write_results(args.out, figures, info)


if __name__ == "__main__":
    main()
