"""Models: `Tagger` and `Classifier` = token embedder + BiLSTM encoder + head (composition).

Built from one frozen `ModelConfig`, a `Vocab` and a declared `ModelMeta` (task, schemes, reader
settings, provenance), like nanoGPT's `GPT(config)`. The models compute scores; `decode.py` turns
them into tags, spans and probabilities for people.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..config import ModelConfig
from ..errors import ConfigError
from ..text.schemes import OUTSIDE
from .embeddings import TokenEmbedder, same_values
from .encoder import STEPPED_MIN_BATCH, BiLSTMEncoder
from .encoding import Batch, word_dropout
from .heads import HEADS, CRFHead, SentenceHead, SoftmaxHead, TagHead, TeacherMarginals
from .memory import document_memory
from .meta import ModelMeta
from .quantize import quantize_int8
from .vocab import CASINGS, Index, Vocab


class _Model(nn.Module):
    """What `Tagger` and `Classifier` share about their weights: int8 tagging, and what is saved."""

    # The float weights from before `quantize_int8`; None while the model is float.
    _float_state: dict[str, Tensor] | None = None

    @property
    def quantized(self) -> bool:
        """The LSTMs and linear layers run in int8 (`quantize_int8`)."""
        return self._float_state is not None

    def quantize_int8(self) -> None:
        """Quantize the LSTMs and linear layers to int8 in place, for tagging only."""
        if self._float_state is None:
            self._float_state = quantize_int8(self)

    def float_state_dict(self) -> dict[str, Tensor]:
        """The weights a model folder stores: the float ones, also for a quantized model."""
        return self._float_state if self._float_state is not None else self.state_dict()

    def train(self, mode: bool = True) -> _Model:
        if mode and self._float_state is not None:
            raise ConfigError(
                "an int8 model only tags; train the float weights of its folder "
                "(load_model(path, quantized=False))"
            )
        return super().train(mode)


class Tagger(_Model):
    """A BiLSTM sequence tagger with a CRF or softmax head.

    Args:
        config: the architecture.
        vocab: words, characters and tags (tags in the training scheme).
        meta: the task and schemes (`meta.scheme`, the training scheme, fixes which tag sequences
            can be decoded; None for plain labels such as POS), reader settings, provenance.
    """

    def __init__(self, config: ModelConfig, vocab: Vocab, meta: ModelMeta):
        super().__init__()
        if config.head not in HEADS:
            raise ConfigError(f"model.head must be one of {sorted(HEADS)}, got {config.head!r}")
        if meta.is_classifier:
            raise ConfigError(f"a tagger cannot have the classifier task {meta.task!r}")
        self.config = config
        self.vocab = vocab
        self.meta = meta
        scheme = meta.scheme
        tags = vocab.labels.items
        self.embedder = TokenEmbedder(config, vocab)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = BiLSTMEncoder(
            self.embedder.output_dim, config.hidden, config.layers, config.dropout
        )
        # With document memory the head reads each token's state and its memory side by side.
        head_input = self.encoder.output_dim * (2 if config.doc_memory else 1)
        # Entity tokens are those not tagged O in an entity scheme (None: plain labels).
        self.outside_id = tags.index(OUTSIDE) if scheme is not None and OUTSIDE in tags else None
        if config.entity_word_dropout and self.outside_id is None:
            raise ConfigError(
                "model.entity_word_dropout needs entity tags (a scheme with an O tag); these "
                "tags are plain labels"
            )
        self.head: TagHead
        if config.head == "crf":
            self.head = CRFHead(head_input, tags, scheme)
        else:
            self.head = SoftmaxHead(head_input, tags, scheme, config.constrained)

    @property
    def scheme(self) -> str | None:
        """The training tag scheme; None for plain labels."""
        return self.meta.scheme

    @property
    def output_scheme(self) -> str | None:
        """The scheme predictions are given in (the training file's)."""
        return self.meta.tags_in

    def forward(self, batch: Batch) -> Tensor:
        """Tag scores `(batch, seq_len, num_tags)`: CRF emissions or softmax log-probabilities."""
        if self.config.doc_memory:
            if self.training or torch.is_grad_enabled() or not _plain_projection(self):
                contextual = _contextual(self, batch)
                # shape: (batch, seq_len, 2 * encoder.output_dim)
                features = torch.cat([contextual, document_memory(contextual, batch)], dim=-1)
                return self.head.emissions(self.dropout(features))
            own, others = self.memory_parts(batch)
            return self.head.from_projected(own + document_memory(others, batch))
        if _by_type(self, batch):
            # Inference (no dropout): the encoder applies the emission layer itself.
            return self.head.from_projected(_by_type_contextual(self, batch, self.head.projection))
        return self.head.emissions(self.dropout(_contextual(self, batch)))

    def memory_parts(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """A document-memory tagger's emission layer split in two, for inference: each token's
        own part and what it lends the memory of its word's other occurrences, both
        `(batch, seq_len, num_tags)`.

        The emission layer is linear, so it maps the mean of the other occurrences' states to
        the mean of their projections: `from_projected(own + document_memory(others, batch))`
        are the emissions, and a memory over documents of any size (`decode_torch`) averages
        `num_tags` numbers per token instead of `2 * hidden`. One layer of twice the tag count
        runs where the plain tagger runs its emission layer (fused into the stepped BiLSTM).

        An int8 emission layer cannot be split: it is run on each half of its input with the
        other half zero, which equals the split to int8 rounding.

        Raises:
            ValueError: not a document-memory tagger.
        """
        if not self.config.doc_memory:
            raise ValueError("memory_parts is for document-memory taggers")
        if not _plain_projection(self):
            contextual = _contextual(self, batch)
            zeros = torch.zeros_like(contextual)
            projection = self.head.projection
            others = projection(torch.cat([zeros, contextual], dim=-1))
            others = others - projection(torch.cat([zeros, zeros], dim=-1))
            return projection(torch.cat([contextual, zeros], dim=-1)), others
        stacked = self.stacked_memory_projection()
        num_tags = stacked.out_features // 2
        if _by_type(self, batch):
            projected = _by_type_contextual(self, batch, stacked)
        else:
            projected = stacked(_contextual(self, batch))
        # The bias also lands on padding; the memory reads real tokens only.
        return projected[..., :num_tags], projected[..., num_tags:]

    def stacked_memory_projection(self) -> nn.Linear:
        """A document-memory tagger's float emission layer as `memory_parts` runs it: one layer
        of twice the tags over the BiLSTM state, its rows the own part (with the bias), then what
        the state lends its word's memory (no bias)."""
        weight, bias = self.head.projection.weight, self.head.projection.bias
        # Built once per state of the weights (about 130 µs, a tenth of tagging one sentence),
        # checked by value: thinc's optimizer (spaCy training) writes them in place through
        # shared memory, which no tensor version counts.
        cached = self.__dict__.get("_stacked_memory_projection")
        if cached is not None and same_values(cached[0], (weight, bias)):
            return cached[1]
        width = self.encoder.output_dim
        with torch.device("meta"):
            stacked = nn.Linear(width, 2 * weight.shape[0])
        with torch.no_grad():
            stacked.weight = nn.Parameter(
                torch.cat([weight[:, :width], weight[:, width:]]), requires_grad=False
            )
            stacked.bias = nn.Parameter(
                torch.cat([bias, torch.zeros_like(bias)]), requires_grad=False
            )
            key = (weight.detach().clone(), bias.detach().clone())
        # In `__dict__`, not as a submodule: no state-dict entry.
        self.__dict__["_stacked_memory_projection"] = (key, stacked)
        return stacked

    def loss(self, batch: Batch) -> Tensor:
        """Negative log-likelihood of the gold tags, summed over the batch."""
        assert batch.tag_ids is not None, "loss needs gold tags"
        return self.head.loss(self(batch), batch.tag_ids, batch.mask)

    def distill_loss(
        self, batch: Batch, teacher: TeacherMarginals, weight: float | Tensor
    ) -> Tensor:
        """The loss against gold tags blended with teachers' marginals (`weight` on the teachers:
        one share, or `(batch,)` one per sentence), summed over the batch; `weight` 0 is `loss`."""
        assert batch.tag_ids is not None, "loss needs gold tags"
        return self.head.distill_loss(self(batch), batch.tag_ids, batch.mask, teacher, weight)


class Classifier(_Model):
    """A BiLSTM sentence classifier: embedder → BiLSTM → pooling → softmax; with
    `config.members` > 1, an ensemble of such classifiers in one model, answering with their
    averaged class probabilities.

    The first member's layers are the model's own (`embedder`, `encoder`, `head`), so a
    one-member model's weights are named as they always were; the others are `other_members`,
    reading the first member's pretrained-only word vectors.

    Args:
        config: the architecture.
        vocab: words, characters and class labels.
        meta: the task, reader settings, provenance.
    """

    scheme = None
    output_scheme = None

    def __init__(self, config: ModelConfig, vocab: Vocab, meta: ModelMeta):
        super().__init__()
        if not meta.is_classifier:
            raise ConfigError(f"a classifier cannot have the tagger task {meta.task!r}")
        self.config = config
        self.vocab = vocab
        self.meta = meta
        _add_classifier_layers(self, config, vocab)
        self.other_members = nn.ModuleList(
            ClassifierMember(config, vocab, self.embedder.fixed_embedding)
            for _ in range(config.members - 1)
        )

    def members(self) -> list[nn.Module]:
        """Each member: something with `embedder`, `dropout`, `encoder`, `head` and `config`
        (the model itself first)."""
        return [self, *self.other_members]

    def member_log_probs(self, batch: Batch) -> list[Tensor]:
        """Each member's class log-probabilities `(batch, num_labels)`."""
        return [member.head(_contextual(member, batch), batch.mask) for member in self.members()]

    def forward(self, batch: Batch) -> Tensor:
        """Class log-probabilities `(batch, num_labels)` (of the members' mean probability)."""
        each = self.member_log_probs(batch)
        if len(each) == 1:
            return each[0]
        return torch.logsumexp(torch.stack(each), dim=0) - math.log(len(each))

    def loss(self, batch: Batch) -> Tensor:
        """Cross-entropy summed over the batch, and over the members: each member learns on its
        own, as separately trained ones would (not the loss of their average, which would make
        them lean on each other)."""
        assert batch.tag_ids is not None, "loss needs gold labels"
        return torch.stack(
            [self.head.loss(lp, batch.tag_ids) for lp in self.member_log_probs(batch)]
        ).sum()

    def distill_loss(self, batch: Batch, teacher_probs: Tensor, weight: float) -> Tensor:
        """`()` loss against a blend of the gold labels and the teachers' class probabilities
        `(batch, num_labels)` (see `SentenceHead.distill_loss`), summed over the members."""
        assert batch.tag_ids is not None, "loss needs gold labels"
        return torch.stack(
            [
                self.head.distill_loss(lp, batch.tag_ids, teacher_probs, weight)
                for lp in self.member_log_probs(batch)
            ]
        ).sum()


class ClassifierMember(nn.Module):
    """A member of an ensemble `Classifier` after the first: its own trained word vectors,
    BiLSTM and head, and the first member's pretrained-only word vectors."""

    def __init__(self, config: ModelConfig, vocab: Vocab, shared_fixed: nn.Embedding):
        super().__init__()
        self.config = config
        _add_classifier_layers(self, config, vocab, shared_fixed)


def _add_classifier_layers(
    module: nn.Module, config: ModelConfig, vocab: Vocab, shared_fixed: nn.Embedding | None = None
) -> None:
    """A classifier's layers on `module`, in the order their initial weights are drawn."""
    module.embedder = TokenEmbedder(config, vocab, shared_fixed)
    module.dropout = nn.Dropout(config.dropout)
    module.encoder = BiLSTMEncoder(
        module.embedder.output_dim, config.hidden, config.layers, config.dropout
    )
    module.head = SentenceHead(
        module.encoder.output_dim, len(vocab.labels), config.pooling, config.dropout
    )


def word_embedders(model: Tagger | Classifier) -> list[TokenEmbedder]:
    """The token embedders of `model`: one, or one per member of an ensemble classifier."""
    if isinstance(model, Classifier):
        return [member.embedder for member in model.members()]
    return [model.embedder]


def _plain_projection(model: Tagger) -> bool:
    """The emission layer is a float `nn.Linear` with a bias (not int8), so it can be split."""
    projection = model.head.projection
    return type(projection) is nn.Linear and projection.bias is not None


def _by_type(model: Tagger | Classifier, batch: Batch) -> bool:
    """Whether `_contextual` embeds the batch once per distinct token: a large batch at inference
    (see `BiLSTMEncoder.forward_types`)."""
    return (
        not model.training
        and not torch.is_grad_enabled()
        and batch.word_ids.shape[0] >= STEPPED_MIN_BATCH
    )


def _contextual(model: Tagger | Classifier, batch: Batch) -> Tensor:
    """Token features through the BiLSTM: `(batch, seq_len, 2 * hidden)`; word dropout while
    training. A large batch at inference is embedded once per distinct token (see
    `BiLSTMEncoder.forward_types`): the same features, computed less often."""
    if _by_type(model, batch):
        return _by_type_contextual(model, batch)
    word_ids = batch.word_ids
    if model.training:
        entity_tokens = None
        if model.config.entity_word_dropout and batch.tag_ids is not None:
            entity_tokens = batch.tag_ids != model.outside_id
        word_ids = word_dropout(
            word_ids,
            batch.mask,
            model.config.word_dropout,
            entity_tokens,
            model.config.entity_word_dropout,
        )
    features = model.embedder(
        word_ids, batch.casing_ids, batch.char_ids, batch.spelling_ids, batch.mask
    )
    return model.encoder(model.dropout(features), batch.mask)


def _by_type_contextual(
    model: Tagger | Classifier, batch: Batch, projection: nn.Module | None = None
) -> Tensor:
    """`_contextual` of a batch `_by_type` takes: its distinct tokens embedded once each; with
    `projection`, that layer applied by the encoder to its output."""
    words, casings, spellings, real, token_types = _token_types(batch)
    type_features = model.embedder(
        words[None], casings[None], batch.char_ids, spellings[None], real[None]
    )[0]
    return model.encoder.forward_types(type_features, token_types, batch.mask, projection)


def _token_types(batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The distinct tokens of a batch: what the embedder reads of a token is its word, casing and
    spelling, so equal triples have equal features. All padding is one type, marked not real.

    Returns:
        `(words, casings, spellings, real, token_types)`: the first four `(types,)`, the types'
        ids and whether each is a real token; `token_types` `(batch, seq_len)`, each token's type.
    """
    spellings = batch.char_ids.shape[0]
    key = (batch.word_ids * len(CASINGS) + batch.casing_ids) * spellings + batch.spelling_ids
    types, token_types = torch.unique(key.masked_fill(~batch.mask, -1), return_inverse=True)
    real = types >= 0
    types = types.clamp(min=0)
    words_and_casings = types // spellings
    return (
        words_and_casings // len(CASINGS),
        words_and_casings % len(CASINGS),
        types % spellings,
        real,
        token_types,
    )


def build_model(config: ModelConfig, vocab: Vocab, meta: ModelMeta) -> Tagger | Classifier:
    """The model a config asks for."""
    if config.task == "tagger":
        return Tagger(config, vocab, meta)
    if config.task == "classifier":
        return Classifier(config, vocab, meta)
    raise ConfigError(f"model.task must be tagger or classifier, got {config.task!r}")


def tensor_shapes(config: ModelConfig, vocab: Vocab, meta: ModelMeta) -> dict[str, torch.Size]:
    """The name and shape of every tensor in the state of the model a config asks for, with no
    memory allocated for it (built on the meta device).

    Raises:
        ConfigError, ValueError: as `build_model`.
    """
    with torch.device("meta"), _NoEmbeddingInit():
        skeleton = build_model(config, vocab, meta)
    return {name: tensor.shape for name, tensor in skeleton.state_dict().items()}


def build_for_weights(config: ModelConfig, vocab: Vocab, meta: ModelMeta) -> Tagger | Classifier:
    """`build_model`, its embedding tables left as allocated (not drawn from torch's generator):
    for loading weights over every tensor (`load_state_dict(strict=True)`), where drawing them
    first only costs time (~40 ms for the shipped NER model)."""
    with _NoEmbeddingInit():
        return build_model(config, vocab, meta)


class _NoEmbeddingInit(TorchFunctionMode):
    """Skips `nn.init.normal_`, the embeddings' initialiser, for tensors about to be overwritten.
    On the meta device torch runs it through a reference implementation that first imports
    torch._dynamo: seconds of every model load's cold start."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is nn.init.normal_:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def extend_labels(
    model: Tagger | Classifier, labels: Sequence[str], meta: ModelMeta | None = None
) -> Tagger | Classifier:
    """A copy of `model` that can also predict `labels`, keeping everything it knows exactly.

    The label vocabulary becomes the model's own labels in their order, then `labels` in the
    order given. Every weight is copied: whole tensors where the label set does not enter (the
    embeddings, the encoder), and the old labels' part of the output layer (the emission
    projection's rows of a tagger, the class rows of a classifier) and of the CRF (start, end and
    transition scores among old tags). The new labels' rows, and the CRF scores of moving into
    and out of new tags, are initialised as a fresh model's are (from torch's global generator:
    seed it first for a reproducible model). Scheme constraints (the CRF's allowed transitions,
    the softmax head's constraints, entity boundaries) are rebuilt for the whole tag set.

    So until it is trained, the extended model scores every old path as before: a new tag only
    wins where its fresh, small scores beat the trained ones.

    Args:
        model: the model to extend (left as it was).
        labels: labels to add; none of them may be one the model has.
        meta: the new model's declared metadata (default: the model's).
    Returns:
        The extended model, in eval mode, on the device of `model`.
    Raises:
        ValueError: `labels` repeats a label or holds one the model has.
    """
    old = model.vocab.labels.items
    if len(set(labels)) != len(labels) or set(labels) & set(old):
        raise ValueError("labels to add must be distinct and new to the model")
    vocab = Vocab(
        model.vocab.words, model.vocab.chars, Index([*old, *labels]), model.vocab.trainable_words
    )
    extended = build_model(model.config, vocab, meta or model.meta)
    parameters = {name for name, _ in extended.named_parameters()}
    state = extended.state_dict()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            target = state[name]
            if target.shape == value.shape:
                target.copy_(value)
            elif name in parameters:
                # The label dimensions grew; every other dimension is the same.
                target[tuple(slice(0, size) for size in value.shape)] = value
            # Else a buffer the tag set decides (constraints): the new model's own.
    extended.load_state_dict(state)
    device = next(model.parameters()).device
    return extended.to(device).eval()
