"""spaCy pipeline components: `bilstm_tagger` (NER, POS, chunking) and `bilstm_textcat` (sentiment).

The last stage, beside the writers: a trained model inside any spaCy pipeline. Docs come from the
pipeline's tokenizer; the component picks the sentences the model sees (the `doc.sents` of an
earlier pipe, or else the rule-based sentencizer `annotate` uses), drops whitespace tokens, cuts
sentences longer than `annotate.MAX_SENTENCE_TOKENS` (`tokenize.cut_sentence`) and hands them to
`annotate.Annotator.annotate_sentences` (PTB escapes the model wants, `decode.tag_sentences` /
`decode.classify_sentences`), batched across all the documents of a `pipe` minibatch. On text
that spaCy tokenizes the same way, its output equals `annotate`'s (and so the CLI's).

Both factories are registered with spaCy through the `spacy_factories` entry point, so
`nlp.add_pipe("bilstm_tagger", config={"model": "ner"})` needs no import of `bilstm_nlp`. A saved
pipeline holds the model itself (a model directory per component, see `serialize.py`), so
`spacy.load` never reads the `model` path of the config: that path is only read, on first use,
by a component that was not loaded from disk or bytes.

What a `bilstm_tagger` sets depends on the model it holds:

- NER (a tag scheme, `meta.task` not `chunking`): `doc.ents`, and every predicted entity with its
  probability in the span group `doc.spans["bilstm_ents"]` (scores in `.attrs["scores"]`, one
  float per span, spaCy's spancat convention; `annotate -f docbin` writes the same).
- chunking (`meta.task == "chunking"`): the span group `doc.spans["bilstm_chunks"]`, scored alike.
- POS (no scheme): `token.pos_` when every label is one of the 17 Universal POS tags, else
  `token.tag_`. Whitespace tokens get nothing.

A `bilstm_textcat` sets `doc.cats` to every label's probability (a doc without a non-space token
is left as it is, as `annotate` gives it no label).

`overwrite` (default False) decides what happens to annotations an earlier pipe made: False keeps
them, like spaCy's `entity_ruler` with `overwrite_ents=False`: existing entities stay and ours are
added where they overlap none; a token's existing `pos_`/`tag_` stays; existing `doc.cats` keys
keep their value. True replaces them: `doc.ents` becomes exactly our entities, every token gets our
tag, our labels' probabilities replace theirs. The span groups are the component's own and are
always written. Sentence boundaries are read, never set: add spaCy's `sentencizer` before the
component for `doc.sents` (the results stay the same; it is the sentencizer used here).

`nlp.pipe(texts, n_process=2)` forks: if the parent already ran the model with several torch
threads, the children hang in OpenMP (torch and fork do not mix). Call `torch.set_num_threads(1)`
before the first doc, or `multiprocessing.set_start_method("spawn")`.
"""

# No `from __future__ import annotations`: spaCy validates factory arguments from their runtime
# type annotations (the model types are quoted: torch is imported only for a torch model).

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import minibatch

from ..annotation.annotator import MAX_SENTENCE_TOKENS, Annotation, Annotator
from ..errors import ConfigError, ModelFileError
from ..serialize import MODEL_FILES, load_model, load_model_files, save_model
from ..text.tokenize import Token, cut_sentence

if TYPE_CHECKING:
    from ..nn.model import Classifier, Tagger

logger = logging.getLogger(__name__)

ENTS_KEY = "bilstm_ents"
CHUNKS_KEY = "bilstm_chunks"
SCORES_ATTR = "scores"
UPOS_TAGS = frozenset(
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)
# spaCy keeps score weights per factory, not per component, and `bilstm_tagger` reports one of
# these main figures by its model (see `BilstmTagger.score`); each is weighted alike, so the
# weighted score that `spacy train` ranks by is that figure times a constant. The textcat's are
# spaCy's exclusive `textcat`'s.
TAGGER_SCORE_WEIGHTS = {
    "ents_f": 1.0,
    "ents_p": 0.0,
    "ents_r": 0.0,
    "ents_per_type": None,
    "pos_acc": 1.0,
    "tag_acc": 1.0,
    f"spans_{CHUNKS_KEY}_f": 1.0,
    f"spans_{CHUNKS_KEY}_p": 0.0,
    f"spans_{CHUNKS_KEY}_r": 0.0,
    f"spans_{CHUNKS_KEY}_per_type": None,
}
TEXTCAT_SCORE_WEIGHTS = {"cats_score": 1.0} | dict.fromkeys(
    "cats_score_desc cats_micro_p cats_micro_r cats_micro_f cats_macro_p cats_macro_r "
    "cats_macro_f cats_macro_auc cats_f_per_type".split()
)
# The files of a model directory: all that `to_bytes` packs and `from_bytes` will write.
_BYTES_KEY = "bilstm_nlp_model_files"


class _BilstmPipe(Pipe):
    """What both components share: the model (loaded on first use or restored by `from_*`),
    batching over docs, and serialization of the model directory."""

    expects_classifier: bool
    factory: str

    def __init__(
        self, nlp: Language, name: str, model: str, batch_size: int, overwrite: bool
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"{name}: batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.model_name = model
        self.batch_size = batch_size
        self.overwrite = overwrite
        self._model: Tagger | Classifier | None = None
        self._annotator: Annotator | None = None

    @property
    def bilstm_model(self) -> "Tagger | Classifier":
        """The model: restored by `from_disk`/`from_bytes`, else loaded from the `model` setting
        on first use (so `spacy.load` of a saved pipeline never reads that path).

        Raises:
            ModelFileError: the `model` setting names no model, or a broken one.
            ConfigError: a classifier in `bilstm_tagger` or a tagger in `bilstm_textcat`.
        """
        if self._model is None:
            self._set_model(load_model(self.model_name))
            logger.info("%s: loaded the model %s", self.name, self.model_name)
        assert self._model is not None
        return self._model

    @property
    def annotator(self) -> Annotator:
        """The `Annotator` of the model (its escapes, batch size and sentencizer)."""
        if self._annotator is None:
            # Low latency: spaCy calls a pipe one text at a time (`nlp(text)`). A tagger with a
            # scheme sets spans alone, which no scheme changes: its tags stay in the model's
            # own, so no time goes to respelling them and their probabilities.
            model = self.bilstm_model
            self._annotator = Annotator(
                model,
                batch_size=self.batch_size,
                low_latency=True,
                scheme=None if model.meta.is_classifier else model.scheme,
            )
        return self._annotator

    def _set_model(self, model: "Tagger | Classifier") -> None:
        if model.meta.is_classifier != self.expects_classifier:
            other = "bilstm_textcat" if model.meta.is_classifier else "bilstm_tagger"
            kind = "a classifier" if model.meta.is_classifier else "a tagger"
            source = model.meta.source or self.model_name
            raise ConfigError(
                f"{self.factory} {self.name!r}: {source} is {kind}; add it with the {other} factory"
            )
        self._model = model
        self._annotator = None

    def initialize(self, get_examples=None, *, nlp: Language | None = None) -> None:
        """Load the model now (`nlp.initialize()` calls this), so a bad `model` fails early."""
        self.bilstm_model  # noqa: B018

    def __call__(self, doc: Doc) -> Doc:
        """Annotate one doc: `pipe([doc])`, so one doc and many go through the same code."""
        for processed in self.pipe([doc], batch_size=1):
            return processed
        return doc  # an error handler swallowed this doc's error

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate docs in minibatches of `batch_size` docs (as `TrainablePipe.pipe`): the
        sentences of a whole minibatch go to the model together, sorted by length, in batches of
        the component's `batch_size` sentences.

        Yields:
            The docs, annotated in place, in order.
        """
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as error:
                error_handler(self.name, self, docs, error)

    def predict(self, docs: list[Doc]) -> Any:
        raise NotImplementedError

    def set_annotations(self, docs: list[Doc], predictions: Any) -> None:
        raise NotImplementedError

    def _annotate(
        self, docs: list[Doc], sentences: list[list[list[int]]]
    ) -> list[tuple[list[int], Annotation]]:
        """Annotate the docs' sentences (doc token indices) with the `Annotator`.

        Returns:
            Per doc, its sentences' token indices flattened, and its `Annotation`, whose token
            positions (`TextSpan.token_start/token_end`, tags) index that flattened list.
        """
        documents = [
            [[_token(doc[i]) for i in indices] for indices in doc_sentences]
            for doc, doc_sentences in zip(docs, sentences, strict=True)
        ]
        annotations = self.annotator.annotate_sentences([doc.text for doc in docs], documents)
        flat = [[i for indices in doc_sentences for i in indices] for doc_sentences in sentences]
        return list(zip(flat, annotations, strict=True))

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Write the model as a model directory at `path` (`bilstm_nlp.load(path)` reads it); an
        ONNX model's folder is copied."""
        save_model(self.bilstm_model, path)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> "_BilstmPipe":
        """Load the model directory `to_disk` wrote; the `model` setting is not read."""
        self._set_model(load_model(Path(path)))
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The model directory's files, packed with msgpack as `{file name: bytes}`."""
        if getattr(self.bilstm_model, "backend", "torch") == "onnx":
            raise ConfigError(f"{self.name}: an ONNX model is saved with to_disk, not to_bytes")
        with tempfile.TemporaryDirectory() as folder:
            save_model(self.bilstm_model, folder)
            files = {name: (Path(folder) / name).read_bytes() for name in MODEL_FILES}
        return srsly.msgpack_dumps({_BYTES_KEY: files})

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> "_BilstmPipe":
        """Restore the model from `to_bytes` output; the `model` setting is not read.

        Raises:
            ModelFileError: the bytes are not a packed model directory, or hold a broken one.
        """
        where = f"<{self.name} bytes>"
        try:
            files = srsly.msgpack_loads(bytes_data)[_BYTES_KEY]
        except Exception as error:  # msgpack raises several unrelated types on corrupt data
            raise ModelFileError(f"not a packed model directory: {error!r}", where) from None
        if (
            not isinstance(files, dict)
            or set(files) != set(MODEL_FILES)
            or not all(isinstance(data, bytes) for data in files.values())
        ):
            raise ModelFileError(f"expected the files {', '.join(MODEL_FILES)}", where)
        self._set_model(load_model_files(files))
        return self


class BilstmTagger(_BilstmPipe):
    """A bilstm-nlp tagger as a spaCy component: NER, POS or chunking, by the model it holds.

    Args:
        nlp: the pipeline.
        name: the component's name in it.
        model: a model directory or a shipped model's name (`ner`, `pos`, `chunk`).
        batch_size: sentences per model batch.
        overwrite: replace annotations an earlier pipe made (see the module docstring).
    """

    expects_classifier = False
    factory = "bilstm_tagger"

    def predict(self, docs: list[Doc]) -> list[tuple[list[int], Annotation]]:
        """Tag the docs without changing them.

        Returns:
            Per doc, `(doc token indices, Annotation)`: the indices of the tokens the model saw,
            in order; token positions in the `Annotation` (tags, `TextSpan.token_start/token_end`)
            index that list.
        """
        return self._annotate(docs, [self._sentences(doc) for doc in docs])

    def set_annotations(
        self, docs: list[Doc], predictions: list[tuple[list[int], Annotation]]
    ) -> None:
        """Write entities, chunks or tags (see the module docstring)."""
        model = self.bilstm_model
        if model.scheme is None:
            attribute = "pos_" if set(model.vocab.labels.items) <= UPOS_TAGS else "tag_"
            for doc, (indices, annotation) in zip(docs, predictions, strict=True):
                self._set_tags(doc, indices, annotation.tags, attribute)
            return
        chunking = model.meta.task == "chunking"
        for doc, (indices, annotation) in zip(docs, predictions, strict=True):
            spans, scores = [], []
            for span in annotation.spans or []:
                spans.append(
                    Span(
                        doc, indices[span.token_start], indices[span.token_end - 1] + 1, span.label
                    )
                )
                scores.append(float(span.score))
            key = CHUNKS_KEY if chunking else ENTS_KEY
            doc.spans[key] = spans
            doc.spans[key].attrs[SCORES_ATTR] = scores
            if not chunking:
                self._set_ents(doc, spans)

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """Score what the model sets against `example.reference` with spaCy's own scorers (what
        `nlp.evaluate` and `spacy evaluate` call): NER as spaCy's `ner` (`get_ner_prf`: `ents_p`,
        `ents_r`, `ents_f`, `ents_per_type`), chunks as `spancat` scores a span group
        (`spans_bilstm_chunks_p/r/f/per_type`; the reference needs the same span group), POS as
        `morphologizer` (`pos_acc`) or `tagger` (`tag_acc`) score token attributes.

        Args:
            examples: predicted docs (annotated by this component) with their references.
            kwargs: settings for the spaCy scorer (the `scorer_cfg` of `nlp.evaluate`).
        """
        model = self.bilstm_model
        if model.scheme is None:
            attribute = "pos" if set(model.vocab.labels.items) <= UPOS_TAGS else "tag"
            return Scorer.score_token_attr(examples, attribute, **kwargs)
        if model.meta.task != "chunking":
            return get_ner_prf(examples, **kwargs)
        return Scorer.score_spans(
            examples,
            f"spans_{CHUNKS_KEY}",
            getter=lambda doc, _: doc.spans.get(CHUNKS_KEY, []),
            has_annotation=lambda doc: CHUNKS_KEY in doc.spans,
            **{"allow_overlap": False, "labeled": True} | kwargs,
        )

    def _set_ents(self, doc: Doc, spans: list[Span]) -> None:
        if self.overwrite:
            doc.ents = spans
            return
        existing = list(doc.ents)
        taken = {i for ent in existing for i in range(ent.start, ent.end)}
        added = [s for s in spans if not taken.intersection(range(s.start, s.end))]
        doc.ents = existing + added

    def _set_tags(self, doc: Doc, indices: list[int], tags: list[str], attribute: str) -> None:
        for index, tag in zip(indices, tags, strict=True):
            token = doc[index]
            already = token.pos if attribute == "pos_" else token.tag
            if self.overwrite or not already:
                setattr(token, attribute, tag)

    def _sentences(self, doc: Doc) -> list[list[int]]:
        """The doc token indices of each sentence the model sees: `doc.sents` when an earlier
        pipe set them, else the sentencizer `annotate` uses; whitespace tokens dropped and long
        sentences cut into pieces as `annotate` cuts them."""
        if doc.has_annotation("SENT_START"):
            bounds = [(sentence.start, sentence.end) for sentence in doc.sents]
        else:
            [starts] = self.annotator.tokenizer.sentencizer.predict([doc])
            cuts = [i for i, start in enumerate(starts) if start] + [len(doc)]
            bounds = list(zip(cuts, cuts[1:], strict=False))
        sentences = []
        for start, end in bounds:
            indices = [i for i in range(start, end) if not doc[i].is_space]
            sentences.extend(cut_sentence(indices, MAX_SENTENCE_TOKENS, lambda i: doc[i].text))
        return sentences


class BilstmTextcat(_BilstmPipe):
    """A bilstm-nlp sentence classifier as a spaCy component: `doc.cats` gets every label's
    probability, from the whole doc's tokens (as `annotate` classifies a document).

    Args:
        nlp: the pipeline.
        name: the component's name in it.
        model: a model directory or a shipped model's name (`sentiment`).
        batch_size: docs per model batch.
        overwrite: replace `doc.cats` values an earlier pipe set for the same labels.
    """

    expects_classifier = True
    factory = "bilstm_textcat"

    def predict(self, docs: list[Doc]) -> list[Annotation]:
        """Classify the docs without changing them: one `Annotation` per doc, from all its
        non-space tokens (label None, no probabilities, for a doc with none)."""
        sentences = [
            [indices] if (indices := [i for i in range(len(doc)) if not doc[i].is_space]) else []
            for doc in docs
        ]
        return [annotation for _, annotation in self._annotate(docs, sentences)]

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """Score `doc.cats` as spaCy's exclusive `textcat` does (`Scorer.score_cats` over the
        model's labels, `multi_label=False`: the top label is the prediction): `cats_score` (macro
        F over the labels, or the F of `positive_label` when kwargs name one), `cats_micro_f`,
        `cats_macro_f`, `cats_macro_auc`, `cats_f_per_type`, `cats_auc_per_type`.

        Args:
            examples: predicted docs (annotated by this component) with their references.
            kwargs: settings for `Scorer.score_cats` (e.g. `positive_label`).

        A doc of whitespace tokens only gets no `doc.cats` (as `annotate` gives it no label);
        spaCy 3.8's `score_cats` fails on such a doc when its reference has cats (its branch for
        "gold, no prediction" unpacks `max` over the dict's keys), so keep such docs out.
        """
        labels = list(self.bilstm_model.vocab.labels.items)
        settings = {"labels": labels, "multi_label": False} | kwargs
        return Scorer.score_cats(examples, "cats", **settings)

    def set_annotations(self, docs: list[Doc], predictions: list[Annotation]) -> None:
        """Write every label's probability to `doc.cats`."""
        for doc, annotation in zip(docs, predictions, strict=True):
            if annotation.label is None or annotation.probs is None:
                continue
            for label, prob in annotation.probs.items():
                if self.overwrite or label not in doc.cats:
                    doc.cats[label] = float(prob)


def _token(token) -> Token:
    """A spaCy token as a `Token` with its character offsets in the doc text."""
    return Token(token.text, token.idx, token.idx + len(token))


@Language.factory(
    "bilstm_tagger",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "token.pos", "token.tag", "doc.spans"],
    default_config={"model": "ner", "batch_size": 256, "overwrite": False},
    default_score_weights=TAGGER_SCORE_WEIGHTS,
)
def make_bilstm_tagger(
    nlp: Language, name: str, model: str, batch_size: int, overwrite: bool
) -> BilstmTagger:
    """The `bilstm_tagger` factory: a trained NER, POS or chunking model in a spaCy pipeline.

    Args:
        nlp: the pipeline.
        name: the component's name.
        model: a model directory or a shipped model's name (`ner`, `pos`, `chunk`).
        batch_size: sentences per model batch.
        overwrite: replace entities and tags an earlier pipe set.
    """
    return BilstmTagger(nlp, name, model, batch_size, overwrite)


@Language.factory(
    "bilstm_textcat",
    assigns=["doc.cats"],
    default_config={"model": "sentiment", "batch_size": 256, "overwrite": False},
    default_score_weights=TEXTCAT_SCORE_WEIGHTS,
)
def make_bilstm_textcat(
    nlp: Language, name: str, model: str, batch_size: int, overwrite: bool
) -> BilstmTextcat:
    """The `bilstm_textcat` factory: a trained sentence classifier (sentiment) setting `doc.cats`.

    Args:
        nlp: the pipeline.
        name: the component's name.
        model: a model directory or a shipped model's name (`sentiment`).
        batch_size: docs per model batch.
        overwrite: replace `doc.cats` values an earlier pipe set for the same labels.
    """
    return BilstmTextcat(nlp, name, model, batch_size, overwrite)
