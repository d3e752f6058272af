"""Examples → `Batch`: padded id tensors and a bool mask, with length bucketing.

Sits between the vocabularies and the model. Sentences are encoded to ids once (`EncodedSentence`,
in `ids.py`, numpy only), then batched many times; batches group sentences of similar length so
padding stays small.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .ids import BatchArrays, EncodedSentence, TokenEncoder, collate_arrays, encode_tokens
from .vocab import PAD_ID, UNK_ID


@dataclass
class Batch:
    """Padded tensors for a batch of sentences.

    Attributes:
        word_ids: `(batch, seq_len)` long.
        casing_ids: `(batch, seq_len)` long.
        char_ids: `(spellings, char_len)` long, the characters of each distinct spelling in the
            batch, left-aligned and padded with `PAD_ID`; at least one row.
        spelling_ids: `(batch, seq_len)` long, the row of `char_ids` that spells each token (0 at
            padding). Char features are computed once per spelling: a batch repeats its frequent
            words many times over.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned.
        tag_ids: `(batch, seq_len)` long gold tags (taggers) or `(batch,)` gold classes, or None.
        doc_ids: `(batch,)` long, the document each sentence belongs to (equal ids, one
            document), read by a model with `doc_memory`; None: each sentence a document of its
            own.
    """

    word_ids: Tensor
    casing_ids: Tensor
    char_ids: Tensor
    spelling_ids: Tensor
    mask: Tensor
    tag_ids: Tensor | None
    doc_ids: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.word_ids.to(device),
            self.casing_ids.to(device),
            self.char_ids.to(device),
            self.spelling_ids.to(device),
            self.mask.to(device),
            None if self.tag_ids is None else self.tag_ids.to(device),
            None if self.doc_ids is None else self.doc_ids.to(device),
        )

    @classmethod
    def from_arrays(cls, arrays: BatchArrays) -> Batch:
        """The tensors of padded arrays (shared memory, no copy)."""
        tensors = (
            torch.from_numpy(a)
            for a in (arrays.word_ids, arrays.casing_ids, arrays.char_ids, arrays.spelling_ids)
        )
        tag_ids = None if arrays.tag_ids is None else torch.from_numpy(arrays.tag_ids)
        return cls(*tensors, torch.from_numpy(arrays.mask), tag_ids)

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())


def collate(sentences: Sequence[EncodedSentence], sentence_labels: bool = False) -> Batch:
    """Pad encoded sentences into a `Batch` (`ids.collate_arrays` as tensors)."""
    return Batch.from_arrays(collate_arrays(sentences, sentence_labels))


def bucket_batches(
    lengths: Sequence[int],
    batch_size: int,
    rng: random.Random,
    bucket_factor: int = 50,
) -> Iterator[list[int]]:
    """Indices of training sentences grouped into batches of similar length, in a random order.

    Sentences are shuffled, cut into windows of `bucket_factor * batch_size`, sorted by length
    inside each window and cut into batches; the batch order is then shuffled. Prediction sorts by
    length itself (least padding); this is for training, where each epoch needs another order.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * bucket_factor
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    yield from batches


def document_batches(
    documents: Sequence[int], batch_size: int, rng: random.Random
) -> Iterator[list[int]]:
    """Indices of training sentences in batches of whole documents, in a random order (for a
    model with document memory, which reads a word's occurrences in the rest of its batch).

    Documents are shuffled and packed in that order: a batch takes documents while they fit in
    `batch_size` sentences; a longer document is cut into batches of `batch_size` consecutive
    sentences. The batch order is then shuffled.

    Args:
        documents: the document of each sentence (equal numbers, one document).
    """
    members: dict[int, list[int]] = {}
    for index, document in enumerate(documents):
        members.setdefault(document, []).append(index)
    groups = list(members.values())
    rng.shuffle(groups)
    batches: list[list[int]] = []
    current: list[int] = []
    for group in groups:
        if len(group) > batch_size:
            batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
            continue
        if len(current) + len(group) > batch_size:
            batches.append(current)
            current = []
        current.extend(group)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    yield from batches


def batch_doc_ids(
    documents: Sequence[int], alone: float = 0.0, rng: random.Random | None = None
) -> Tensor:
    """`Batch.doc_ids` for sentences of the given documents: the documents numbered from 0 in
    order of appearance; with `alone`, each sentence is made a document of its own with that
    probability (drawn from `rng`)."""
    numbers: dict[object, int] = {}
    ids = []
    for position, document in enumerate(documents):
        key: object = document
        if alone > 0 and rng is not None and rng.random() < alone:
            key = ("alone", position)
        ids.append(numbers.setdefault(key, len(numbers)))
    return torch.tensor(ids, dtype=torch.long)


def word_dropout(
    word_ids: Tensor,
    mask: Tensor,
    rate: float,
    entity_tokens: Tensor | None = None,
    entity_rate: float = 0.0,
) -> Tensor:
    """Replace real words by `<unk>` with probability `rate` (training only), so the model learns
    the unknown-word embedding and leans on char features for rare words; with `entity_tokens`
    (`(batch, seq_len)` bool), those tokens with probability `entity_rate` instead."""
    if entity_tokens is None or entity_rate <= 0:
        if rate <= 0:
            return word_ids
        threshold: float | Tensor = rate
    else:
        threshold = torch.where(entity_tokens, entity_rate, rate)
    drop = (torch.rand(word_ids.shape, device=word_ids.device) < threshold) & mask
    return torch.where(drop, torch.full_like(word_ids, UNK_ID), word_ids)


__all__ = [
    "Batch",
    "BatchArrays",
    "EncodedSentence",
    "PAD_ID",
    "TokenEncoder",
    "batch_doc_ids",
    "bucket_batches",
    "collate",
    "document_batches",
    "encode_tokens",
    "word_dropout",
]
