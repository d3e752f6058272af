"""Knowledge distillation: an ensemble of trained models (the teachers) taught to one model.

The teachers read the training sentences once, before training. For taggers the average of their
tag and neighbouring-pair marginals is what the student is trained towards, blended with the gold
tags (`train.distill_weight`); with a CRF student the loss is the exact cross-entropy from that
blend to the student's CRF (`CRF.expected_log_likelihood`), at the cost of the gold-only loss. For
classifiers it is the average of their class probabilities, blended with the gold label.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..decode import classify_sentences
from ..errors import ConfigError
from ..nn.crf import pair_marginals_from
from ..nn.encoding import batch_doc_ids, collate, document_batches, encode_tokens
from ..nn.heads import CRFHead, TeacherMarginals
from ..nn.model import Classifier, Tagger
from ..progress import progress_bar

TEACHER_BATCH = 64


@dataclass
class TeacherTargets:
    """The teachers' averaged marginals of each training sentence, in the student's tag order.

    Attributes:
        tags: per sentence, `(length, num_tags)` float32.
        pairs: per sentence, `(length - 1, num_tags, num_tags)` float16 (half the memory; a
            probability keeps 3 digits, plenty for a training target).
        teachers: how many models were averaged.
        labelled: the sentences before this index have gold tags; those from it on (the
            unlabeled sentences) are taught by the teachers alone.
        num_tags: the student's tags.
        first: the index of the sentence `tags[0]` belongs to; the teachers did not tag those
            before it (labelled sentences at a teachers' share of 0, whose targets no loss
            reads), and their rows in a batch are zeros.
    """

    tags: list[np.ndarray]
    pairs: list[np.ndarray]
    teachers: int
    labelled: int
    num_tags: int
    first: int = 0

    def weights(self, indices: Sequence[int], weight: float, device: torch.device) -> torch.Tensor:
        """`(batch,)` the teachers' share of each sentence's target: `weight` for a labelled
        sentence, 1 for an unlabeled one."""
        shares = [weight if index < self.labelled else 1.0 for index in indices]
        return torch.tensor(shares, dtype=torch.float32, device=device)

    def batch(self, indices: Sequence[int], seq_len: int, device: torch.device) -> TeacherMarginals:
        """The marginals of the sentences `indices`, padded to `seq_len` with zeros.

        An empty sentence is one padding token marked real in a batch (`collate`); it gets tag 0
        there, as its padded gold tags do, so the teachers add nothing to it.
        """
        num_tags = self.num_tags
        tags = np.zeros((len(indices), seq_len, num_tags), dtype=np.float32)
        pairs = np.zeros((len(indices), max(seq_len - 1, 0), num_tags, num_tags), dtype=np.float32)
        for row, index in enumerate(indices):
            taught = index - self.first
            if taught < 0:
                continue
            length = len(self.tags[taught])
            if length == 0:
                tags[row, 0, 0] = 1.0
                continue
            tags[row, :length] = self.tags[taught]
            pairs[row, : length - 1] = self.pairs[taught]
        return TeacherMarginals(
            torch.from_numpy(tags).to(device), torch.from_numpy(pairs).to(device)
        )


def teacher_targets(
    teachers: Sequence[Tagger],
    token_lists: Sequence[Sequence[str]],
    student_tags: Sequence[str],
    student_scheme: str | None,
    device: torch.device,
    show_progress: bool = False,
    labelled: int | None = None,
    documents: Sequence[int] | None = None,
    first: int = 0,
) -> TeacherTargets:
    """Average the teachers' marginals over `token_lists`, in the order of `student_tags`.

    `labelled`: how many of `token_lists` (the first) have gold tags; default all. `documents`:
    each sentence's document number; a teacher with document memory then reads whole documents
    together (up to `TEACHER_BATCH` sentences at a time), as it tags them, instead of each
    sentence alone. `first`: the teachers tag the sentences from this index on (the unlabeled
    ones, where the gold tags' share is all there is before it).

    Raises:
        ConfigError: a teacher is not a tagger, or has other tags or another scheme.
    """
    if not teachers:
        raise ConfigError("distillation needs at least one teacher model")
    labelled = len(token_lists) if labelled is None else labelled
    token_lists = token_lists[first:]
    documents = documents[first:] if documents is not None else None
    tag_sums = [np.zeros((len(t), len(student_tags)), dtype=np.float32) for t in token_lists]
    pair_sums = [
        np.zeros((max(len(t) - 1, 0), len(student_tags), len(student_tags)), dtype=np.float32)
        for t in token_lists
    ]
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    by_length = [order[i : i + TEACHER_BATCH] for i in range(0, len(order), TEACHER_BATCH)]
    by_document = (
        list(document_batches(documents, TEACHER_BATCH, random.Random(0)))
        if documents is not None
        else None
    )
    for number, teacher in enumerate(teachers, 1):
        to_student = _tag_order(teacher, student_tags, student_scheme, number)
        teacher.to(device).eval()
        reads_documents = by_document is not None and teacher.config.doc_memory
        batches = by_document if reads_documents else by_length
        progress = (
            progress_bar(f"teacher {number}/{len(teachers)}", len(batches), count=True)
            if show_progress
            else None
        )
        with torch.inference_mode():
            for indices in batches:
                tags, pairs = _teacher_batch(
                    teacher,
                    [token_lists[i] for i in indices],
                    device,
                    [documents[i] for i in indices] if reads_documents else None,
                )
                for row, index in enumerate(indices):
                    length = len(token_lists[index])
                    tag_sums[index][:, to_student] += tags[row, :length]
                    if length > 1:
                        pair_sums[index][:, to_student[:, None], to_student] += pairs[
                            row, : length - 1
                        ]
                if progress is not None:
                    progress.advance(progress.task_ids[0])
        if progress is not None:
            progress.stop()
    count = len(teachers)
    return TeacherTargets(
        [t / count for t in tag_sums],
        [(p / count).astype(np.float16) for p in pair_sums],
        count,
        labelled,
        len(student_tags),
        first,
    )


def _teacher_batch(
    teacher: Tagger,
    token_lists: list[Sequence[str]],
    device: torch.device,
    documents: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`(batch, seq_len, T)` tag and `(batch, seq_len - 1, T, T)` pair marginals, float32; with
    `documents`, the sentences of one document read together (document memory)."""
    encoded = [
        encode_tokens(tokens, teacher.vocab, teacher.config.max_word_chars)
        for tokens in token_lists
    ]
    batch = collate(encoded)
    if documents is not None:
        batch.doc_ids = batch_doc_ids(documents)
    batch = batch.to(device)
    emissions = teacher(batch)
    head = teacher.head
    # One forward-backward pass gives both the tag and the pair marginals.
    lattice = head.lattice(emissions, batch.mask)
    tags = head.marginals(emissions, batch.mask, lattice)
    if isinstance(head, CRFHead):
        transitions = head.crf.scores()[1]
        pairs = pair_marginals_from(
            lattice.alpha, lattice.beta, lattice.log_z, emissions, batch.mask, transitions
        )
    else:
        # Tokens are independent under a softmax head: a pair's probability is the product.
        pairs = tags[:, :-1, :, None] * tags[:, 1:, None, :]
    return tags.float().cpu().numpy(), pairs.float().cpu().numpy()


def _tag_order(
    teacher: Tagger, student_tags: Sequence[str], student_scheme: str | None, number: int
) -> np.ndarray:
    """For each of the teacher's tags, its id among the student's."""
    where = teacher.meta.source or f"teacher {number}"
    if not isinstance(teacher, Tagger):
        raise ConfigError("a distillation teacher must be a torch tagger folder", where)
    if teacher.scheme != student_scheme:
        raise ConfigError(
            f"the teacher tags in {teacher.scheme or 'plain labels'}, the student in "
            f"{student_scheme or 'plain labels'}: train both in one scheme",
            where,
        )
    tags = list(teacher.vocab.labels.items)
    if sorted(tags) != sorted(student_tags):
        missing = sorted(set(student_tags) - set(tags))
        extra = sorted(set(tags) - set(student_tags))
        raise ConfigError(
            f"the teacher's tags differ from the training data's (teacher lacks {missing}, has "
            f"{extra} too): teachers must be trained on the same tags",
            where,
        )
    position = {tag: i for i, tag in enumerate(student_tags)}
    return np.array([position[tag] for tag in tags], dtype=np.int64)


@dataclass
class TeacherLabelProbs:
    """The teachers' averaged class probabilities of each training text, in the student's label
    order.

    Attributes:
        probs: `(texts, num_labels)` float32.
        teachers: how many models were averaged.
    """

    probs: np.ndarray
    teachers: int

    def batch(self, indices: Sequence[int], seq_len: int, device: torch.device) -> torch.Tensor:
        """`(len(indices), num_labels)` probabilities of the texts `indices` (`seq_len` unused:
        the call is `TeacherTargets.batch`'s)."""
        return torch.from_numpy(self.probs[np.asarray(indices, dtype=np.int64)]).to(device)

    def weights(self, indices: Sequence[int], weight: float, device: torch.device) -> float:
        """The teachers' share of every text's target (`TeacherTargets.weights`'s call): every
        text of a classifier's training data has its gold label."""
        return weight


def teacher_label_probs(
    teachers: Sequence[Classifier],
    token_lists: Sequence[Sequence[str]],
    student_labels: Sequence[str],
    device: torch.device,
    show_progress: bool = False,
) -> TeacherLabelProbs:
    """Average the teachers' class probabilities over `token_lists`, in the order of
    `student_labels`.

    Raises:
        ConfigError: no teacher, a teacher that is not a classifier, or one with other labels.
    """
    if not teachers:
        raise ConfigError("distillation needs at least one teacher model")
    sums = np.zeros((len(token_lists), len(student_labels)), dtype=np.float64)
    for number, teacher in enumerate(teachers, 1):
        where = teacher.meta.source or f"teacher {number}"
        if not isinstance(teacher, Classifier):
            raise ConfigError("a classifier's distillation teacher must be a classifier", where)
        labels = list(teacher.vocab.labels.items)
        if sorted(labels) != sorted(student_labels):
            raise ConfigError(
                f"the teacher's labels {sorted(labels)} differ from the training data's "
                f"{sorted(student_labels)}: teachers must be trained on the same labels",
                where,
            )
        classified = classify_sentences(
            teacher.to(device).eval(), token_lists, device=device, show_progress=show_progress
        )
        for row, result in enumerate(classified):
            # An empty text has no probabilities: the teachers know nothing of it.
            uniform = 1.0 / len(student_labels)
            sums[row] += [result.probs.get(label, uniform) for label in student_labels]
    return TeacherLabelProbs((sums / len(teachers)).astype(np.float32), len(teachers))
