"""Training data: the config's corpus → the rows a run trains on, its dev split, and its labels.

Sits between loading and the loop. The train split's ClassLabel names are the model's label
vocabulary, in order, and its ClassLabel ids the label ids encoded for training: nothing is turned
back into strings to be looked up again. Dev keeps its own names (train's, then the labels only dev
has), and is decoded to strings once, since scoring compares tags as strings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, Features, List, Value

from ..config import DataConfig, ExperimentConfig
from ..corpus.formats import read_sentences
from ..corpus.loading import Corpus, document_numbers, load_tagging, load_texts
from ..errors import ConfigError, InputFormatError
from ..nn.encoding import EncodedSentence, encode_tokens
from ..nn.vocab import Vocab
from ..text.tokenize import tokens_or_tokenized


@dataclass(frozen=True)
class DevSet:
    """Dev sentences with their gold labels as strings (tags per token, or one class each),
    and each sentence's document number (`document_numbers`; taggers)."""

    token_lists: list[list[str]]
    labels: list[list[str]] | list[str]
    documents: list[int] | None = None


@dataclass(frozen=True)
class TrainingData:
    """What a run trains on and is scored against.

    Attributes:
        task: `"tagger"` or `"classifier"`.
        train: the rows trained on (train, or train then dev with `data.train_with_dev`).
        dev: the dev sentences scored each epoch, or None.
        label_names: the ClassLabel names of `train` in id order: the model's labels.
        scheme: the scheme the tags are trained in; None for plain labels and classifiers.
        file_scheme: the scheme the training file is written in.
        reader: the reader settings the model keeps (`ReaderSettings` fields).
        unlabeled: the sentences of `data.unlabeled` (tokens and documents; taught by the
            teachers alone), or None.
    """

    task: str
    train: Dataset
    dev: DevSet | None
    label_names: list[str]
    scheme: str | None
    file_scheme: str | None
    reader: dict[str, Any]
    unlabeled: Dataset | None = None

    @property
    def unlabeled_token_lists(self) -> list[list[str]]:
        return self.unlabeled["tokens"][:] if self.unlabeled is not None else []

    @property
    def token_lists(self) -> list[list[str]]:
        """The tokens of the training rows (classifier texts without tokens are tokenized)."""
        if self.task == "tagger":
            return self.train["tokens"][:]
        return tokens_or_tokenized(self.train["tokens"][:], self.train["text"][:])

    @property
    def documents(self) -> list[int]:
        """Each training row's document number (`document_numbers`), then those of the
        unlabeled sentences, numbered after them."""
        numbers = document_numbers(self.train["doc_id"][:])
        if self.unlabeled is not None:
            first = numbers[-1] + 1 if numbers else 0
            numbers += [first + n for n in document_numbers(self.unlabeled["doc_id"][:])]
        return numbers

    def head(self, count: int) -> TrainingData:
        """The same data with only the first `count` training rows (benches time a part)."""
        train = self.train.select(range(min(count, len(self.train))))
        return dataclasses.replace(self, train=train, unlabeled=None)


def reader_settings(data: DataConfig, task: str) -> dict[str, Any]:
    """The reader options a model keeps, so `evaluate` reads data the way training did."""
    keys = (
        ("input_format", "label_column", "tag_field", "misaligned")
        if task == "tagger"
        else ("input_format", "sst_labels", "text_field", "label_field")
    )
    return {key: getattr(data, key) for key in keys}


def read_training_data(config: ExperimentConfig) -> TrainingData:
    """Read the config's train and dev data (each file once) into `TrainingData`.

    Raises:
        ConfigError: no training file, an unknown task, `train_with_dev` without a dev split.
        InputFormatError: the readers' errors.
    """
    data = config.data
    task = config.model.task
    if data.train is None:
        raise ConfigError("data.train is required: the training file")
    if task not in ("tagger", "classifier"):
        raise ConfigError(f"model.task must be tagger or classifier, got {task!r}")
    corpus = _load(data, task)
    if data.train_with_dev and "dev" not in corpus:
        raise ConfigError("data.train_with_dev needs a dev split (data.dev or data.dev_from_train)")
    # Train on both, in file order (train, then dev); nothing is held out for selection. A label
    # only dev has is a class then; otherwise it is a miss, not a class.
    if data.train_with_dev:
        train = corpus.joined(("train", "dev"))
    else:
        train = corpus["train"]
    dev = None
    if "dev" in corpus and not data.train_with_dev:
        dev = _dev_set(corpus, task)
    feature = train.features[corpus.label_column]
    return TrainingData(
        task=task,
        train=train,
        dev=dev,
        label_names=list(getattr(feature, "feature", feature).names),
        scheme=corpus.info.scheme,
        file_scheme=corpus.info.source_scheme,
        reader=reader_settings(data, task) | {"file_scheme": corpus.info.source_scheme},
        unlabeled=_unlabeled(config),
    )


def _unlabeled(config: ExperimentConfig) -> Dataset | None:
    """The sentences of `data.unlabeled`: tokens and document ids, their labels dropped."""
    path = config.data.unlabeled
    if path is None:
        return None
    if config.model.task != "tagger":
        raise ConfigError("data.unlabeled is for taggers: a classifier has no use for it yet")
    if not config.train.distill_from:
        raise ConfigError(
            "data.unlabeled needs teachers (train.distill_from, --distill-from): its sentences "
            "are taught by their marginals alone"
        )
    # Any tagging format: words alone (one column), or a labelled file whose labels are ignored.
    sentences = [s for s in read_sentences(path, misaligned="drop") if s.tokens]
    if not sentences:
        raise InputFormatError("no sentences: the unlabeled file is empty", path)
    return Dataset.from_dict(
        {"tokens": [s.tokens for s in sentences], "doc_id": [s.doc_id for s in sentences]},
        features=Features({"tokens": List(Value("string")), "doc_id": Value("string")}),
    )


def _load(data: DataConfig, task: str) -> Corpus:
    if task == "tagger":
        return load_tagging(
            data.train,
            data.dev,
            input_format=data.input_format,
            label_column=data.label_column,
            tag_field=data.tag_field,
            scheme=data.scheme,
            dev_from_train=data.dev_from_train,
            canonical=True,
            misaligned=data.misaligned,
        )
    return load_texts(
        data.train,
        data.dev,
        input_format=data.input_format,
        sst_labels=data.sst_labels,
        phrases=data.phrases,
        text_field=data.text_field,
        label_field=data.label_field,
    )


def _dev_set(corpus: Corpus, task: str) -> DevSet:
    dev = corpus["dev"]
    if task == "tagger":
        return DevSet(dev["tokens"][:], corpus.tags("dev"), document_numbers(dev["doc_id"][:]))
    return DevSet(tokens_or_tokenized(dev["tokens"][:], dev["text"][:]), corpus.labels("dev"))


def encode_training_rows(
    data: TrainingData, vocab: Vocab, max_word_chars: int
) -> list[EncodedSentence]:
    """The training rows as ids for `vocab`, whose labels hold all of `data.label_names`.

    A fresh model's labels are `data.label_names`, so the ClassLabel ids are used as they are; a
    model fine-tuned from another keeps that one's label order, and the ids are mapped onto it.
    """
    to_model = vocab.labels.ids(data.label_names)
    identity = to_model == list(range(len(to_model)))
    column = "tags" if data.task == "tagger" else "label"
    encoded = []
    for tokens, label_ids in zip(data.token_lists, data.train[column][:], strict=True):
        if data.task == "tagger":
            ids = label_ids if identity else [to_model[i] for i in label_ids]
        else:
            ids = [label_ids if identity else to_model[label_ids]]
        encoded.append(encode_tokens(tokens, vocab, max_word_chars, ids))
    return encoded
