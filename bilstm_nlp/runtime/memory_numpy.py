"""Document memory without torch: the keys that say which tokens are one word in one document,
and the mean over a word's other occurrences, for ONNX models (`backend.OnnxTagger`).

A document-memory tagger (`nn/memory.py`) reads, beside each token, what the other occurrences of
its word in its document say. The keys are shared with the torch path (`decode_torch`), which
takes the memory over documents split across batches, as the ONNX path does here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from ..nn.ids import BatchArrays
from ..nn.vocab import PAD_ID, UNK_ID

# Keys are document * DOCUMENT_STRIDE + word key: room for 2**32 words and unknown spellings.
DOCUMENT_STRIDE = 1 << 32


class MemoryKeys:
    """Numbers (document, word) pairs consistently across the batches of one tagging call.

    A word is its (lower-cased) word id; an unknown word is its spelling (its characters, as the
    char encoder reads them), numbered past every word id. Documents are numbered in order of
    appearance.

    Args:
        words: the size of the model's word table.
    """

    def __init__(self, words: int):
        self.words = words
        self.spellings: dict[bytes, int] = {}
        self.documents: dict[Hashable, int] = {}

    def __call__(self, arrays: BatchArrays, documents: Sequence[Hashable]) -> np.ndarray:
        """`(real tokens,)` int64 keys of a padded batch's real tokens (`arrays.mask`, row by
        row), its rows belonging to `documents` (one per row)."""
        mask = arrays.mask
        word_ids = arrays.word_ids[mask]
        spelling_ids = arrays.spelling_ids[mask]
        word_keys = word_ids.astype(np.int64, copy=True)
        for position in np.flatnonzero(word_ids == UNK_ID):
            # The characters without the batch's padding, which differs from batch to batch.
            characters = arrays.char_ids[spelling_ids[position]]
            spelling = characters[characters != PAD_ID].tobytes()
            number = self.spellings.setdefault(spelling, len(self.spellings))
            word_keys[position] = self.words + number
        numbers = [self.documents.setdefault(d, len(self.documents)) for d in documents]
        doc_keys = np.repeat(np.asarray(numbers, dtype=np.int64), mask.sum(axis=1))
        return doc_keys * DOCUMENT_STRIDE + word_keys


def mean_of_others(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each row, the mean of the other rows with its key (zeros where there are none), as
    `nn.memory.mean_of_others` with every row real.

    Args:
        values: `(rows, dim)` float.
        keys: `(rows,)` int64.
    """
    if not len(keys):
        return np.zeros_like(values)
    groups, group_of = np.unique(keys, return_inverse=True)
    group_of = group_of.reshape(-1)
    # shape: (groups, dim): one bincount per column (dim is the tag count: a handful)
    sums = np.stack(
        [np.bincount(group_of, weights=column, minlength=len(groups)) for column in values.T],
        axis=1,
    )
    counts = np.bincount(group_of, minlength=len(groups))
    others = sums[group_of] - values
    return (others / np.maximum(counts[group_of] - 1, 1)[:, None]).astype(values.dtype)
