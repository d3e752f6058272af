"""Vocabularies: word, character and label ↔ id tables, saved as JSON lists in id order.

Sits after loading: built once from the training split (plus the pretrained-vector words kept), then
frozen inside the model directory so ids never shift between training and prediction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1

# Casing classes (Reimers & Gurevych 2017): lower-cased word lookup loses case, this keeps it.
CASINGS = (PAD, "numeric", "mainly_numeric", "lower", "upper", "title", "has_digit", "other")
_NUMERIC, _MAINLY_NUMERIC, _LOWER, _UPPER, _TITLE, _HAS_DIGIT, _OTHER = range(1, len(CASINGS))


def casing_of(token: str) -> int:
    """Id (index into CASINGS) of a token's casing class."""
    # Most tokens are letters only, and no letter is a digit: skip counting digits for them.
    if token.isalpha():
        if token.islower():
            return _LOWER
        if token.isupper():
            return _UPPER
        return _TITLE if token[0].isupper() else _OTHER
    digits = sum(ch.isdigit() for ch in token)
    if token.isdigit():
        return _NUMERIC
    if digits / max(len(token), 1) > 0.5:
        return _MAINLY_NUMERIC
    if digits:
        return _HAS_DIGIT
    if token.islower():
        return _LOWER
    if token.isupper():
        return _UPPER
    if token[:1].isupper():
        return _TITLE
    return _OTHER


def word_key(token: str) -> str:
    """The form a word is looked up by: lower-cased (casing is a separate feature)."""
    return token.lower()


@dataclass
class Index:
    """A string ↔ id table. Ids are list positions."""

    items: list[str]

    def __post_init__(self) -> None:
        self._ids = dict(zip(self.items, range(len(self.items)), strict=True))
        if len(self._ids) != len(self.items):
            raise ValueError("an index holds each string once")

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def id(self, item: str, default: int | None = None) -> int:
        found = self._ids.get(item, default)
        if found is None:
            raise KeyError(item)
        return found

    def ids(self, items: Iterable[str], default: int | None = None) -> list[int]:
        get = self._ids.get
        if default is None:
            return [self._ids[item] for item in items]
        return [get(item, default) for item in items]


@dataclass
class Vocab:
    """The tables a model needs: words (lower-cased), characters, and labels (tags or classes).

    Attributes:
        words: `<pad>`, `<unk>`, then words; ids index the word embedding.
        chars: `<pad>`, `<unk>`, then characters.
        labels: tag or class names in id order (the ClassLabel order of the training data).
        trainable_words: the first ids (`<pad>`, `<unk>` and the training words) get embeddings that
            training updates; the pretrained-only words after them keep their vectors, so they stay
            in the same space as the words training moved and cost no optimiser work.
    """

    words: Index
    chars: Index
    labels: Index
    trainable_words: int = -1

    def __post_init__(self) -> None:
        if self.trainable_words < 0:
            self.trainable_words = len(self.words)
        if not 2 <= self.trainable_words <= len(self.words):
            raise ValueError(f"trainable_words must lie in 2..{len(self.words)}")

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        labels: Sequence[str],
        pretrained_words: Sequence[str] = (),
        max_pretrained: int = 0,
    ) -> Vocab:
        """Build from the training tokens, keeping the first `max_pretrained` pretrained words too.

        Training words come first in frequency order (ties by first appearance), then pretrained
        words not yet present, in the vectors' own order (GloVe is sorted by frequency).
        """
        word_counts: Counter[str] = Counter()
        char_counts: Counter[str] = Counter()
        for tokens in token_lists:
            for token in tokens:
                word_counts[word_key(token)] += 1
                char_counts.update(token)
        words = [PAD, UNK] + [w for w, _ in word_counts.most_common() if w not in (PAD, UNK)]
        trainable = len(words)
        seen = set(words)
        for word in pretrained_words[:max_pretrained]:
            if word not in seen:
                words.append(word)
                seen.add(word)
        chars = [PAD, UNK] + [c for c, _ in char_counts.most_common()]
        return cls(Index(words), Index(chars), Index(list(labels)), trainable)

    def to_json(self) -> dict[str, list[str]]:
        return {"words": self.words.items, "chars": self.chars.items, "labels": self.labels.items}

    @classmethod
    def from_json(cls, values: dict[str, list[str]], trainable_words: int = -1) -> Vocab:
        return cls(
            Index(values["words"]), Index(values["chars"]), Index(values["labels"]), trainable_words
        )
