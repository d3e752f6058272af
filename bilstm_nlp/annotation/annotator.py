"""Raw text → annotated documents: tokens, sentences, tags, spans with character offsets.

Sits after decoding and before the writers. `Annotator` (and `annotate_texts` / `annotate_text`)
turns raw text into `Annotation`s: spaCy tokens with character offsets, sentences, then tags and
spans with character offsets and probabilities (taggers) or a label with every label's probability
(classifiers). `Annotator.records` gives the JSON-able records every writer takes for a batch of
texts: the one function the `tag` and `annotate` commands (through `files.annotate_paths`), and
any engine or service, call. `Annotator.annotate_sentences` is the step after tokenization on its
own, for callers with their own tokens (the spaCy component). The Annotator owns the caches of a
model's use (its tokenizer, PTB escapes and token encoder); nothing is set on the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from ..decode import (
    SentenceUncertainty,
    check_scheme,
    classify_sentences,
    garbage_collection_paused,
    tag_sentences,
)
from ..errors import ConfigError
from ..nn.ids import TokenEncoder
from ..text.tokenize import PtbEscapes, Token, Tokenizer
from .writers import make_writer

if TYPE_CHECKING:
    import torch

    from ..nn.model import Classifier, Tagger

# Longer sentences are tagged in pieces: the BiLSTM needs no wider context, and the cost of exact
# entity probabilities grows with sentence length times entities.
MAX_SENTENCE_TOKENS = 256


@dataclass(frozen=True)
class TextSpan:
    """An entity or chunk in a text.

    Attributes:
        start: character offset of its first character in the document text.
        end: character offset just past its last character (`text[start:end]` is the span).
        label: the entity or chunk type (`ORG`, `NP`).
        text: `text[start:end]`.
        score: its probability (exact for CRF models; see `decode.tag_sentences`).
        token_start: index of its first token in the document.
        token_end: index just past its last token.
    """

    start: int
    end: int
    label: str
    text: str
    score: float
    token_start: int
    token_end: int


@dataclass
class Annotation:
    """A model's output for one raw-text document.

    Attributes:
        text: the document, exactly as given; every offset points into it.
        tokens: tokens with character offsets (their text is the original text, never an escape).
        sentences: `(token_start, token_end)` of each sentence (long ones cut into pieces).
        tags: a tag per token (taggers; in the training file's scheme unless another was asked
            for); empty for classifiers.
        tag_probs: the probability of each tag.
        spans: entities or chunks with character offsets; None for models without a tag scheme
            (POS) and for classifiers.
        kbest: per sentence, the k best tag sequences with their probabilities; None when not
            asked for (an empty document asked for them has `[]`).
        label: a classifier's label; None for taggers and for an empty document.
        probs: a classifier's probability for every label (empty for an empty document); None for
            taggers.
        uncertainty: per sentence, how unsure the tagger is of it (when asked for; see
            `decode.SentenceUncertainty`). Not part of the record.
    """

    text: str
    tokens: list[Token]
    sentences: list[tuple[int, int]]
    tags: list[str] = field(default_factory=list)
    tag_probs: list[float] = field(default_factory=list)
    spans: list[TextSpan] | None = None
    kbest: list[list[tuple[list[str], float]]] | None = None
    label: str | None = None
    probs: dict[str, float] | None = None
    uncertainty: list[SentenceUncertainty] = field(default_factory=list)

    def to_record(self, doc_id: Any = None) -> dict[str, Any]:
        """The JSON-able record every writer takes; scores rounded to 4 decimals.

        Keys, in order: `id`, `text`, `tokens` (`text`, `start`, `end`, and for taggers `tag`,
        `score`), `sentences` (`[token_start, token_end]`), then for taggers with a scheme
        `spans` (`start`, `end`, `label`, `text`, `score`, `token_start`, `token_end`), with k-best
        `kbest` (per sentence, a list of `{"tags", "prob"}`), and for classifiers `label` and
        `probs`.
        """
        record: dict[str, Any] = {"id": doc_id, "text": self.text}
        if self.probs is None:
            record["tokens"] = [
                {"text": t.text, "start": t.start, "end": t.end, "tag": tag, "score": round(p, 4)}
                for t, tag, p in zip(self.tokens, self.tags, self.tag_probs, strict=True)
            ]
        else:
            record["tokens"] = [
                {"text": t.text, "start": t.start, "end": t.end} for t in self.tokens
            ]
        record["sentences"] = [[start, end] for start, end in self.sentences]
        if self.spans is not None:
            record["spans"] = [
                {
                    "start": s.start,
                    "end": s.end,
                    "label": s.label,
                    "text": s.text,
                    "score": round(s.score, 4),
                    "token_start": s.token_start,
                    "token_end": s.token_end,
                }
                for s in self.spans
            ]
        if self.kbest is not None:
            record["kbest"] = [
                [{"tags": tags, "prob": round(prob, 4)} for tags, prob in sentence]
                for sentence in self.kbest
            ]
        if self.probs is not None:
            record["label"] = self.label
            record["probs"] = {name: round(p, 4) for name, p in self.probs.items()}
        return record


def check_output(classifier: bool, fmt: str = "jsonl", k_best: int = 0) -> None:
    """Refuse what a classifier's output cannot hold: token tags (CoNLL) and k-best tag sequences.

    Args:
        classifier: the model (or the annotations) is a classifier's.
        fmt: the output format.
        k_best: k best tag sequences asked for.
    Raises:
        ConfigError: CoNLL or k-best for a classifier.
    """
    if not classifier:
        return
    if fmt == "conll":
        raise ConfigError("CoNLL output holds token tags; for a classifier use jsonl")
    if k_best:
        raise ConfigError("k-best tag sequences need a tagger; this model is a classifier")


def escapes_for(model: Tagger | Classifier) -> PtbEscapes:
    """The PTB escapes a model wants, read off its training words (not its pretrained-only words:
    GloVe has `-lrb-` too). A model trained on CoNLL-2000 or SST has `-lrb-` there; one trained on
    CoNLL-2003 or UD has `(`."""
    vocab = model.vocab
    return PtbEscapes.detect(vocab.words.items[2 : vocab.trainable_words])


class Annotator:
    """Raw text → `Annotation`s with one model; keeps the tokenizer and the model's escapes.

    Create one and call it on many batches of texts (`annotate_texts` makes a new one per call).

    Args:
        model: a loaded tagger or classifier.
        batch_size: sentences (classifier: documents) per model batch.
        k_best: also give the k best tag sequences of each sentence (taggers; 0: none).
        max_sentence_tokens: longer sentences are tagged in pieces of this many tokens.
        device: where the model runs.
        uncertainty: also each sentence's uncertainty (taggers; what `select` ranks by).
        low_latency: score short batches for speed (`decode.tag_sentences`): for one text at a
            time (the spaCy component); probabilities then depend on how sentences were
            batched in their last bits, so files (`annotate`, resumable) keep it off.
        scheme: write tags (and k-best paths) in this scheme, `IOB1`, `IOB2`, `BIOES` or
            `BILOU`, each tag's probability being that of the tag as written; None: the
            training file's scheme. Spans do not depend on it.
    Raises:
        ConfigError: `k_best` or `uncertainty` with a classifier (see `check_output`); a
            `scheme` for a model whose labels have none, or no known scheme.
    """

    def __init__(
        self,
        model: Tagger | Classifier,
        *,
        batch_size: int = 256,
        k_best: int = 0,
        max_sentence_tokens: int = MAX_SENTENCE_TOKENS,
        device: str | torch.device = "cpu",
        uncertainty: bool = False,
        low_latency: bool = False,
        scheme: str | None = None,
    ) -> None:
        check_output(model.meta.is_classifier, k_best=k_best)
        check_scheme(model, scheme)
        if uncertainty and model.meta.is_classifier:
            raise ConfigError("sentence uncertainty needs a tagger; this model is a classifier")
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        if k_best < 0:
            raise ConfigError(f"--k-best must be at least 0, got {k_best}")
        self.model = model
        self.batch_size = batch_size
        self.k_best = k_best
        self.uncertainty = uncertainty
        self.low_latency = low_latency
        self.scheme = scheme
        self.device = device
        self.tokenizer = Tokenizer(max_sentence_tokens)
        self.escapes = escapes_for(model)
        # Remembers the tokens it has encoded across calls (annotation windows): the model's
        # cache, kept here so the model stays as it was built.
        self.encoder = TokenEncoder(model.vocab, model.config.max_word_chars)

    def __call__(self, texts: Sequence[str], show_progress: bool = False) -> list[Annotation]:
        """Annotate `texts`; one `Annotation` per text, in order (an empty text gets an empty
        one)."""
        with garbage_collection_paused():
            return self.annotate_sentences(texts, list(self.tokenizer.pipe(texts)), show_progress)

    def records(self, texts: Sequence[str], ids: Sequence[Any]) -> list[dict[str, Any]]:
        """Annotate `texts` as one batch and give each its record (`Annotation.to_record`).

        The one function that makes records, whoever runs it (this process, a worker process,
        an engine, a service): the same texts in one call give the same records, byte for byte
        once encoded, whatever else runs.

        Args:
            texts: documents of any length; an empty one gets an empty record.
            ids: the documents' ids, one per text, written as each record's `id`.
        Returns:
            One record per text, in order.
        """
        annotations = self(texts)
        return [a.to_record(doc_id) for a, doc_id in zip(annotations, ids, strict=True)]

    def annotate_sentences(
        self,
        texts: Sequence[str],
        documents: Sequence[Sequence[Sequence[Token]]],
        show_progress: bool = False,
    ) -> list[Annotation]:
        """Annotate documents already cut into sentences of tokens: the step after tokenization.

        The tokens are PTB-escaped as the model wants, tagged (taggers, in batches of sentences
        across all the documents) or classified (classifiers: a document's tokens together), and
        spans are mapped back to character offsets into their text.

        Args:
            texts: the documents' texts; the tokens' offsets point into them.
            documents: per text, its sentences, each a non-empty list of tokens (whitespace
                dropped; cut to at most `max_sentence_tokens` by the caller if wanted). A text
                with no sentence gets an empty annotation.
            show_progress: a progress bar on stderr.
        Returns:
            One `Annotation` per text, in order. Its tokens are the sentences' tokens in order, so
            `TextSpan.token_start/token_end` and `sentences` index that flattened list.
        """
        if self.model.meta.is_classifier:
            return self._classify(texts, documents, show_progress)
        return self._tag(texts, documents, show_progress)

    def _tag(self, texts, documents, show_progress: bool) -> list[Annotation]:
        escaped = [
            words
            for text, sentences in zip(texts, documents, strict=True)
            for words in self.escapes.apply_document(text, sentences)
        ]
        # Each text is a document: a model with document memory reads its sentences together.
        sentence_documents = [
            number for number, sentences in enumerate(documents) for _ in sentences
        ]
        tagged = iter(
            tag_sentences(
                self.model,
                escaped,
                documents=sentence_documents,
                batch_size=self.batch_size,
                k=self.k_best,
                device=self.device,
                show_progress=show_progress,
                encoder=self.encoder,
                uncertainty=self.uncertainty,
                low_latency=self.low_latency,
                scheme=self.scheme,
            )
        )
        has_spans = self.model.scheme is not None
        results = []
        for text, sentences in zip(texts, documents, strict=True):
            tokens: list[Token] = []
            ranges, tags, probs, spans, kbest, unsure = [], [], [], [], [], []
            for sentence in sentences:
                result = next(tagged)
                offset = len(tokens)
                for span in result.spans:
                    start, end = sentence[span.start].start, sentence[span.end - 1].end
                    spans.append(
                        TextSpan(
                            start,
                            end,
                            span.label,
                            text[start:end],
                            span.score,
                            offset + span.start,
                            offset + span.end,
                        )
                    )
                tokens.extend(sentence)
                ranges.append((offset, len(tokens)))
                tags.extend(result.tags)
                probs.extend(result.tag_probs)
                if self.k_best:
                    kbest.append(result.kbest)
                if result.uncertainty is not None:
                    unsure.append(result.uncertainty)
            results.append(
                Annotation(
                    text,
                    tokens,
                    ranges,
                    tags,
                    probs,
                    spans if has_spans else None,
                    kbest if self.k_best else None,
                    uncertainty=unsure,
                )
            )
        return results

    def _classify(self, texts, documents, show_progress: bool) -> list[Annotation]:
        present = [i for i, sentences in enumerate(documents) if sentences]
        classified = classify_sentences(
            self.model,
            [
                [
                    word
                    for words in self.escapes.apply_document(texts[i], documents[i])
                    for word in words
                ]
                for i in present
            ],
            batch_size=self.batch_size,
            device=self.device,
            show_progress=show_progress,
            encoder=self.encoder,
        )
        results = []
        for text, sentences in zip(texts, documents, strict=True):
            tokens = [token for sentence in sentences for token in sentence]
            ranges, position = [], 0
            for sentence in sentences:
                ranges.append((position, position + len(sentence)))
                position += len(sentence)
            results.append(Annotation(text, tokens, ranges, probs={}))
        for index, result in zip(present, classified, strict=True):
            results[index].label = result.label
            results[index].probs = result.probs
        return results


def annotate_texts(
    model: Tagger | Classifier,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    k_best: int = 0,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    scheme: str | None = None,
) -> list[Annotation]:
    """Annotate raw texts (tokenized with spaCy, PTB-escaped if the model wants it).

    Args:
        model: a loaded tagger or classifier.
        texts: documents of any length; empty ones get empty annotations.
        batch_size: sentences per model batch.
        k_best: the k best tag sequences per sentence too (taggers).
        device: where the model runs.
        show_progress: a progress bar on stderr.
        scheme: the scheme to write tags in (see `Annotator`); None: the training file's.
    Returns:
        One `Annotation` per text, in order. Makes a new tokenizer: in loops, use an `Annotator`.
    """
    annotator = Annotator(model, batch_size=batch_size, k_best=k_best, device=device, scheme=scheme)
    return annotator(texts, show_progress)


def write_annotations(
    annotations: Sequence[Annotation],
    ids: Sequence[Any],
    fmt: str,
    out: BinaryIO,
    task: str | None = None,
) -> None:
    """Write annotations (with their ids) to a binary stream in one output format; `task`, the
    model's, decides where a DocBin puts spans.

    Raises:
        ConfigError: an unknown format, or CoNLL for a classifier's annotations.
    """
    writer = make_writer(fmt, task)
    check_output(any(a.probs is not None for a in annotations), fmt)
    writer.begin(out)
    for annotation, doc_id in zip(annotations, ids, strict=True):
        writer.add(out, writer.encode(annotation.to_record(doc_id)))
    writer.end(out)
    out.flush()


def annotate_text(model: Tagger | Classifier, text: str, *, k_best: int = 0) -> Annotation:
    """Annotate one raw text (see `annotate_texts`)."""
    return annotate_texts(model, [text], k_best=k_best)[0]
