"""Tokens → ids: a sentence's word, casing and character ids, and padded batches of them as numpy
arrays.

Sits between the vocabularies and `encoding.py`, which wraps the arrays as torch tensors for the
model. Numpy only, so that the ONNX runtime encodes exactly as the torch model does without torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .vocab import PAD_ID, UNK_ID, Vocab, casing_of, word_key


@dataclass
class EncodedSentence:
    """One sentence as ids (no padding)."""

    word_ids: list[int]
    casing_ids: list[int]
    char_ids: Sequence[Sequence[int]]
    label_ids: list[int] | None  # a tag id per token, or one class id, or None


@dataclass
class BatchArrays:
    """A padded batch as numpy arrays: `Batch`'s fields with the same shapes and meanings, int64
    ids and a bool mask (what an ONNX model takes)."""

    word_ids: np.ndarray
    casing_ids: np.ndarray
    char_ids: np.ndarray
    spelling_ids: np.ndarray
    mask: np.ndarray
    tag_ids: np.ndarray | None


def encode_tokens(
    tokens: Sequence[str],
    vocab: Vocab,
    max_word_chars: int,
    label_ids: list[int] | None = None,
) -> EncodedSentence:
    """Ids of one sentence. Unknown words and characters map to `<unk>`."""
    unknown_chars = UNK_ID
    char_id = vocab.chars._ids.get
    return EncodedSentence(
        word_ids=vocab.words.ids((word_key(t) for t in tokens), default=UNK_ID),
        casing_ids=[casing_of(t) for t in tokens],
        char_ids=[
            [char_id(c, unknown_chars) for c in t[:max_word_chars]] or [UNK_ID] for t in tokens
        ],
        label_ids=label_ids,
    )


class TokenEncoder:
    """`encode_tokens` with the ids of each distinct token remembered: prediction sees the same
    words again and again, and looking a token up once beats lower-casing, classifying its casing
    and mapping its characters every time.

    Args:
        vocab: the model's vocabularies (frozen).
        max_word_chars: characters per word kept for the char encoder.
        cache_size: distinct tokens remembered; the memory is cleared when it is full, so it stays
            bounded on any input.
    """

    def __init__(self, vocab: Vocab, max_word_chars: int, cache_size: int = 200_000) -> None:
        self.vocab = vocab
        self.max_word_chars = max_word_chars
        self.cache_size = cache_size
        # Tuples of ints, which the garbage collector stops tracking; lists made it rescan the
        # whole memory again and again.
        self._codes: dict[str, tuple[int, int, tuple[int, ...]]] = {}

    def __call__(self, tokens: Sequence[str]) -> EncodedSentence:
        codes = self._codes
        rows = list(map(codes.get, tokens))
        if None in rows:
            missing = list(
                dict.fromkeys(t for t, row in zip(tokens, rows, strict=True) if row is None)
            )
            if len(codes) + len(missing) > self.cache_size:
                codes.clear()
                missing = list(dict.fromkeys(tokens))
            word_id = self.vocab.words._ids.get
            char_id = self.vocab.chars._ids.get
            width = self.max_word_chars
            unknown = itertools.repeat(UNK_ID)  # endless: never used up across tokens
            for token in missing:
                # As `encode_tokens`, without building a sentence per miss; `map` over a repeat
                # of the default beats a generator by half.
                chars = tuple(map(char_id, token[:width], unknown)) or (UNK_ID,)
                codes[token] = (word_id(word_key(token), UNK_ID), casing_of(token), chars)
            rows = [codes[t] for t in tokens]
        return EncodedSentence(
            word_ids=[row[0] for row in rows],
            casing_ids=[row[1] for row in rows],
            char_ids=[row[2] for row in rows],
            label_ids=None,
        )


def collate_arrays(
    sentences: Sequence[EncodedSentence], sentence_labels: bool = False
) -> BatchArrays:
    """Pad encoded sentences into `BatchArrays`. An empty sentence becomes one padding token that
    the mask marks real, so every row has `mask[:, 0]` True (the CRF needs it); callers drop its
    output."""
    batch = len(sentences)
    lengths = [len(s.word_ids) for s in sentences]
    seq_len = max(max(lengths), 1)
    # Each distinct spelling once, in order of first appearance, and each token's spelling row.
    spellings: dict[tuple[int, ...], int] = {}
    token_spellings = [
        spellings.setdefault(tuple(chars), len(spellings))
        for s in sentences
        for chars in s.char_ids
    ]
    unique_chars = list(spellings) or [(PAD_ID,)]
    # All characters of all spellings, flattened, and where each goes: one scatter instead of a
    # Python loop.
    char_counts = np.fromiter(map(len, unique_chars), dtype=np.int64, count=len(unique_chars))
    char_len = max(int(char_counts.max(initial=1)), 1)
    flat_chars = np.fromiter(
        itertools.chain.from_iterable(unique_chars), dtype=np.int64, count=int(char_counts.sum())
    )
    char_ids = np.zeros((len(unique_chars), char_len), dtype=np.int64)
    char_starts = np.cumsum(char_counts) - char_counts
    char_positions = np.arange(len(flat_chars)) - np.repeat(char_starts, char_counts)
    char_ids[np.repeat(np.arange(len(unique_chars)), char_counts), char_positions] = flat_chars
    word_ids = np.zeros((batch, seq_len), dtype=np.int64)
    casing_ids = np.zeros((batch, seq_len), dtype=np.int64)
    spelling_ids = np.zeros((batch, seq_len), dtype=np.int64)
    mask = np.arange(seq_len)[None, :] < np.maximum(np.asarray(lengths), 1)[:, None]
    real = np.arange(seq_len)[None, :] < np.asarray(lengths)[:, None]
    # row-major order of the real positions is sentence order, as token_spellings is built
    spelling_ids[real] = np.asarray(token_spellings, dtype=np.int64)
    has_labels = all(s.label_ids is not None for s in sentences)
    labels = np.zeros((batch,) if sentence_labels else (batch, seq_len), dtype=np.int64)
    for row, sentence in enumerate(sentences):
        length = lengths[row]
        if length == 0:
            continue
        word_ids[row, :length] = sentence.word_ids
        casing_ids[row, :length] = sentence.casing_ids
        if has_labels:
            if sentence_labels:
                labels[row] = sentence.label_ids[0]  # type: ignore[index]
            else:
                labels[row, :length] = sentence.label_ids
    tag_ids = labels if has_labels else None
    return BatchArrays(word_ids, casing_ids, char_ids, spelling_ids, mask, tag_ids)


__all__ = ["BatchArrays", "EncodedSentence", "TokenEncoder", "collate_arrays", "encode_tokens"]
