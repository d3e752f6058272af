"""ONNX models: an exported tagger or classifier run with onnxruntime, decoded by the numpy CRF.

Sits where the torch model sits for `decode.tag_sentences` / `classify_sentences` (and so for the
`Annotator`, the CLI, the spaCy component and the service): `OnnxTagger.score_batch` gives the
same `ScoredBatch` the torch path gives, from the graph's emissions and `crf_numpy`. Loaded by
`serialize.load_model` when a model folder says `"backend": "onnx"` (`export.export_onnx` writes
one); the ids are built by `nn/ids.py`, as for the torch model.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ModelConfig
from ..errors import ConfigError, ModelFileError
from ..nn.ids import BatchArrays, TokenEncoder
from ..nn.meta import ModelMeta
from ..nn.vocab import Vocab
from ..scored import ScoredBatch, flatten_spans, kbest_rows, spans_per_row
from ..text.schemes import Span, allowed_transitions, entity_boundaries
from . import crf_numpy
from .crf_numpy import CrfArrays
from .memory_numpy import MemoryKeys, mean_of_others

ONNX_FILE = "model.onnx"
CRF_FILE = "crf.safetensors"
"""The graph and the CRF arrays of an ONNX model folder, as the exporter names them (config.json
names them too, and loading reads those names)."""
CRF_FIELDS = (
    "start",
    "transitions",
    "end",
    "allowed_start",
    "allowed_transitions",
    "allowed_end",
    "boundary_left",
    "boundary_right",
    "alternative_first",
)


def session_for(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for a graph file; `threads`: its intra-op threads (None or 0:
    onnxruntime's default).

    Raises:
        ConfigError: onnxruntime is not installed.
        ModelFileError: the file is not a loadable ONNX graph.
    """
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX models need onnxruntime: pip install 'bilstm-nlp[onnx]'") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own, unexported exception types
        raise ModelFileError(f"not a loadable ONNX graph: {error}", path) from None


def read_crf(path: Path, tags: Sequence[str], scheme: str | None) -> CrfArrays:
    """The CRF arrays `export.crf_arrays` wrote, checked for names, shapes and kinds of number;
    the scores finite, and the constraints and entity boundaries those the scheme gives `tags`
    (they are saved for speed, but the scheme fixes them: other ones decode silently wrong).

    Raises:
        ModelFileError: missing, unreadable, of the wrong shapes or kinds, NaN or infinite
            scores, or constraints and boundaries the scheme does not give.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"not a valid safetensors file: {error}", path) from None
    if set(arrays) != set(CRF_FIELDS):
        raise ModelFileError(f"expected the arrays {', '.join(CRF_FIELDS)}", path)
    num_tags = len(tags)
    for name, array in arrays.items():
        square = name in ("transitions", "allowed_transitions", "boundary_left", "boundary_right")
        expected = (num_tags, num_tags) if square else (num_tags,)
        if array.shape != expected:
            raise ModelFileError(f"{name} has shape {array.shape}, expected {expected}", path)
    for name in ("start", "transitions", "end"):
        if arrays[name].dtype != np.float32:
            raise ModelFileError(f"{name} is {arrays[name].dtype}, expected float32", path)
        if not np.isfinite(arrays[name]).all():
            raise ModelFileError(f"{name} holds NaN or infinite values", path)
    allowed = allowed_transitions(scheme, tags)
    boundaries = entity_boundaries(scheme, tags)
    fixed = {
        "allowed_start": allowed.start,
        "allowed_transitions": allowed.transitions,
        "allowed_end": allowed.end,
        "boundary_left": boundaries.left,
        "boundary_right": boundaries.right,
        "alternative_first": boundaries.alternative_first,
    }
    for name, given in fixed.items():
        if arrays[name].dtype != given.dtype or not np.array_equal(arrays[name], given):
            raise ModelFileError(
                f"{name} is not what the {scheme or 'plain-label'} scheme gives the labels of "
                "labels.json: the arrays or the labels were changed apart",
                path,
            )
    return CrfArrays(**arrays)


GRAPH_CHECK_SECONDS = 30.0
"""How long the graph may take on the two words of `check_graph` before it is refused."""


def check_graph(model: OnnxModel, path: Path) -> None:
    """Run the graph once on a sentence holding the last word and character ids: a graph from
    another model, or vocabularies longer than its tables, fail here, at load, not on the first
    text that holds such a word. The output must be finite and as wide as the labels say.

    Raises:
        ModelFileError: the graph does not fit the folder's config and vocabularies.
    """
    vocab = model.vocab
    encoder = TokenEncoder(vocab, model.config.max_word_chars)
    arrays = encoder.encode_batch([["a", "b"]])
    arrays.word_ids[0, 0] = len(vocab.words) - 1
    arrays.char_ids[..., 0] = len(vocab.chars) - 1
    width = len(vocab.labels)
    if isinstance(model, OnnxTagger) and model.config.doc_memory:
        width *= 2
    import onnxruntime

    quiet = onnxruntime.RunOptions()
    quiet.log_severity_level = 4  # the failure is reported below, once; not also in red
    # A graph can loop (a Loop node of 2**62 turns): onnxruntime stops a run whose options say
    # terminate, between two nodes or two turns.
    deadline = threading.Timer(GRAPH_CHECK_SECONDS, setattr, (quiet, "terminate", True))
    deadline.daemon = True
    deadline.start()
    try:
        output = model.run(arrays, quiet)
    except Exception as error:  # onnxruntime raises its own, unexported exception types
        if quiet.terminate:
            raise ModelFileError(
                f"the graph ran for over {GRAPH_CHECK_SECONDS:g} s on a two-word sentence "
                "(an exported model's takes milliseconds): not this folder's model",
                path,
            ) from None
        message = str(error).strip().splitlines()[0][:300]
        raise ModelFileError(
            f"the graph does not fit this folder's model: {message}", path
        ) from None
    finally:
        deadline.cancel()
    shape = (1, width) if isinstance(model, OnnxClassifier) else (1, 2, width)
    if output.shape != shape or output.dtype != np.float32 or not np.isfinite(output).all():
        raise ModelFileError(
            f"the graph does not fit this folder's model: it gives {output.dtype} "
            f"{list(output.shape)}, expected finite float32 {list(shape)} "
            f"({len(vocab.labels)} labels)",
            path,
        )


@dataclass
class OnnxModel:
    """An exported model: its graph session and what decoding reads (as the torch model has).

    Attributes:
        session: the onnxruntime session.
        config: the architecture it was exported from.
        vocab: words, characters and labels.
        meta: task, schemes, provenance.
        files: the names of the files it was loaded from (config, vocabularies, graph, CRF).
    """

    session: Any
    config: ModelConfig
    vocab: Vocab
    meta: ModelMeta
    files: tuple[str, ...] = ()

    backend = "onnx"

    @property
    def threads(self) -> int:
        """The session's intra-op threads (`load_model(..., threads=)`); 0: onnxruntime's
        default (one per physical core)."""
        return self.session.get_session_options().intra_op_num_threads

    @property
    def scheme(self) -> str | None:
        """The training tag scheme; None for plain labels and classifiers."""
        return self.meta.scheme

    @property
    def output_scheme(self) -> str | None:
        """The scheme predictions are given in (the training file's)."""
        return self.meta.tags_in if self.meta.scheme else None

    def run(self, arrays: BatchArrays, options: Any = None) -> np.ndarray:
        """The graph's output for a padded batch (the inputs it declares; a graph without char
        or casing features has dropped those); `options`: onnxruntime's `RunOptions`."""
        feeds = {i.name: getattr(arrays, i.name) for i in self.session.get_inputs()}
        (output,) = self.session.run(None, feeds, options)
        return output


@dataclass
class OnnxTagger(OnnxModel):
    """An exported tagger. `crf`: its transitions, constraints and entity boundaries (a softmax
    head's: zero transitions and its scheme's constraints)."""

    crf: CrfArrays | None = None

    def score_batch(self, arrays: BatchArrays, k: int, confidence: bool) -> ScoredBatch:
        """Best tags, their probabilities, k-best paths and entity probabilities of a batch, as
        the torch head gives them (`scored.ScoredBatch`). A document-memory tagger reads each
        sentence as a document of its own here (`document_emissions` reads documents)."""
        # shape: (batch, seq_len, num_tags) float32
        emissions = self.run(arrays)
        if self.config.doc_memory:
            ((_, emissions),) = self._with_memory(
                [(arrays, emissions)], MemoryKeys(len(self.vocab.words)), None
            )
        return self.score_emissions(arrays, emissions, k, confidence)

    def document_emissions(
        self,
        encoder: TokenEncoder,
        batches: Sequence[tuple[list[int], list[Sequence[str]]]],
        documents: Sequence[Hashable],
    ) -> list[tuple[BatchArrays, np.ndarray]]:
        """As `decode_torch.document_emissions`: a document-memory tagger's emissions with the
        memory taken over whole documents, however they fall into `batches`.

        Returns:
            Per batch, its arrays and emissions `(batch, seq_len, num_tags)`.
        """
        runs = []
        for _, token_lists in batches:
            arrays = encoder.encode_batch(token_lists)
            runs.append((arrays, self.run(arrays)))
        memory_keys = MemoryKeys(len(self.vocab.words))
        return self._with_memory(runs, memory_keys, [indices for indices, _ in batches], documents)

    def _with_memory(
        self,
        runs: list[tuple[BatchArrays, np.ndarray]],
        memory_keys: MemoryKeys,
        rows: list[list[int]] | None,
        documents: Sequence[Hashable] | None = None,
    ) -> list[tuple[BatchArrays, np.ndarray]]:
        # The graph gives the emission layer's two parts; the memory of the second is added to
        # the first. Without `rows`, each sentence is its own document.
        num_tags = runs[0][1].shape[-1] // 2 if runs else 0
        own_parts, other_parts, keys = [], [], []
        for number, (arrays, parts) in enumerate(runs):
            own_parts.append(parts[..., :num_tags][arrays.mask])
            other_parts.append(parts[..., num_tags:][arrays.mask])
            if rows is None:
                of_rows: Sequence[Hashable] = [(number, row) for row in range(len(arrays.mask))]
            else:
                assert documents is not None
                of_rows = [documents[i] for i in rows[number]]
            keys.append(memory_keys(arrays, of_rows))
        if not runs:
            return []
        others = np.concatenate(other_parts)
        emissions = np.concatenate(own_parts) + mean_of_others(others, np.concatenate(keys))
        if self.config.head == "softmax":
            # As `SoftmaxHead.from_projected`: log-probabilities.
            top = emissions.max(axis=1, keepdims=True)
            emissions = emissions - (
                top + np.log(np.exp(emissions - top).sum(axis=1, keepdims=True))
            )
        results = []
        start = 0
        for arrays, parts in runs:
            padded = np.zeros(parts.shape[:-1] + (num_tags,), dtype=parts.dtype)
            count = int(arrays.mask.sum())
            padded[arrays.mask] = emissions[start : start + count]
            results.append((arrays, padded))
            start += count
        return results

    def score_emissions(
        self, arrays: BatchArrays, emissions: np.ndarray, k: int, confidence: bool
    ) -> ScoredBatch:
        """`score_batch` of a batch whose emissions `(batch, seq_len, num_tags)` are made."""
        if self.config.head == "softmax":
            return self._score_softmax(emissions, arrays.mask, k, confidence)
        return self._score_crf(emissions, arrays.mask, k, confidence)

    def _score_crf(
        self, emissions: np.ndarray, mask: np.ndarray, k: int, confidence: bool
    ) -> ScoredBatch:
        assert self.crf is not None
        return score_crf(self.crf, emissions, mask, k, confidence)

    def _score_softmax(
        self, emissions: np.ndarray, mask: np.ndarray, k: int, confidence: bool
    ) -> ScoredBatch:
        # As `SoftmaxHead`: emissions are log-probabilities; decoding is an argmax per token, or
        # Viterbi over the scheme's constraints (FORBIDDEN_SCORE, not -inf) when constrained.
        crf = self.crf
        assert crf is not None
        if self.config.constrained and self.scheme:
            scores = crf.scores()
            tag_ids, _ = crf_numpy.viterbi_decode(emissions, mask, *scores)
        else:
            scores = tuple(np.zeros_like(s) for s in (crf.start, crf.transitions, crf.end))
            tag_ids = np.where(mask, emissions.argmax(axis=2), 0)
        # shape: (batch, seq_len)
        chosen = np.take_along_axis(emissions, tag_ids[:, :, None], axis=2)[:, :, 0]
        tag_probs = np.where(mask, np.exp(chosen), 0.0).astype(emissions.dtype)
        kbest = None
        if k > 0:
            paths, log_probs = crf_numpy.kbest_decode(emissions, mask, *scores, k)
            kbest = kbest_rows(paths.tolist(), np.exp(log_probs).tolist())

        def span_probabilities(span_rows: list[list[Span]]) -> list[list[float]]:
            # The product of the entity's token probabilities (`SoftmaxHead.entity_log_probs`).
            rows, starts, ends = flatten_spans(span_rows)
            if not rows:
                return [[] for _ in span_rows]
            # shape: (batch, seq_len + 1)
            cumulative = np.pad(np.cumsum(chosen, axis=1), ((0, 0), (1, 0)))
            b, s, e = (np.asarray(v, dtype=np.int64) for v in (rows, starts, ends))
            log_probs = cumulative[b, e] - cumulative[b, s]
            return spans_per_row(span_rows, np.exp(log_probs).tolist())

        def neighbour_classes(rows, positions, before, after):
            log_probs = np.where(mask[:, :, None], emissions, 0.0).astype(np.float64)
            return crf_numpy.independent_class_probs(
                log_probs, rows, positions, mask.sum(1), before, after
            )

        return ScoredBatch(
            tag_ids.tolist(),
            tag_probs.tolist(),
            kbest,
            span_probabilities if confidence else None,
            neighbour_classes=neighbour_classes if confidence else None,
        )


@dataclass
class OnnxClassifier(OnnxModel):
    """An exported sentence classifier."""

    def class_probs(self, arrays: BatchArrays) -> list[list[float]]:
        """Per sentence, every label's probability."""
        return np.exp(self.run(arrays)).tolist()


def score_crf(
    crf: CrfArrays, emissions: np.ndarray, mask: np.ndarray, k: int, confidence: bool
) -> ScoredBatch:
    """A CRF head's `ScoredBatch` from its emissions, all in numpy: best tags, their marginals,
    k-best paths and entity probabilities (what `decode_torch.score_batch` gives for a torch
    model; it calls this for short batches, where numpy's per-step cost is the lower).

    Args:
        crf: the head's arrays.
        emissions: `(batch, seq_len, num_tags)` float32.
        mask: `(batch, seq_len)` bool, True on real tokens, left-aligned.
        k: also the k best paths (0: none).
        confidence: marginals and entity probabilities (one forward-backward pass).
    """
    lattice: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    if len(emissions) == 1 and mask.all():
        # One sentence (a spaCy call): the vector recursions, in the batch functions' shapes.
        tags, _ = crf_numpy.viterbi_one(emissions[0], *crf.decode_scores())
        tag_ids = np.asarray([tags], dtype=np.int64)
        if confidence:
            alpha, beta, log_z = crf_numpy.forward_backward_one(
                emissions[0], *crf.scores(), constants=crf.chain_constants
            )
            lattice = (alpha[None], beta[None], np.asarray([log_z]))
            # The best tags' marginals only (`marginals_from` at those tags).
            positions = np.arange(len(tags))
            chosen = alpha[positions, tags] + beta[positions, tags] - log_z
            tag_probs = np.exp(np.minimum(chosen, 0.0)).astype(emissions.dtype)[None]
    else:
        tag_ids, _ = crf_numpy.viterbi_decode(emissions, mask, *crf.decode_scores())
        if confidence:
            lattice = crf_numpy.forward_backward(emissions, mask, *crf.scores())
            marginals = crf_numpy.marginals_from(*lattice, mask).astype(emissions.dtype)
            tag_probs = np.take_along_axis(marginals, tag_ids[:, :, None], axis=2)[:, :, 0]
    if lattice is None:
        tag_probs = np.ones(tag_ids.shape, dtype=emissions.dtype)
    kbest = None
    if k > 0:
        paths, log_probs = crf_numpy.kbest_log_probs(crf, emissions, mask, k)
        kbest = kbest_rows(paths.tolist(), np.exp(log_probs).tolist())

    def span_probabilities(span_rows: list[list[Span]]) -> list[list[float]]:
        rows, starts, ends = flatten_spans(span_rows)
        if not rows:
            return [[] for _ in span_rows]
        spans = tuple(np.asarray(v, dtype=np.int64) for v in (rows, starts, ends))
        assert lattice is not None
        log_probs = crf_numpy.entity_log_probs(crf, emissions, mask, tag_ids, spans, lattice)
        return spans_per_row(span_rows, np.exp(log_probs).tolist())

    def neighbour_classes(rows, positions, before, after):
        assert lattice is not None
        return crf_numpy.neighbour_class_probs(
            lattice, emissions, crf.scores()[1], rows, positions, mask.sum(1), before, after
        )

    return ScoredBatch(
        tag_ids.tolist(),
        tag_probs.tolist(),
        kbest,
        span_probabilities if confidence else None,
        neighbour_classes=neighbour_classes if confidence else None,
    )
