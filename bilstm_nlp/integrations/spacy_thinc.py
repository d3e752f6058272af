"""Our torch models as Thinc models, and our trainer's optimizer as a Thinc optimizer.

What spaCy's training loop needs to hold our models (`spacy_training.py` has the pipes): the
architectures `bilstm_nlp.BiLSTMTagger.v1` and `bilstm_nlp.BiLSTMClassifier.v1`, whose Thinc
model receives its torch `Tagger`/`Classifier` once the pipe has seen the training data (as
spacy-transformers' model receives its transformer in `initialize`), wrapped by
`PyTorchWrapper_v2`; and `bilstm_nlp.SGD.v1`, SGD with momentum as `torch.optim.SGD` steps,
which spaCy's `SGD.v1` lacks. Registered with spaCy and Thinc by decorator here and, for
configs that name them before this module is imported, by the `spacy_architectures` and
`thinc_optimizers` entry points.
"""

# No `from __future__ import annotations`: spaCy and Thinc validate registered functions'
# arguments from their runtime type annotations.

import dataclasses
from collections.abc import Callable
from typing import Any, Optional

from spacy.util import registry
from thinc.api import ArgsKwargs, Model, Optimizer, PyTorchWrapper_v2
from thinc.backends import get_array_ops
from thinc.types import FloatsXd

from ..config import ModelConfig
from ..nn.encoding import Batch
from ..nn.model import Classifier, Tagger

TAGGER_ARCHITECTURE = "bilstm_nlp.BiLSTMTagger.v1"
CLASSIFIER_ARCHITECTURE = "bilstm_nlp.BiLSTMClassifier.v1"
OPTIMIZER = "bilstm_nlp.SGD.v1"
_CONFIG_ATTR = "bilstm_model_config"


@registry.architectures(TAGGER_ARCHITECTURE)
def bilstm_tagger_model(
    hidden: int = 100,
    layers: int = 1,
    head: str = "crf",
    constrained: bool = True,
    char_encoder: str = "cnn",
    char_dim: int = 30,
    char_hidden: int = 50,
    char_kernel: int = 3,
    max_word_chars: int = 30,
    casing_dim: int = 8,
    vectors: Optional[str] = "glove-6b-50d",  # noqa: UP045 (spaCy reads runtime annotations)
    max_vectors: int = 100_000,
    freeze_vectors: bool = False,
    word_dim: int = 50,
    dropout: float = 0.5,
    word_dropout: float = 0.05,
) -> Model:
    """The BiLSTM tagger as a Thinc model: `Batch` → tag scores `(batch, seq_len, num_tags)`.

    The arguments are `ModelConfig`'s (see `config.py`); the torch module is built by the pipe's
    `initialize`, once the training data has given the vocabularies, and wrapped with
    `PyTorchWrapper_v2`.

    Raises:
        ConfigError: a setting out of range.
    """
    config = ModelConfig(
        task="tagger",
        vectors=vectors,
        word_dim=word_dim,
        max_vectors=max_vectors,
        freeze_vectors=freeze_vectors,
        casing_dim=casing_dim,
        char_encoder=char_encoder,
        char_dim=char_dim,
        char_hidden=char_hidden,
        char_kernel=char_kernel,
        max_word_chars=max_word_chars,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        word_dropout=word_dropout,
        head=head,
        constrained=constrained,
    )
    return Model(
        "bilstm_nlp_tagger", _forward, layers=[], attrs={_CONFIG_ATTR: dataclasses.asdict(config)}
    )


@registry.architectures(CLASSIFIER_ARCHITECTURE)
def bilstm_classifier_model(
    hidden: int = 150,
    layers: int = 1,
    pooling: str = "max",
    char_encoder: str = "none",
    char_dim: int = 30,
    char_hidden: int = 50,
    char_kernel: int = 3,
    max_word_chars: int = 30,
    casing_dim: int = 0,
    vectors: Optional[str] = "glove-6b-50d",  # noqa: UP045 (spaCy reads runtime annotations)
    max_vectors: int = 100_000,
    freeze_vectors: bool = False,
    word_dim: int = 50,
    dropout: float = 0.5,
    word_dropout: float = 0.05,
) -> Model:
    """The BiLSTM sentence classifier as a Thinc model: `Batch` → class log-probabilities
    `(batch, num_labels)`; the arguments are `ModelConfig`'s, defaults our sentiment recipe's.

    Raises:
        ConfigError: a setting out of range.
    """
    config = ModelConfig(
        task="classifier",
        vectors=vectors,
        word_dim=word_dim,
        max_vectors=max_vectors,
        freeze_vectors=freeze_vectors,
        casing_dim=casing_dim,
        char_encoder=char_encoder,
        char_dim=char_dim,
        char_hidden=char_hidden,
        char_kernel=char_kernel,
        max_word_chars=max_word_chars,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        word_dropout=word_dropout,
        pooling=pooling,
    )
    return Model(
        "bilstm_nlp_classifier",
        _forward,
        layers=[],
        attrs={_CONFIG_ATTR: dataclasses.asdict(config)},
    )


def _forward(model: Model, batch: Batch, is_train: bool) -> tuple[Any, Callable]:
    if not model.layers:
        raise ValueError("the BiLSTM model has no torch module yet: call nlp.initialize() first")
    return model.layers[0](batch, is_train)


def _batch_as_args(model: Model, batch: Batch, is_train: bool) -> tuple[ArgsKwargs, Callable]:
    # The batch is torch tensors already; no gradient flows back into ids.
    return ArgsKwargs(args=(batch,), kwargs={}), lambda d_inputs: []


def set_torch_model(model: Model, module: Tagger | Classifier) -> None:
    """Put `module` inside the Thinc model (replacing any module it held)."""
    model.layers[:] = [PyTorchWrapper_v2(module, convert_inputs=_batch_as_args)]


class MomentumSGD(Optimizer):
    """SGD with momentum, as `torch.optim.SGD` steps (`v = momentum * v + g; w -= lr * v`), for
    spaCy's training loop; `bilstm-nlp train`'s optimizer. Gradients are clipped to `grad_clip`
    per parameter tensor here; our pipes clip their global norm before (`finish_update`), as our
    trainer does, which leaves every tensor under the bound."""

    def __init__(self, learn_rate: Any, *, momentum: float, grad_clip: float, L2: float):
        super().__init__(
            learn_rate,
            L2=L2,
            beta1=0.0,
            beta2=0.0,
            grad_clip=grad_clip,
            use_averages=False,
            use_radam=False,
            L2_is_weight_decay=False,
        )
        self.momentum = momentum
        self.velocities: dict[tuple[int, str], FloatsXd] = {}

    def __call__(
        self, key: tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0
    ) -> tuple[FloatsXd, FloatsXd]:
        if len(gradient) < 1:
            return weights, gradient
        self.nr_update[key] += 1
        if self.L2:
            gradient += self.L2 * weights
        if self.grad_clip:
            gradient = get_array_ops(weights).clip_gradient(gradient, self.grad_clip)
        velocity = self.velocities.get(key)
        if velocity is None:
            velocity = self.velocities[key] = gradient.copy()
        else:
            velocity *= self.momentum
            velocity += gradient
        weights -= lr_scale * self.learn_rate * velocity
        gradient *= 0
        return weights, gradient


@registry.optimizers(OPTIMIZER)
def momentum_sgd(
    learn_rate: Any = 0.015, *, momentum: float = 0.9, grad_clip: float = 5.0, L2: float = 0.0
) -> Optimizer:
    """`bilstm_nlp.SGD.v1`: SGD with momentum (our trainer's `sgd`); `learn_rate` may be a
    schedule (`decaying.v1` gives our per-epoch `lr / (1 + lr_decay * epoch)` per step)."""
    return MomentumSGD(learn_rate, momentum=momentum, grad_clip=grad_clip, L2=L2)


def model_config(model: Model) -> ModelConfig:
    """The `ModelConfig` an architecture declared for its torch model."""
    return ModelConfig(**model.attrs[_CONFIG_ATTR])
