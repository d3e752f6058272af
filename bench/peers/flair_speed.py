"""flair side of bench/run.py: a SequenceTagger with our architecture, training epoch and inference.

Run by the peer venv's python (bench/.peers/venv), never imported by the project:

    bench/.peers/venv/bin/python bench/peers/flair_speed.py --data DATA.json --vectors GLOVE.txt \
        --cache bench/.peers --hidden 100 [--train-epochs 1] [--threads 1,2] [--repeats 1]

The tagger mirrors bilstm-nlp's shipped NER model: GloVe 6B 50d word vectors (flair's
`WordEmbeddings` on a gensim KeyedVectors file made from the kumo package; static, flair's
default), character features (flair's `CharacterEmbeddings`, a char BiLSTM: 30-dim characters,
2 x 25 outputs, the 50 features of our char CNN), one BiLSTM layer of `--hidden` per direction,
no re-projection, a CRF over BIOES tags. Nothing is downloaded: the vectors and the character
dictionary are local files (flair's defaults would fetch both).

DATA.json holds `train` (sentences as {"tokens": [...], "spans": [[start, end, label], ...]},
token offsets, end exclusive) and `predict` (pre-split sentences, lists of tokens).

Training: `--train-epochs` epochs over `train` with SGD (lr 0.015, momentum 0.9, gradient
clipping at 5, as ours), batches of `--train-batch` sentences in a seeded random order: the inner
loop of flair's ModelTrainer (forward_loss, backward, clip, step) without its evaluation and
checkpointing; 1 thread.

Inference: `predict` as flair Sentences (built inside the timed region, as ours encodes token
lists inside its timing), `SequenceTagger.predict(mini_batch_size=--batch)`, once per thread count
in `--threads` after a warm-up. Prints one JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path


def log(message: str) -> None:
    print(f"    [flair] {message}", file=sys.stderr, flush=True)


def keyed_vectors(text_path: Path, cache: Path) -> Path:
    """A gensim KeyedVectors file of the word2vec text file (made once, then reused)."""
    from gensim.models import KeyedVectors

    target = cache / (text_path.stem + ".kv")
    if not target.is_file():
        log(f"converting {text_path.name} to gensim KeyedVectors (once)")
        vectors = KeyedVectors.load_word2vec_format(str(text_path), binary=False)
        vectors.save(str(target))
    return target


def char_dictionary(chars: list[str], cache: Path) -> Path:
    """A flair character Dictionary saved locally, so CharacterEmbeddings downloads nothing."""
    from flair.data import Dictionary

    target = cache / "flair_chars.pkl"
    dictionary = Dictionary(add_unk=True)
    for char in chars:
        dictionary.add_item(char)
    dictionary.save(target)
    return target


def build_tagger(args, chars: list[str], labels: list[str]):
    from flair.data import Dictionary
    from flair.embeddings import CharacterEmbeddings, StackedEmbeddings, WordEmbeddings
    from flair.models import SequenceTagger

    cache = Path(args.cache)
    words = WordEmbeddings(str(keyed_vectors(Path(args.vectors), cache)))
    characters = CharacterEmbeddings(
        str(char_dictionary(chars, cache)),
        char_embedding_dim=args.char_dim,
        hidden_size_char=args.char_hidden,
    )
    tag_dictionary = Dictionary(add_unk=False)
    for label in labels:
        tag_dictionary.add_item(label)
    tag_dictionary.span_labels = True
    torch_seed(args.seed)
    return SequenceTagger(
        embeddings=StackedEmbeddings([words, characters]),
        tag_dictionary=tag_dictionary,
        tag_type="ner",
        tag_format="BIOES",
        hidden_size=args.hidden,
        rnn_layers=1,
        use_crf=True,
        reproject_embeddings=False,
        dropout=0.0,
        word_dropout=0.05,
        locked_dropout=0.5,
    )


def torch_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def labelled_sentences(rows: list[dict]):
    from flair.data import Sentence

    sentences = []
    for row in rows:
        sentence = Sentence(row["tokens"])
        for start, end, label in row["spans"]:
            sentence[start:end].add_label("ner", label)
        sentences.append(sentence)
    return sentences


def train_epochs(model, sentences, args) -> list[dict]:
    import torch
    from flair.training_utils import store_embeddings

    torch.set_num_threads(args.train_threads)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.015, momentum=0.9)
    rng = random.Random(args.seed)
    epochs = []
    for epoch in range(1, args.train_epochs + 1):
        model.train()
        order = list(range(len(sentences)))
        rng.shuffle(order)
        tokens = 0
        total_loss = 0.0
        start = time.perf_counter()
        for first in range(0, len(order), args.train_batch):
            batch = [sentences[i] for i in order[first : first + args.train_batch]]
            optimizer.zero_grad()
            loss, count = model.forward_loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            store_embeddings(batch, "none")
            tokens += sum(len(s) for s in batch)
            total_loss += float(loss.detach())
        seconds = time.perf_counter() - start
        epochs.append(
            {
                "epoch": epoch,
                "seconds": seconds,
                "tokens": tokens,
                "tokens_per_s": tokens / seconds,
                "loss_per_sentence": total_loss / len(sentences),
            }
        )
        log(f"epoch {epoch}: {seconds:.1f} s, {tokens / seconds:,.0f} tokens/s")
    return epochs


def predict_runs(model, token_lists, threads: int, args) -> dict:
    import torch
    from flair.data import Sentence

    torch.set_num_threads(threads)
    model.eval()
    tokens = sum(len(t) for t in token_lists)

    def once() -> int:
        sentences = [Sentence(t) for t in token_lists]
        model.predict(sentences, mini_batch_size=args.batch, embedding_storage_mode="none")
        return sum(len(s.get_labels("ner")) for s in sentences)

    warm = [Sentence(t) for t in token_lists[: max(len(token_lists) // 10, 1)]]
    model.predict(warm, mini_batch_size=args.batch, embedding_storage_mode="none")
    times, spans = [], 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        spans = once()
        times.append(time.perf_counter() - start)
    rates = sorted(tokens / t for t in times)
    log(f"predict, {threads} thread(s): {statistics.median(rates):,.0f} tokens/s")
    return {
        "threads": threads,
        "sentences": len(token_lists),
        "tokens": tokens,
        "median_tokens_per_s": statistics.median(rates),
        "min_tokens_per_s": rates[0],
        "max_tokens_per_s": rates[-1],
        "median_seconds": statistics.median(times),
        "repeats": len(times),
        "predicted_spans": spans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="JSON with train and predict sentences")
    parser.add_argument("--vectors", required=True, help="GloVe as a word2vec text file")
    parser.add_argument("--chars", required=True, help="JSON list of characters (ours)")
    parser.add_argument("--labels", required=True, help="entity types, comma-separated")
    parser.add_argument("--cache", required=True, help="folder for the converted files")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--char-dim", type=int, default=30)
    parser.add_argument("--char-hidden", type=int, default=25)
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--threads", default="1,2", help="thread counts for inference")
    parser.add_argument("--batch", type=int, default=256, help="mini_batch_size for predict")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import flair
    import gensim
    import torch

    data = json.loads(Path(args.data).read_text(encoding="utf-8"))
    chars = json.loads(Path(args.chars).read_text(encoding="utf-8"))
    labels = args.labels.split(",")
    started = time.perf_counter()
    model = build_tagger(args, chars, labels)
    build_seconds = time.perf_counter() - started
    log(f"tagger built in {build_seconds:.1f} s")
    report = {
        "versions": {
            "flair": flair.__version__,
            "gensim": gensim.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "architecture": {
            "word_embeddings": "WordEmbeddings(GloVe 6B 50d KeyedVectors), static (flair default)",
            "char_embeddings": f"CharacterEmbeddings(char_embedding_dim={args.char_dim}, "
            f"hidden_size_char={args.char_hidden}) = {2 * args.char_hidden} features",
            "embedding_length": model.embeddings.embedding_length,
            "hidden_per_direction": args.hidden,
            "rnn_layers": 1,
            "crf": True,
            "tag_format": "BIOES",
            "num_tags": len(model.label_dictionary),
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        },
        "build_seconds": build_seconds,
        "training": None,
        "predict": [],
        "pid_threads_env": os.environ.get("OMP_NUM_THREADS"),
    }
    if args.train_epochs > 0 and data.get("train"):
        sentences = labelled_sentences(data["train"])
        report["training"] = {
            "sentences": len(sentences),
            "batch": args.train_batch,
            "threads": args.train_threads,
            "optimizer": "SGD lr 0.015 momentum 0.9, clip 5",
            "epochs": train_epochs(model, sentences, args),
        }
    for threads in [int(t) for t in args.threads.split(",") if t]:
        report["predict"].append(predict_runs(model, data["predict"], threads, args))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
