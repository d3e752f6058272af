"""Which unlabelled documents to annotate next: uncertainty sampling with a trained tagger.

Sits after the annotator: `Annotator(model, uncertainty=True)` gives each document its spans with
exact CRF probabilities and, per sentence, the probability of the predicted tag sequence, the
entropy over tag sequences and each token's probability of lying outside every entity
(`decode.SentenceUncertainty`). A strategy turns these into one uncertainty per document (higher:
more unsure, annotate sooner):

- `least-confident`: `1 - P(ŷ | x) ** (1 / n)`, where `ŷ` is the document's Viterbi tag
  sequence (its sentences' paths together: sentences are tagged independently, so `P(ŷ | x)` is
  the product of their path probabilities, each exactly `exp(path score - log Z)` under the CRF)
  and `n` its number of tokens. The `1 / n` power (the per-token geometric mean of the path
  probability) is the length normalisation: `1 - P(ŷ | x)` itself grows towards 1 with length
  alone. It ranks as the maximum normalised log-probability (MNLP) of Shen et al. ("Deep active
  learning for named entity recognition", arXiv 2017, ICLR 2018).
- `entropy`: `H(Y | x) / n`, the exact entropy of the distribution over whole tag sequences
  (`crf.sequence_entropy`; the sum over sentences, which are independent) per token, in nats.
- `entity-margin`: `max over decisions of 1 - |2p - 1|`, i.e. twice the smallest margin `|p -
  0.5|` among the document's entity decisions: each predicted entity with `p` its exact
  probability (type and both boundaries, summed over the scheme's spellings), and each token
  outside the predicted entities with `p` the probability that some entity covers it (`1 -
  P(O)`, a near miss). 1 is a coin flip, 0 certainty. A document without a predicted entity
  still ranks by its most doubtful token. A maximum needs no length normalisation; a long
  document only has more chances to hold one doubtful decision.
- `random`: a uniform draw per document from `numpy.random.default_rng(seed)`, in input order.

Ranking sorts by uncertainty, highest first, ties by input order. `choose` then walks the ranking
and skips a document that nearly duplicates (`duplicates.NearDuplicates`: Jaccard similarity of
word 3-shingles of the normalised text at least 0.8) one already chosen or one already labelled
(`exclude`), until `n` are chosen. `preannotation.select_file` (`bilstm-nlp select`) and
`rank_sentences` (a pre-tokenized pool, as in `bench/active_learning.py`) both rank and choose
through these functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..nn.model import Classifier, Tagger
from ..progress import progress_bar
from ..text.tokenize import Token, cut_sentence, token_text
from .annotator import MAX_SENTENCE_TOKENS, Annotation, Annotator, TextSpan
from .duplicates import MAX_SIMILARITY, NearDuplicates, shingles

STRATEGIES = ("least-confident", "entropy", "entity-margin", "random")

# Sentences `rank_sentences` annotates per call: memory stays bounded by a block, not the pool.
_RANK_BLOCK = 1000


def document_uncertainty(annotation: Annotation, strategy: str) -> float:
    """One document's uncertainty under a model strategy (see the module docstring).

    Args:
        annotation: from an `Annotator` made with `uncertainty=True`, with at least one token.
        strategy: `least-confident`, `entropy` or `entity-margin`.
    Returns:
        The uncertainty in [0, 1] (`entropy`: in nats per token, at least 0); higher is less sure.
    Raises:
        ValueError: an unknown strategy, or an annotation without tokens or uncertainty.
    """
    tokens = len(annotation.tokens)
    if not tokens or len(annotation.uncertainty) != len(annotation.sentences):
        raise ValueError("an annotation with tokens and a sentence uncertainty for each sentence")
    sentences = annotation.uncertainty
    if strategy == "least-confident":
        log_prob = sum(sentence.path_log_prob for sentence in sentences)
        # 1 - exp(x) without losing the digits of a path probability near 1.
        return -math.expm1(log_prob / tokens)
    if strategy == "entropy":
        return sum(sentence.entropy for sentence in sentences) / tokens
    if strategy == "entity-margin":
        spans = annotation.spans or []
        decisions = [span.score for span in spans]
        covered = np.zeros(tokens, dtype=bool)
        for span in spans:
            covered[span.token_start : span.token_end] = True
        outside = np.fromiter(
            (p for sentence in sentences for p in sentence.outside_probs), dtype=np.float64
        )
        if len(outside) == tokens:
            decisions.extend((1.0 - outside[~covered]).tolist())
        return max((1.0 - abs(2.0 * p - 1.0) for p in decisions), default=0.0)
    raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class Candidate:
    """A ranked document.

    Attributes:
        index: its position among the input's documents (0-based; the tie-break).
        text: the document.
        score: its uncertainty under the strategy (higher: annotate sooner).
        spans: the model's entities with character offsets and probabilities.
        doc_id: its id (`file:line`, or the JSONL id field).
        line: its 1-based line in the input, if it came from a file.
    """

    index: int
    text: str
    score: float
    spans: tuple[TextSpan, ...]
    doc_id: Any = None
    line: int | None = None


def rank(candidates: Sequence[Candidate], strategy: str, seed: int = 0) -> list[Candidate]:
    """Candidates by uncertainty, highest first, ties by `index`.

    With `random`, each candidate's score is first replaced by a uniform draw from
    `numpy.random.default_rng(seed)`, drawn in `index` order.

    Raises:
        ConfigError: an unknown strategy.
    """
    check_strategy(strategy)
    ordered = sorted(candidates, key=lambda c: c.index)
    if strategy == "random":
        draws = np.random.default_rng(seed).random(len(ordered)).tolist()
        ordered = [replace(c, score=draw) for c, draw in zip(ordered, draws, strict=True)]
    # sorted is stable: equal scores keep input order.
    return sorted(ordered, key=lambda c: -c.score)


@dataclass(frozen=True)
class Choice:
    """What `choose` picked.

    Attributes:
        selected: the chosen candidates, in rank order.
        duplicates: candidates skipped as near-duplicates of one chosen before them.
        excluded: candidates skipped as near-duplicates of an already labelled text.
    """

    selected: list[Candidate]
    duplicates: int
    excluded: int


def choose(
    ranked: Iterable[Candidate],
    n: int,
    *,
    exclude: Iterable[str] = (),
    diversity: bool = True,
    threshold: float = MAX_SIMILARITY,
) -> Choice:
    """The first `n` of a ranking, skipping near-duplicates.

    Args:
        ranked: candidates in rank order (`rank`).
        n: how many to choose (fewer when the ranking runs out).
        exclude: texts already labelled: a candidate nearly duplicating one is skipped.
        diversity: skip a candidate nearly duplicating one already chosen.
        threshold: the Jaccard similarity of word 3-shingles from which texts are near-duplicates.
    Returns:
        The chosen candidates and the counts of the skipped ones.
    """
    if n < 1:
        raise ConfigError(f"the number of documents to select must be at least 1, got {n}")
    held = NearDuplicates(threshold)
    for number, text in enumerate(exclude):
        held.add(("labelled", number), shingles(text))
    anything_held = len(held) > 0
    selected: list[Candidate] = []
    duplicates = excluded = 0
    for candidate in ranked:
        if len(selected) >= n:
            break
        if not diversity and not anything_held:
            selected.append(candidate)
            continue
        candidate_shingles = shingles(candidate.text)
        match = held.match(candidate_shingles)
        if match is not None and match[0] == "labelled":
            excluded += 1
            continue
        if match is not None and diversity:
            duplicates += 1
            continue
        selected.append(candidate)
        held.add(("selected", candidate.index), candidate_shingles)
    return Choice(selected, duplicates, excluded)


def candidates_from(
    annotations: Sequence[Annotation],
    strategy: str,
    *,
    first_index: int = 0,
    ids: Sequence[Any] | None = None,
    lines: Sequence[int | None] | None = None,
) -> list[Candidate]:
    """Candidates of annotated documents; documents without tokens are left out.

    Args:
        annotations: from an `Annotator` made with `uncertainty=True` (not needed for `random`).
        strategy: one of `STRATEGIES` (`random` scores 0 here; `rank` draws its scores).
        first_index: the input position of the first annotation.
        ids: the documents' ids; default None each.
        lines: the documents' input lines; default None each.
    """
    check_strategy(strategy)
    result = []
    for offset, annotation in enumerate(annotations):
        if not annotation.tokens:
            continue
        score = 0.0 if strategy == "random" else document_uncertainty(annotation, strategy)
        result.append(
            Candidate(
                first_index + offset,
                annotation.text,
                score,
                tuple(annotation.spans or ()),
                ids[offset] if ids is not None else None,
                lines[offset] if lines is not None else None,
            )
        )
    return result


def rank_sentences(
    model: Tagger,
    token_lists: Sequence[Sequence[str]],
    strategy: str,
    *,
    seed: int = 0,
    batch_size: int = 256,
    show_progress: bool = False,
) -> list[Candidate]:
    """Rank pre-tokenized sentences (a corpus pool) as `select_file` ranks lines of raw text.

    Each sentence is a document whose text is its tokens joined by single spaces; the tokens are
    taken as they are (no spaCy tokenization), so the spans' offsets point into that text.

    Returns:
        `rank(...)` of one candidate per non-empty sentence (`index`: its position in
        `token_lists`).
    Raises:
        ConfigError: an unknown strategy, or a model without entity spans.
    """
    check_model(model)
    check_strategy(strategy)
    annotator = Annotator(model, batch_size=batch_size, uncertainty=strategy != "random")
    candidates: list[Candidate] = []
    progress = progress_bar("Ranking", len(token_lists), count=True) if show_progress else None
    try:
        for first in range(0, len(token_lists), _RANK_BLOCK):
            block = token_lists[first : first + _RANK_BLOCK]
            texts, documents = zip(*(_joined(tokens) for tokens in block), strict=True)
            annotations = annotator.annotate_sentences(texts, documents)
            candidates.extend(candidates_from(annotations, strategy, first_index=first))
            if progress is not None:
                progress.update(progress.task_ids[0], advance=len(block))
    finally:
        if progress is not None:
            progress.stop()
    return rank(candidates, strategy, seed)


def check_strategy(strategy: str) -> None:
    """Raises `ConfigError` for a strategy not in `STRATEGIES`."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def check_model(model: Tagger | Classifier) -> None:
    """Raises `ConfigError` for a model without entity spans (a classifier, a POS tagger)."""
    if model.meta.is_classifier:
        raise ConfigError("select ranks the entity spans of a tagger; this model is a classifier")
    if model.scheme is None:
        raise ConfigError(
            f"select ranks entity spans; this {model.meta.task} model tags tokens with plain "
            "labels (no tag scheme)"
        )


def _joined(tokens: Sequence[str]) -> tuple[str, list[list[Token]]]:
    """A sentence's tokens as a text joined by spaces, with offsets, cut as `Annotator` cuts."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append(Token(token, position, position + len(token)))
        position += len(token) + 1
    text = " ".join(tokens)
    return text, cut_sentence(offsets, MAX_SENTENCE_TOKENS, token_text) if offsets else []
