"""vocab.py: string ↔ id tables, the order `Vocab.build` gives, casing classes, JSON round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm_nlp.nn.vocab import CASINGS, PAD, UNK, Index, Vocab, casing_of


def test_index_ids_and_unknowns() -> None:
    index = Index(["a", "b", "c"])
    assert len(index) == 3 and "b" in index and "z" not in index
    assert index.id("c") == 2 and index.ids(["b", "a"]) == [1, 0]
    assert index.ids(["b", "z"], default=9) == [1, 9]
    with pytest.raises(KeyError):
        index.id("z")
    with pytest.raises(ValueError, match="each string once"):
        Index(["a", "a"])


def test_build_orders_words_by_frequency_then_first_appearance() -> None:
    vocab = Vocab.build(
        [["The", "cat", "the"], ["dog", "CAT", "eel"]], ["B", "A"], ["x", "cat", "y"], 2
    )
    assert vocab.words.items == [PAD, UNK, "the", "cat", "dog", "eel", "x"]
    assert vocab.trainable_words == 6  # the pretrained-only "x" comes after the training words
    assert vocab.chars.items[:2] == [PAD, UNK] and "T" in vocab.chars and "t" in vocab.chars
    assert vocab.labels.items == ["B", "A"]  # as given: the ClassLabel order, not re-sorted


def test_json_round_trip_keeps_every_id() -> None:
    vocab = Vocab.build([["Oslo", "is", "cold"]], ["O", "S-LOC"], ["warm"], 1)
    again = Vocab.from_json(vocab.to_json(), vocab.trainable_words)
    assert again.to_json() == vocab.to_json()
    assert again.trainable_words == vocab.trainable_words == 5
    with pytest.raises(ValueError, match="trainable_words"):
        Vocab.from_json(vocab.to_json(), 1)


@pytest.mark.parametrize(
    ("token", "casing"),
    [
        ("2024", "numeric"),
        ("12-3", "mainly_numeric"),
        ("a1bc", "has_digit"),
        ("cat", "lower"),
        ("EU", "upper"),
        ("Oslo", "title"),
        ("-", "other"),
        ("iPhone", "other"),
    ],
)
def test_casing_classes(token: str, casing: str) -> None:
    assert CASINGS[casing_of(token)] == casing


def _casing_by_definition(token: str) -> str:
    """The casing classes as Reimers & Gurevych define them, written plainly."""
    digits = sum(ch.isdigit() for ch in token)
    if token.isdigit():
        return "numeric"
    if digits / max(len(token), 1) > 0.5:
        return "mainly_numeric"
    if digits:
        return "has_digit"
    if token.islower():
        return "lower"
    if token.isupper():
        return "upper"
    if token[:1].isupper():
        return "title"
    return "other"


@settings(max_examples=400, deadline=None)
@given(st.text(min_size=0, max_size=8))
def test_casing_of_agrees_with_the_definition_on_any_text(token: str) -> None:
    assert CASINGS[casing_of(token)] == _casing_by_definition(token)


@pytest.mark.parametrize(
    "token",
    ["the", "EU", "Peter", "iPhone", "ǅemal", "Ⅻ", "٣٤", "²", "A1", "12a", "x", "", "ß", "Σίσυφος"],
)
def test_casing_of_agrees_with_the_definition_on_awkward_tokens(token: str) -> None:
    assert CASINGS[casing_of(token)] == _casing_by_definition(token)
