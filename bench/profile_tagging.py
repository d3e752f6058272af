"""Where `tag_sentences` spends its time: py-spy samples of the model-alone loop of bench/run.py.

    python bench/profile_tagging.py [--model ner] [--seconds 25] [--out FILE]

Tags the 2,001 pre-split UD EWT dev sentences with the shipped model (batch 256, with
confidences, 1 thread) over and over under `py-spy record` (from the `[bench]` extra), then prints
the share of samples inside `tag_sentences` that each bilstm_nlp function (with its line) holds,
callees included. Writes bench/results/profile_tagging.json (or --out).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EWT_DEV = Path("../shared/corpora/ud_ewt/dev.conllu")
LOOP = """
import sys, time, torch
torch.set_num_threads(1)
from bilstm_nlp import load, tag_sentences
from bilstm_nlp.corpus.loading import load_tagging
model = load(sys.argv[1])
sentences = [list(tokens) for tokens in load_tagging(dev=sys.argv[2])["dev"]["tokens"][:]]
end = time.time() + float(sys.argv[3])
while time.time() < end:
    tag_sentences(model, sentences, batch_size=256)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner")
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "profile_tagging.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "samples.txt"
        command = [
            str(Path(sys.executable).with_name("py-spy")), "record", "-r", "250", "-f", "raw",
            "-o", str(raw), "--", sys.executable, "-c", LOOP,
            args.model, str(EWT_DEV), str(args.seconds),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        total, shares = 0, collections.Counter()
        for line in raw.read_text().splitlines():
            stack, count = line.rsplit(" ", 1)
            if "tag_sentences" not in stack:
                continue
            total += int(count)
            for frame in set(stack.split(";")):
                if "bilstm_nlp" in frame:
                    shares[frame] += int(count)
    rows = [
        {"frame": frame, "share": count / total} for frame, count in shares.most_common(args.top)
    ]
    print(f"{total:,} samples inside tag_sentences ({args.model}, EWT dev, batch 256, 1 thread)")
    for row in rows:
        print(f"{100 * row['share']:5.1f}%  {row['frame']}")
    write_results(
        args.out,
        {"model": args.model, "samples": total, "frames": rows},
        machine_info(threads=1),
    )


if __name__ == "__main__":
    main()
