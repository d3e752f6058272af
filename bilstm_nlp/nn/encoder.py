"""The BiLSTM encoder over packed sequences: token features → contextual features.

Sits between the token embedder and the heads. Packing means padding costs no LSTM steps and the
backward direction starts at each sentence's real last token.
"""

from __future__ import annotations

from torch import Tensor, nn


class BiLSTMEncoder(nn.Module):
    """A (multi-layer) bidirectional LSTM, batch-first, over masked sequences.

    Args:
        input_dim: token feature size.
        hidden: hidden size per direction.
        layers: stacked layers.
        dropout: dropout between layers (applied by nn.LSTM when layers > 1).
    """

    def __init__(self, input_dim: int, hidden: int, layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(
            input_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.output_dim = 2 * hidden

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        """Contextual features.

        Args:
            features: `(batch, seq_len, input_dim)` float.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned.
        Returns:
            `(batch, seq_len, 2 * hidden)` float; zeros at padded positions.
        """
        seq_len = features.shape[1]
        lengths = mask.sum(dim=1).cpu()
        if bool((lengths == seq_len).all()):
            # No padding (one sentence, say): the same output without packing and unpacking,
            # which cost a short sentence as much as its LSTM steps.
            return self.lstm(features)[0]
        packed = nn.utils.rnn.pack_padded_sequence(
            features, lengths, batch_first=True, enforce_sorted=False
        )
        output, _ = self.lstm(packed)
        # shape: (batch, seq_len, 2 * hidden)
        padded, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=seq_len)
        return padded
