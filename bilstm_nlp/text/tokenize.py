"""Raw text → sentences → tokens with character offsets (spaCy's rule-based English tokenizer).

The first stage for raw text: a blank English pipeline with the rule-based sentencizer, no
downloaded model. Offsets let every predicted entity map back to the exact characters of the input
(`text[token.start:token.end] == token.text`, always). Any text is accepted: texts past spaCy's
`max_length` are cut at line breaks or spaces into chunks, whitespace-free runs of more than 1,000
characters are cut into pieces of 200 (spaCy's affix splitting is quadratic on such runs: 2,000
emoji take a second), and sentences may be capped at a number of tokens. `PtbEscapes` rewrites
tokens the way Penn-Treebank-style corpora wrote them (`(` as `-LRB-`, `/` as `\\/`, a double quote
as two backticks or two apostrophes), for models trained on such corpora; offsets keep pointing at
the original text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

# spaCy refuses texts past `nlp.max_length` (1,000,000 characters); we hand it far smaller chunks.
MAX_CHUNK_CHARS = 100_000
# A whitespace-free run longer than this is cut into pieces of RUN_PIECE_CHARS characters.
MAX_RUN_CHARS = 1_000
RUN_PIECE_CHARS = 200
# spaCy's string store and tokenizer cache grow with every new word; a fresh pipeline past this
# many strings keeps memory flat on endless input (tokenization does not depend on them).
_MAX_STRINGS = 1_000_000

_T = TypeVar("_T")

_LONG_RUN = re.compile(rf"\S{{{MAX_RUN_CHARS + 1},}}")


@dataclass(frozen=True)
class Token:
    """A token and its character offsets in the text it came from (`text[start:end] == token`)."""

    text: str
    start: int
    end: int


class Tokenizer:
    """spaCy's English tokenizer and sentencizer, created once and reused.

    Args:
        max_sentence_tokens: cut longer sentences into consecutive pieces of this many tokens
            (None: never cut).
    """

    def __init__(self, max_sentence_tokens: int | None = None) -> None:
        if max_sentence_tokens is not None and max_sentence_tokens < 1:
            raise ValueError("max_sentence_tokens must be positive")
        self.max_sentence_tokens = max_sentence_tokens
        self.nlp = _blank_pipeline()

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text`, whitespace dropped."""
        self._refresh_if_big()
        return [
            t.text
            for offset, segment in _segments(text)
            for t in self.nlp.tokenizer(segment)
            if not t.is_space
        ]

    def sentences(self, text: str) -> list[list[Token]]:
        """`text` split into sentences of tokens with offsets; whitespace tokens dropped."""
        return next(self.pipe([text]))

    def pipe(self, texts: Iterable[str], batch_size: int = 256) -> Iterator[list[list[Token]]]:
        """`sentences()` of each text, in order; faster than one call per text.

        Args:
            texts: the texts; any length, empty ones included (they give `[]`).
            batch_size: texts (chunks of long texts) handed to spaCy at a time.
        Returns:
            An iterator with one list of sentences per text.
        """
        pending: list[str] = []
        for text in texts:
            pending.append(text)
            if len(pending) >= batch_size:
                yield from self._pipe_batch(pending)
                pending = []
        if pending:
            yield from self._pipe_batch(pending)

    def _pipe_batch(self, texts: list[str]) -> list[list[list[Token]]]:
        self._refresh_if_big()
        owners: list[int] = []
        offsets: list[int] = []
        segments: list[str] = []
        for index, text in enumerate(texts):
            for offset, segment in _segments(text):
                owners.append(index)
                offsets.append(offset)
                segments.append(segment)
        results: list[list[list[Token]]] = [[] for _ in texts]
        for owner, offset, segment, doc in zip(
            owners, offsets, segments, self.nlp.pipe(segments), strict=True
        ):
            for sentence in _doc_sentences(doc, segment, offset):
                results[owner].extend(cut_sentence(sentence, self.max_sentence_tokens, token_text))
        return results

    @property
    def sentencizer(self):
        """The rule-based sentencizer pipe (spaCy's `sentencizer`) that splits sentences here."""
        return self.nlp.get_pipe("sentencizer")

    def _refresh_if_big(self) -> None:
        if len(self.nlp.vocab.strings) > _MAX_STRINGS:
            self.nlp = _blank_pipeline()


def _doc_sentences(doc, text: str, offset: int) -> list[list[Token]]:
    """A spaCy doc's sentences as `Token`s (whitespace dropped), offsets shifted by `offset`.

    Reads the token attributes as one array: walking spaCy's Token objects from Python cost as
    much as tokenizing."""
    from spacy.attrs import IDX, IS_SPACE, LENGTH, SENT_START

    sentences: list[list[Token]] = []
    current: list[Token] = []
    rows = doc.to_array([IDX, LENGTH, IS_SPACE, SENT_START]).tolist()
    for index, (start, length, is_space, sent_start) in enumerate(rows):
        # SENT_START is 1 at a sentence start (as a uint64 array; -1 wraps around).
        if sent_start == 1 and index and current:
            sentences.append(current)
            current = []
        if not is_space:
            end = start + length
            current.append(Token(text[start:end], start + offset, end + offset))
    if current:
        sentences.append(current)
    return sentences


def doc_words(
    text: str, offsets: Sequence[tuple[int, int]]
) -> tuple[list[str], list[bool], list[int]]:
    """The `words` and `spaces` of a spaCy `Doc` whose `doc.text` is exactly `text`.

    One space after a token is its trailing whitespace; any other white space between tokens
    (or before the first, after the last) becomes a whitespace token, as spaCy's tokenizer makes.

    Args:
        text: the text.
        offsets: the tokens' `(start, end)` character offsets, ascending, not overlapping.
    Returns:
        `(words, spaces, positions)`: `positions[i]` is the Doc index of token i.
    """
    words: list[str] = []
    spaces: list[bool] = []
    positions: list[int] = []

    def add_gap(gap: str) -> None:
        if gap.startswith(" ") and words and not spaces[-1]:
            spaces[-1] = True
            gap = gap[1:]
        if gap:
            words.append(gap)
            spaces.append(False)

    position = 0
    for start, end in offsets:
        add_gap(text[position:start])
        positions.append(len(words))
        words.append(text[start:end])
        spaces.append(False)
        position = end
    add_gap(text[position:])
    return words, spaces, positions


def token_text(token: Token) -> str:
    """A `Token`'s text, for `cut_sentence`."""
    return token.text


def cut_sentence(
    tokens: list[_T], size: int | None, text_of: Callable[[_T], str] | None = None
) -> list[list[_T]]:
    """A sentence cut into consecutive pieces of at most `size` tokens (None: never cut).

    With `text_of` (a token's text), each cut falls where a name is least likely to be split:
    within a piece's last quarter, after the last token made of clause-ending punctuation (`,`
    `;` `.` ...), else between the last two lower-case words, else at the limit. Only the tokens
    around a cut are read: a sentence that is not cut costs nothing.

    Args:
        tokens: the sentence's tokens (or anything standing for them, such as indices).
        size: the most tokens a piece holds.
        text_of: the text of a token; None cuts at the limit.
    Returns:
        The pieces, in order; `[]` for an empty sentence.
    """
    if not tokens:
        return []
    if size is None or len(tokens) <= size:
        return [tokens]
    pieces = []
    start = 0
    while len(tokens) - start > size:
        limit = start + size
        end = limit if text_of is None else _cut_before(tokens, text_of, limit, size)
        pieces.append(tokens[start:end])
        start = end
    pieces.append(tokens[start:])
    return pieces


# Tokens made of these end a clause: a cut after one rarely falls inside an entity.
_CLAUSE_END = frozenset(".,;:!?)]}\"'»”’…")


def _cut_before(tokens: list[_T], text_of: Callable[[_T], str], limit: int, size: int) -> int:
    """Where to end a piece that may end at `limit` at the latest (a token follows it)."""
    between_lower_words = None
    for end in range(limit, limit - max(size // 4, 1), -1):
        before, after = text_of(tokens[end - 1]), text_of(tokens[end])
        if before and all(c in _CLAUSE_END for c in before):
            return end
        if between_lower_words is None and _lower_word(before) and _lower_word(after):
            between_lower_words = end
    return between_lower_words or limit


def _lower_word(word: str) -> bool:
    return word.isalpha() and word.islower()


def _blank_pipeline():
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def _segments(text: str) -> list[tuple[int, str]]:
    """`text` as `(offset, piece)` pieces spaCy handles fast: long whitespace-free runs cut into
    RUN_PIECE_CHARS pieces, everything else into chunks of at most MAX_CHUNK_CHARS cut at a line
    break (else a space)."""
    if len(text) <= MAX_RUN_CHARS:
        return [(0, text)]
    segments: list[tuple[int, str]] = []
    position = 0
    for run in _LONG_RUN.finditer(text):
        segments.extend(_chunks(text, position, run.start()))
        for start in range(run.start(), run.end(), RUN_PIECE_CHARS):
            segments.append((start, text[start : min(start + RUN_PIECE_CHARS, run.end())]))
        position = run.end()
    segments.extend(_chunks(text, position, len(text)))
    return segments


def _chunks(text: str, start: int, end: int) -> list[tuple[int, str]]:
    # No run here is longer than MAX_RUN_CHARS, so each window's second half holds a space.
    chunks = []
    while end - start > MAX_CHUNK_CHARS:
        limit = start + MAX_CHUNK_CHARS
        cut = text.rfind("\n", start + MAX_CHUNK_CHARS // 2, limit)
        if cut < 0:
            cut = max(text.rfind(c, start + MAX_CHUNK_CHARS // 2, limit) for c in " \t\r\f\v")
        if cut < 0:
            cut = limit - 1
        chunks.append((start, text[start : cut + 1]))
        start = cut + 1
    if end > start:
        chunks.append((start, text[start:end]))
    return chunks


_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_DOUBLE_QUOTES = {'"': None, "“": "``", "„": "``", "”": "''"}
_SINGLE_QUOTES = {"'": None, "‘": "`", "’": "'"}
_DASHES = {"—": "--", "–": "--"}
_OPENERS = "([{\"'“‘`"
_NON_SPACE = re.compile(r"\S")
_UNESCAPED_SLASH_STAR = re.compile(r"(?<!\\)([/*])")


@dataclass(frozen=True)
class PtbEscapes:
    """How a Penn-Treebank-style corpus wrote characters that raw text writes plainly.

    CoNLL-2000 (WSJ) and SST write `(` as `-LRB-` (and `)` `[` `]` `{` `}` likewise), `/` and `*`
    inside words as `\\/` and `\\*`, double quotes as `` `` `` (opening) and `''` (closing), and
    SST an opening single quote as `` ` ``. A model trained on such a corpus has never seen `(`; it
    should be shown `-LRB-`. `detect()` reads which escapes a model wants off its training words.

    Attributes:
        brackets: `( ) [ ] { }` → `-LRB- -RRB- -LSB- -RSB- -LCB- -RCB-`.
        slash_star: `/` → `\\/` and `*` → `\\*` inside any token.
        double_quotes: `"` → `` `` `` when it opens (at the start, after a space or an opening
            bracket), else `''`; `“ „` → `` `` ``, `”` → `''`.
        single_quotes: a lone `'` that opens, and `‘`, → `` ` ``.
        dashes: `—` and `–` → `--`.
    """

    brackets: bool = False
    slash_star: bool = False
    double_quotes: bool = False
    single_quotes: bool = False
    dashes: bool = False

    @classmethod
    def detect(cls, words: Iterable[str]) -> PtbEscapes:
        """The escapes a model trained on `words` (its training words, any case) wants.

        Only training words count: pretrained vectors such as GloVe hold `-lrb-` too.
        """
        vocabulary = {word.lower() for word in words}
        return cls(
            brackets="-lrb-" in vocabulary,
            slash_star=any("\\/" in w or "\\*" in w for w in vocabulary),
            double_quotes="``" in vocabulary,
            single_quotes="`" in vocabulary,
            dashes="--" in vocabulary and "—" not in vocabulary,
        )

    @property
    def active(self) -> bool:
        """True when any escape is on."""
        return any(
            (self.brackets, self.slash_star, self.double_quotes, self.single_quotes, self.dashes)
        )

    def apply(self, text: str, tokens: Sequence[Token]) -> list[str]:
        """The token strings to show the model: escaped as the training corpus wrote them.

        Args:
            text: the text the tokens' offsets point into (to tell opening quotes from closing).
            tokens: tokens of `text`.
        Returns:
            One string per token; a token needing no escape keeps its own text.
        """
        return self.apply_document(text, [tokens])[0]

    def apply_document(self, text: str, sentences: Sequence[Sequence[Token]]) -> list[list[str]]:
        """`apply` to each sentence of one text, a lone `"` opening or closing by the count of
        those before it in the whole text (a quotation may span sentences)."""
        if not self.active:
            return [[t.text for t in sentence] for sentence in sentences]
        escaped = []
        plain_double_quotes = 0  # `"` seen so far: a lone one opens when their count is even
        for sentence in sentences:
            words = []
            for token in sentence:
                words.append(self._escape(text, token, plain_double_quotes % 2 == 0))
                plain_double_quotes += token.text == '"'
            escaped.append(words)
        return escaped

    def _escape(self, text: str, token: Token, lone_double_quote_opens: bool) -> str:
        word = token.text
        if self.brackets and word in _BRACKETS:
            return _BRACKETS[word]
        if self.double_quotes and word in _DOUBLE_QUOTES:
            opens = _opens(text, token, lone_double_quote_opens)
            return _DOUBLE_QUOTES[word] or ("``" if opens else "''")
        if self.single_quotes and word in _SINGLE_QUOTES:
            # A lone `'` is an apostrophe or a closing quote (`Clones ' last` in SST's spaced
            # text, whose opening quotes are written `` ` `` already).
            return _SINGLE_QUOTES[word] or ("`" if _opens(text, token, False) else "'")
        if self.dashes and word in _DASHES:
            return _DASHES[word]
        if self.slash_star and ("/" in word or "*" in word):
            # A slash or star already escaped (tokens taken from such a corpus) stays as it is.
            return _UNESCAPED_SLASH_STAR.sub(r"\\\1", word)
        return word


def _opens(text: str, token: Token, lone_opens: bool) -> bool:
    """Whether a straight quote opens: it does at the start of the text, after whitespace or after
    an opening bracket or quote, when it is attached to what follows; one with whitespace (or the
    end of the text) on both sides stands alone, as in text whose tokens were joined by spaces,
    and opens as `lone_opens` says."""
    start, end = token.start, token.end
    after_opening = start == 0 or text[start - 1].isspace() or text[start - 1] in _OPENERS
    if not after_opening:
        return False
    attached = end < len(text) and not text[end].isspace()
    if attached:
        return True
    # Nothing follows: a quote closing the text, never one opening it.
    return lone_opens and _NON_SPACE.search(text, end) is not None


def tokenize_text(text: str, tokenizer: Tokenizer | None = None) -> list[str]:
    """Tokens of one text (a new tokenizer is made when none is given: pass one in loops)."""
    return (tokenizer or Tokenizer()).tokens(text)


def tokens_or_tokenized(token_lists: Iterable[list[str]], texts: Iterable[str]) -> list[list[str]]:
    """The given tokens where a corpus has them (SST trees), else the text tokenized: for
    classification data read from JSONL/CSV. One tokenizer serves the whole corpus."""
    tokenizer: Tokenizer | None = None
    result = []
    for tokens, text in zip(token_lists, texts, strict=True):
        if not tokens:
            tokenizer = tokenizer or Tokenizer()
            tokens = tokenizer.tokens(text)
        result.append(tokens)
    return result
