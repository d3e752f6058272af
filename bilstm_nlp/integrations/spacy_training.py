"""The factories of the pipes `spacy train` trains: `bilstm_trainable_tagger` (NER, chunking,
POS) and `bilstm_trainable_textcat` (sentence classes).

spaCy imports the module of every `spacy_factories` entry point each time it makes a
`Language` (`spacy.blank`, `spacy.load`, our tokenizer), so this module stays light: the pipes
(`spacy_trainable.py`: torch, the training code, datasets) are imported when one is made, and a
torch-free install that only tags still makes its `Language` without them. The architectures
named here live in `spacy_thinc.py`.
"""

# No `from __future__ import annotations`: spaCy validates factory arguments from their runtime
# type annotations.

from typing import Any, Optional

from spacy.language import Language
from thinc.api import Model


@Language.factory(
    "bilstm_trainable_tagger",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "token.pos", "token.tag", "doc.spans"],
    default_config={
        "model": {"@architectures": "bilstm_nlp.BiLSTMTagger.v1"},
        "task": "ner",
        "scheme": "BIOES",
        "batch_size": 256,
        "overwrite": False,
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_bilstm_trainable_tagger(
    nlp: Language,
    name: str,
    model: Model,
    task: str,
    scheme: Optional[str],  # noqa: UP045 (spaCy reads runtime annotations)
    batch_size: int,
    overwrite: bool,
) -> Any:
    """The `bilstm_trainable_tagger` factory: our BiLSTM-CRF tagger, trained by `spacy train`.

    Args:
        nlp: the pipeline.
        name: the component's name.
        model: the Thinc model (`bilstm_nlp.BiLSTMTagger.v1`).
        task: `ner`, `chunking` or `pos`.
        scheme: `BIOES`, `IOB2` or `IOB1` for span tasks; null for pos.
        batch_size: sentences per model batch when predicting.
        overwrite: replace entities and tags an earlier pipe set.
    Returns:
        A `spacy_trainable.BilstmTrainableTagger`.
    """
    from .spacy_trainable import BilstmTrainableTagger

    return BilstmTrainableTagger(
        nlp.vocab, model, name, task=task, scheme=scheme, batch_size=batch_size, overwrite=overwrite
    )


@Language.factory(
    "bilstm_trainable_textcat",
    assigns=["doc.cats"],
    default_config={
        "model": {"@architectures": "bilstm_nlp.BiLSTMClassifier.v1"},
        "task": "sentiment",
        "batch_size": 256,
        "overwrite": False,
    },
    default_score_weights={"cats_score": 1.0},
)
def make_bilstm_trainable_textcat(
    nlp: Language, name: str, model: Model, task: str, batch_size: int, overwrite: bool
) -> Any:
    """The `bilstm_trainable_textcat` factory: our BiLSTM sentence classifier, trained by
    `spacy train`.

    Args:
        nlp: the pipeline.
        name: the component's name.
        model: the Thinc model (`bilstm_nlp.BiLSTMClassifier.v1`).
        task: `sentiment` or `classification`.
        batch_size: docs per model batch when predicting.
        overwrite: replace `doc.cats` values an earlier pipe set for the same labels.
    Returns:
        A `spacy_trainable.BilstmTrainableTextcat`.
    """
    from .spacy_trainable import BilstmTrainableTextcat

    return BilstmTrainableTextcat(
        nlp.vocab, model, name, task=task, batch_size=batch_size, overwrite=overwrite
    )
