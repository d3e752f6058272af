"""bilstm-nlp: BiLSTM-CRF and BiLSTM-softmax sequence taggers and a BiLSTM sentence classifier.

import bilstm_nlp
model = bilstm_nlp.load("path/to/model")          # a model directory (or a shipped name)
[result] = bilstm_nlp.tag_sentences(model, [["EU", "rejects", "German", "call"]], k=3)
result.tags, result.spans, result.kbest
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .decode import ClassifiedSentence, TaggedSentence, classify_sentences, tag_sentences
    from .nn.model import Classifier, Tagger
    from .serialize import load_model as load
    from .text.schemes import Span

# Imported on first use, so that the parts that need no torch (the ONNX runtime's numpy CRF)
# import without it: `import bilstm_nlp.runtime.crf_numpy` runs this file first.
_LAZY = {
    "ClassifiedSentence": ("decode", "ClassifiedSentence"),
    "TaggedSentence": ("decode", "TaggedSentence"),
    "classify_sentences": ("decode", "classify_sentences"),
    "tag_sentences": ("decode", "tag_sentences"),
    "Classifier": ("nn.model", "Classifier"),
    "Tagger": ("nn.model", "Tagger"),
    "load": ("serialize", "load_model"),
    "Span": ("text.schemes", "Span"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


__all__ = [
    "Classifier",
    "ClassifiedSentence",
    "Span",
    "TaggedSentence",
    "Tagger",
    "__version__",
    "classify_sentences",
    "load",
    "tag_sentences",
]
