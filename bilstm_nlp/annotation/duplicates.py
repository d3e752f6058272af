"""Near-duplicate texts: word 3-shingles of a normalised text, compared by exact Jaccard similarity.

Used by selection (`selection.choose`) so that one batch of documents to annotate never holds two
near-copies of a text (news wires repeat a story, a sports table differs only in its scores), and
so that a text already labelled is not offered again. Texts are normalised first: lower case,
every run of digits one `0`, white space collapsed; a text of fewer than three words is its own
single shingle (so it matches only its exact normalised copy).

Matching goes through an inverted index from shingle to the texts held, so a query costs the
postings of its own shingles, not a pass over everything held; the similarity is computed exactly
(no MinHash estimate), so a pair at or above the threshold is never missed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable

MAX_SIMILARITY = 0.8
"""Two texts whose shingle sets have a Jaccard similarity at least this are near-duplicates."""
SHINGLE_WORDS = 3

_DIGITS = re.compile(r"\d+")


def normalise_text(text: str) -> str:
    """Lower case, each run of digits `0`, runs of white space one space, no outer white space."""
    return " ".join(_DIGITS.sub("0", text.lower()).split())


def shingles(text: str) -> frozenset[str]:
    """The word 3-shingles of `normalise_text(text)`; the whole text for fewer than 3 words; empty
    for a text without words."""
    words = normalise_text(text).split(" ")
    if words == [""]:
        return frozenset()
    if len(words) < SHINGLE_WORDS:
        return frozenset([" ".join(words)])
    return frozenset(
        " ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)
    )


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """`|a ∩ b| / |a ∪ b|`; 0 for two empty sets."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class NearDuplicates:
    """Texts held by key, and a query for one held text that a new text nearly duplicates.

    Args:
        threshold: the Jaccard similarity of shingle sets at which two texts are near-duplicates.
    """

    def __init__(self, threshold: float = MAX_SIMILARITY) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
        self.threshold = threshold
        self._postings: dict[str, list[Hashable]] = {}
        self._sizes: dict[Hashable, int] = {}
        self._order: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._sizes)

    def add(self, key: Hashable, text_shingles: frozenset[str]) -> None:
        """Hold a text (its `shingles`) under `key`; a text without words is not held."""
        if key in self._sizes:
            raise ValueError(f"key {key!r} is held already")
        if not text_shingles:
            return
        self._sizes[key] = len(text_shingles)
        self._order[key] = len(self._order)
        for shingle in text_shingles:
            self._postings.setdefault(shingle, []).append(key)

    def match(self, text_shingles: frozenset[str]) -> Hashable | None:
        """The key of the first-held text that `text_shingles` nearly duplicates, or None."""
        if not text_shingles:
            return None
        shared: Counter[Hashable] = Counter()
        for shingle in text_shingles:
            shared.update(self._postings.get(shingle, ()))
        size = len(text_shingles)
        # In holding order, so the answer never depends on the order a set iterates in.
        for key in sorted(shared, key=self._order.__getitem__):
            common = shared[key]
            if common / (size + self._sizes[key] - common) >= self.threshold:
                return key
        return None
