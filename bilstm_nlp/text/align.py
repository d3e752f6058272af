"""Character spans → token spans: where an annotated span's edges fall among a text's tokens.

Sits beside the tokenizer: annotation tools give spans as character offsets into raw text, the
models tag tokens. A span is aligned when it starts where a token starts and ends where a token
ends; white space at its edges is no problem (the tokens inside it are the same). An edge inside
a token is misaligned: spaCy's `Doc.char_span` then returns None and its training data drops
the span with warning W030; here the caller decides (an error, widen it to the tokens it
touches, or drop it and count it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenAlignment:
    """Where a character span lies among the tokens.

    Attributes:
        start: the first token the span touches.
        end: after the last token it touches (exclusive); `start == end` when it touches none
            (only white space).
        exact: True when the span starts inside no token and ends inside no token.
    """

    start: int
    end: int
    exact: bool


def align_char_span(
    starts: Sequence[int], ends: Sequence[int], start: int, end: int
) -> TokenAlignment:
    """The tokens a character span `[start, end)` touches, and whether its edges cut a token.

    Args:
        starts: each token's first character offset, ascending (tokens do not overlap).
        ends: each token's end offset (exclusive), ascending, `ends[i] > starts[i]`.
        start: the span's first character.
        end: the span's end (exclusive), `end > start`.
    Returns:
        The `TokenAlignment`: tokens `start..end` are those sharing a character with the span.
    """
    first = bisect_right(ends, start)  # the first token ending after the span starts
    last = bisect_left(starts, end)  # tokens before this one start before the span ends
    if first >= last:
        return TokenAlignment(first, first, False)
    exact = starts[first] >= start and ends[last - 1] <= end
    return TokenAlignment(first, last, exact)
