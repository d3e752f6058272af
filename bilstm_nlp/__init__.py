"""bilstm-nlp: BiLSTM-CRF and BiLSTM-softmax sequence taggers and a BiLSTM sentence classifier.

import bilstm_nlp
model = bilstm_nlp.load("path/to/model")          # a model directory (or a shipped name)
[result] = bilstm_nlp.tag_sentences(model, [["EU", "rejects", "German", "call"]], k=3)
result.tags, result.spans, result.kbest
"""

from __future__ import annotations

from ._version import __version__
from .decode import ClassifiedSentence, TaggedSentence, classify_sentences, tag_sentences
from .nn.model import Classifier, Tagger
from .serialize import load_model as load
from .text.schemes import Span

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
