"""Raw text → sentences → tokens: offsets always slice the text, any length, PTB escapes."""

from __future__ import annotations

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bilstm_nlp.text import tokenize
from bilstm_nlp.text.tokenize import PtbEscapes, Token, Tokenizer, tokenize_text


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def check_tokens(text: str, sentences: list[list[Token]]) -> list[Token]:
    """Every token slices the text to itself, none is whitespace, they are in order and disjoint,
    and together with the whitespace between them they cover the text."""
    tokens = [token for sentence in sentences for token in sentence]
    position = 0
    for token in tokens:
        assert text[token.start : token.end] == token.text
        assert token.text and not token.text.isspace()
        assert token.start >= position
        position = token.end
    # Only whitespace is dropped: the other characters all come back, in order.
    kept = "".join(ch for token in tokens for ch in token.text if not ch.isspace())
    assert kept == "".join(ch for ch in text if not ch.isspace())
    return tokens


def test_sentences_and_offsets_on_mixed_text(tokenizer: Tokenizer) -> None:
    text = "  EU rejects\tGerman call.\r\nPeter 😀 visited Zürich (北京)!  Ok "
    sentences = tokenizer.sentences(text)
    tokens = check_tokens(text, sentences)
    assert [t.text for t in tokens][:5] == ["EU", "rejects", "German", "call", "."]
    assert len(sentences) >= 2 and sentences[0][-1].text == "."
    assert Token("EU", 2, 4) == tokens[0]
    assert tokenize_text(text, tokenizer) == [t.text for t in tokens]
    assert tokenizer.sentences("") == [] and tokenizer.sentences(" \n\t ") == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_offsets_slice_any_text(text: str) -> None:
    check_tokens(text, _shared_tokenizer().sentences(text))


_TOKENIZER: list[Tokenizer] = []


def _shared_tokenizer() -> Tokenizer:
    # hypothesis and function-scoped fixtures do not mix; one tokenizer for all examples.
    if not _TOKENIZER:
        _TOKENIZER.append(Tokenizer())
    return _TOKENIZER[0]


def test_long_line_without_spaces_is_cut_into_pieces(tokenizer: Tokenizer) -> None:
    text = "a" * 100_000
    tokens = check_tokens(text, tokenizer.sentences(text))
    assert "".join(t.text for t in tokens) == text
    assert max(len(t.text) for t in tokens) == tokenize.RUN_PIECE_CHARS
    # spaCy's affix splitting is quadratic on runs like this one; pieces keep it linear.
    emoji = "x " + "😀" * 20_000 + " y"
    tokens = check_tokens(emoji, tokenizer.sentences(emoji))
    assert len(tokens) == 20_002


def test_text_past_spacys_max_length_matches_whole_text_tokens(
    tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokenize, "MAX_CHUNK_CHARS", 5_000)
    local = Tokenizer()
    local.nlp.max_length = 6_000  # spaCy itself would refuse the text below
    text = "\n".join(f"Line {i} of the (long) text, with EU-wide rules." for i in range(1_000))
    text += " " + " ".join(f"w{i}" for i in range(3_000))  # a long stretch without line breaks
    assert len(text) > 10 * local.nlp.max_length
    tokens = check_tokens(text, local.sentences(text))
    whole = spacy.blank("en").tokenizer(text)
    assert [t.text for t in tokens] == [t.text for t in whole if not t.is_space]
    assert [t.start for t in tokens] == [t.idx for t in whole if not t.is_space]


def test_long_sentences_are_cut() -> None:
    text = " ".join(["word"] * 10_000)
    sentences = Tokenizer(max_sentence_tokens=256).sentences(text)
    assert [len(s) for s in sentences] == [256] * 39 + [10_000 - 39 * 256]
    check_tokens(text, sentences)
    with pytest.raises(ValueError):
        Tokenizer(max_sentence_tokens=0)


def test_long_sentences_are_cut_where_no_name_is_split() -> None:
    """Within a piece's last quarter: after clause-ending punctuation if there is one, else
    between two lower-case words; never inside "Angela Merkel"."""
    clause = "the minister Angela Merkel said that Paris was ready"
    tokenizer = Tokenizer(max_sentence_tokens=256)
    text = " ".join([clause] * 1_000)
    sentences = tokenizer.sentences(text)
    check_tokens(text, sentences)
    assert all(192 < len(s) <= 256 for s in sentences[:-1])
    for before, after in zip(sentences, sentences[1:], strict=False):
        assert before[-1].text.islower() and after[0].text.islower()
    # A comma within reach: every cut falls after one.
    text = " ".join([clause + " ,"] * 1_000)
    sentences = tokenizer.sentences(text)
    check_tokens(text, sentences)
    assert all(s[-1].text == "," and 192 < len(s) <= 256 for s in sentences[:-1])
    # Nothing to cut at but names: at the limit.
    text = " ".join(["Angela Merkel"] * 500)
    assert [len(s) for s in tokenizer.sentences(text)] == [256, 256, 256, 232]


def test_pipe_equals_one_text_at_a_time(tokenizer: Tokenizer) -> None:
    texts = ["One. Two three.", "", "x" * 2_500 + " tail", "Zürich 😀 (a/b)"]
    assert list(tokenizer.pipe(texts, batch_size=2)) == [tokenizer.sentences(t) for t in texts]


def test_fresh_pipeline_past_the_string_limit_tokenizes_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = Tokenizer()
    text = "Strings pile up in spaCy's store: alpha beta gamma."
    before = local.sentences(text)
    monkeypatch.setattr(tokenize, "_MAX_STRINGS", 10)
    old = local.nlp
    assert local.sentences(text) == before
    assert local.nlp is not old


def test_ptb_escapes_known_values() -> None:
    text = "He said \"and/or (this)\" it's 'quoted' — “curly” 3*4 [x] {y}."
    tokens = [t for s in Tokenizer().sentences(text) for t in s]
    escaped = PtbEscapes(True, True, True, True, True).apply(text, tokens)
    assert escaped == [
        "He", "said", "``", "and\\/or", "-LRB-", "this", "-RRB-", "''", "it", "'s", "`",
        "quoted", "'", "--", "``", "curly", "''", "3", "\\*", "4", "-LSB-", "x", "-RSB-",
        "-LCB-", "y", "-RCB-", ".",
    ]  # fmt: skip
    assert PtbEscapes().apply(text, tokens) == [t.text for t in tokens]
    assert not PtbEscapes().active


def test_ptb_escapes_leave_escaped_slashes_and_stars_alone() -> None:
    # Tokens from an escaped corpus (SST's `Writer\/director`, through spaCy with gold tokens)
    # must reach the model as the corpus wrote them, not escaped twice.
    text, tokens = _spaced(["Writer\\/director", "a/b\\/c", "3\\*4*5", "/", "\\/"])
    escaped = PtbEscapes(slash_star=True).apply(text, tokens)
    assert escaped == ["Writer\\/director", "a\\/b\\/c", "3\\*4\\*5", "\\/", "\\/"]


def _spaced(words: list[str]) -> tuple[str, list[Token]]:
    """Tokens joined by single spaces (as SST's and other tokenized corpora's text is)."""
    tokens, position = [], 0
    for word in words:
        tokens.append(Token(word, position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), tokens


def test_ptb_escapes_of_quotes_standing_alone_between_spaces() -> None:
    escapes = PtbEscapes(double_quotes=True, single_quotes=True)
    # SST's spaced text: a lone `'` is the possessive or a closing quote, never an opening one.
    text, tokens = _spaced(["the", "showmanship", "of", "Clones", "'", "last", "45", "minutes"])
    assert escapes.apply(text, tokens)[4] == "'"
    # Lone double quotes alternate: the first opens, the next closes.
    text, tokens = _spaced(["he", "said", '"', "no", '"', "and", '"', "yes", '"', "."])
    assert [w for w in escapes.apply(text, tokens) if w in ("``", "''")] == ["``", "''", "``", "''"]
    # A quote attached to the next word opens; one ending the text closes.
    text, tokens = _spaced(["'", "twas"])
    assert escapes.apply(text, tokens)[0] == "'"
    assert escapes.apply("'twas", [Token("'", 0, 1), Token("twas", 1, 5)])[0] == "`"
    assert escapes.apply('end "', [Token("end", 0, 3), Token('"', 4, 5)])[1] == "''"


def test_ptb_escapes_are_detected_from_training_words() -> None:
    conll2000_like = ["the", "-LRB-", "-RRB-", "1\\/2", "``", "''", "--"]
    assert PtbEscapes.detect(conll2000_like) == PtbEscapes(
        brackets=True, slash_star=True, double_quotes=True, single_quotes=False, dashes=True
    )
    sst_like = ["-lrb-", "`", "``", "\\*"]
    assert PtbEscapes.detect(sst_like).single_quotes
    conll2003_like = ["(", ")", '"', "/", "—", "--"]
    assert PtbEscapes.detect(conll2003_like) == PtbEscapes()
