"""Character spans → token spans (`text/align.py`): known cases and a round-trip property."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm_nlp.text.align import TokenAlignment, align_char_span

# "Angela Merkel visited Paris ."
STARTS = [0, 7, 14, 22, 28]
ENDS = [6, 13, 21, 27, 29]


def test_a_span_on_token_edges_is_exact() -> None:
    assert align_char_span(STARTS, ENDS, 0, 13) == TokenAlignment(0, 2, True)
    assert align_char_span(STARTS, ENDS, 22, 27) == TokenAlignment(3, 4, True)


def test_white_space_at_the_edges_is_no_misalignment() -> None:
    assert align_char_span(STARTS, ENDS, 6, 14) == TokenAlignment(1, 2, True)  # " Merkel "


def test_an_edge_inside_a_token_is_misaligned_and_covers_the_token() -> None:
    assert align_char_span(STARTS, ENDS, 0, 12) == TokenAlignment(0, 2, False)  # "...Merke"
    assert align_char_span(STARTS, ENDS, 8, 13) == TokenAlignment(1, 2, False)  # "erkel"
    assert align_char_span(STARTS, ENDS, 23, 24) == TokenAlignment(3, 4, False)  # inside Paris


def test_a_span_of_white_space_only_touches_no_token() -> None:
    alignment = align_char_span(STARTS, ENDS, 6, 7)
    assert alignment.start == alignment.end and not alignment.exact


_TOKENS = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 6)), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(layout=_TOKENS, data=st.data())
def test_random_spans_on_token_edges_round_trip(layout, data) -> None:
    # Tokens separated by gaps of 0-3 characters; a span from token i's start (or the gap
    # before it) to token j's end (or the gap after it) aligns exactly to tokens i..j.
    starts, ends, position = [], [], 0
    for gap, length in layout:
        position += gap
        starts.append(position)
        position += length
        ends.append(position)
    first = data.draw(st.integers(0, len(starts) - 1))
    last = data.draw(st.integers(first, len(starts) - 1))
    before = starts[first] - (ends[first - 1] if first else 0)
    after = (starts[last + 1] if last + 1 < len(starts) else position + 2) - ends[last]
    start = starts[first] - data.draw(st.integers(0, before))
    end = ends[last] + data.draw(st.integers(0, after))
    assert align_char_span(starts, ends, start, end) == TokenAlignment(first, last + 1, True)
    # Moving an edge into a token (of more than one character) misaligns it.
    if ends[first] - starts[first] > 1:
        inside = align_char_span(starts, ends, starts[first] + 1, ends[last])
        assert not inside.exact and (inside.start, inside.end) == (first, last + 1)
