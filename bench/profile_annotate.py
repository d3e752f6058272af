"""Where raw-text annotation spends its time: a py-spy profile summarised by pipeline stage.

    python bench/profile_annotate.py [--model ner] [--tokens 300000] [--threads 1]

Runs `annotate_paths` (what `bilstm-nlp annotate` runs) on UD EWT dev's `# text` lines repeated
to `--tokens` spaCy tokens, one document per line, into JSONL, under `py-spy record` (the `bench`
extra installs it) at 200 samples/s. Samples are counted from the start of `annotate_paths` only
(imports, model loading and building the input are left out) and assigned to the first stage
whose function is on the sampled stack, in the order of STAGES: so "BiLSTM" is time inside
`BiLSTMEncoder._stepped`/`stepped_bilstm` or `nn.LSTM.forward`, "char CNN" time inside
`CharCNN.forward`, and so on; "rest" is what no stage claims (batching, Python glue). The script
stops first if a STAGES marker names a function that no longer exists.

Prints a table and writes bench/results/profile_annotate.json (or --out) with the shares, the
tokens/s of the profiled run (py-spy slows it a little) and the machine.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "profile_annotate.json"

# (stage, functions that mark it as "module:qualname"), most specific first: a sample goes to the
# first stage one of whose functions is on its stack. py-spy names a frame by its qualname (Python
# 3.11+), which is what a stack is matched against; `check_stages` makes sure each still exists.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    (
        "BiLSTM (stepped, nn.LSTM, packing)",
        (
            "bilstm_nlp.nn.encoder:BiLSTMEncoder._stepped",
            "bilstm_nlp.nn.encoder:stepped_bilstm",
            "torch.nn.modules.rnn:LSTM.forward",
            "torch.nn.utils.rnn:pack_padded_sequence",
            "torch.nn.utils.rnn:pad_packed_sequence",
        ),
    ),
    (
        "char CNN",
        ("bilstm_nlp.nn.embeddings:CharCNN.forward", "bilstm_nlp.nn.embeddings:CharLSTM.forward"),
    ),
    ("word and casing embeddings", ("bilstm_nlp.nn.embeddings:TokenEmbedder.forward",)),
    ("emission layer", ("bilstm_nlp.nn.model:Tagger.forward",)),
    (
        "CRF: Viterbi",
        (
            "bilstm_nlp.runtime.crf_numpy:viterbi_decode",
            "bilstm_nlp.runtime.crf_numpy:viterbi_one",
            "bilstm_nlp.nn.heads:CRFHead.decode",
            "bilstm_nlp.nn.heads:SoftmaxHead.decode",
        ),
    ),
    (
        "CRF: marginals",
        (
            "bilstm_nlp.runtime.crf_numpy:forward_backward",
            "bilstm_nlp.runtime.crf_numpy:forward_backward_one",
            "bilstm_nlp.runtime.crf_numpy:marginals_from",
            "bilstm_nlp.nn.heads:CRFHead.marginals",
            "bilstm_nlp.nn.heads:SoftmaxHead.marginals",
        ),
    ),
    ("CRF: entity probabilities", ("bilstm_nlp.runtime.crf_numpy:entity_log_probs",)),
    (
        "token ids and padding",
        ("bilstm_nlp.decode:_batches", "bilstm_nlp.nn.ids:TokenEncoder.encode_batch"),
    ),
    (
        "tags to spans",
        ("bilstm_nlp.text.schemes:tags_to_spans", "bilstm_nlp.text.schemes:BatchSpanReader.spans"),
    ),
    ("spaCy tokenizer and sentencizer", ("bilstm_nlp.text.tokenize:Tokenizer.pipe",)),
    (
        "PTB escapes",
        (
            "bilstm_nlp.text.tokenize:PtbEscapes.apply",
            "bilstm_nlp.text.tokenize:PtbEscapes.apply_document",
        ),
    ),
    (
        "records and JSON",
        (
            "bilstm_nlp.annotation.annotator:Annotation.to_record",
            "bilstm_nlp.annotation.writers.jsonl:JsonlWriter.encode",
        ),
    ),
    ("reading input", ("bilstm_nlp.annotation.jobs:read_windows",)),
]


def check_stages() -> None:
    """Fail on a marker that names no function: renamed code would otherwise land in "rest"."""
    missing = []
    for stage, marks in STAGES:
        for mark in marks:
            module, _, qualname = mark.partition(":")
            try:
                target = importlib.import_module(module)
                for part in qualname.split("."):
                    target = getattr(target, part)
            except (ImportError, AttributeError):
                missing.append(f"{stage}: {mark}")
                continue
            if not callable(target):
                missing.append(f"{stage}: {mark} (not a function)")
    if missing:
        raise SystemExit("STAGES names functions that do not exist:\n  " + "\n  ".join(missing))


def _frame_names(marks: tuple[str, ...]) -> set[str]:
    return {mark.partition(":")[2] for mark in marks}


_CHILD = """
import sys, time, torch
sys.path.insert(0, {bench!r})
from annotate_speed import build_text, ewt_lines
from bilstm_nlp.annotation.files import annotate_paths
from bilstm_nlp.serialize import load_model
torch.set_num_threads({threads})
text, tokens = build_text(ewt_lines(), {tokens})
open({source!r}, "w", encoding="utf-8").write(text)
model = load_model({model!r})
start = time.perf_counter()
stats = annotate_paths([{source!r}], model, {output!r})
print("tokens/s", stats.tokens / (time.perf_counter() - start))
"""


def summarise(raw: Path) -> tuple[Counter[str], int]:
    """Samples per stage, counting only stacks inside `annotate_paths`."""
    per_stage: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        functions = [frame.split(" (")[0] for frame in stack.split(";")]
        if "annotate_paths" not in functions:
            continue
        samples = int(count)
        total += samples
        present = set(functions)
        stage = next(
            (name for name, marks in STAGES if present.intersection(_frame_names(marks))), "rest"
        )
        per_stage[stage] += samples
    return per_stage, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner")
    parser.add_argument("--tokens", type=int, default=300_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    check_stages()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).is_file():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        child = _CHILD.format(
            bench=str(ROOT / "bench"),
            threads=args.threads,
            tokens=args.tokens,
            source=str(work / "in.txt"),
            output=str(work / "out.jsonl"),
            model=args.model,
        )
        raw = work / "profile.txt"
        command = [py_spy, "record", "-r", "200", "-f", "raw", "-o", str(raw), "--"]
        result = subprocess.run(
            [*command, sys.executable, "-c", child],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        # py-spy prints its own lines on stdout too
        speed = next(
            float(line.split()[1])
            for line in result.stdout.splitlines()
            if line.startswith("tokens/s ")
        )
        per_stage, total = summarise(raw)
    shares = {stage: 100 * count / total for stage, count in per_stage.most_common()}
    print(f"annotate_paths, model {args.model}, {args.threads} thread(s), {speed:,.0f} tokens/s")
    print("under py-spy\n")
    print("| stage | share of annotation time |\n|---|---:|")
    for stage, share in shares.items():
        print(f"| {stage} | {share:.1f}% |")
    figures = {"model": args.model, "tokens_per_second": speed, "samples": total, "shares": shares}
    write_results(args.out, figures, machine_info(args.threads))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
