"""Tokens → ids: a sentence's word, casing and character ids, and padded batches of them as numpy
arrays.

Sits between the vocabularies and `encoding.py`, which wraps the arrays as torch tensors for the
model. Numpy only, so that the ONNX runtime encodes exactly as the torch model does without torch.
"""

from __future__ import annotations

import itertools
import threading
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
    """`encode_tokens` with every distinct token remembered: prediction sees the same words again
    and again, and looking a token up once beats lower-casing it, classifying its casing and
    mapping its characters every time. A token is remembered as one row of ids (word, casing,
    spelling), a distinct spelling as its character ids once, so that a batch of remembered
    tokens is placed with numpy alone.

    Args:
        vocab: the model's vocabularies (frozen).
        max_word_chars: characters per word kept for the char encoder.
        cache_size: distinct tokens remembered; the memory is cleared when it is full, so it stays
            bounded on any input (a batch with more distinct tokens than this is encoded without
            being remembered).
    """

    def __init__(self, vocab: Vocab, max_word_chars: int, cache_size: int = 200_000) -> None:
        self.vocab = vocab
        self.max_word_chars = max_word_chars
        self.cache_size = cache_size
        self._memory = _TokenMemory()
        self._adding = threading.Lock()
        self._word_id = vocab.words._ids.get
        self._char_id = vocab.chars._ids.get
        # `map` over an endless repeat of the default beats a generator by half.
        self._unknown = itertools.repeat(UNK_ID)
        self._absent = itertools.repeat(-1)
        self._char_table = _code_point_table(vocab.chars.items)

    @property
    def remembered(self) -> int:
        """Distinct tokens in memory."""
        return len(self._memory.index)

    def __call__(self, tokens: Sequence[str]) -> EncodedSentence:
        memory, rows = self._token_rows(list(tokens))
        codes = memory.codes[rows]
        return EncodedSentence(
            word_ids=codes[:, 0].tolist(),
            casing_ids=codes[:, 1].tolist(),
            char_ids=[self._chars(t) for t in tokens],
            label_ids=None,
        )

    def encode_batch(self, token_lists: Sequence[Sequence[str]]) -> BatchArrays:
        """The padded `BatchArrays` of sentences: `collate_arrays` of each sentence's encoding,
        the same arrays, each token's ids taken from memory (a batch repeats its frequent words
        many times over, and calls repeat them again) and placed with numpy rather than token by
        token."""
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        flat = list(itertools.chain.from_iterable(token_lists))
        memory, rows = self._token_rows(flat)
        # shape: (tokens, 3): each token's word, casing and spelling id
        codes = memory.codes[rows]
        if flat:
            # Distinct spellings in order of first appearance, as `collate_arrays` numbers them.
            distinct, first, inverse = np.unique(
                codes[:, 2], return_index=True, return_inverse=True
            )
            order = np.argsort(first, kind="stable")
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            token_spellings = rank[inverse.reshape(-1)]
            char_ids = memory.char_matrix(distinct[order])
        else:
            token_spellings = np.zeros(0, dtype=np.int64)
            char_ids = _char_matrix([])
        seq_len = max(int(lengths.max(initial=0)), 1)
        shape = (len(token_lists), seq_len)
        real = np.arange(seq_len)[None, :] < lengths[:, None]
        word_ids, casing_ids, spelling_ids = (np.zeros(shape, dtype=np.int64) for _ in range(3))
        # row-major order of the real positions is sentence order, as `flat` is
        word_ids[real] = codes[:, 0]
        casing_ids[real] = codes[:, 1]
        spelling_ids[real] = token_spellings
        mask = np.arange(seq_len)[None, :] < np.maximum(lengths, 1)[:, None]
        return BatchArrays(word_ids, casing_ids, char_ids, spelling_ids, mask, None)

    def _token_rows(self, tokens: list[str]) -> tuple[_TokenMemory, np.ndarray]:
        """The memory that holds every one of `tokens`, and each token's row in it; tokens not
        in memory are encoded and remembered first (in a memory of their own, not kept, when
        they alone outgrow `cache_size`)."""
        memory = self._memory
        rows = np.fromiter(
            map(memory.index.get, tokens, self._absent), dtype=np.int64, count=len(tokens)
        )
        if not len(rows) or rows.min() >= 0:
            return memory, rows
        # Adding is one thread at a time (a model's kept encoder may serve several); reading
        # needs no lock: a token enters the index only once its ids and characters are stored.
        with self._adding:
            memory = self._memory
            missing = list(dict.fromkeys(t for t in tokens if t not in memory.index))
            if len(memory.index) + len(missing) > self.cache_size:
                memory = self._memory = _TokenMemory()
                missing = list(dict.fromkeys(tokens))
                if len(missing) > self.cache_size:
                    memory = _TokenMemory()
            self._remember(memory, missing)
        index = memory.index
        return memory, np.fromiter(map(index.__getitem__, tokens), np.int64, len(tokens))

    def _remember(self, memory: _TokenMemory, tokens: list[str]) -> None:
        """Encode distinct tokens as `encode_tokens` does and add them to `memory`."""
        count = len(tokens)
        word_ids = np.fromiter(
            map(self._word_id, map(word_key, tokens), self._unknown), np.int64, count
        )
        casing_ids = np.fromiter(map(casing_of, tokens), np.int64, count)
        flat_chars, char_counts = self._char_ids(tokens)
        spelling_ids = memory.add_spellings(flat_chars, char_counts)
        memory.add_tokens(tokens, np.stack([word_ids, casing_ids, spelling_ids], axis=1))

    def _chars(self, token: str) -> tuple[int, ...]:
        """A token's character ids, as `encode_tokens` gives them."""
        return tuple(map(self._char_id, token[: self.max_word_chars], self._unknown)) or (UNK_ID,)

    def _char_ids(self, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every token's character ids (`_chars`) end to end, and how many each has."""
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
        return flat_ids, counts


class _TokenMemory:
    """What a `TokenEncoder` remembers: each distinct token's row of ids (word, casing,
    spelling), and each distinct spelling's character ids once, all spellings end to end with
    where each starts and how long it is. Arrays grow by doubling."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        # shape: (capacity, 3): word, casing and spelling id of each token row
        self.codes = np.zeros((0, 3), dtype=np.int64)
        self._spellings: dict[bytes, int] = {}
        self._chars = np.zeros(0, dtype=np.int64)
        self._char_count = 0
        self._starts = np.zeros(0, dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.int64)

    def add_tokens(self, tokens: list[str], codes: np.ndarray) -> None:
        first = len(self.index)
        self.codes = _reserve(self.codes, first + len(tokens))
        self.codes[first : first + len(tokens)] = codes
        self.index.update(zip(tokens, range(first, first + len(tokens)), strict=True))

    def add_spellings(self, flat_chars: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The spelling id of each run of `counts` characters of `flat_chars`, those not yet
        known added."""
        ends = np.cumsum(counts).tolist()
        data = flat_chars.tobytes()
        width = flat_chars.itemsize
        known = self._spellings
        ids, new_starts, new_lengths = [], [], []
        start = 0
        for end in ends:
            key = data[start * width : end * width]
            spelling = known.get(key)
            if spelling is None:
                spelling = known[key] = len(known)
                new_starts.append(start)
                new_lengths.append(end - start)
            ids.append(spelling)
            start = end
        if new_starts:
            starts = np.asarray(new_starts, dtype=np.int64)
            lengths = np.asarray(new_lengths, dtype=np.int64)
            total = int(lengths.sum())
            offsets = np.cumsum(lengths) - lengths
            source = np.repeat(starts - offsets, lengths) + np.arange(total)
            first_char, first_spelling = self._char_count, len(known) - len(new_starts)
            self._chars = _reserve(self._chars, first_char + total)
            self._chars[first_char : first_char + total] = flat_chars[source]
            self._char_count += total
            self._starts = _reserve(self._starts, len(known))
            self._lengths = _reserve(self._lengths, len(known))
            self._starts[first_spelling : len(known)] = offsets + first_char
            self._lengths[first_spelling : len(known)] = lengths
        return np.asarray(ids, dtype=np.int64)

    def char_matrix(self, spellings: np.ndarray) -> np.ndarray:
        """`_char_matrix` of the given spelling ids' characters."""
        starts, lengths = self._starts[spellings], self._lengths[spellings]
        matrix = np.zeros((len(spellings), max(int(lengths.max(initial=1)), 1)), dtype=np.int64)
        offsets = np.cumsum(lengths) - lengths
        columns = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths)
        rows = np.repeat(np.arange(len(spellings)), lengths)
        matrix[rows, columns] = self._chars[np.repeat(starts, lengths) + columns]
        return matrix


def _reserve(array: np.ndarray, size: int) -> np.ndarray:
    """`array`, or a copy with room for at least `size` rows (twice as many as it had)."""
    if size <= len(array):
        return array
    grown = np.zeros((max(size, 2 * len(array)), *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


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
