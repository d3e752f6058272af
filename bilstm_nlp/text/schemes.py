"""Tag schemes: tags ↔ spans, conversion, scheme detection and the allowed-transition sets.

Sits between the readers (which hand over tags as written in a file) and the models (which train and
decode in one scheme). Spans are read the way conlleval reads chunks, so a file that is not
canonical (CoNLL-2003 train has `B-MISC` after `O`) loses no entity, and writing spans back gives
canonical tags.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputFormatError

SCHEMES = ("IOB1", "IOB2", "BIOES")
_SCHEME_ALIASES = {
    "IOB1": "IOB1",
    "IOB2": "IOB2",
    "BIO": "IOB2",
    "BIOES": "BIOES",
    "IOBES": "BIOES",
    "BILOU": "BIOES",
}
# BILOU's L(ast) and U(nit) are BIOES's E(nd) and S(ingle).
_PREFIX_ALIASES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}
_PREFIXED_TAG = re.compile(r"^([BIESLU])-(.+)$")
OUTSIDE = "O"


@dataclass(frozen=True)
class Span:
    """A labelled run of tokens `tokens[start:end]` (end exclusive); `score`: its probability."""

    start: int
    end: int
    label: str
    score: float | None = None


@dataclass(frozen=True)
class AllowedTransitions:
    """Which tag sequences a scheme allows, as bool masks over tag ids (numpy arrays here, so
    that tagging with an ONNX model needs no torch; the CRF keeps them as torch buffers).

    Attributes:
        start: `(num_tags,)` True where a sequence may start with that tag.
        transitions: `(num_tags, num_tags)`; `[i, j]` True when tag i may be followed by tag j.
        end: `(num_tags,)` True where a sequence may end with that tag.
    """

    start: np.ndarray
    transitions: np.ndarray
    end: np.ndarray


def normalize_scheme(name: str) -> str:
    """Canonical scheme name (`"IOB1"`, `"IOB2"` or `"BIOES"`); aliases BIO, IOBES, BILOU accepted.

    Raises:
        ConfigError: the name is no known scheme.
    """
    canonical = _SCHEME_ALIASES.get(name.upper())
    if canonical is None:
        raise ConfigError(
            f"unknown tag scheme {name!r}: expected one of IOB1, IOB2, BIOES (or BILOU)"
        )
    return canonical


def normalize_written_scheme(name: str) -> str:
    """A scheme to write tags in: `normalize_scheme`'s name, except that BILOU stays BILOU
    (written as BIOES with `L-`/`U-` for `E-`/`S-`).

    Raises:
        ConfigError: the name is no known scheme.
    """
    return "BILOU" if name.upper() == "BILOU" else normalize_scheme(name)


# Every tagged sentence splits its tags; a tag set is small, so each is matched once (bounded,
# whatever a corpus holds).
@functools.lru_cache(maxsize=10_000)
def split_tag(tag: str) -> tuple[str, str | None]:
    """`"B-PER"` → `("B", "PER")`, `"O"` → `("O", None)`; BILOU prefixes map to BIOES ones.

    The type is split off at the first hyphen only (`I-creative-work` has type `creative-work`).

    Raises:
        ValueError: the tag is neither `O` nor `<B|I|E|S|L|U>-<type>`.
    """
    if tag == OUTSIDE:
        return OUTSIDE, None
    match = _PREFIXED_TAG.match(tag)
    if match is None:
        raise ValueError(
            f"tag {tag!r} fits no tag scheme: expected O or B-/I-/E-/S- followed by a type"
        )
    return _PREFIX_ALIASES[match.group(1)], match.group(2)


def is_entity_tagset(tags: Iterable[str]) -> bool:
    """True when labels are scheme tags (`O` or a prefixed tag), False for plain labels (POS)."""
    return any(tag == OUTSIDE or _PREFIXED_TAG.match(tag) for tag in tags)


def check_tag(tag: str, path: str | None = None, line: int | None = None) -> None:
    """Raise `InputFormatError` at `path:line` when `tag` fits no scheme (`X-PER`, `B-`)."""
    try:
        split_tag(tag)
    except ValueError as error:
        raise InputFormatError(str(error), path, line) from None


def _chunk_ends(prev: str, prev_type: str | None, cur: str, cur_type: str | None) -> bool:
    # conlleval's endOfChunk, for all schemes at once.
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", OUTSIDE):
        return True
    return prev != OUTSIDE and prev_type != cur_type


def _chunk_starts(prev: str, prev_type: str | None, cur: str, cur_type: str | None) -> bool:
    # conlleval's startOfChunk, for all schemes at once.
    if cur in ("B", "S"):
        return True
    if prev in ("E", "S", OUTSIDE) and cur in ("I", "E"):
        return True
    return cur != OUTSIDE and prev_type != cur_type


def tags_to_spans(tags: Sequence[str]) -> list[Span]:
    """Spans of a tag sequence in any scheme, read as conlleval (and seqeval's default mode) do.

    Any `B-`/`S-` starts an entity; an `I-X`/`E-X` that does not continue an `X` entity starts
    one too.

    Raises:
        ValueError: a tag fits no scheme.
    """
    spans: list[Span] = []
    start: int | None = None
    prev, prev_type = OUTSIDE, None
    for position, tag in enumerate(tags):
        # O after O neither ends nor starts a chunk; most tokens are O, and this loop runs for
        # every tagged sentence.
        if tag == OUTSIDE and prev == OUTSIDE:
            continue
        cur, cur_type = split_tag(tag)
        if start is not None and _chunk_ends(prev, prev_type, cur, cur_type):
            spans.append(Span(start, position, prev_type))  # type: ignore[arg-type]
            start = None
        if _chunk_starts(prev, prev_type, cur, cur_type):
            start = position
        prev, prev_type = cur, cur_type
    if start is not None:
        spans.append(Span(start, len(tags), prev_type))  # type: ignore[arg-type]
    return spans


def spans_to_tags(spans: Sequence[Span], length: int, scheme: str) -> list[str]:
    """Canonical tags in `scheme` for non-overlapping spans over `length` tokens.

    Raises:
        ValueError: spans overlap or fall outside `range(length)`.
    """
    scheme = normalize_scheme(scheme)
    ordered = sorted(spans, key=lambda s: s.start)
    previous_end = -1
    for span in ordered:
        if not 0 <= span.start < span.end <= length or span.start < previous_end:
            raise ValueError(f"span {span} overlaps another or lies outside 0..{length}")
        previous_end = span.end
    return _write_tags(ordered, length, scheme)


def _write_tags(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """`spans_to_tags` for spans in order, inside `range(length)` and apart, and a canonical
    scheme name."""
    tags = [OUTSIDE] * length
    previous_end, previous_label = -1, None
    for span in spans:
        start, end, label = span.start, span.end, span.label
        if scheme == "BIOES" and end - start == 1:
            tags[start] = "S-" + label
        elif scheme == "BIOES":
            tags[start + 1 : end - 1] = ["I-" + label] * (end - start - 2)
            tags[start] = "B-" + label
            tags[end - 1] = "E-" + label
        else:
            tags[start:end] = ["I-" + label] * (end - start)
            # IOB1 writes B- only where an entity directly follows one of the same type.
            if scheme == "IOB2" or (start == previous_end and label == previous_label):
                tags[start] = "B-" + label
        previous_end, previous_label = end, label
    return tags


class BatchSpanReader:
    """`tags_to_spans` for a batch of tag-id rows at once, in numpy (`SchemeWriting` writes
    their tags in a scheme).

    conlleval's reading depends only on neighbouring pairs of tags: an entity starts at t when
    `_chunk_starts(tag[t - 1], tag[t])` and ends before t when `_chunk_ends(tag[t - 1], tag[t])`
    (an entity is open exactly when the previous tag is not `O`), with `O` before the first token
    and after the last. Both are tables over tag-id pairs, so any rows, well formed or not, read
    as `tags_to_spans` reads each (`tests/test_schemes.py` checks it on random rows).

    Args:
        tags: the tag of each id.
    Raises:
        ValueError: a tag fits no scheme.
    """

    def __init__(self, tags: Sequence[str]) -> None:
        # The last id stands for the `O` before the first token and after the last.
        split = [split_tag(tag) for tag in tags] + [(OUTSIDE, None)]
        size = len(split)
        self._outside = size - 1
        self._starts = np.zeros((size, size), dtype=bool)
        self._ends = np.zeros((size, size), dtype=bool)
        for prev, (prev_prefix, prev_type) in enumerate(split):
            for cur, (cur_prefix, cur_type) in enumerate(split):
                self._starts[prev, cur] = _chunk_starts(
                    prev_prefix, prev_type, cur_prefix, cur_type
                )
                # never after `O`: that is where no entity is open
                self._ends[prev, cur] = _chunk_ends(prev_prefix, prev_type, cur_prefix, cur_type)
        self._types = [entity_type for _, entity_type in split]

    def spans(self, tag_ids: np.ndarray, lengths: np.ndarray) -> list[list[Span]]:
        """Each row's `tags_to_spans`, for rows of `(batch, seq_len)` tag ids of which the first
        `lengths[b]` are real."""
        batch, seq_len = tag_ids.shape
        real = np.arange(seq_len)[None, :] < lengths[:, None]
        # shape: (batch, seq_len + 2): the tags with `O` on either side of the real ones
        padded = np.full((batch, seq_len + 2), self._outside, dtype=np.int64)
        padded[:, 1:-1] = np.where(real, tag_ids, self._outside)
        start_rows, starts = np.nonzero(self._starts[padded[:, :-2], padded[:, 1:-1]])
        # an entity ending before t, for t up to each row's length
        _, ends = np.nonzero(self._ends[padded[:, :-1], padded[:, 1:]])
        labels = map(self._types.__getitem__, padded[start_rows, starts + 1].tolist())
        flat = list(map(Span, starts.tolist(), ends.tolist(), labels))
        counts = np.bincount(start_rows, minlength=batch).tolist()
        rows, position = [], 0
        for count in counts:
            rows.append(flat[position : position + count])
            position += count
        return rows


class SchemeWriting:
    """How tags of one label set are written in a scheme, and the probability of each written tag.

    Under conlleval's reading (`BatchSpanReader`), the tag written at t in any scheme is a
    function of the tags at t - 1, t and t + 1 through three facts: the type at t, how an
    entity starts there (not at all; right after an entity of the same type, which IOB1 writes
    `B-`; otherwise) and whether it ends there. The first two depend on the pair (t - 1, t), the
    last on (t, t + 1). Given the model's tag at t, the pairs on either side are independent
    under a linear-chain CRF (and under a softmax head, whose tokens are), so the probability of
    a written tag sums `p(a, b) p(b, c) / p(b)` over the triples that write it: exact, from
    neighbouring-pair marginals. The written tags are `spans_to_tags`'s of the spans read, for
    any rows, well formed or not (`tests/test_schemes.py`); the probabilities are those of
    enumerating every path (`tests/test_decode.py`).

    Args:
        tags: the label set (ids are list positions), in any scheme.
        scheme: the scheme to write in (`IOB1`, `IOB2`, `BIOES`; aliases as `normalize_scheme`).
    Raises:
        ValueError: a tag fits no scheme.
    """

    # How an entity starts at t: not at all, right after one of its type, or otherwise.
    _NO_START, _START_AFTER_SAME_TYPE, _START = 0, 1, 2

    def __init__(self, tags: Sequence[str], scheme: str) -> None:
        self.scheme = normalize_scheme(scheme)
        split = [split_tag(tag) for tag in tags]
        size = len(split)
        edge = (OUTSIDE, None)  # before the first token and after the last
        types = sorted({entity_type for _, entity_type in split if entity_type is not None})
        prefixes = "BIES" if self.scheme == "BIOES" else "BI"
        written = [OUTSIDE]
        written.extend(f"{prefix}-{entity_type}" for entity_type in types for prefix in prefixes)
        self.tags: tuple[str, ...] = tuple(written)
        self.ids = {tag: number for number, tag in enumerate(self.tags)}
        # shape: (size + 1, size): how an entity starts at a tag after a tag (or the edge)
        self.start_kinds = np.zeros((size + 1, size), dtype=np.int64)
        # shape: (size, size + 1): 1 where an entity ends at a tag before a tag (or the edge)
        self.end_kinds = np.zeros((size, size + 1), dtype=np.int64)
        # shape: (size, 3, 2): the written tag's id of (tag, start kind, ends here)
        self._written = np.zeros((size, 3, 2), dtype=np.int64)
        for cur, (cur_prefix, cur_type) in enumerate(split):
            for prev, (prev_prefix, prev_type) in enumerate([*split, edge]):
                if cur_type is not None and _chunk_starts(
                    prev_prefix, prev_type, cur_prefix, cur_type
                ):
                    adjacent = prev_prefix != OUTSIDE and prev_type == cur_type
                    kind = self._START_AFTER_SAME_TYPE if adjacent else self._START
                    self.start_kinds[prev, cur] = kind
            for following, (next_prefix, next_type) in enumerate([*split, edge]):
                ends = _chunk_ends(cur_prefix, cur_type, next_prefix, next_type)
                self.end_kinds[cur, following] = int(ends)
            for kind in range(3):
                for ends in (False, True):
                    self._written[cur, kind, int(ends)] = self.ids[
                        self._write(cur_type, kind, ends)
                    ]
        # Only BIOES writes where an entity ends: IOB1 and IOB2 need the pair before t alone.
        self.needs_ends = self.scheme == "BIOES"

    def _write(self, entity_type: str | None, kind: int, ends: bool) -> str:
        if entity_type is None:
            return OUTSIDE
        starts = kind != self._NO_START
        if self.scheme == "BIOES":
            prefix = ("S" if ends else "B") if starts else ("E" if ends else "I")
        elif self.scheme == "IOB2":
            prefix = "B" if starts else "I"
        else:
            prefix = "B" if kind == self._START_AFTER_SAME_TYPE else "I"
        return f"{prefix}-{entity_type}"

    def written_ids(self, tag_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The written tags, as ids into `tags`, of rows of tag ids `(batch, seq_len)` of which
        the first `lengths[b]` are real (`O`'s id, 0, at padding)."""
        batch, seq_len = tag_ids.shape
        edge = len(self._written)
        real = np.arange(seq_len)[None, :] < lengths[:, None]
        current = np.where(real, tag_ids, 0)
        padded = np.full((batch, seq_len + 2), edge, dtype=np.int64)
        padded[:, 1:-1] = np.where(real, tag_ids, edge)
        kinds = self.start_kinds[padded[:, :-2], current]
        ends = self.end_kinds[current, padded[:, 2:]]
        return np.where(real, self._written[current, kinds, ends], 0)

    def probabilities(
        self, starting: np.ndarray, ending: np.ndarray | None, written_ids: np.ndarray
    ) -> np.ndarray:
        """The probability of each written tag, at n positions.

        Args:
            starting: `(n, num_tags, 3)` p(tag at t, start kind at t), the kinds of
                `start_kinds` (`crf_numpy.neighbour_class_probs`).
            ending: `(n, num_tags, 2)` p(tag at t, whether an entity ends at t) by
                `end_kinds`; needed only when `needs_ends`.
            written_ids: `(n,)` the written tag at each position, as ids into `tags`.
        Returns:
            `(n,)` float64 probabilities in [0, 1].
        """
        count = starting.shape[2]
        if ending is None:
            # The written tag does not depend on the end: the same for both of its columns.
            chosen = self._written[None, :, :count, 0] == written_ids[:, None, None]
            return np.clip(np.where(chosen, starting, 0.0).sum((1, 2)), 0.0, 1.0)
        marginals = starting.sum(2)
        conditional = ending / np.where(marginals > 0.0, marginals, 1.0)[:, :, None]
        # shape: (n, num_tags, kinds, 2): p(tag, start kind, ends here)
        joint = starting[:, :, :, None] * conditional[:, :, None, :]
        chosen = self._written[None, :, :count] == written_ids[:, None, None, None]
        return np.clip(np.where(chosen, joint, 0.0).sum((1, 2, 3)), 0.0, 1.0)


def convert_tags(tags: Sequence[str], target: str) -> list[str]:
    """Tags in any scheme → canonical tags in `target`, keeping every span exactly."""
    return spans_to_tags(tags_to_spans(tags), len(tags), target)


# BIOES's E(nd) and S(ingle) as BILOU spells them, L(ast) and U(nit).
_BILOU_SPELLING = {"E-": "L-", "S-": "U-"}
_BIOES_SPELLING = {"L-": "E-", "U-": "S-"}


def spelt_bilou(tags: Sequence[str]) -> list[str]:
    """BIOES tags with BILOU's prefixes (`E-`→`L-`, `S-`→`U-`); the same spans."""
    return [_BILOU_SPELLING.get(tag[:2], tag[:2]) + tag[2:] for tag in tags]


def written_tags(spans: Sequence[Span], length: int, scheme: str) -> list[str]:
    """`spans_to_tags` in a scheme to write tags in (`normalize_written_scheme`'s): BILOU is
    BIOES spelt with `L-`/`U-`."""
    tags = spans_to_tags(spans, length, scheme)
    return spelt_bilou(tags) if normalize_written_scheme(scheme) == "BILOU" else tags


def spelt_bioes(tags: Sequence[str]) -> list[str]:
    """Tags with BILOU's prefixes spelt as BIOES's (`L-`→`E-`, `U-`→`S-`); others as they are."""
    return [_BIOES_SPELLING.get(tag[:2], tag[:2]) + tag[2:] for tag in tags]


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str | None:
    """The scheme a corpus is written in, or None for plain labels (POS tags and the like).

    BIOES when any `E-`/`S-` (or BILOU `L-`/`U-`) tag occurs; otherwise IOB1 when entities mostly
    start with `I-` (CoNLL-2003 has a few stray `B-` after `O`), else IOB2.

    Raises:
        ValueError: the labels mix plain labels with scheme tags.
    """
    i_starts = b_starts = 0
    saw_scheme_tag = saw_plain_tag = False
    for tags in tag_sequences:
        prev, prev_type = OUTSIDE, None
        for tag in tags:
            if tag != OUTSIDE and not _PREFIXED_TAG.match(tag):
                saw_plain_tag = True
                continue
            saw_scheme_tag = True
            cur, cur_type = split_tag(tag)
            if cur in ("E", "S"):
                return "BIOES"
            if cur == "I" and (prev == OUTSIDE or prev_type != cur_type):
                i_starts += 1
            elif cur == "B" and (prev == OUTSIDE or prev_type != cur_type):
                b_starts += 1
            prev, prev_type = cur, cur_type
    if not saw_scheme_tag:
        return None
    if saw_plain_tag:
        raise ValueError("labels mix scheme tags (O, B-X, I-X...) with tags that fit no scheme")
    return "IOB1" if i_starts > b_starts else "IOB2"


def allowed_transitions(scheme: str | None, tags: Sequence[str]) -> AllowedTransitions:
    """The tag sequences `scheme` allows over the tag list `tags` (ids are list positions).

    With `scheme=None` (plain labels such as POS) every sequence is allowed. Otherwise `I-X` after
    `O` and the like can never be decoded, including at the start and the end of a sentence.

    Raises:
        ValueError: a tag fits no scheme.
    """
    num_tags = len(tags)
    if scheme is None:
        ones = np.ones(num_tags, dtype=bool)
        return AllowedTransitions(ones, np.ones((num_tags, num_tags), dtype=bool), ones.copy())
    scheme = normalize_scheme(scheme)
    parts = [split_tag(tag) for tag in tags]
    start = np.array([_may_start(scheme, p) for p, _ in parts], dtype=bool)
    end = np.array([_may_end(scheme, p) for p, _ in parts], dtype=bool)
    transitions = np.array(
        [[_may_follow(scheme, a, a_type, b, b_type) for b, b_type in parts] for a, a_type in parts],
        dtype=bool,
    ).reshape(num_tags, num_tags)
    return AllowedTransitions(start, transitions, end)


def _may_start(scheme: str, prefix: str) -> bool:
    if scheme == "IOB1":
        return prefix in (OUTSIDE, "I")  # B- only separates two adjacent entities of one type
    if scheme == "IOB2":
        return prefix in (OUTSIDE, "B")
    return prefix in (OUTSIDE, "B", "S")


def _may_end(scheme: str, prefix: str) -> bool:
    if scheme == "BIOES":
        return prefix in (OUTSIDE, "E", "S")
    return prefix in (OUTSIDE, "B", "I")


def _may_follow(
    scheme: str, prev: str, prev_type: str | None, cur: str, cur_type: str | None
) -> bool:
    same_type = prev_type == cur_type
    if scheme == "IOB1":
        # I-X may start an entity anywhere; B-X only right after an X entity.
        if cur in (OUTSIDE, "I"):
            return prev in (OUTSIDE, "B", "I")
        if cur == "B":
            return prev in ("B", "I") and same_type
        return False
    if scheme == "IOB2":
        if cur in (OUTSIDE, "B"):
            return prev in (OUTSIDE, "B", "I")
        if cur == "I":
            return prev in ("B", "I") and same_type
        return False
    # BIOES: inside an entity only I-X/E-X of the same type; outside one only O, B-, S-.
    if prev in ("B", "I"):
        return cur in ("I", "E") and same_type
    if prev in (OUTSIDE, "E", "S"):
        return cur in (OUTSIDE, "B", "S")
    return False


@dataclass(frozen=True)
class EntityBoundaries:
    """What decides, per tag scheme, whether tags on a span make exactly that entity (numpy
    arrays, as `AllowedTransitions`; the torch head keeps them as buffers).

    Attributes:
        left: `(num_tags, num_tags)` bool; `left[first, t]` True when tag `t` just before an entity
            whose first tag is `first` would make the entity start earlier (IOB1: `I-X` after
            `I-X`).
        right: `(num_tags, num_tags)` bool; `right[last, t]` True when tag `t` just after an entity
            whose last tag is `last` would extend it (IOB1/IOB2: a following `I-X`).
        alternative_first: `(num_tags,)` int64; the other tag an entity may start with (IOB1
            writes `B-X` after an `X` entity and `I-X` elsewhere), or -1. BIOES and IOB2 spell an
            entity one way only.
    """

    left: np.ndarray
    right: np.ndarray
    alternative_first: np.ndarray


def entity_boundaries(scheme: str | None, tags: Sequence[str]) -> EntityBoundaries:
    """The `EntityBoundaries` of a scheme over a tag list. BIOES needs none: B/S start and E/S end
    an entity by themselves."""
    num_tags = len(tags)
    left = np.zeros((num_tags, num_tags), dtype=bool)
    right = np.zeros((num_tags, num_tags), dtype=bool)
    alternative = np.full(num_tags, -1, dtype=np.int64)
    if scheme not in ("IOB1", "IOB2"):
        return EntityBoundaries(left, right, alternative)
    parts = [split_tag(tag) for tag in tags]
    for a, (a_prefix, a_type) in enumerate(parts):
        if a_prefix == OUTSIDE:
            continue
        for b, (b_prefix, b_type) in enumerate(parts):
            if b_type != a_type:
                continue
            # An I-X after the entity's last token continues it, in IOB1 and IOB2.
            right[a, b] = b_prefix == "I"
            # IOB1: an entity starting with I-X starts earlier when X tags precede it.
            left[a, b] = scheme == "IOB1" and a_prefix == "I" and b_prefix in ("B", "I")
            if scheme == "IOB1" and {a_prefix, b_prefix} == {"B", "I"}:
                alternative[a] = b
    return EntityBoundaries(left, right, alternative)
