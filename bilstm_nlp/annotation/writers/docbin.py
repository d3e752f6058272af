"""spaCy `DocBin` output (`.spacy`): one `Doc` per record, loadable with `DocBin().from_disk`.

Each `Doc` has exactly the record's text (`doc.text == record["text"]`: whitespace between tokens
becomes spaCy whitespace tokens), sentence starts, and: entities as `doc.ents` and, as the spaCy
component sets them, the span group `doc.spans["bilstm_ents"]` (their probabilities in
`.attrs["scores"]`, spaCy's spancat convention); a chunker's chunks in the span group
`doc.spans["bilstm_chunks"]` (scored alike) and in `doc.ents`, as `spacy convert` writes gold
chunks, so the file reads back as training data; POS tags
as `token.tag_` (and `token.pos_` when the tag is a Universal POS tag), or a classifier's
probabilities as `doc.cats`. The record id is `doc.user_data["id"]`. A DocBin is written whole, so
the file's documents are held (compactly) in memory until its end.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, BinaryIO

from ...text.tokenize import doc_words

ENTITY_SPAN_KEY = "bilstm_ents"
CHUNK_SPAN_KEY = "bilstm_chunks"
# spaCy's string store grows with every new word; a fresh one keeps workers' memory flat.
_MAX_STRINGS = 1_000_000


class DocBinWriter:
    """Collects the records of one output file as spaCy Docs and writes one DocBin at its end."""

    name = "docbin"
    extension = ".spacy"
    atomic = True

    def __init__(self, task: str | None = None) -> None:
        from spacy.tokens import DocBin
        from spacy.vocab import Vocab

        self.task = task

        self._vocab_class = Vocab
        self._docbin_class = DocBin
        self.vocab = Vocab()
        self._docbin = DocBin(store_user_data=True)

    def encode(self, record: dict[str, Any]) -> bytes:
        if len(self.vocab.strings) > _MAX_STRINGS:
            self.vocab = self._vocab_class()
        with msgpack_plugins_looked_up_once():
            return record_to_doc(self.vocab, record, self.task).to_bytes()

    def begin(self, out: BinaryIO) -> None:
        self._docbin = self._docbin_class(store_user_data=True)

    def add(self, out: BinaryIO, encoded: bytes) -> None:
        from spacy.tokens import Doc

        with msgpack_plugins_looked_up_once():
            self._docbin.add(Doc(self.vocab).from_bytes(encoded))

    def end(self, out: BinaryIO) -> None:
        with msgpack_plugins_looked_up_once():
            out.write(self._docbin.to_bytes())
        self._docbin = self._docbin_class(store_user_data=True)


@contextlib.contextmanager
def msgpack_plugins_looked_up_once() -> Iterator[None]:
    """srsly collects its msgpack encoders and decoders on each pack and unpack: a scan of every
    installed package's entry points and of catalogue's whole registry, 13 times per Doc through
    `to_bytes`, `from_bytes` and `DocBin.add` (most of a DocBin run's time). In the block they
    are collected once and reused while nothing new is registered: catalogue reads the entry
    points once per process, and a registration grows its registry."""
    import catalogue
    import srsly

    size = len(catalogue.REGISTRY)
    registries = (srsly.msgpack_encoders, srsly.msgpack_decoders)
    for registry in registries:
        found = _MSGPACK_PLUGINS.get(registry.namespace)
        if found is None or found[0] != size:
            found = _MSGPACK_PLUGINS[registry.namespace] = (size, registry.get_all())
        registry.get_all = functools.partial(dict, found[1])
    try:
        yield
    finally:
        for registry in registries:
            vars(registry).pop("get_all", None)


# A msgpack registry's namespace → (catalogue's registry size, its encoders or decoders then).
_MSGPACK_PLUGINS: dict[tuple[str, ...], tuple[int, dict[str, Any]]] = {}


def record_to_doc(vocab, record: dict[str, Any], task: str | None = None):
    """A spaCy `Doc` holding a record's text, sentences, entities (or a chunker's chunks: `task`
    `chunking`), tags or categories."""
    from spacy.parts_of_speech import IDS as UNIVERSAL_POS
    from spacy.tokens import Doc

    text = record["text"]
    tokens = record["tokens"]
    words, spaces, positions = doc_words(text, [(t["start"], t["end"]) for t in tokens])
    doc = Doc(vocab, words=words, spaces=spaces)
    starts = {start for start, _ in record["sentences"]}
    if positions:
        for index in range(len(doc)):
            doc[index].is_sent_start = index == 0
        for number, doc_index in enumerate(positions):
            # Whitespace before the first token belongs to the first sentence.
            doc[doc_index].is_sent_start = doc_index == 0 or (number in starts and number > 0)
    if "spans" in record:
        spans = [doc.char_span(s["start"], s["end"], label=s["label"]) for s in record["spans"]]
        key = CHUNK_SPAN_KEY if task == "chunking" else ENTITY_SPAN_KEY
        # Chunks are in `doc.ents` too, as `spacy convert` writes gold chunks: the file reads
        # back as training data (the component leaves `doc.ents` to a pipeline's NER).
        doc.ents = spans
        doc.spans[key] = spans
        doc.spans[key].attrs["scores"] = [s["score"] for s in record["spans"]]
    elif "label" not in record:
        for token, doc_index in zip(tokens, positions, strict=True):
            doc[doc_index].tag_ = token["tag"]
            if token["tag"] in UNIVERSAL_POS:
                doc[doc_index].pos_ = token["tag"]
    if "probs" in record:
        doc.cats = dict(record["probs"])
    doc.user_data["id"] = record["id"]
    return doc
