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
    """`encode_tokens` with the word and casing ids of each distinct token remembered: prediction
    sees the same words again and again, and looking a token up once beats lower-casing and
    classifying its casing every time. Characters are mapped a batch at a time in numpy.

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
        self._codes: dict[str, tuple[int, int]] = {}
        self._word_id = vocab.words._ids.get
        self._char_id = vocab.chars._ids.get
        # `map` over an endless repeat of the default beats a generator by half.
        self._unknown = itertools.repeat(UNK_ID)
        self._char_table = _code_point_table(vocab.chars.items)

    def __call__(self, tokens: Sequence[str]) -> EncodedSentence:
        rows = self._rows(tokens)
        return EncodedSentence(
            word_ids=[row[0] for row in rows],
            casing_ids=[row[1] for row in rows],
            char_ids=[self._chars(t) for t in tokens],
            label_ids=None,
        )

    def encode_batch(self, token_lists: Sequence[Sequence[str]]) -> BatchArrays:
        """The padded `BatchArrays` of sentences: `collate_arrays` of each sentence's encoding,
        the same arrays, made from each distinct token of the batch once (a batch repeats its
        frequent words many times over) and placed with numpy rather than token by token."""
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        flat = list(itertools.chain.from_iterable(token_lists))
        # Distinct tokens in order of first appearance, as `collate_arrays` meets their spellings.
        distinct = list(dict.fromkeys(flat))
        rows = self._rows(distinct)
        spelling_of, char_ids = self._spellings(distinct)
        position = dict(zip(distinct, range(len(distinct)), strict=True))
        token_rows = np.fromiter(map(position.__getitem__, flat), dtype=np.int64, count=len(flat))
        seq_len = max(int(lengths.max(initial=0)), 1)
        shape = (len(token_lists), seq_len)
        real = np.arange(seq_len)[None, :] < lengths[:, None]
        word_ids, casing_ids, spelling_ids = (np.zeros(shape, dtype=np.int64) for _ in range(3))
        # shape: (distinct, 2): each distinct token's word and casing id
        codes = np.fromiter(
            itertools.chain.from_iterable(rows), dtype=np.int64, count=2 * len(rows)
        ).reshape(len(rows), 2)
        # row-major order of the real positions is sentence order, as `flat` is
        word_ids[real] = codes[token_rows, 0]
        casing_ids[real] = codes[token_rows, 1]
        spelling_ids[real] = spelling_of[token_rows]
        mask = np.arange(seq_len)[None, :] < np.maximum(lengths, 1)[:, None]
        return BatchArrays(word_ids, casing_ids, char_ids, spelling_ids, mask, None)

    def _rows(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """Each token's (word id, casing id), remembered."""
        codes = self._codes
        rows = list(map(codes.get, tokens))
        if None in rows:
            self._remember(
                list(dict.fromkeys(t for t, r in zip(tokens, rows, strict=True) if r is None))
            )
            rows = [codes.get(t) or self._code(t) for t in tokens]
        return rows  # type: ignore[return-value]

    def _code(self, token: str) -> tuple[int, int]:
        """A token's (word id, casing id), as `encode_tokens` gives them."""
        return (self._word_id(word_key(token), UNK_ID), casing_of(token))

    def _chars(self, token: str) -> tuple[int, ...]:
        """A token's character ids, as `encode_tokens` gives them."""
        return tuple(map(self._char_id, token[: self.max_word_chars], self._unknown)) or (UNK_ID,)

    def _spellings(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each token's row of the char matrix, and the matrix: `_char_matrix` of the tokens'
        distinct character-id sequences in order of first appearance, as `collate_arrays`
        makes it."""
        if not tokens:
            return np.zeros(0, dtype=np.int64), _char_matrix([])
        kept = [t[: self.max_word_chars] or " " for t in tokens]
        counts = np.fromiter(map(len, kept), dtype=np.int64, count=len(kept))
        starts = np.cumsum(counts) - counts
        # UTF-32 gives each character its code point; surrogatepass keeps lone surrogates (text
        # decoded with surrogateescape) as the characters they are.
        code_points = np.frombuffer(
            "".join(kept).encode("utf-32-le", "surrogatepass"), dtype=np.uint32
        ).astype(np.int64)
        table = self._char_table
        # The table's last entry answers every code point past it: unknown.
        flat_ids = table[np.minimum(code_points, len(table) - 1)]
        # An empty token (its stand-in " " above) reads as one unknown character.
        empty = np.fromiter((not t for t in tokens), dtype=bool, count=len(tokens))
        flat_ids[starts[empty]] = UNK_ID
        matrix = np.zeros((len(kept), int(counts.max())), dtype=np.int64)
        columns = np.arange(len(flat_ids)) - np.repeat(starts, counts)
        matrix[np.repeat(np.arange(len(kept)), counts), columns] = flat_ids
        # Each row's bytes are its key: distinct spellings in order of first appearance, and
        # the rows of the matrix made back from the keys.
        keys = matrix.view(np.dtype((np.void, matrix.shape[1] * 8))).ravel().tolist()
        distinct = dict.fromkeys(keys)
        rank = dict(zip(distinct, range(len(distinct)), strict=True))
        spelling_of = np.fromiter(map(rank.__getitem__, keys), dtype=np.int64, count=len(keys))
        spellings = np.frombuffer(b"".join(distinct), dtype=np.int64).reshape(len(distinct), -1)
        return spelling_of, spellings.copy()

    def _remember(self, missing: list[str]) -> None:
        """Encode tokens not in memory and keep them, clearing the memory first when it would
        outgrow `cache_size` (a call's tokens that do not fit are encoded without being kept)."""
        codes = self._codes
        if len(codes) + len(missing) > self.cache_size:
            codes.clear()
        kept = missing[: self.cache_size]
        word_ids = map(self._word_id, map(word_key, kept), self._unknown)
        codes.update(zip(kept, zip(word_ids, map(casing_of, kept), strict=True), strict=True))


def _code_point_table(chars: Sequence[str]) -> np.ndarray:
    """Char id by code point, for every code point up to the largest in `chars` plus one, which
    stands for all past it: `<unk>` where the vocabulary has no such character."""
    single = {ord(c): i for i, c in enumerate(chars) if len(c) == 1}
    table = np.full(max(single, default=-1) + 2, UNK_ID, dtype=np.int64)
    if single:
        table[np.fromiter(single, np.int64, len(single))] = np.fromiter(
            single.values(), np.int64, len(single)
        )
    return table


def _char_matrix(spellings: list[tuple[int, ...]]) -> np.ndarray:
    """`(spellings, char_len)`: each spelling's characters, left-aligned, padded with `PAD_ID`;
    one padding row where there is no spelling."""
    spellings = spellings or [(PAD_ID,)]
    # All characters of all spellings, flattened, and where each goes: one scatter instead of a
    # Python loop.
    counts = np.fromiter(map(len, spellings), dtype=np.int64, count=len(spellings))
    flat_chars = np.fromiter(
        itertools.chain.from_iterable(spellings), dtype=np.int64, count=int(counts.sum())
    )
    matrix = np.zeros((len(spellings), max(int(counts.max(initial=1)), 1)), dtype=np.int64)
    starts = np.cumsum(counts) - counts
    positions = np.arange(len(flat_chars)) - np.repeat(starts, counts)
    matrix[np.repeat(np.arange(len(spellings)), counts), positions] = flat_chars
    return matrix


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
    char_ids = _char_matrix(list(spellings))
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
