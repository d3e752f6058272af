"""The torch half of decoding: a torch tagger's batch → `scored.ScoredBatch`, a classifier's →
class probabilities.

Apart from `decode.py` so that decoding (and with it tagging with an ONNX model) imports without
torch; `decode.tag_sentences` / `classify_sentences` import this module only for a torch model.
One forward pass and, when asked, one forward-backward pass per batch, as the heads give them.

On the CPU a CRF tagger runs its CRF in numpy (`runtime.backend.score_crf`, the ONNX models'
CRF), after the torch network: its recursions make a dozen small calls per token, and a numpy call
costs a fraction of a torch op's dispatch. Asked for k best paths or uncertainty, only a short
batch does so (at most `NUMPY_CRF_MAX_SENTENCES` sentences, with `low_latency`: the spaCy
component, which spaCy calls one text at a time). With `low_latency` a batch of one sentence (of
at most `NUMPY_NETWORK_MAX_TOKENS` tokens) runs the network in numpy too (`runtime.network_numpy`),
where torch's per-op and per-LSTM-call costs outweigh the work. The results are the torch ones to
float rounding (`tests/test_crf_numpy.py`, `tests/test_network_numpy.py`). The CLI keeps
`low_latency` off: there a sentence's output must not depend on how a resumed run cut its batches
(without it the CRF's backend does not depend on the batch).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .nn.embeddings import CharCNN
from .nn.encoding import Batch
from .nn.heads import CRFHead, Lattice, SoftmaxHead, TagHead
from .nn.ids import EncodedSentence, TokenEncoder
from .nn.memory import mean_of_others
from .nn.model import Classifier, Tagger
from .nn.vocab import UNK_ID
from .runtime import crf_numpy, network_numpy
from .runtime.backend import score_crf
from .runtime.crf_numpy import CrfArrays
from .runtime.memory_numpy import MemoryKeys
from .runtime.network_numpy import LstmLayerArrays, NetworkArrays
from .scored import ScoredBatch, flatten_spans, kbest_rows, spans_per_row
from .text.schemes import Span

NUMPY_CRF_MAX_SENTENCES = 32
"""With k best paths or uncertainty, batches of at most this many sentences run the CRF in numpy
when asked for low latency (see the module docstring); without them every batch does. On
13-token sentences (ner model, one thread) numpy took half the torch CRF's time at 1 to 8
sentences, three quarters at 32, about the same at 64, before its Viterbi ran tags before batch
(298536d); since then tagging UD EWT dev at batch 256 is faster with it at one thread and two (the
README's "Speed against peers", `bench/revision_speed_ab.py`), while its k-best search is slower
there."""

NUMPY_DOCUMENT_MAX_SENTENCES = 4
"""A document-memory tagger's call of at most this many sentences (each within
`NUMPY_NETWORK_MAX_TOKENS`) runs each sentence's network and the memory in numpy
(`low_latency_document_emissions`), when asked for low latency. On CoNLL-2003 dev sentences
(`ner`, one thread) numpy took 1.15 ms against torch's 2.32 at 2 sentences, 2.11 against 2.69 at
4, the same at 6, and 4.73 against 3.97 at 8."""

NUMPY_NETWORK_MAX_TOKENS = 64
"""A single sentence of at most this many tokens runs the network in numpy (see the module
docstring). numpy's LSTM step costs a little more than torch's; torch's call costs ~0.2 ms more
up front (one thread here): numpy is the faster below about a hundred tokens."""


def tagger_scoring(
    model: Tagger,
    encoder: TokenEncoder,
    k: int,
    confidence: bool,
    uncertainty: bool,
    device: str | torch.device,
    low_latency: bool = False,
) -> tuple[contextlib.AbstractContextManager, Callable[..., ScoredBatch]]:
    """The context to predict in (inference mode) and the function that scores a batch of
    sentences (token lists, encoded by `encoder`), for `decode.tag_sentences` (arguments as
    there)."""
    _eval(model)
    can_run = _numpy_crf_can_run(model, device)
    numpy_crf = low_latency and can_run
    # Without k best paths or uncertainty the CRF runs in numpy at every batch size, low latency
    # or not, so a sentence's output never depends on how its batches were cut.
    numpy_crf_always = k == 0 and not uncertainty and can_run

    def crf_in_numpy(sentences: int) -> bool:
        return numpy_crf_always or (numpy_crf and sentences <= NUMPY_CRF_MAX_SENTENCES)

    def score(
        token_lists: list[Sequence[str]],
        prepared: tuple[Batch, Tensor] | np.ndarray | None = None,
    ) -> ScoredBatch:
        if isinstance(prepared, np.ndarray):
            # One sentence's emissions from `low_latency_document_emissions`.
            mask = np.ones((1, len(prepared)), dtype=bool)
            return score_crf(_numpy_arrays(model).crf, prepared[None], mask, k, confidence)
        if prepared is not None:
            # Emissions made beforehand (`document_emissions`): only the head's work is left.
            batch, emissions = prepared
            if crf_in_numpy(len(token_lists)) and not uncertainty:
                arrays = _numpy_crf(model)
                return score_crf(arrays, emissions.numpy(), batch.mask.numpy(), k, confidence)
            return score_batch(model, batch, k, confidence, uncertainty, emissions)
        if numpy_crf and len(token_lists) == 1 and not uncertainty:
            sentence = encoder(token_lists[0])
            numpy_model = _numpy_arrays(model)
            if numpy_model.network and 0 < len(sentence.word_ids) <= NUMPY_NETWORK_MAX_TOKENS:
                one = network_numpy.emissions(
                    numpy_model.network, sentence.word_ids, sentence.casing_ids, sentence.char_ids
                )
                if model.config.doc_memory:
                    [one] = with_document_memory([one], [sentence], len(model.vocab.words))
                mask = np.ones((1, len(one)), dtype=bool)
                return score_crf(numpy_model.crf, one[None], mask, k, confidence)
        batch = Batch.from_arrays(encoder.encode_batch(token_lists)).to(device)
        if not crf_in_numpy(len(token_lists)):
            return score_batch(model, batch, k, confidence, uncertainty)
        emissions = model(batch)
        mask = batch.mask
        scored = score_crf(
            _numpy_crf(model),
            emissions.numpy(),
            mask.numpy(),
            k,
            confidence or uncertainty,
        )
        if uncertainty:
            # The numpy CRF has no entropy; the torch head gives it (what `select` ranks by),
            # and the rest stays as without it.
            tag_ids = torch.tensor(scored.tag_ids, device=mask.device)
            lattice = model.head.lattice(emissions, mask)
            marginals = model.head.marginals(emissions, mask, lattice)
            scored.uncertainty = _uncertainty_rows(
                model, emissions, mask, tag_ids, lattice, marginals
            )
        return scored

    return torch.inference_mode(), score


def _numpy_crf_can_run(model: Tagger, device: str | torch.device) -> bool:
    """Whether the numpy CRF can score this model's emissions: a CRF head, on the CPU."""
    return isinstance(model.head, CRFHead) and (
        # `torch.device(...)` costs a one-sentence call 1%; the usual "cpu" string skips it
        device == "cpu" or torch.device(device).type == "cpu"
    )


def with_document_memory(
    parts: Sequence[np.ndarray], sentences: Sequence[EncodedSentence], words: int
) -> list[np.ndarray]:
    """A document-memory tagger's emissions of one document's sentences, from the numpy
    network's two parts of each `(seq_len, 2 * num_tags)` (CRF head: emissions are the
    projection): each token's own part plus the mean of what its word's other occurrences in
    the document lend (`nn.memory.mean_of_others`; words as `MemoryKeys` numbers them)."""
    num_tags = parts[0].shape[1] // 2
    stacked = np.concatenate(parts) if len(parts) > 1 else parts[0]
    own = stacked[:, :num_tags]
    word_ids = [word for sentence in sentences for word in sentence.word_ids]
    # No word twice (two unknown words share UNK_ID), as in most sentences: no memory to take.
    if len(set(word_ids)) < len(word_ids):
        own = own + _memory(stacked[:, num_tags:], word_ids, sentences, words)
    if len(parts) == 1:
        return [own]
    return np.split(own, np.cumsum([len(part) for part in parts[:-1]]))


def _memory(
    lent: np.ndarray, word_ids: list[int], sentences: Sequence[EncodedSentence], words: int
) -> np.ndarray:
    """`(tokens, num_tags)`: per token, the mean of what the other occurrences of its word lend
    (zeros where it has none)."""
    word_keys = np.asarray(word_ids, dtype=np.int64)
    unknown = np.flatnonzero(word_keys == UNK_ID)
    if len(unknown):
        char_ids = [chars for sentence in sentences for chars in sentence.char_ids]
        spellings: dict[bytes, int] = {}
        for position in unknown:
            spelling = np.asarray(char_ids[position], dtype=np.int64).tobytes()
            word_keys[position] = words + spellings.setdefault(spelling, len(spellings))
    # shape: (tokens, tokens), True where another token of the document is the same word; a
    # low-latency document is short (`NUMPY_DOCUMENT_MAX_SENTENCES` sentences of at most
    # `NUMPY_NETWORK_MAX_TOKENS` tokens).
    same = word_keys[:, None] == word_keys[None, :]
    np.fill_diagonal(same, False)
    counts = np.maximum(same.sum(axis=1), 1)[:, None].astype(lent.dtype)
    return network_numpy.serial_product(same.astype(lent.dtype), lent) / counts


def low_latency_document_emissions(
    model: Tagger,
    encoder: TokenEncoder,
    token_lists: Sequence[Sequence[str]],
    documents: Sequence[Hashable],
    device: str | torch.device,
) -> list[np.ndarray] | None:
    """Per sentence, `(seq_len, num_tags)` emissions of a document-memory CRF tagger, each
    sentence's network run in numpy and the memory taken by document: the low-latency path for
    a text of a few sentences (one spaCy `nlp(text)` call), where `document_emissions`'s torch
    passes cost several times more. None where it does not apply: more than
    `NUMPY_DOCUMENT_MAX_SENTENCES` sentences, an empty one or one over
    `NUMPY_NETWORK_MAX_TOKENS` tokens, another device, a model the numpy network cannot run."""
    if (
        not 0 < len(token_lists) <= NUMPY_DOCUMENT_MAX_SENTENCES
        or not all(0 < len(tokens) <= NUMPY_NETWORK_MAX_TOKENS for tokens in token_lists)
        or not _numpy_crf_can_run(model, device)
    ):
        return None
    network = _numpy_arrays(model).network
    if network is None:
        return None
    sentences = [encoder(tokens) for tokens in token_lists]
    parts = [
        network_numpy.emissions(network, s.word_ids, s.casing_ids, s.char_ids) for s in sentences
    ]
    members: dict[Hashable, list[int]] = {}
    for index, document in enumerate(documents):
        members.setdefault(document, []).append(index)
    emissions: list[np.ndarray] = list(parts)
    words = len(model.vocab.words)
    for indices in members.values():
        with_memory = with_document_memory(
            [parts[i] for i in indices], [sentences[i] for i in indices], words
        )
        for index, one in zip(indices, with_memory, strict=True):
            emissions[index] = one
    return emissions


def document_emissions(
    model: Tagger,
    encoder: TokenEncoder,
    batches: Sequence[tuple[list[int], list[Sequence[str]]]],
    documents: Sequence[Hashable],
    device: str | torch.device,
) -> list[tuple[Batch, Tensor]]:
    """The emissions of a document-memory tagger that reads every occurrence of a word in its
    document, however the documents fall into `batches`.

    The network runs on the batches as given (length-sorted: little padding, the fast paths);
    `Tagger.memory_parts` gives each token's own part and what it lends its word's memory, a
    few numbers per token, and the memory is then taken over all the sentences at once, by
    document. Run it in inference mode.

    Args:
        model: a tagger with `doc_memory`.
        encoder: its token encoder.
        batches: `(indices, token lists)` covering the sentences, each once.
        documents: each sentence's document (equal keys, one document), by index.
        device: where to run.
    Returns:
        Per batch, the encoded `Batch` and its emissions `(batch, seq_len, num_tags)`.
    """
    memory_keys = MemoryKeys(len(model.vocab.words))
    encoded, own_parts, other_parts, keys = [], [], [], []
    for indices, token_lists in batches:
        arrays = encoder.encode_batch(token_lists)
        batch = Batch.from_arrays(arrays).to(device)
        own, others = model.memory_parts(batch)
        encoded.append((batch, own))
        own_parts.append(own[batch.mask])
        other_parts.append(others[batch.mask])
        keys.append(memory_keys(arrays, [documents[i] for i in indices]))
    if not encoded:
        return []
    own_all = torch.cat(own_parts)
    device_of = own_all.device
    all_keys = torch.from_numpy(np.concatenate(keys)).to(device_of)
    real = torch.ones(len(all_keys), dtype=torch.bool, device=device_of)
    memory = mean_of_others(torch.cat(other_parts), all_keys, real)
    # shape: (tokens, num_tags), the batches' real tokens in order
    emissions = model.head.from_projected(own_all + memory)
    results = []
    start = 0
    for batch, own in encoded:
        count = int(batch.mask.sum())
        padded = torch.zeros_like(own)
        # An empty sentence runs as one padding token (masked real, as the CRF needs).
        padded[batch.mask] = emissions[start : start + count]
        results.append((batch, padded))
        start += count
    return results


def classifier_scoring(
    model: Classifier, encoder: TokenEncoder, device: str | torch.device
) -> tuple[contextlib.AbstractContextManager, Callable[[list[Sequence[str]]], list[list[float]]]]:
    """The context to predict in and the function that gives every label's probability per
    sentence of a batch (token lists, encoded by `encoder`), for `decode.classify_sentences`."""
    _eval(model)

    def class_probs(token_lists: list[Sequence[str]]) -> list[list[float]]:
        batch = Batch.from_arrays(encoder.encode_batch(token_lists))
        return model(batch.to(device)).exp().tolist()

    return torch.inference_mode(), class_probs


def crf_arrays(head: TagHead) -> dict[str, np.ndarray]:
    """A tag head's transitions, constraints and entity boundaries, as `crf_numpy.CrfArrays`
    fields. A softmax head has no transition scores (zeros); its allowed steps are those of its
    scheme's constraints, which it decodes with whether or not `constrained` (the config says)."""
    if isinstance(head, CRFHead):
        crf = head.crf
        scores = (crf.start_transitions, crf.transitions, crf.end_transitions)
        allowed = (crf.allowed_start, crf.allowed_transitions, crf.allowed_end)
    else:
        assert isinstance(head, SoftmaxHead)
        constraints = (head.start_constraints, head.transition_constraints, head.end_constraints)
        scores = tuple(torch.zeros_like(c) for c in constraints)
        allowed = tuple(c == 0 for c in constraints)
    tensors = {
        **dict(zip(("start", "transitions", "end"), scores, strict=True)),
        **dict(zip(("allowed_start", "allowed_transitions", "allowed_end"), allowed, strict=True)),
        "boundary_left": head.boundary_left,
        "boundary_right": head.boundary_right,
        "alternative_first": head.alternative_first,
    }
    return {name: t.detach().cpu().contiguous().numpy() for name, t in tensors.items()}


@dataclass(frozen=True)
class NumpyTagger:
    """A torch CRF tagger's arrays for the numpy paths: its CRF, and its network where
    `network_numpy` can run it (None: a quantized model, a character LSTM)."""

    crf: CrfArrays
    network: NetworkArrays | None


@dataclass(frozen=True)
class _Made:
    """What a model's `NumpyTagger` was made from: its parameters (listed once: walking the
    modules costs a tenth of a one-sentence call), their (storage, version) then, and the
    layers that int8 quantization swaps."""

    parameters: list[torch.Tensor]
    versions: tuple[tuple[int, int], ...]
    layers: tuple[int, int]
    arrays: NumpyTagger


# Per model: the arrays are remade when a parameter has changed (a training step,
# `load_state_dict`, a move) or a layer was swapped; the model stays as it was built (the cache
# is the decoder's, not the module's).
_NUMPY_TAGGERS: weakref.WeakKeyDictionary[Tagger, _Made] = weakref.WeakKeyDictionary()


def _versions(parameters: list[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    return tuple((p.data_ptr(), p._version) for p in parameters)


def _numpy_arrays(model: Tagger) -> NumpyTagger:
    layers = (id(model.encoder.lstm), id(model.head.projection))
    made = _NUMPY_TAGGERS.get(model)
    if made is not None and made.layers == layers and made.versions == _versions(made.parameters):
        return made.arrays
    parameters = list(model.parameters())
    arrays = NumpyTagger(CrfArrays(**crf_arrays(model.head)), network_arrays(model))
    _NUMPY_TAGGERS[model] = _Made(parameters, _versions(parameters), layers, arrays)
    return arrays


_NUMPY_CRFS: weakref.WeakKeyDictionary[Tagger, tuple[Tensor, CrfArrays]] = (
    weakref.WeakKeyDictionary()
)


def _numpy_crf(model: Tagger) -> CrfArrays:
    """A CRF tagger's `CrfArrays` for the batch path, checked against the CRF's scores themselves
    each call (a few hundred numbers), not their tensors' versions: a trainer that owns the
    weights (thinc's, in spaCy training) writes them in place through shared memory, which no
    version counts, and a batch of every size now reads these arrays, in training's evaluations
    too. Apart from `_numpy_arrays` so that no batch builds the numpy network."""
    crf = model.head.crf
    with torch.no_grad():
        current = torch.cat([parameter.reshape(-1) for parameter in crf.parameters()])
    made = _NUMPY_CRFS.get(model)
    if made is not None and made[0].shape == current.shape and torch.equal(made[0], current):
        return made[1]
    arrays = CrfArrays(**crf_arrays(model.head))
    _NUMPY_CRFS[model] = (current.clone(), arrays)
    return arrays


def forget_numpy_arrays(model: Tagger) -> None:
    """Drop the numpy copies of a model's weights, for a trainer that writes the weights where no
    tensor version sees it (the low-latency paths check versions only: a content check of the
    whole network would cost more than the sentence)."""
    _NUMPY_TAGGERS.pop(model, None)
    _NUMPY_CRFS.pop(model, None)


def network_arrays(model: Tagger) -> NetworkArrays | None:
    """A float32 CPU tagger's network as `network_numpy.NetworkArrays`, or None where that module
    cannot run it (int8 layers, a character LSTM, other devices or dtypes)."""
    embedder, lstm, projection = model.embedder, model.encoder.lstm, model.head.projection
    char_encoder = embedder.char_encoder
    if (
        type(lstm) is not nn.LSTM
        or lstm.proj_size
        or not lstm.bias
        or not lstm.bidirectional
        or type(projection) is not nn.Linear
        or not (char_encoder is None or type(char_encoder) is CharCNN)
        or any(p.dtype != torch.float32 or p.device.type != "cpu" for p in model.parameters())
    ):
        return None
    hidden = lstm.hidden_size
    # The sigmoid gates (input, forget, output) halved: see `network_numpy.LstmLayerArrays`.
    halves = torch.ones(4 * hidden)
    halves[: 2 * hidden] = 0.5
    halves[3 * hidden :] = 0.5
    layers = []
    with torch.no_grad():
        for layer in range(lstm.num_layers):
            directions = [f"_l{layer}", f"_l{layer}_reverse"]
            weights = [getattr(lstm, f"weight_ih{d}") * halves[:, None] for d in directions]
            recurrent = [getattr(lstm, f"weight_hh{d}") * halves[:, None] for d in directions]
            biases = [
                (getattr(lstm, f"bias_ih{d}") + getattr(lstm, f"bias_hh{d}")) * halves
                for d in directions
            ]
            layers.append(
                LstmLayerArrays(
                    input_weights=_numpy(torch.stack([w.T for w in weights], dim=1)),
                    bias=_numpy(torch.stack(biases)),
                    recurrent=_numpy(torch.stack([w.T for w in recurrent])),
                )
            )
        tables = char_encoder.tables() if char_encoder is not None else None
        casings = embedder.casing_embedding
        weight, bias = projection.weight, projection.bias
        if model.config.doc_memory:
            # The emission layer's two parts (`Tagger.memory_parts`) as one layer: the network
            # gives `(seq_len, 2 * num_tags)`, the own part then what each token lends.
            width = model.encoder.output_dim
            weight = torch.cat([weight[:, :width], weight[:, width:]])
            bias = torch.cat([bias, torch.zeros_like(bias)])
        return NetworkArrays(
            trainable_words=_numpy(embedder.word_embedding.weight),
            fixed_words=_numpy(embedder.fixed_embedding.weight),
            casings=_numpy(casings.weight) if casings is not None else None,
            char_tables=_numpy(tables) if tables is not None else None,
            char_bias=_numpy(char_encoder.conv.bias) if char_encoder is not None else None,
            char_padding=char_encoder.conv.padding[0] if char_encoder is not None else 0,
            layers=tuple(layers),
            projection=_numpy(weight.T),
            projection_bias=_numpy(bias),
        )


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    # The parameter's own memory where it is contiguous (the word vectors: no second copy of
    # the largest table), else a copy; either way remade when a parameter changes.
    return tensor.detach().contiguous().numpy()


def _eval(model: Tagger | Classifier) -> None:
    # `eval()` walks and sets every submodule, a tenth of a one-sentence call: only after
    # `train()` (which sets the whole model, as `eval()` does).
    if model.training:
        model.eval()


def score_batch(
    model: Tagger,
    batch: Batch,
    k: int,
    confidence: bool,
    uncertainty: bool = False,
    emissions: Tensor | None = None,
) -> ScoredBatch:
    """Best tags, their probabilities, k-best paths, entity probabilities and (when asked) the
    uncertainty of one batch; its `emissions` when they are made already."""
    if emissions is None:
        emissions = model(batch)
    mask = batch.mask
    tag_ids = model.head.decode(emissions, mask)
    confidence = confidence or uncertainty
    # One forward-backward pass serves the marginals, the entity probabilities and the
    # uncertainty.
    lattice = model.head.lattice(emissions, mask) if confidence else None
    marginals = model.head.marginals(emissions, mask, lattice) if confidence else None
    tag_probs = (
        marginals.gather(2, tag_ids.unsqueeze(2)).squeeze(2)
        if marginals is not None
        else torch.ones_like(tag_ids, dtype=emissions.dtype)
    )

    def span_probabilities(span_rows: list[list[Span]]) -> list[list[float]]:
        rows, starts, ends = flatten_spans(span_rows)
        if not rows:
            return [[] for _ in span_rows]
        device = emissions.device
        spans = tuple(torch.tensor(v, device=device) for v in (rows, starts, ends))
        log_probs = model.head.entity_log_probs(emissions, mask, tag_ids, spans, lattice)
        return spans_per_row(span_rows, log_probs.exp().tolist())

    return ScoredBatch(
        tag_ids.tolist(),
        tag_probs.tolist(),
        _kbest_rows(model, emissions, mask, k) if k > 0 else None,
        span_probabilities if confidence else None,
        _uncertainty_rows(model, emissions, mask, tag_ids, lattice, marginals)
        if uncertainty
        else None,
        _neighbour_classes(model, emissions, mask, lattice) if confidence else None,
    )


def _neighbour_classes(model: Tagger, emissions: Tensor, mask: Tensor, lattice: Lattice | None):
    """`ScoredBatch.neighbour_classes` of a batch, from its lattice (CRF) or its
    log-probabilities (softmax: independent tokens), in numpy."""

    def neighbour_classes(rows, positions, before, after):
        lengths = mask.sum(1).cpu().numpy()
        if not isinstance(model.head, CRFHead):
            log_probs = torch.where(mask.unsqueeze(2), emissions, 0.0).double().cpu().numpy()
            return crf_numpy.independent_class_probs(
                log_probs, rows, positions, lengths, before, after
            )
        alpha, beta, log_z = model.head._forward_backward(emissions, mask, lattice)
        return crf_numpy.neighbour_class_probs(
            (alpha.cpu().numpy(), beta.cpu().numpy(), log_z.cpu().numpy()),
            emissions.detach().cpu().numpy(),
            model.head.crf.scores()[1].detach().cpu().numpy(),
            rows,
            positions,
            lengths,
            before,
            after,
        )

    return neighbour_classes


def _kbest_rows(
    model: Tagger, emissions: Tensor, mask: Tensor, k: int
) -> list[list[tuple[list[int], float]]]:
    paths, log_probs = model.head.kbest(emissions, mask, k)
    return kbest_rows(paths.tolist(), log_probs.exp().tolist())


def _uncertainty_rows(
    model: Tagger, emissions, mask, tag_ids, lattice, marginals
) -> tuple[list[float], list[float], list[list[float]] | None]:
    labels = model.vocab.labels.items
    outside = labels.index("O") if model.scheme and "O" in labels else None
    path_log_probs = model.head.path_log_probs(emissions, mask, tag_ids, lattice).tolist()
    entropies = model.head.entropy(emissions, mask, lattice).tolist()
    if not model.scheme:
        return path_log_probs, entropies, None
    if outside is None:
        return path_log_probs, entropies, torch.zeros_like(tag_ids, dtype=torch.float).tolist()
    return path_log_probs, entropies, marginals[:, :, outside].tolist()
