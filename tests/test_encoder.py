"""Tests for `bilstm_nlp.nn.encoder`: the packed BiLSTM equals each sequence run alone, padding
changes nothing, and the stepped inference path equals nn.LSTM's packed one."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm_nlp.nn.encoder import (
    STEPPED_MIN_BATCH,
    BiLSTMEncoder,
    _can_step,
    _layer_weights,
    stepped_bilstm,
)

LENGTHS = [6, 1, 4, 6, 2]


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features `(batch, seq_len, 5)` and a mixed-length mask, longest sequence not first."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(len(LENGTHS), max(LENGTHS), 5, generator=generator, dtype=torch.float64)
    mask = torch.arange(max(LENGTHS)) < torch.tensor(LENGTHS).unsqueeze(1)
    return features, mask


def _encoder(layers: int) -> BiLSTMEncoder:
    torch.manual_seed(layers)
    return BiLSTMEncoder(5, 3, layers=layers, dropout=0.5).double().eval()


@pytest.mark.parametrize("layers", [1, 2])
def test_packed_batch_equals_each_sequence_alone(layers: int) -> None:
    encoder = _encoder(layers)
    features, mask = _batch(layers)
    with torch.no_grad():
        batched = encoder(features, mask)
        assert batched.shape == (len(LENGTHS), max(LENGTHS), 6) and encoder.output_dim == 6
        for b, length in enumerate(LENGTHS):
            alone = encoder(features[b : b + 1, :length], mask[b : b + 1, :length])
            torch.testing.assert_close(batched[b : b + 1, :length], alone, rtol=1e-12, atol=1e-12)
            # The unpacked nn.LSTM on the sequence alone, as a reference the packing cannot hide.
            reference, _ = encoder.lstm(features[b : b + 1, :length])
            torch.testing.assert_close(alone, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_padding_changes_nothing(layers: int) -> None:
    encoder = _encoder(layers)
    features, mask = _batch(layers)
    garbage = torch.where(mask.unsqueeze(2), features, torch.full_like(features, 1e6))
    longer = torch.cat([features, torch.randn(len(LENGTHS), 3, 5, dtype=torch.float64)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(len(LENGTHS), 3, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        clean = encoder(features, mask)
        assert (clean[~mask] == 0).all()
        assert torch.equal(encoder(garbage, mask), clean)
        padded_more = encoder(longer, longer_mask)
    assert padded_more.shape[1] == max(LENGTHS) + 3
    assert torch.equal(padded_more[:, : max(LENGTHS)], clean)
    assert (padded_more[:, max(LENGTHS) :] == 0).all()


def test_backward_direction_starts_at_the_last_real_token() -> None:
    # The backward half at the last real token has seen that token only: equal to one step.
    encoder = _encoder(1)
    features, mask = _batch(1)
    with torch.no_grad():
        out = encoder(features, mask)
        for b, length in enumerate(LENGTHS):
            one_step = encoder(features[b : b + 1, length - 1 : length], mask[b : b + 1, :1])
            torch.testing.assert_close(out[b, length - 1, 3:], one_step[0, 0, 3:])


# The stepped inference path (`stepped_bilstm`): large padded batches under no_grad.


def _packed_reference(lstm: torch.nn.LSTM, features: torch.Tensor, lengths: torch.Tensor):
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        features, lengths, batch_first=True, enforce_sorted=False
    )
    output, _ = lstm(packed)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(
        output, batch_first=True, total_length=features.shape[1]
    )
    return padded


def _stepped(lstm: torch.nn.LSTM, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    output = features
    for layer in range(lstm.num_layers):
        output = stepped_bilstm(_layer_weights(lstm, layer), output, lengths)
    return output


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=20),
    layers=st.integers(1, 2),
    hidden=st.integers(1, 6),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_stepped_equals_packed_lstm_in_float64(lengths, layers, hidden, bias, seed):
    # Any lengths, equal ones and length 1 included; float64 so any gap is the algorithm's, not
    # rounding's.
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(
        4, hidden, num_layers=layers, bias=bias, batch_first=True, bidirectional=True
    )
    lstm = lstm.double().eval()
    lengths_tensor = torch.tensor(lengths)
    features = torch.randn(len(lengths), max(lengths), 4, dtype=torch.float64)
    with torch.no_grad():
        expected = _packed_reference(lstm, features, lengths_tensor)
        found = _stepped(lstm, features, lengths_tensor)
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 10), min_size=1, max_size=16),
    types=st.integers(1, 200),
    seed=st.integers(0, 2**16),
)
def test_stepped_on_a_table_of_distinct_rows_equals_stepped_on_tokens(lengths, types, seed):
    # Tokens as rows of a table, fewer rows than tokens (products made per row, then copied) or
    # more (rows gathered, then multiplied): both equal the per-token input and nn.LSTM.
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True).double().eval()
    lengths[0] = max(lengths[0], 1)
    lengths_tensor = torch.tensor(lengths)
    table = torch.randn(types, 4, dtype=torch.float64)
    rows = torch.randint(0, types, (len(lengths), max(lengths)))
    per_token = table[rows]
    with torch.no_grad():
        expected = stepped_bilstm(_layer_weights(lstm, 0), per_token, lengths_tensor)
        found = stepped_bilstm(_layer_weights(lstm, 0), table, lengths_tensor, rows=rows)
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-12)
        real = lengths_tensor > 0
        if bool(real.any()):
            reference = _packed_reference(lstm, per_token[real], lengths_tensor[real])
            torch.testing.assert_close(found[real], reference, rtol=0, atol=1e-12)
        assert (found[~real] == 0).all()


def test_forward_types_equals_forward_of_the_gathered_tokens():
    torch.manual_seed(3)
    features, mask = _large_batch(3)
    table = torch.randn(40, features.shape[2])
    rows = torch.randint(0, 40, mask.shape)
    for layers in (1, 2):
        encoder = BiLSTMEncoder(features.shape[2], 20, layers=layers).eval()
        with torch.no_grad():
            found = encoder.forward_types(table, rows, mask)
            expected = _packed_reference(encoder.lstm, table[rows], mask.sum(dim=1))
            # Small batches and int8 take nn.LSTM on the gathered tokens.
            small = encoder.forward_types(table, rows[:5], mask[:5])
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(small, expected[:5, : small.shape[1]], rtol=0, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 10), min_size=1, max_size=16),
    types=st.integers(1, 200),
    out=st.integers(1, 9),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_stepped_projection_equals_the_linear_layer_on_its_output(lengths, types, out, bias, seed):
    # The emission layer applied to the packed states, per direction, then laid out padded,
    # equals the layer applied to the padded output (its bias at padding), on both input paths.
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(4, 3, batch_first=True, bidirectional=True).double().eval()
    linear = torch.nn.Linear(6, out, bias=bias).double()
    lengths[0] = max(lengths[0], 1)
    lengths_tensor = torch.tensor(lengths)
    table = torch.randn(types, 4, dtype=torch.float64)
    rows = torch.randint(0, types, (len(lengths), max(lengths)))
    weights = _layer_weights(lstm, 0)
    with torch.no_grad():
        for features, token_rows in ((table, rows), (table[rows], None)):
            states = stepped_bilstm(weights, features, lengths_tensor, rows=token_rows)
            found = stepped_bilstm(
                weights,
                features,
                lengths_tensor,
                rows=token_rows,
                projection=(linear.weight, linear.bias),
            )
            torch.testing.assert_close(found, linear(states), rtol=0, atol=1e-12)


def test_forward_types_applies_the_projection_on_every_path():
    torch.manual_seed(4)
    features, mask = _large_batch(4)
    table = torch.randn(40, features.shape[2])
    rows = torch.randint(0, 40, mask.shape)
    encoder = BiLSTMEncoder(features.shape[2], 20, layers=2).eval()
    linear = torch.nn.Linear(40, 5)
    with torch.no_grad():
        # stepped, small (nn.LSTM), and a module other than nn.Linear (applied after the layout)
        for batch in (slice(None), slice(0, 5)):
            expected = linear(encoder.forward_types(table, rows[batch], mask[batch]))
            found = encoder.forward_types(table, rows[batch], mask[batch], linear)
            torch.testing.assert_close(found, expected, rtol=0, atol=1e-5)
        layers = torch.nn.Sequential(linear, torch.nn.Tanh())
        found = encoder.forward_types(table, rows, mask, layers)
        torch.testing.assert_close(found, layers(encoder.forward_types(table, rows, mask)))


def _large_batch(seed: int, batch: int = 64, input_dim: int = 7):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (batch,), generator=generator)
    lengths[0] = 29  # the longest is not first after sorting by accident only
    lengths = lengths[torch.randperm(batch, generator=generator)]
    mask = torch.arange(int(lengths.max())) < lengths.unsqueeze(1)
    features = torch.randn(batch, mask.shape[1], input_dim, generator=generator)
    return features, mask


@pytest.mark.parametrize("layers", [1, 2])
def test_encoder_takes_stepped_path_on_large_batches_with_same_output(layers):
    torch.manual_seed(layers)
    encoder = BiLSTMEncoder(7, 20, layers=layers).eval()
    features, mask = _large_batch(layers)
    assert features.shape[0] >= STEPPED_MIN_BATCH
    assert _can_step(encoder.lstm, features, len(features)) is False  # grad is on: nn.LSTM trains
    with torch.no_grad():
        assert _can_step(encoder.lstm, features, len(features))
        stepped = encoder(features, mask)
        reference = _packed_reference(encoder.lstm, features, mask.sum(dim=1))
    trained = encoder(features, mask)
    assert trained.grad_fn is not None
    torch.testing.assert_close(stepped, reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(stepped, trained.detach(), rtol=0, atol=1e-5)
    assert (stepped[~mask] == 0).all()
    with torch.inference_mode():
        torch.testing.assert_close(encoder(features, mask), stepped, rtol=0, atol=0)


def test_stepped_path_declines_what_it_cannot_run():
    encoder = BiLSTMEncoder(7, 20).eval()
    features, _ = _large_batch(0)
    with torch.no_grad():
        assert _can_step(encoder.lstm, features, len(features))
        assert not _can_step(encoder.lstm, features, STEPPED_MIN_BATCH - 1)
        assert not _can_step(encoder.double().lstm, features.double(), len(features))
        quantized = torch.ao.quantization.quantize_dynamic(
            BiLSTMEncoder(7, 20).eval(), {torch.nn.LSTM}, dtype=torch.qint8
        )
        assert not _can_step(quantized.lstm, features, len(features))
        stacked = BiLSTMEncoder(7, 20, layers=2, dropout=0.5)
        # dropout between layers in training mode
        assert not _can_step(stacked.train().lstm, features, len(features))
        assert _can_step(stacked.eval().lstm, features, len(features))


def test_shipped_ner_tags_real_sentences_alike_on_both_paths(shared_corpora, monkeypatch):
    # The whole tagger on the first 2,001 CoNLL-2003 and EWT dev sentences each, in batches of
    # 256: the stepped path against nn.LSTM's packed one (forced by raising the batch threshold).
    from bilstm_nlp import load, tag_sentences
    from bilstm_nlp.nn import encoder as encoder_module
    from bilstm_nlp.nn import model as model_module

    from .test_network_numpy import dev_sentences

    model = load("ner")
    sentences = dev_sentences(shared_corpora, 2001)
    stepped = tag_sentences(model, sentences, batch_size=256, k=2)
    # Neither the stepped BiLSTM nor embedding once per distinct token (nn/model.py).
    monkeypatch.setattr(encoder_module, "STEPPED_MIN_BATCH", 10**9)
    monkeypatch.setattr(model_module, "STEPPED_MIN_BATCH", 10**9)
    packed = tag_sentences(model, sentences, batch_size=256, k=2)
    largest = 0.0
    for one, other in zip(stepped, packed, strict=True):
        assert one.tags == other.tags
        assert [(s.start, s.end, s.label) for s in one.spans] == [
            (s.start, s.end, s.label) for s in other.spans
        ]
        pairs = zip(one.tag_probs, other.tag_probs, strict=True)
        largest = max([largest] + [abs(a - b) for a, b in pairs])
        spans = zip(one.spans, other.spans, strict=True)
        largest = max([largest] + [abs(a.score - b.score) for a, b in spans])
    assert largest < 1e-5
