"""Raw text → sentences → tokens with character offsets (spaCy's rule-based English tokenizer).

A blank English pipeline with the rule-based sentencizer: no downloaded model. Offsets let every
predicted entity map back to the exact characters of the input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    """A token and its character offsets in the text it came from (`text[start:end] == token`)."""

    text: str
    start: int
    end: int


class Tokenizer:
    """spaCy's English tokenizer and sentencizer, created once and reused."""

    def __init__(self) -> None:
        import spacy

        self.nlp = spacy.blank("en")
        self.nlp.add_pipe("sentencizer")

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text`, whitespace dropped."""
        return [t.text for t in self.nlp.tokenizer(text) if not t.is_space]

    def sentences(self, text: str) -> list[list[Token]]:
        """`text` split into sentences of tokens with offsets; whitespace tokens dropped."""
        doc = self.nlp(text)
        result = []
        for sentence in doc.sents:
            tokens = [Token(t.text, t.idx, t.idx + len(t.text)) for t in sentence if not t.is_space]
            if tokens:
                result.append(tokens)
        return result


def tokenize_text(text: str, tokenizer: Tokenizer | None = None) -> list[str]:
    """Tokens of one text (a new tokenizer is made when none is given: pass one in loops)."""
    return (tokenizer or Tokenizer()).tokens(text)
