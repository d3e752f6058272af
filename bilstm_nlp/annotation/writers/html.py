"""displaCy HTML output: one page per output file, a titled block per document.

Entities and chunks are marked as displaCy entities; for POS every token is marked with its tag;
a classifier's label and probability (4 decimals) go in the document's title. Rendered with
spaCy's `displacy.render(..., manual=True)`, which escapes the text. A page is written whole.
"""

from __future__ import annotations

import html
from typing import Any, BinaryIO

_SPLIT = "\x00"


class HtmlWriter:
    """A displaCy page; each record becomes a title and an entity block."""

    name = "html"
    extension = ".html"
    atomic = True

    def encode(self, record: dict[str, Any]) -> bytes:
        from spacy import displacy

        title = html.escape(str(record["id"]))
        if record.get("label") is not None:
            label = record["label"]
            title += f" — {html.escape(label)} {record['probs'][label]:.4f}"
        if "spans" in record:
            ents = [
                {"start": s["start"], "end": s["end"], "label": s["label"]} for s in record["spans"]
            ]
        elif "label" not in record:
            ents = [
                {"start": t["start"], "end": t["end"], "label": t["tag"]} for t in record["tokens"]
            ]
        else:
            ents = []
        markup = displacy.render(
            {"text": record["text"], "ents": ents, "title": title},
            style="ent",
            manual=True,
            page=False,
            jupyter=False,
        )
        return markup.encode("utf-8")

    def begin(self, out: BinaryIO) -> None:
        out.write(_page()[0].encode("utf-8"))

    def add(self, out: BinaryIO, encoded: bytes) -> None:
        out.write(encoded)

    def end(self, out: BinaryIO) -> None:
        out.write(_page()[1].encode("utf-8"))


def _page() -> tuple[str, str]:
    from spacy.displacy.templates import TPL_PAGE

    header, footer = TPL_PAGE.format(lang="en", dir="ltr", content=_SPLIT).split(_SPLIT)
    return header, footer
