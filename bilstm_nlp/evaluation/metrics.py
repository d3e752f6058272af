"""Scores: entity P/R/F1 (seqeval, conlleval-compatible), token accuracy, classification scores.

Sits at the end of evaluation. seqeval's default mode reads chunks the way conlleval does, so its
figures agree with `conlleval.pl`; its strict mode gives other numbers, so reports name the mode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from seqeval.metrics import classification_report

from ..text.schemes import spelt_bioes

SEQEVAL_MODE = "default (conlleval-compatible)"


@dataclass
class TypeScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EntityScores:
    """Entity-level micro P/R/F1 (0-100) overall and per type."""

    precision: float
    recall: float
    f1: float
    per_type: dict[str, TypeScores]
    mode: str = SEQEVAL_MODE


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> EntityScores:
    """Entity (chunk) P/R/F1 with seqeval's default mode, on tags of any scheme."""
    report = classification_report(
        # seqeval reads E- and S- but takes BILOU's L- and U- for I- (two single-token entities
        # in a row would read as one).
        [spelt_bioes(t) for t in gold],
        [spelt_bioes(t) for t in predicted],
        output_dict=True,
        zero_division=0,
    )
    per_type = {
        name: TypeScores(
            100 * float(row["precision"]),
            100 * float(row["recall"]),
            100 * float(row["f1-score"]),
            int(row["support"]),
        )
        for name, row in report.items()
        if not name.endswith(" avg")
    }
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return EntityScores(
        100 * float(micro["precision"]),
        100 * float(micro["recall"]),
        100 * float(micro["f1-score"]),
        per_type,
    )


def token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Share of tokens (0-100) whose predicted tag equals the gold tag."""
    total = correct = 0
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        total += len(gold_tags)
        correct += sum(g == p for g, p in zip(gold_tags, predicted_tags, strict=True))
    return 100.0 * correct / total if total else 0.0


def confusions(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], top: int = 10
) -> list[tuple[str, str, int]]:
    """The most frequent (gold, predicted, count) token confusions."""
    counts: Counter[tuple[str, str]] = Counter()
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        counts.update((g, p) for g, p in zip(gold_tags, predicted_tags, strict=True) if g != p)
    return [(g, p, n) for (g, p), n in counts.most_common(top)]


@dataclass
class ClassificationScores:
    """Sentence-classification scores (0-100) with per-class P/R/F1 and the confusion matrix."""

    accuracy: float
    macro_f1: float
    per_class: dict[str, TypeScores]
    labels: list[str]
    confusion: list[list[int]] = field(default_factory=list)  # [gold][predicted]


def classification_scores(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> ClassificationScores:
    """Accuracy, macro-F1 over `labels` (plus gold labels the model never saw), per-class scores."""
    names = list(labels) + sorted(set(gold) - set(labels))
    position = {name: i for i, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for g, p in zip(gold, predicted, strict=True):
        matrix[position[g]][position[p]] += 1
    per_class = {}
    present = []
    for i, name in enumerate(names):
        true_positive = matrix[i][i]
        predicted_count = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = TypeScores(100 * precision, 100 * recall, 100 * f1, support)
        if support or predicted_count:
            present.append(100 * f1)
    correct = sum(matrix[i][i] for i in range(len(names)))
    accuracy = 100.0 * correct / len(gold) if gold else 0.0
    # Macro-F1 over the classes that occur in gold or predictions (scikit-learn's default).
    macro_f1 = sum(present) / len(present) if present else 0.0
    return ClassificationScores(accuracy, macro_f1, per_class, names, matrix)
