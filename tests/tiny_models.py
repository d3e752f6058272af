"""A tiny untrained tagger saved as a model folder, for tests of the model files themselves; six
labelled reviews for tests that train classifiers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bilstm_nlp.config import ModelConfig
from bilstm_nlp.nn.meta import ModelMeta
from bilstm_nlp.nn.model import Tagger
from bilstm_nlp.nn.vocab import Vocab
from bilstm_nlp.serialize import save_model


def save_tiny_tagger(directory: Path, meta: dict[str, Any]) -> Path:
    """A BIOES tagger answering in IOB1, seeded, with 8-dim words and 6 hidden units."""
    torch.manual_seed(0)
    vocab = Vocab.build(
        [["EU", "rejects", "German", "call"]],
        ["B-ORG", "E-ORG", "O", "S-MISC", "S-ORG"],
        ["the", "a"],
        2,
    )
    config = ModelConfig(vectors=None, word_dim=8, hidden=6, char_hidden=4, char_dim=4)
    declared = ModelMeta.from_json(meta, kind="tagger", scheme="BIOES", output_scheme="IOB1")
    return save_model(Tagger(config, vocab, declared), directory)


# Six labelled reviews: a classifier learns them in a few epochs.
REVIEWS = [
    ("a wonderful , moving film", "positive"),
    ("dull and lifeless", "negative"),
    ("an instant classic", "positive"),
    ("a waste of time", "negative"),
    ("great acting and a great story", "positive"),
    ("boring , predictable mess", "negative"),
]


def write_reviews(path: Path, rows) -> Path:
    """`(text, label)` rows as a JSONL file."""
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    return path
