"""Tagging speed of the code at two git revisions, interleaved, so a noisy machine hits both alike.

    python bench/revision_speed_ab.py e2228d7 HEAD [--rounds 5] [--threads 1] [--calls 5]
        [--per-call N]

Each revision is checked out in a temporary worktree; each round runs one process per revision in
turn, which tags the 2,001 pre-split UD EWT dev sentences (or `--data`: a CoNLL-U file, or a
CoNLL column file such as CoNLL-2003's, token first) with `--model` (batch 256, with
confidences, 1 thread unless --threads says otherwise) --calls times (5) after a warm-up (with
`--per-call N`, each time as calls of N sentences: 1 is what the spaCy component does for a text
of one sentence, and the service for a request of one), and
prints the median tokens/s with its range, and all the calls' tokens over their summed time (what
tagging a corpus call after call gets: a slow call that the median hides, such as one with a full
garbage collection, counts there). Each process also counts the full garbage collections in its
timed calls and their time, and times `TokenEncoder.encode_batch` over the same batches: a new
encoder's first pass (every token new) and the median of 10 passes more (every token known).
Writes bench/results/revision_speed_ab.json.

Which model each revision loads: a shipped name (`--model ner`, the default) or an absolute path
is the same model for both (a name is the installed package's: this checkout's, in the README's
editable install), so the code is what differs; a relative path is read in
each worktree, so `--model models/ner` gives each revision the model it shipped (the product as it
was against the product as it is).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MIN_REPEATS, check_repeats, cpu_model, machine_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIMING = """
import gc, json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
import bilstm_nlp
from bilstm_nlp.decode import length_batches
from bilstm_nlp.nn.ids import TokenEncoder
sentences, tokens = [], []
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.rstrip("\\n")
    if not line:
        if tokens: sentences.append(tokens); tokens = []
    elif not line.startswith("#"):
        columns = line.split("\\t")
        if len(columns) > 1:
            if columns[0].isdigit(): tokens.append(columns[1])
        elif not line.startswith("-DOCSTART-"):
            tokens.append(line.split()[0])
model = bilstm_nlp.load(sys.argv[2])
bilstm_nlp.tag_sentences(model, sentences[:300])
full = []
def watch(phase, info, started=[0.0]):
    if info["generation"] == 2:
        if phase == "start": started[0] = time.perf_counter()
        else: full.append(time.perf_counter() - started[0])
gc.callbacks.append(watch)
per_call = int(sys.argv[5]) or len(sentences)
times = []
for _ in range(int(sys.argv[4])):
    start = time.perf_counter()
    for i in range(0, len(sentences), per_call):
        bilstm_nlp.tag_sentences(model, sentences[i : i + per_call], batch_size=256)
    times.append(time.perf_counter() - start)
gc.callbacks.remove(watch)
count = sum(map(len, sentences))
batches = [[sentences[i] for i in b] for b in length_batches(list(map(len, sentences)), 256)]
encoder = TokenEncoder(model.vocab, model.config.max_word_chars)
def encode_all():
    start = time.perf_counter()
    for batch in batches: encoder.encode_batch(batch)
    return time.perf_counter() - start
cold = encode_all()
warm = statistics.median(encode_all() for _ in range(10))
print(json.dumps({
    "median": count / statistics.median(times), "slowest": count / max(times),
    "fastest": count / min(times), "overall": count * len(times) / sum(times),
    "full_collections": len(full), "full_collection_ms": 1000 * sum(full),
    "encode_cold_ms": 1000 * cold, "encode_warm_ms": 1000 * warm,
}))
"""
PER_PROCESS = ("full_collections", "full_collection_ms", "encode_cold_ms", "encode_warm_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=MIN_REPEATS, help="at least 5")
    parser.add_argument(
        "--model", default="ner", help="the same for both; a relative path: each revision's own"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per process")
    parser.add_argument(
        "--per-call", type=int, default=0, help="sentences per tag_sentences call (0: all)"
    )
    parser.add_argument("--data", default=str(ROOT.parent / "shared/corpora/ud_ewt/dev.conllu"))
    parser.add_argument("--out", default="bench/results/revision_speed_ab.json")
    args = parser.parse_args()
    check_repeats(parser, args.rounds, flag="--rounds")
    if args.per_call < 0:
        parser.error("--per-call must be 0 (all) or more")
    args.data = str(Path(args.data).resolve())  # the processes run in the worktrees
    runs: dict[str, list[list[float]]] = {args.a: [], args.b: []}
    with tempfile.TemporaryDirectory() as folder:
        trees = {}
        for revision in runs:
            trees[revision] = Path(folder) / revision.replace("/", "_")
            subprocess.run(
                ["git", "worktree", "add", "-q", "--detach", str(trees[revision]), revision],
                cwd=ROOT,
                check=True,
            )
        try:
            for _ in range(args.rounds):
                for revision, tree in trees.items():
                    done = subprocess.run(
                        [
                            sys.executable,
                            "-c",
                            TIMING,
                            args.data,
                            args.model,
                            str(args.threads),
                            str(args.calls),
                            str(args.per_call),
                        ],
                        cwd=tree,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    runs[revision].append(json.loads(done.stdout))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    threads = f"{args.threads} thread" + ("s" if args.threads > 1 else "")
    calls = f", {args.per_call} sentences per call" if args.per_call else ""
    print(f"{args.model}, {threads}{calls}, {cpu_model()}\n")
    print(
        "| revision | round medians, tokens/s | median | range | all calls' tokens over their "
        "time, median of rounds |\n|---|---|---:|---:|---:|"
    )
    figures = {}
    for revision, rounds in runs.items():
        medians = [r["median"] for r in rounds]
        overall = statistics.median(r["overall"] for r in rounds)
        low, high = min(r["slowest"] for r in rounds), max(r["fastest"] for r in rounds)
        figures[revision] = {"round_medians": medians, "median": statistics.median(medians)}
        figures[revision] |= {"min": low, "max": high, "calls": args.calls}
        figures[revision] |= {"round_overall": [r["overall"] for r in rounds], "overall": overall}
        for key in PER_PROCESS:
            figures[revision][key] = [r[key] for r in rounds]
        shown = ", ".join(f"{m:,.0f}" for m in medians)
        median = statistics.median(medians)
        print(f"| {revision} | {shown} | {median:,.0f} | {low:,.0f}-{high:,.0f} | {overall:,.0f} |")
    print(
        "\nIn the timed calls, per process (median of rounds): full garbage collections and their "
        "ms; then `TokenEncoder.encode_batch` over the same batches, a new encoder's first pass "
        "and the median of 10 more (ms).\n\n| revision | full collections | their ms | encoding, "
        "first pass | encoding, again |\n|---|---:|---:|---:|---:|"
    )
    for revision, rounds in runs.items():
        cells = [statistics.median(r[key] for r in rounds) for key in PER_PROCESS]
        print(f"| {revision} | {cells[0]:g} | {cells[1]:.0f} | {cells[2]:.1f} | {cells[3]:.1f} |")
    write_results(Path(args.out), figures, machine_info(args.threads))


if __name__ == "__main__":
    main()
