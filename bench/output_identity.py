"""Fingerprints of what every shipped model outputs, to show a change altered none of it.

    python bench/output_identity.py runs/identity-before
    ... change the code ...
    python bench/output_identity.py runs/identity-after --compare runs/identity-before

For each shipped model: `bilstm-nlp tag -f jsonl` (and `-k 3` for taggers) on the CoNLL-2003
dev sentences as text, a sentence per line, and `bilstm-nlp evaluate --json` on the model's own
dev data. The outputs are kept in OUT with their SHA-256 in OUT/fingerprints.json; `--compare`
names every file that differs byte for byte and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

CORPORA = Path("../shared/corpora")
DEV_DATA = {
    "ner": [str(CORPORA / "conll2003/dev.txt")],
    "pos": [str(CORPORA / "ud_ewt/dev.conllu")],
    "chunk": [str(CORPORA / "conll2000/train.txt"), "--dev-from-train", "last:1000"],
    "sentiment": [str(CORPORA / "sst/dev.txt")],
}


def dev_text(conll: Path) -> str:
    """CoNLL-2003 sentences as text lines: tokens joined by spaces, -DOCSTART- left out."""
    lines, tokens = [], []
    for line in conll.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if tokens and tokens != ["-DOCSTART-"]:
                lines.append(" ".join(tokens))
            tokens = []
        else:
            tokens.append(line.split()[0])
    return "\n".join(lines) + "\n"


def run_cli(args: list[str], stdin: str | None = None) -> bytes:
    command = [sys.executable, "-m", "bilstm_nlp.cli", *args]
    done = subprocess.run(command, input=stdin.encode() if stdin else None, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr.decode()}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path, help="An earlier OUT to compare with")
    parser.add_argument("--models", nargs="*", default=list(DEV_DATA))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    text = dev_text(CORPORA / "conll2003/dev.txt")
    outputs: dict[str, bytes] = {}
    for name in args.models:
        outputs[f"{name}.tag.jsonl"] = run_cli(["tag", "-m", name, "-f", "jsonl"], text)
        if name != "sentiment":  # k-best paths are a tagger's
            k3 = ["tag", "-m", name, "-f", "jsonl", "-k", "3"]
            outputs[f"{name}.tag-k3.jsonl"] = run_cli(k3, text)
        outputs[f"{name}.evaluate.json"] = run_cli(["evaluate", name, *DEV_DATA[name], "--json"])
    fingerprints = {}
    for file_name, content in outputs.items():
        (args.out / file_name).write_bytes(content)
        fingerprints[file_name] = hashlib.sha256(content).hexdigest()
    (args.out / "fingerprints.json").write_text(json.dumps(fingerprints, indent=2) + "\n")
    print("| output | bytes | sha256 |\n|---|---:|---|")
    for file_name, digest in fingerprints.items():
        print(f"| {file_name} | {len(outputs[file_name])} | {digest[:16]} |")
    if args.compare:
        before = json.loads((args.compare / "fingerprints.json").read_text())
        differing = [f for f in fingerprints if before.get(f) != fingerprints[f]]
        missing = sorted(set(before) - set(fingerprints))
        for file_name in differing:
            print(f"differs: {file_name}")
        for file_name in missing:
            print(f"not produced: {file_name}")
        if differing or missing:
            raise SystemExit(1)
        print(f"all {len(fingerprints)} outputs byte-identical to {args.compare}")


if __name__ == "__main__":
    main()
