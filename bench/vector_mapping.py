"""Map the pretrained-only word vectors into the space training moved the training words to.

    python bench/vector_mapping.py --model runs/conll2003-docmem-60ep-s1 --output runs/mapped-s1
        [--ridge 1.0]
    python bench/generalisation.py --model runs/conll2003-docmem-60ep-s1 --model runs/mapped-s1

Training fine-tunes the vectors of the words it sees; the words it never sees (a test split's
unseen names among them) keep their pretrained vectors, which may no longer sit where the
fine-tuned neighbours went. This fits one affine map from each training word's pretrained vector to
its fine-tuned one (ridge regression pulled towards the identity, so a small `--ridge` trusts the
fit and a large one leaves the vectors as they were; Madhyastha et al. 2016), applies it to the
pretrained-only rows and saves the model with those rows replaced. Nothing else of the model
changes, so dev F1 before and after (`bench/generalisation.py`, by entity novelty) says what the
map gives the unseen names.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results  # noqa: E402

from bilstm_nlp import load  # noqa: E402
from bilstm_nlp.nn.embeddings import load_vectors  # noqa: E402
from bilstm_nlp.nn.vocab import PAD_ID, UNK_ID  # noqa: E402
from bilstm_nlp.serialize import save_model  # noqa: E402


def fit_affine_map(source: np.ndarray, target: np.ndarray, ridge: float) -> np.ndarray:
    """`(dim + 1, dim)` map M minimising |[source, 1] M - target|² + ridge |M - [I; 0]|²."""
    dim = source.shape[1]
    inputs = np.hstack([source, np.ones((len(source), 1), dtype=source.dtype)]).astype(np.float64)
    prior = np.vstack([np.eye(dim), np.zeros((1, dim))])
    gram = inputs.T @ inputs + ridge * np.eye(dim + 1)
    return np.linalg.solve(gram, inputs.T @ target.astype(np.float64) + ridge * prior)


def apply_affine_map(vectors: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    ones = np.ones((len(vectors), 1), dtype=np.float64)
    return (np.hstack([vectors.astype(np.float64), ones]) @ mapping).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a trained model folder")
    parser.add_argument("--output", required=True, help="where the mapped model is saved")
    parser.add_argument("--ridge", type=float, default=1.0)
    parser.add_argument("--out", default="bench/results/vector_mapping.json")
    args = parser.parse_args()

    model = load(args.model)
    vocab, embedder = model.vocab, model.embedder
    if model.config.vectors is None:
        sys.exit(f"error: {args.model} was trained without pretrained vectors")
    words, matrix = load_vectors(model.config.vectors)
    index = {word: i for i, word in enumerate(words)}
    trained = embedder.word_embedding.weight.detach().numpy()
    # Training words that have a pretrained vector: where both ends of the move are known.
    pairs = [
        (row, index[word])
        for row, word in enumerate(vocab.words.items[: vocab.trainable_words])
        if row not in (PAD_ID, UNK_ID) and word in index
    ]
    rows, sources = (np.asarray(part) for part in zip(*pairs, strict=True))
    source, target = np.asarray(matrix[sources], dtype=np.float32), trained[rows]
    mapping = fit_affine_map(source, target, args.ridge)

    def residual(predicted: np.ndarray) -> float:
        return float(np.mean(np.sum((predicted - target) ** 2, axis=1)))

    fixed = embedder.fixed_embedding.weight.detach().numpy()
    with torch.no_grad():
        embedder.fixed_embedding.weight.copy_(torch.from_numpy(apply_affine_map(fixed, mapping)))
    save_model(model, args.output)
    # How far each word moved, as a share of its pretrained vector's length.
    relative = np.linalg.norm(target - source, axis=1) / np.linalg.norm(source, axis=1)
    most = np.argsort(-relative)[:10]
    result = {
        "model": args.model,
        "output": args.output,
        "ridge": args.ridge,
        "training_words_with_vectors": len(pairs),
        "pretrained_only_words": int(fixed.shape[0]),
        # The identity map's residual: how far training moved the words, squared.
        "mean_squared_move_of_training_words": round(residual(source), 4),
        "residual_map": round(residual(apply_affine_map(source, mapping)), 4),
        "mean_squared_length": round(float(np.mean(np.sum(source**2, axis=1))), 4),
        "relative_move_percentiles": {
            str(q): round(float(np.percentile(relative, q)), 4) for q in (50, 90, 99, 100)
        },
        "moved_most": {vocab.words.items[rows[i]]: round(float(relative[i]), 3) for i in most},
    }
    print(json.dumps(result, indent=2))
    # One entry per mapped model: the runs of several seeds and ridges land in one file.
    out = Path(args.out)
    figures = json.loads(out.read_text())["figures"] if out.is_file() else {}
    write_results(out, figures | {args.output: result}, machine_info(torch.get_num_threads()))


if __name__ == "__main__":
    main()
