"""Training inside spaCy: the pipes of the `bilstm_trainable_tagger` and
`bilstm_trainable_textcat` factories (`spacy_training.py`), trained by `python -m spacy train`.

Beside `spacy_component.py` (which holds a model our CLI trained), this module lets spaCy's own
training loop train the same models: the torch `Tagger` or `Classifier` (`nn/model.py`, built by
`training.setup.build_fresh_model` as `bilstm-nlp train` builds it) is wrapped as a Thinc model
(`spacy_thinc.py`, `PyTorchWrapper_v2`, as spacy-transformers wraps its transformer). Each pipe is a
`TrainablePipe` and one of the inference components (`BilstmTagger`, `BilstmTextcat`):
prediction, what it writes on docs (entities with exact CRF probabilities in
`doc.spans["bilstm_ents"]`, chunks, tags, `doc.cats`) and serialization (a model folder of
JSON + safetensors, never pickle) are theirs, so `bilstm_tagger` / `bilstm_textcat` with
`{"model": "<pipeline>/<pipe name>"}` load what these pipes trained.

Training: `initialize` reads the training examples' gold tokens and labels (entities or chunks
in the pipe's scheme, `token.pos_`/`token.tag_`, or the top `doc.cats` category), builds the
vocabularies and loads the pretrained vectors; `update` runs the BiLSTM through the Thinc shim,
takes our CRF's (softmax's, classifier's) negative log-likelihood per sentence in torch and sends
its gradient back through the shim; `finish_update` clips the gradients' global norm, as our
trainer does, and hands them to spaCy's optimizer (`bilstm_nlp.SGD.v1`, our trainer's SGD with
momentum, in `spacy_thinc.py` with the architectures).

The module imports torch and the training code at import time: the factories import it only
when a pipe is made, since spaCy imports every factory's module whenever it makes a `Language`.
"""

# No `from __future__ import annotations`: spaCy and Thinc validate registered functions'
# arguments from their runtime type annotations.

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab as SpacyVocab
from thinc.api import (
    Model,
    Optimizer,
    torch2xp,
    xp2torch,
)

from .._version import __version__
from ..annotation.annotator import Annotator
from ..decode_torch import forget_numpy_arrays
from ..errors import ConfigError
from ..nn.encoding import Batch, EncodedSentence, collate, encode_tokens
from ..nn.meta import CLASSIFIER_TASKS, ModelMeta, ReaderSettings
from ..nn.model import Classifier, Tagger
from ..text.schemes import SCHEMES, Span, spans_to_tags
from ..training.setup import build_fresh_model
from .spacy_component import CHUNKS_KEY, UPOS_TAGS, BilstmTagger, BilstmTextcat
from .spacy_thinc import (
    model_config,
    set_torch_model,
)

logger = logging.getLogger(__name__)

TRAINABLE_TASKS = ("ner", "chunking", "pos")


class _TrainableBilstm:
    """What both trainable pipes share: the torch model inside the Thinc model, the training
    step (loss in torch, gradients back through the shim), global-norm clipping, and the
    `Annotator` on the model's device. Prediction, annotation and serialization are the
    inference component's (the next class in the method order)."""

    factory: str
    model: Model
    name: str
    batch_size: int
    task: str
    _model: Tagger | Classifier | None
    _annotator: Annotator | None
    _sentence_labels = False

    @property
    def bilstm_model(self) -> Any:
        """The torch model, built by `initialize` or restored by `from_disk`/`from_bytes`.

        Raises:
            ConfigError: neither has happened yet.
        """
        if self._model is None:
            raise ConfigError(
                f"{self.factory} {self.name!r} has no model yet: train it (spacy train, or "
                "nlp.initialize() then nlp.update()) or load a trained pipeline"
            )
        return self._model

    @property
    def annotator(self) -> Annotator:
        """The `Annotator` of the model, on the device the shim put it on (a GPU when spaCy
        trains on one)."""
        if self._annotator is None:
            device = next(self.bilstm_model.parameters()).device
            # Low latency as the inference pipe asks: the same outputs for the same folder.
            self._annotator = Annotator(
                self.bilstm_model, batch_size=self.batch_size, device=device, low_latency=True
            )
        return self._annotator

    def _set_model(self, model: Tagger | Classifier) -> None:
        super()._set_model(model)  # type: ignore[misc]
        if model.meta.task != self.task:
            raise ConfigError(
                f"{self.factory} {self.name!r} is configured for {self.task}; the model it "
                f"loads was trained for {model.meta.task}"
            )
        set_torch_model(self.model, model)

    def _gold_rows(self, example: Example) -> list[tuple[list[str], list[str]]]:
        """The example's training rows: (tokens, labels: a tag per token, or one class)."""
        raise NotImplementedError

    def _build(self, get_examples: Callable[[], Iterable[Example]]) -> Any:
        """A fresh model for the training examples, as `bilstm-nlp train` builds one: the
        vocabularies of their gold tokens, their labels sorted (as our corpus loading sorts
        them), the pretrained vectors the architecture names.

        Raises:
            ConfigError: no training tokens.
        """
        validate_get_examples(get_examples, f"{self.factory}.initialize")
        rows = [row for example in get_examples() for row in self._gold_rows(example)]
        if not rows:
            raise ConfigError(f"{self.name}: the training examples hold no tokens to train on")
        label_names = sorted({label for _, labels in rows for label in labels})
        config = model_config(self.model)
        meta = ModelMeta(
            task=self.task,
            scheme=getattr(self, "scheme", None),
            output_scheme=getattr(self, "scheme", None),
            reader=ReaderSettings(),
            provenance={
                "command": "spacy train",
                "config": {"model": dataclasses.asdict(config)},
                "library_version": __version__,
                "torch_version": torch.__version__,
                "train_sentences": len(rows),
            },
        )
        # From torch's generator, which spaCy seeds with [training] seed.
        seed = int(torch.randint(0, 2**31 - 1, ()))
        model = build_fresh_model(config, [tokens for tokens, _ in rows], label_names, meta, seed)
        logger.info(
            "%s: %d training rows, %d words, %d labels",
            self.name,
            len(rows),
            len(model.vocab.words),
            len(label_names),
        )
        return model.train()

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optimizer | None = None,
        losses: dict[str, float] | None = None,
    ) -> dict[str, float]:
        """One step on a batch of examples: the mean negative log-likelihood per row (a
        sentence, or a text for a classifier) under our CRF, softmax or class head, gradients
        through torch into the shim; the optimizer runs when `sgd` is given (spaCy's loop calls
        `finish_update` itself). `drop` is not used: the architecture's `dropout` and
        `word_dropout` apply, as in `bilstm-nlp train`.

        Returns:
            `losses`, with this batch's loss added under the pipe's name.
        """
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, f"{self.factory}.update")
        batch = self._gold_batch(examples)
        if batch is None:
            return losses
        scores, backprop = self.model.begin_update(batch)
        loss, d_scores = self._loss(batch, scores)
        backprop(d_scores)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """Apply the optimizer to the gradients `update` gathered, first clipped to the
        optimizer's `grad_clip` by their global norm, as `bilstm-nlp train` clips them (Thinc's
        optimizers clip each tensor on its own, which then changes nothing)."""
        if getattr(sgd, "grad_clip", 0) and self._model is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self._model.parameters() if p.grad is not None], sgd.grad_clip
            )
        self.model.finish_update(sgd)
        if isinstance(self._model, Tagger):
            # Thinc writes the new weights into torch's tensors through shared memory, which no
            # tensor version records: the numpy copies of the one-sentence path are made anew.
            forget_numpy_arrays(self._model)

    def get_loss(self, examples: Iterable[Example], scores: Any) -> tuple[float, Any]:
        """The mean negative log-likelihood per row of the gold labels under `scores` (the
        Thinc model's output for the examples' rows) and its gradient w.r.t. `scores`."""
        batch = self._gold_batch(list(examples))
        if batch is None:
            return 0.0, scores * 0
        return self._loss(batch, scores)

    def _loss(self, batch: Batch, output: Any) -> tuple[float, Any]:
        # A leaf of its own: the head's loss (a CRF's transitions take their gradients here)
        # and the gradient w.r.t. the scores, which goes back through the shim into the BiLSTM.
        scores = xp2torch(output, requires_grad=True)
        head = self.bilstm_model.head
        if self._sentence_labels:
            loss = head.loss(scores, batch.tag_ids)
        else:
            loss = head.loss(scores, batch.tag_ids, batch.mask)
        loss = loss / batch.mask.shape[0]
        loss.backward()
        return float(loss.detach()), torch2xp(scores.grad)

    def _gold_batch(self, examples: list[Example]) -> Batch | None:
        model = self.bilstm_model
        labels = model.vocab.labels
        encoded: list[EncodedSentence] = []
        for example in examples:
            for tokens, row_labels in self._gold_rows(example):
                unknown = [label for label in row_labels if label not in labels]
                if unknown:
                    raise ConfigError(
                        f"{self.name}: the label {unknown[0]!r} was not in the examples the "
                        "pipe was initialized with"
                    )
                encoded.append(
                    encode_tokens(
                        tokens, model.vocab, model.config.max_word_chars, labels.ids(row_labels)
                    )
                )
        if not encoded:
            return None
        device = next(model.parameters()).device
        return collate(encoded, self._sentence_labels).to(device)


class BilstmTrainableTagger(_TrainableBilstm, BilstmTagger, TrainablePipe):
    """A BiLSTM-CRF (or softmax) tagger that `spacy train` trains: NER, chunking or POS.

    Args:
        vocab: the pipeline's vocab.
        model: the Thinc model of `bilstm_nlp.BiLSTMTagger.v1`.
        name: the component's name.
        task: `ner` (writes `doc.ents` and `doc.spans["bilstm_ents"]`), `chunking` (the span
            group `bilstm_chunks`, gold from that group or else `doc.ents`) or `pos` (gold and
            predictions in `token.pos_` for Universal POS labels, else `token.tag_`).
        scheme: the tag scheme spans are trained in (`BIOES`, `IOB2`, `IOB1`); None for `pos`.
        batch_size: sentences per model batch when predicting.
        overwrite: replace annotations an earlier pipe made (see `spacy_component`).
    """

    factory = "bilstm_trainable_tagger"

    def __init__(
        self,
        vocab: SpacyVocab,
        model: Model,
        name: str,
        *,
        task: str,
        scheme: str | None,
        batch_size: int,
        overwrite: bool,
    ) -> None:
        if task not in TRAINABLE_TASKS:
            raise ConfigError(
                f"{name}: task must be one of {', '.join(TRAINABLE_TASKS)}, got {task!r}"
            )
        if (task == "pos") != (scheme is None):
            raise ConfigError(
                f"{name}: a {task} pipe needs "
                + (
                    "no scheme (scheme = null)"
                    if task == "pos"
                    else f"a scheme ({', '.join(SCHEMES)})"
                )
            )
        if scheme is not None and scheme not in SCHEMES:
            raise ConfigError(f"{name}: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        super().__init__(None, name, "", batch_size, overwrite)
        self.vocab = vocab
        self.model = model
        self.task = task
        self.scheme = scheme
        self.cfg = {"task": task, "scheme": scheme}
        self.scorer = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Entity or chunk types (span tasks), or tags (pos), sorted."""
        if self._model is None:
            return ()
        tags = self._model.vocab.labels.items
        if self.scheme is None:
            return tuple(sorted(tags))
        return tuple(sorted({tag[2:] for tag in tags if tag != "O"}))

    def initialize(
        self, get_examples: Callable[[], Iterable[Example]], *, nlp: Language | None = None
    ) -> None:
        """Build the model from the training examples' gold tokens and labels (see `_build`).

        Raises:
            ConfigError: no training sentence, or a token with no gold tag (pos).
        """
        self._set_model(self._build(get_examples))

    def _gold_rows(self, example: Example) -> list[tuple[list[str], list[str]]]:
        return self._gold_sentences(example)

    def _gold_sentences(self, example: Example) -> list[tuple[list[str], list[str]]]:
        """The gold sentences of an example's reference doc, each as (tokens, tags): its
        sentences when it has sentence boundaries, else the whole doc; whitespace tokens left
        out, as prediction leaves them out. Tokens no entity covers (or with unknown entity
        annotation) are `O`."""
        doc = example.reference
        bounds = (
            [(s.start, s.end) for s in doc.sents]
            if doc.has_annotation("SENT_START")
            else [(0, len(doc))]
        )
        sentences = []
        for start, end in bounds:
            indices = [i for i in range(start, end) if not doc[i].is_space]
            if not indices:
                continue
            tokens = [doc[i].text for i in indices]
            if self.scheme is None:
                tags = self._gold_tags(doc, indices)
            else:
                tags = spans_to_tags(self._gold_spans(doc, indices), len(indices), self.scheme)
            sentences.append((tokens, tags))
        return sentences

    def _gold_spans(self, doc: Doc, indices: list[int]) -> list[Span]:
        gold = (
            doc.spans[CHUNKS_KEY]
            if self.task == "chunking" and CHUNKS_KEY in doc.spans
            else doc.ents
        )
        position = {index: p for p, index in enumerate(indices)}
        spans = []
        for span in gold:
            inside = [position[i] for i in range(span.start, span.end) if i in position]
            if inside:
                spans.append(Span(inside[0], inside[-1] + 1, span.label_))
        return spans

    def _gold_tags(self, doc: Doc, indices: list[int]) -> list[str]:
        attribute = self._tag_attribute(doc)
        tags = [getattr(doc[i], attribute) for i in indices]
        if not all(tags):
            missing = next(doc[i] for i, tag in zip(indices, tags, strict=True) if not tag)
            raise ConfigError(
                f"{self.name}: the token {missing.text!r} (index {missing.i}) of a training doc "
                f"has no {attribute.rstrip('_')}; a pos pipe trains on fully tagged docs"
            )
        return tags

    def _tag_attribute(self, doc: Doc) -> str:
        # What prediction writes: pos_ when the labels are Universal POS tags (see
        # BilstmTagger.set_annotations); before there is a model, what the gold doc has.
        if self._model is not None:
            return "pos_" if set(self._model.vocab.labels.items) <= UPOS_TAGS else "tag_"
        return "tag_" if doc.has_annotation("TAG") and not doc.has_annotation("POS") else "pos_"

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """spaCy's scores for the task: `ents_p/r/f` and per type (ner), `spans_bilstm_chunks_*`
        (chunking), `pos_acc` or `tag_acc` (pos)."""
        examples = list(examples)
        validate_examples(examples, f"{self.factory}.score")
        if self.task == "ner":
            return Scorer.score_spans(examples, "ents", **kwargs)
        if self.task == "chunking":

            def chunks(doc: Doc, attr: str) -> Any:
                return doc.spans.get(CHUNKS_KEY, []) if CHUNKS_KEY in doc.spans else doc.ents

            return Scorer.score_spans(
                examples, f"spans_{CHUNKS_KEY}", getter=chunks, has_annotation=None, **kwargs
            )
        attribute = (
            "pos"
            if self._model is None or set(self.bilstm_model.vocab.labels.items) <= UPOS_TAGS
            else "tag"
        )
        return Scorer.score_token_attr(examples, attribute, **kwargs)


class BilstmTrainableTextcat(_TrainableBilstm, BilstmTextcat, TrainablePipe):
    """A BiLSTM sentence classifier that `spacy train` trains: one label per doc, from all its
    non-space tokens (as `bilstm_textcat` classifies), `doc.cats` getting every label's
    probability. The gold label of a training doc is its `doc.cats` category with the highest
    score (ties: the first by name), as our DocBin reader reads it.

    Args:
        vocab: the pipeline's vocab.
        model: the Thinc model of `bilstm_nlp.BiLSTMClassifier.v1`.
        name: the component's name.
        task: `sentiment` or `classification` (what the model declares).
        batch_size: docs per model batch when predicting.
        overwrite: replace `doc.cats` values an earlier pipe set for the same labels.
    """

    factory = "bilstm_trainable_textcat"
    _sentence_labels = True

    def __init__(
        self,
        vocab: SpacyVocab,
        model: Model,
        name: str,
        *,
        task: str,
        batch_size: int,
        overwrite: bool,
    ) -> None:
        if task not in CLASSIFIER_TASKS:
            raise ConfigError(
                f"{name}: task must be one of {', '.join(CLASSIFIER_TASKS)}, got {task!r}"
            )
        super().__init__(None, name, "", batch_size, overwrite)
        self.vocab = vocab
        self.model = model
        self.task = task
        self.cfg = {"task": task}
        self.scorer = None

    @property
    def labels(self) -> tuple[str, ...]:
        """The classes, sorted."""
        return () if self._model is None else tuple(sorted(self._model.vocab.labels.items))

    def initialize(
        self, get_examples: Callable[[], Iterable[Example]], *, nlp: Language | None = None
    ) -> None:
        """Build the model from the training examples' gold tokens and classes (`_build`).

        Raises:
            ConfigError: no training text, or a training doc without `doc.cats`.
        """
        self._set_model(self._build(get_examples))

    def _gold_rows(self, example: Example) -> list[tuple[list[str], list[str]]]:
        doc = example.reference
        tokens = [token.text for token in doc if not token.is_space]
        if not tokens:
            return []
        if not doc.cats:
            raise ConfigError(
                f"{self.name}: the training doc {doc.text[:40]!r} has no doc.cats; a textcat "
                "pipe trains on docs with a category"
            )
        best = max(doc.cats.values())
        return [(tokens, [min(label for label, v in doc.cats.items() if v == best)])]

    def score(self, examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
        """spaCy's scores for exclusive classes: `cats_score` (macro F), `cats_micro_f`, ..."""
        examples = list(examples)
        validate_examples(examples, f"{self.factory}.score")
        return Scorer.score_cats(examples, "cats", labels=self.labels, multi_label=False, **kwargs)
