"""A tagger's network in numpy, one sentence at a time: word, casing and character-CNN features,
the BiLSTM and the emission scores, from the weights of a torch `Tagger`
(`decode_torch.network_arrays` makes the arrays).

Why it exists: a spaCy `nlp(text)` call tags one short sentence, where torch's per-op dispatch
(several microseconds an op) and its LSTM's fixed cost (~0.2 ms a call here) are most of the
time; a numpy call on a vector costs about one microsecond. `decode_torch` runs it for a single
sentence when asked for low latency; the results are the torch network's to float32 rounding
(`tests/test_network_numpy.py`). The character features are bitwise the torch ones (same tables,
same sums in the same order); the LSTM and the projection differ in their last bits (another
BLAS, another order of sums).

numpy only, as the rest of `runtime/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PAD_ID = 0
"""As `nn.vocab.PAD_ID` (a test holds them equal): the padding character, whose table rows are
zero."""


@dataclass(frozen=True)
class LstmLayerArrays:
    """One bidirectional LSTM layer, laid out for `_bilstm`.

    Gates are in torch's order (input, forget, cell, output). The input, forget and output
    gates' weights and biases are halved, so that one `tanh` over all gates gives their sigmoids
    as `0.5 * tanh(x / 2) + 0.5` (halving is exact in binary floating point).

    Attributes:
        input_weights: `(input_dim, 2, 4 * hidden)` float32: each direction's input projection.
        bias: `(2, 4 * hidden)` float32: each direction's two biases, summed.
        recurrent: `(2, hidden, 4 * hidden)` float32: each direction's hidden-to-gates weights.
    """

    input_weights: np.ndarray
    bias: np.ndarray
    recurrent: np.ndarray

    @property
    def hidden(self) -> int:
        return self.recurrent.shape[1]


@dataclass(frozen=True)
class NetworkArrays:
    """A tagger's network as arrays.

    Attributes:
        trainable_words: `(trainable_words, word_dim)` the trained word vectors.
        fixed_words: `(fixed_words, word_dim)` the pretrained-only ones (word ids from
            `len(trainable_words)` on), possibly empty.
        casings: `(num_casings, casing_dim)` or None (no casing feature).
        char_tables: `(kernel, num_chars, filters)`: each kernel column's product with every
            character's embedding (`nn.embeddings.CharCNN.tables`), or None (no char features).
        char_bias: `(filters,)` the convolution's bias, or None.
        char_padding: zeros the convolution adds on each side of a word.
        layers: the BiLSTM, bottom layer first.
        projection: `(2 * hidden, num_tags)` emission weights; `projection_bias` `(num_tags,)`.
    """

    trainable_words: np.ndarray
    fixed_words: np.ndarray
    casings: np.ndarray | None
    char_tables: np.ndarray | None
    char_bias: np.ndarray | None
    char_padding: int
    layers: tuple[LstmLayerArrays, ...]
    projection: np.ndarray
    projection_bias: np.ndarray


def emissions(
    network: NetworkArrays,
    word_ids: Sequence[int],
    casing_ids: Sequence[int],
    char_ids: Sequence[Sequence[int]],
) -> np.ndarray:
    """`(seq_len, num_tags)` float32 emission scores of one non-empty sentence (`Tagger.forward`
    in eval mode), from its ids as `nn.ids.TokenEncoder` gives them."""
    if not word_ids:
        raise ValueError("a sentence needs at least one token")
    parts = [_word_vectors(network, np.asarray(word_ids))]
    if network.casings is not None:
        parts.append(network.casings[np.asarray(casing_ids)])
    if network.char_tables is not None:
        parts.append(_char_features(network, char_ids))
    features = np.concatenate(parts, axis=1)
    for layer in network.layers:
        features = _bilstm(layer, features)
    return serial_product(features, network.projection) + network.projection_bias


def _word_vectors(network: NetworkArrays, word_ids: np.ndarray) -> np.ndarray:
    trainable = len(network.trainable_words)
    vectors = network.trainable_words[np.minimum(word_ids, trainable - 1)]
    if len(network.fixed_words) == 0:
        return vectors
    fixed = network.fixed_words[np.maximum(word_ids - trainable, 0)]
    return np.where((word_ids >= trainable)[:, None], fixed, vectors)


def _char_features(network: NetworkArrays, char_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """`(words, filters)`: each word's convolution outputs (zero padding on both sides), their
    maximum; as `CharCNN.forward`, which lays the words end to end instead."""
    tables, bias, padding = network.char_tables, network.char_bias, network.char_padding
    assert tables is not None and bias is not None
    kernel = tables.shape[0]
    # A word without characters counts as one padding character, as in `CharCNN`.
    lengths = np.fromiter((max(len(chars), 1) for chars in char_ids), dtype=np.int64)
    width = int(lengths.max()) + 2 * padding
    grid = np.full((len(char_ids), width), PAD_ID, dtype=np.int64)
    for row, chars in enumerate(char_ids):
        grid[row, padding : padding + len(chars)] = chars
    positions = width - kernel + 1
    # shape: (words, positions, filters); the same sums in the same order as `CharCNN`
    scores = bias + tables[0][grid[:, :positions]]
    for column in range(1, kernel):
        scores = scores + tables[column][grid[:, column : column + positions]]
    # A word has `length + 2 * padding - kernel + 1` outputs; later positions are not its own.
    outputs = lengths + 2 * padding - kernel + 1
    own = np.arange(positions)[None, :] < outputs[:, None]
    return np.where(own[:, :, None], scores, np.float32(-np.inf)).max(axis=1)


SERIAL_PRODUCT_WORK = 1 << 18
"""Multiply-adds OpenBLAS does on one thread: a larger matrix product (`interface/gemm.c`:
`SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD`, 65,536 × 4 in a default build) is split
among its threads."""


def serial_product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """`left @ right` (2-D) as products of at most `SERIAL_PRODUCT_WORK` multiply-adds each,
    a few rows of `left` at a time, so that numpy's BLAS runs each on the calling thread.

    Why: a one-sentence product (a 13-token sentence's input projection is about a million
    multiply-adds) is too little work to share. Where the cores are busy (a server, other
    workers), the second BLAS thread waits for one, and the call with it: with 2 busy processes
    on 2 cores, a 13-token `nlp(text)` of `ner` took 2.46 ms with its products whole and 1.25 ms
    in pieces; on an idle machine the pieces cost 1% (`ner`) to 6% (`pos`, whose wider
    projection goes a row at a time). Limiting BLAS's threads instead would change a
    process-wide setting, under the caller's other threads."""
    rows, inner = left.shape
    per_call = max(1, SERIAL_PRODUCT_WORK // (inner * right.shape[1]))
    if rows <= per_call:
        return left @ right
    result = np.empty((rows, right.shape[1]), dtype=np.result_type(left, right))
    for start in range(0, rows, per_call):
        np.matmul(left[start : start + per_call], right, out=result[start : start + per_call])
    return result


def _bilstm(layer: LstmLayerArrays, features: np.ndarray) -> np.ndarray:
    """`(seq_len, 2 * hidden)`: the forward direction's states, then the backward's, per token
    (`nn.LSTM` with `bidirectional=True`). Both directions step together: at step t the forward
    one reads token t, the backward one token seq_len - 1 - t."""
    seq_len, hidden = len(features), layer.hidden
    weights = layer.input_weights.reshape(len(layer.input_weights), -1)
    # shape: (seq_len, 2, 1, 4 * hidden): each direction's input projection, in its reading order
    projected = serial_product(features, weights).reshape(seq_len, 2, 1, 4 * hidden)
    projected += layer.bias[:, None]
    projected[:, 1] = projected[::-1, 1].copy()
    # Every step writes into the same buffers (`out=`): a step is a dozen calls on small arrays,
    # where allocating their results is a noticeable part.
    # shape: (seq_len + 1, 2, 1, hidden): the states, zeros before the first step
    states = np.zeros((seq_len + 1, 2, 1, hidden), dtype=np.float32)
    cell = np.zeros((2, 1, hidden), dtype=np.float32)
    product = np.empty_like(cell)
    gates = np.empty((2, 1, 4 * hidden), dtype=np.float32)
    sigmoids = np.empty_like(gates)
    input_gate, forget_gate = sigmoids[:, :, :hidden], sigmoids[:, :, hidden : 2 * hidden]
    cell_input, output_gate = gates[:, :, 2 * hidden : 3 * hidden], sigmoids[:, :, 3 * hidden :]
    half = np.float32(0.5)
    for t in range(seq_len):
        np.matmul(states[t], layer.recurrent, out=gates)
        gates += projected[t]
        np.tanh(gates, out=gates)
        # sigmoid(x) = 0.5 * tanh(x / 2) + 0.5; the halving is in the weights
        np.multiply(gates, half, out=sigmoids)
        sigmoids += half
        cell *= forget_gate
        np.multiply(input_gate, cell_input, out=product)
        cell += product
        np.tanh(cell, out=product)
        np.multiply(output_gate, product, out=states[t + 1])
    # shape: (seq_len, 2, hidden)
    both = states[1:, :, 0]
    return np.concatenate([both[:, 0], both[::-1, 1]], axis=1)


__all__ = ["LstmLayerArrays", "NetworkArrays", "emissions", "serial_product"]
