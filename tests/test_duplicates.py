"""Near-duplicate texts: normalisation, shingles by hand, and the inverted index against a
pairwise brute force on generated texts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm_nlp.annotation.duplicates import NearDuplicates, jaccard, normalise_text, shingles


def test_normalisation_and_shingles_by_hand() -> None:
    assert normalise_text("  Essex  532-8\tDECLARED\n") == "essex 0-0 declared"
    assert shingles("Essex 532-8 declared .") == {"essex 0-0 declared", "0-0 declared ."}
    assert shingles("Two words") == {"two words"}
    assert shingles(" \t ") == frozenset()
    # Digits, case and spacing do not tell texts apart; words do.
    assert shingles("Essex 100-2 DECLARED .") == shingles("essex 532-8  declared .")
    assert jaccard(shingles("a b c d"), shingles("a b c e")) == 1 / 3


def test_first_held_match_and_threshold() -> None:
    held = NearDuplicates(0.8)
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    held.add("first", shingles(base))
    held.add("second", shingles(base + " again"))
    # 11 shingles shared with the first of 13 in their union (0.85 >= 0.8): the first answers.
    assert held.match(shingles(base.replace("today", "tomorrow"))) == "first"
    assert held.match(shingles("a wholly different sentence about cricket scores")) is None
    assert held.match(frozenset()) is None
    held.add("empty", frozenset())
    assert len(held) == 2


WORDS = st.sampled_from(["a", "b", "c", "d", "e", "1", "22", "X"])
TEXTS = st.lists(WORDS, min_size=0, max_size=8).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(held_texts=st.lists(TEXTS, max_size=12), query=TEXTS)
def test_match_equals_pairwise_brute_force(held_texts: list[str], query: str) -> None:
    held = NearDuplicates(0.8)
    for key, text in enumerate(held_texts):
        held.add(key, shingles(text))
    expected = next(
        (
            key
            for key, text in enumerate(held_texts)
            if shingles(text)
            and shingles(query)
            and jaccard(shingles(text), shingles(query)) >= 0.8
        ),
        None,
    )
    assert held.match(shingles(query)) == expected
