"""Tests for `bilstm_nlp.nn.encoder`: the packed BiLSTM equals each sequence run alone, and padding
changes nothing."""

from __future__ import annotations

import pytest
import torch

from bilstm_nlp.nn.encoder import BiLSTMEncoder

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
