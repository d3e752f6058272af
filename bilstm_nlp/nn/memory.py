"""Document memory: what a word's other occurrences in its document say, beside each token.

Sits between the encoder and a tagger's head (`ModelConfig.doc_memory`). A name is often tagged
with clear context in one sentence of a story and stands bare in another (a headline, a results
table); the head then reads, beside a token's own BiLSTM state, the mean of the states of the
same word elsewhere in its document (the document-level memory of Luo et al. 2020,
"Hierarchical Contextualized Representation for Named Entity Recognition", AAAI).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .encoding import Batch
from .vocab import UNK_ID


def document_memory(features: Tensor, batch: Batch) -> Tensor:
    """For each token, the mean of `features` over the other occurrences of its word in its
    document (zeros where there are none).

    Occurrences are the same lower-cased word (the word table is lower-cased), or for unknown
    words the same spelling. Sentences share a document where `batch.doc_ids` are equal; with no
    `doc_ids` each sentence is its own document.

    Args:
        features: `(batch, seq_len, dim)` float, contextual features (zeros at padding).
        batch: the batch they are of: word and spelling ids, mask, doc ids.
    Returns:
        `(batch, seq_len, dim)` float; zeros at padding.
    """
    size, seq_len, dim = features.shape
    mask = batch.mask
    docs = batch.doc_ids
    if docs is None:
        docs = torch.arange(size, device=features.device)
    # Unknown words are told apart by their spelling, numbered past every word id.
    word_ids = batch.word_ids
    words = torch.where(word_ids == UNK_ID, int(word_ids.max()) + 1 + batch.spelling_ids, word_ids)
    # shape: (batch, seq_len): one key per (document, word)
    keys = docs.unsqueeze(1) * (int(words.max()) + 1) + words
    memory = mean_of_others(features.reshape(-1, dim), keys.reshape(-1), mask.reshape(-1))
    return memory.view(size, seq_len, dim)


def mean_of_others(values: Tensor, keys: Tensor, real: Tensor) -> Tensor:
    """For each row, the mean of the other real rows with its key (zeros where there are none).

    Args:
        values: `(rows, dim)` float.
        keys: `(rows,)` long, equal for rows of one group.
        real: `(rows,)` bool, False for rows to leave out (padding): they lend and get nothing.
    Returns:
        `(rows, dim)` float; zeros at rows not real.
    """
    keys = keys.masked_fill(~real, -1)
    groups, group_of = torch.unique(keys, return_inverse=True)
    weight = real.to(values.dtype).unsqueeze(1)
    values = values * weight
    # shape: (groups, dim) sums and (groups,) counts over real rows
    sums = values.new_zeros(len(groups), values.shape[1]).index_add_(0, group_of, values)
    counts = values.new_zeros(len(groups)).index_add_(0, group_of, weight[:, 0])
    # The others of each row: its group's sum and count less itself.
    others = sums[group_of] - values
    other_counts = (counts[group_of] - 1).clamp(min=1).unsqueeze(1)
    return others / other_counts * weight
