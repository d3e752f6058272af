"""schemes.py: allowed transitions written out by hand, tags ↔ spans round trips, detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm_nlp.errors import ConfigError, InputFormatError
from bilstm_nlp.text.schemes import (
    BatchSpanReader,
    SchemeWriting,
    Span,
    allowed_transitions,
    check_tag,
    convert_tags,
    detect_scheme,
    is_entity_tagset,
    normalize_scheme,
    spans_to_tags,
    spelt_bilou,
    spelt_bioes,
    split_tag,
    tags_to_spans,
)


def allowed_pairs(scheme: str | None, tags: list[str]) -> set[tuple[str, str]]:
    transitions = allowed_transitions(scheme, tags).transitions
    return {(tags[i], tags[j]) for i, j in np.argwhere(transitions).tolist()}


def allowed_at(mask: np.ndarray, tags: list[str]) -> set[str]:
    return {tags[i] for i in np.flatnonzero(mask).tolist()}


# Allowed transitions, written out by hand (as AllenNLP's test_allowed_transitions does)

IOB_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_allowed_transitions_iob2() -> None:
    # I-X only continues an X entity; O and B-X may follow anything.
    expected = {
        ("O", "O"), ("O", "B-PER"), ("O", "B-LOC"),
        ("B-PER", "O"), ("B-PER", "B-PER"), ("B-PER", "I-PER"), ("B-PER", "B-LOC"),
        ("I-PER", "O"), ("I-PER", "B-PER"), ("I-PER", "I-PER"), ("I-PER", "B-LOC"),
        ("B-LOC", "O"), ("B-LOC", "B-PER"), ("B-LOC", "B-LOC"), ("B-LOC", "I-LOC"),
        ("I-LOC", "O"), ("I-LOC", "B-PER"), ("I-LOC", "B-LOC"), ("I-LOC", "I-LOC"),
    }  # fmt: skip
    allowed = allowed_transitions("IOB2", IOB_TAGS)
    assert allowed_pairs("IOB2", IOB_TAGS) == expected
    assert allowed_at(allowed.start, IOB_TAGS) == {"O", "B-PER", "B-LOC"}
    assert allowed_at(allowed.end, IOB_TAGS) == set(IOB_TAGS)


def test_allowed_transitions_iob1() -> None:
    # I-X may start an entity anywhere; B-X only directly after an X entity.
    expected = {
        ("O", "O"), ("O", "I-PER"), ("O", "I-LOC"),
        ("B-PER", "O"), ("B-PER", "B-PER"), ("B-PER", "I-PER"), ("B-PER", "I-LOC"),
        ("I-PER", "O"), ("I-PER", "B-PER"), ("I-PER", "I-PER"), ("I-PER", "I-LOC"),
        ("B-LOC", "O"), ("B-LOC", "I-PER"), ("B-LOC", "B-LOC"), ("B-LOC", "I-LOC"),
        ("I-LOC", "O"), ("I-LOC", "I-PER"), ("I-LOC", "B-LOC"), ("I-LOC", "I-LOC"),
    }  # fmt: skip
    allowed = allowed_transitions("IOB1", IOB_TAGS)
    assert allowed_pairs("IOB1", IOB_TAGS) == expected
    assert allowed_at(allowed.start, IOB_TAGS) == {"O", "I-PER", "I-LOC"}
    assert allowed_at(allowed.end, IOB_TAGS) == set(IOB_TAGS)


BIOES_TAGS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def test_allowed_transitions_bioes() -> None:
    # Inside an entity (after B-X or I-X) only I-X or E-X; outside one (after O, E-, S-) only
    # O, B- or S-.
    outside_next = {"O", "B-PER", "S-PER", "B-LOC", "S-LOC"}
    expected = (
        {(prev, nxt) for prev in ("O", "E-PER", "S-PER", "E-LOC", "S-LOC") for nxt in outside_next}
        | {("B-PER", "I-PER"), ("B-PER", "E-PER"), ("I-PER", "I-PER"), ("I-PER", "E-PER")}
        | {("B-LOC", "I-LOC"), ("B-LOC", "E-LOC"), ("I-LOC", "I-LOC"), ("I-LOC", "E-LOC")}
    )
    assert len(expected) == 33
    allowed = allowed_transitions("BIOES", BIOES_TAGS)
    assert allowed_pairs("BIOES", BIOES_TAGS) == expected
    assert allowed_at(allowed.start, BIOES_TAGS) == outside_next
    assert allowed_at(allowed.end, BIOES_TAGS) == {"O", "E-PER", "S-PER", "E-LOC", "S-LOC"}


def test_allowed_transitions_bilou_tags_read_as_bioes() -> None:
    tags = ["O", "B-PER", "I-PER", "L-PER", "U-PER"]
    expected = {
        ("O", "O"), ("O", "B-PER"), ("O", "U-PER"),
        ("B-PER", "I-PER"), ("B-PER", "L-PER"), ("I-PER", "I-PER"), ("I-PER", "L-PER"),
        ("L-PER", "O"), ("L-PER", "B-PER"), ("L-PER", "U-PER"),
        ("U-PER", "O"), ("U-PER", "B-PER"), ("U-PER", "U-PER"),
    }  # fmt: skip
    assert allowed_pairs("BILOU", tags) == expected


def test_allowed_transitions_plain_labels_allow_everything() -> None:
    tags = ["NOUN", "VERB", "PUNCT"]
    allowed = allowed_transitions(None, tags)
    assert allowed.transitions.dtype == np.bool_
    assert allowed.transitions.all() and allowed.start.all() and allowed.end.all()
    assert allowed.transitions.shape == (3, 3)


# Tags ↔ spans

CANONICAL = {
    "IOB1": ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "O", "I-creative-work"],
    "IOB2": ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "O", "B-creative-work"],
    "BIOES": ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "S-ORG", "O", "S-creative-work"],
}
SPANS = [
    Span(0, 2, "PER"),
    Span(2, 3, "PER"),
    Span(4, 5, "LOC"),
    Span(5, 6, "ORG"),
    Span(7, 8, "creative-work"),
]


@pytest.mark.parametrize("scheme", sorted(CANONICAL))
def test_tags_spans_tags_round_trip(scheme: str) -> None:
    tags = CANONICAL[scheme]
    assert tags_to_spans(tags) == SPANS
    assert spans_to_tags(SPANS, len(tags), scheme) == tags


@pytest.mark.parametrize("source", sorted(CANONICAL))
@pytest.mark.parametrize("target", sorted(CANONICAL))
def test_convert_between_schemes(source: str, target: str) -> None:
    assert convert_tags(CANONICAL[source], target) == CANONICAL[target]


def test_non_canonical_tags_keep_their_spans() -> None:
    # CoNLL-2003 train: B-MISC after O (still an entity start); an I-X after O in IOB2 data.
    assert tags_to_spans(["O", "B-MISC", "I-MISC"]) == [Span(1, 3, "MISC")]
    assert convert_tags(["O", "B-MISC", "I-MISC"], "IOB1") == ["O", "I-MISC", "I-MISC"]
    assert tags_to_spans(["O", "I-PER", "B-LOC"]) == [Span(1, 2, "PER"), Span(2, 3, "LOC")]
    assert tags_to_spans(["B-PER", "I-LOC"]) == [Span(0, 1, "PER"), Span(1, 2, "LOC")]


_TYPES = st.sampled_from(["PER", "LOC", "creative-work"])


@st.composite
def spans_over(draw: st.DrawFn) -> tuple[list[Span], int]:
    # Non-overlapping spans: walk left to right, each step an O or an entity of 1-3 tokens.
    spans, position = [], 0
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            position += 1
            continue
        length = draw(st.integers(1, 3))
        spans.append(Span(position, position + length, draw(_TYPES)))
        position += length
    return spans, position


@settings(max_examples=200, deadline=None)
@given(spans_and_length=spans_over(), scheme=st.sampled_from(["IOB1", "IOB2", "BIOES"]))
def test_spans_tags_spans_property(spans_and_length: tuple[list[Span], int], scheme: str) -> None:
    spans, length = spans_and_length
    tags = spans_to_tags(spans, length, scheme)
    assert tags_to_spans(tags) == spans
    for other in ("IOB1", "IOB2", "BIOES"):
        assert convert_tags(convert_tags(tags, other), scheme) == tags


@settings(max_examples=100, deadline=None)
@given(spans_and_length=spans_over())
def test_bilou_spelling_round_trip(spans_and_length: tuple[list[Span], int]) -> None:
    spans, length = spans_and_length
    bioes = spans_to_tags(spans, length, "BIOES")
    bilou = spelt_bilou(bioes)
    assert not any(tag[:2] in ("E-", "S-") for tag in bilou)
    assert tags_to_spans(bilou) == spans
    assert spelt_bioes(bilou) == bioes
    # Tags of the other schemes have no BILOU prefix to respell.
    iob2 = spans_to_tags(spans, length, "IOB2")
    assert spelt_bioes(iob2) == iob2


def test_spans_to_tags_rejects_overlap() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([Span(0, 2, "PER"), Span(1, 3, "LOC")], 3, "IOB2")


# Scheme detection and bad tags


@pytest.mark.parametrize(
    ("sequences", "expected"),
    [
        ([["O", "I-PER", "I-PER", "O"], ["I-LOC", "B-LOC"]], "IOB1"),
        ([["I-MISC"], ["I-LOC"], ["O", "B-MISC", "I-MISC"]], "IOB1"),  # CoNLL-2003's stray B-
        ([["B-PER", "I-PER", "O"], ["B-LOC"]], "IOB2"),
        ([["O", "O"]], "IOB2"),
        ([["B-PER", "E-PER"], ["S-LOC"]], "BIOES"),
        ([["U-PER"], ["B-LOC", "L-LOC"]], "BIOES"),
        ([["NOUN", "VERB"], ["PUNCT"]], None),
    ],
)
def test_detect_scheme(sequences: list[list[str]], expected: str | None) -> None:
    assert detect_scheme(sequences) == expected


def test_detect_scheme_rejects_mixed_labels() -> None:
    with pytest.raises(ValueError, match="mix"):
        detect_scheme([["O", "NOUN"]])


@pytest.mark.parametrize("bad_tag", ["X-PER", "B-", "PER", "I_PER", "-PER"])
def test_bad_tags_fit_no_scheme(bad_tag: str) -> None:
    with pytest.raises(ValueError, match="fits no tag scheme"):
        split_tag(bad_tag)
    with pytest.raises(InputFormatError) as info:
        check_tag(bad_tag, "train.conll", 1523)
    assert str(info.value).startswith("train.conll:1523: tag ")
    assert repr(bad_tag) in str(info.value)


def test_split_tag_splits_at_the_first_hyphen() -> None:
    assert split_tag("I-creative-work") == ("I", "creative-work")
    assert split_tag("L-PER") == ("E", "PER")
    assert split_tag("O") == ("O", None)


def test_is_entity_tagset() -> None:
    assert is_entity_tagset(["O", "NOUN"])
    assert is_entity_tagset(["B-NP"])
    assert not is_entity_tagset(["NOUN", "NN|SYM", "-X-"])


def test_normalize_scheme() -> None:
    assert [normalize_scheme(n) for n in ("bio", "IOBES", "bilou", "iob1")] == [
        "IOB2",
        "BIOES",
        "BIOES",
        "IOB1",
    ]
    with pytest.raises(ConfigError, match="unknown tag scheme"):
        normalize_scheme("IOE2")


@settings(max_examples=300, deadline=None)
@given(
    tags=st.lists(
        st.sampled_from(
            ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
        ),
        max_size=12,
    )
)
def test_tags_to_spans_reads_any_sequence_as_seqeval_does(tags: list[str]) -> None:
    # Any mix of prefixes, valid or not: the chunks are conlleval's, which seqeval's default
    # mode reproduces (its end index is inclusive).
    from seqeval.metrics.sequence_labeling import get_entities

    expected = [Span(start, end + 1, label) for label, start, end in get_entities(tags)]
    assert tags_to_spans(tags) == expected


_READER_TAGS = {
    # BILOU's L-/U- read as E-/S-; a type with a hyphen; a stray type seen only as I-.
    "BIOES": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC", "S-LOC", "U-ORG"],
    "IOB1": ["O", "I-PER", "B-PER", "I-LOC", "B-LOC", "I-creative-work"],
    "IOB2": ["O", "B-PER", "I-PER", "B-MISC", "I-MISC"],
}


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(sorted(_READER_TAGS)),
    target=st.sampled_from(["IOB1", "IOB2", "BIOES"]),
    data=st.data(),
)
def test_batch_span_reader_and_scheme_writing_read_any_rows_as_tags_to_spans(
    scheme, target, data
) -> None:
    # Any ids, well formed in the scheme or not, rows of any length (0 too) with padding ids
    # that must be ignored: the same spans as each row read alone, and the same tags written.
    tags = _READER_TAGS[scheme]
    lengths = data.draw(st.lists(st.integers(0, 12), min_size=1, max_size=6))
    seq_len = max(max(lengths), 1)
    rows = [
        data.draw(st.lists(st.integers(0, len(tags) - 1), min_size=seq_len, max_size=seq_len))
        for _ in lengths
    ]
    reader = BatchSpanReader(tags)
    got = reader.spans(np.array(rows, dtype=np.int64), np.array(lengths, dtype=np.int64))
    want = [tags_to_spans([tags[i] for i in row[:n]]) for row, n in zip(rows, lengths, strict=True)]
    assert got == want
    # The tags written in `target` from each tag's neighbours are those of the spans read.
    writing = SchemeWriting(tags, target)
    ids = writing.written_ids(np.array(rows, dtype=np.int64), np.array(lengths, dtype=np.int64))
    written = [[writing.tags[i] for i in row[:n]] for row, n in zip(ids, lengths, strict=True)]
    assert written == [spans_to_tags(s, n, target) for s, n in zip(want, lengths, strict=True)]
    assert all(i == 0 for row, n in zip(ids, lengths, strict=True) for i in row[n:])
