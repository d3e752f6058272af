"""The tagger and classifier as one traceable graph on padded batches, for ONNX export only.

Sits beside `nn/model.py`, holding the same modules. `segment_reduce` (the char CNN's per-word
maximum) does not export, so the char CNN gathers its tables over padded words and takes the
maximum over each word's own output positions. The word BiLSTM exports as one bidirectional ONNX
LSTM with `sequence_lens` (the exporter turns packing into it). The char BiLSTM, whose final
states are the features, runs each direction on its own, the backward one over each word reversed
within its length (an index gather, undone after), so padding never reaches a real position.
`tests/test_onnx.py` checks it equals the packed path of the torch model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ...nn.embeddings import CharCNN, CharLSTM, TokenEmbedder
from ...nn.model import Classifier, Tagger
from ...nn.vocab import PAD_ID


def reverse_index(lengths: Tensor, seq_len: int) -> Tensor:
    """`(batch, seq_len)` positions that reverse each sequence within its length and leave the
    padding after it in place; the index is its own inverse."""
    # shape: (1, seq_len)
    positions = torch.arange(seq_len, device=lengths.device).unsqueeze(0)
    # shape: (batch, 1)
    lengths = lengths.unsqueeze(1)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def _gather_steps(x: Tensor, index: Tensor) -> Tensor:
    # shape: (batch, seq_len, dim)
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


class PaddedBiLSTM(nn.Module):
    """A bidirectional batch-first `nn.LSTM`'s weights as one forward and one backward LSTM per
    layer, run on padded batches.

    Args:
        lstm: the trained bidirectional LSTM (its weights are copied).
    """

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if not (lstm.bidirectional and lstm.batch_first) or lstm.proj_size:
            raise ValueError("expected a bidirectional batch-first LSTM without projections")
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        for layer in range(lstm.num_layers):
            input_size = lstm.input_size if layer == 0 else 2 * lstm.hidden_size
            for suffix, layers in (("", self.forward_layers), ("_reverse", self.backward_layers)):
                one = nn.LSTM(input_size, lstm.hidden_size, batch_first=True, bias=lstm.bias)
                with torch.no_grad():
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        if hasattr(one, f"{name}_l0"):
                            getattr(one, f"{name}_l0").copy_(
                                getattr(lstm, f"{name}_l{layer}{suffix}")
                            )
                layers.append(one)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Outputs and final states.

        Args:
            features: `(batch, seq_len, input_dim)` float.
            lengths: `(batch,)` long, each sequence's length, at least 1.
        Returns:
            `(outputs, last_forward, last_backward)`: `(batch, seq_len, 2 * hidden)` with zeros
            at padding (as `pad_packed_sequence`), and the last layer's final forward and
            backward states `(batch, hidden)` (as the packed LSTM's `h_n`).
        """
        seq_len = features.shape[1]
        index = reverse_index(lengths, seq_len)
        # shape: (batch, seq_len, 1)
        real = torch.arange(seq_len, device=features.device).unsqueeze(0) < lengths.unsqueeze(1)
        real = real.unsqueeze(2)
        x = features
        forward = backward_reversed = features
        for forward_lstm, backward_lstm in zip(
            self.forward_layers, self.backward_layers, strict=True
        ):
            # shape: (batch, seq_len, hidden) each
            forward, _ = forward_lstm(x)
            backward_reversed, _ = backward_lstm(_gather_steps(x, index))
            backward = _gather_steps(backward_reversed, index)
            x = torch.where(real, torch.cat([forward, backward], dim=2), 0.0)
        # shape: (batch, 1, hidden) -> (batch, hidden)
        last = (lengths - 1).unsqueeze(1)
        last_forward = _gather_steps(forward, last).squeeze(1)
        last_backward = _gather_steps(backward_reversed, last).squeeze(1)
        return x, last_forward, last_backward


class PaddedCharCNN(nn.Module):
    """`CharCNN` on padded words, as `CharCNN` computes it: each kernel column's product with
    every character embedding is a table (`CharCNN.tables`), an output is the bias plus one table
    row per column, gathered from the padded characters (the bias is in the first table); then
    the maximum over each word's own output positions (`lengths + 2 * pad - kernel + 1` of them).
    Gathers instead of a convolution and masked embeddings: ONNX Runtime spent a third of a
    tagger's time in those."""

    def __init__(self, cnn: CharCNN):
        super().__init__()
        self.kernel, self.pad = cnn.conv.kernel_size[0], cnn.conv.padding[0]
        with torch.no_grad():
            # shape: (kernel, num_chars, filters); the padding character's rows are zeros, but
            # the first column's table holds the bias too: every output reads it once.
            tables = cnn.tables().detach().clone()
            tables[0] += cnn.conv.bias
        self.register_buffer("tables", tables)

    def forward(self, char_ids: Tensor) -> Tensor:
        """`(words, char_len)` long → `(words, filters)`."""
        kernel, pad = self.kernel, self.pad
        # A word without characters counts as one padding character (zeros).
        lengths = (char_ids != PAD_ID).sum(dim=1).clamp(min=1)
        # shape: (words, char_len + 2 * pad): the convolution's zero padding is the padding
        # character, whose table rows are zeros
        padded = nn.functional.pad(char_ids, (pad, pad), value=PAD_ID)
        outputs = padded.shape[1] - kernel + 1
        # shape: (words, outputs, filters)
        scores = self.tables[0][padded[:, :outputs]]
        for column in range(1, kernel):
            scores = scores + self.tables[column][padded[:, column : column + outputs]]
        positions = torch.arange(outputs, device=char_ids.device).unsqueeze(0)
        # shape: (words, outputs, 1): 0 on a word's own outputs, -inf after them
        own = positions < (lengths + 2 * pad - kernel + 1).unsqueeze(1)
        blocked = torch.where(own, 0.0, float("-inf")).unsqueeze(2)
        return (scores + blocked).amax(dim=1)


class PaddedCharLSTM(nn.Module):
    """`CharLSTM` on padded words: each word is its final forward and backward states."""

    def __init__(self, char_lstm: CharLSTM):
        super().__init__()
        self.embedding = char_lstm.embedding
        self.lstm = PaddedBiLSTM(char_lstm.lstm)

    def forward(self, char_ids: Tensor) -> Tensor:
        """`(words, char_len)` long → `(words, 2 * hidden)`."""
        lengths = (char_ids != PAD_ID).sum(dim=1).clamp(min=1)
        _, last_forward, last_backward = self.lstm(self.embedding(char_ids), lengths)
        return torch.cat([last_forward, last_backward], dim=1)


class _MemberGraph(nn.Module):
    """One network's embedder and BiLSTM (a tagger, or a member of a classifier) from a
    `Batch`'s arrays to contextual features `(batch, seq_len, 2 * hidden)`."""

    def __init__(self, member: nn.Module):
        super().__init__()
        self.member = member
        embedder: TokenEmbedder = member.embedder
        self.chars: nn.Module | None = None
        if isinstance(embedder.char_encoder, CharCNN):
            self.chars = PaddedCharCNN(embedder.char_encoder)
        elif isinstance(embedder.char_encoder, CharLSTM):
            self.chars = PaddedCharLSTM(embedder.char_encoder)
        self.lstm = member.encoder.lstm

    def forward(
        self,
        word_ids: Tensor,
        casing_ids: Tensor,
        char_ids: Tensor,
        spelling_ids: Tensor,
        mask: Tensor,
    ) -> Tensor:
        embedder = self.member.embedder
        parts = [embedder.embed_words(word_ids)]
        if embedder.casing_embedding is not None:
            parts.append(embedder.casing_embedding(casing_ids))
        if self.chars is not None:
            # shape: (spellings, char_features) -> (batch, seq_len, char_features)
            chars = self.chars(char_ids)[spelling_ids]
            parts.append(torch.where(mask.unsqueeze(2), chars, 0.0))
        # shape: (batch, seq_len, output_dim)
        features = torch.cat(parts, dim=-1)
        # Exported as one bidirectional ONNX LSTM with `sequence_lens`: ONNX Runtime runs the
        # backward direction from each sequence's own last token, and writes zeros at padding.
        seq_len = features.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(
            features, mask.sum(dim=1), batch_first=True, enforce_sorted=False
        )
        contextual, _ = nn.utils.rnn.pad_packed_sequence(
            self.lstm(packed)[0], batch_first=True, total_length=seq_len
        )
        return contextual


class ExportGraph(nn.Module):
    """A trained `Tagger` or `Classifier` from ids to scores, on padded batches.

    Inputs are a `Batch`'s arrays; the output is the model's: a tagger's emissions `(batch,
    seq_len, num_tags)` (CRF scores or softmax log-probabilities), a classifier's class
    log-probabilities `(batch, num_labels)` (of its members' mean probability, for an
    ensemble). A document-memory tagger gives its emission layer's two parts instead, `(batch,
    seq_len, 2 * num_tags)`. Built in eval mode: dropout is off.

    Args:
        model: the trained model; its modules are shared, not copied (the LSTMs' weights are).
    """

    def __init__(self, model: Tagger | Classifier):
        super().__init__()
        self.model = model
        members = model.members() if isinstance(model, Classifier) else [model]
        self.member_graphs = nn.ModuleList(_MemberGraph(member) for member in members)
        self.eval()

    def forward(
        self,
        word_ids: Tensor,
        casing_ids: Tensor,
        char_ids: Tensor,
        spelling_ids: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """Scores from a `Batch`'s arrays (see `nn.encoding.Batch`)."""
        inputs = (word_ids, casing_ids, char_ids, spelling_ids, mask)
        if isinstance(self.model, Classifier):
            each = [graph.member.head(graph(*inputs), mask) for graph in self.member_graphs]
            if len(each) == 1:
                return each[0]
            return torch.logsumexp(torch.stack(each), dim=0) - math.log(len(each))
        contextual = self.member_graphs[0](*inputs)
        if self.model.config.doc_memory:
            # The emission layer's two parts (`Tagger.memory_parts`): the runtime takes the
            # memory by document and adds it (`runtime.backend.OnnxTagger`).
            projection = self.model.head.projection
            width = contextual.shape[-1]
            own = nn.functional.linear(contextual, projection.weight[:, :width], projection.bias)
            others = nn.functional.linear(contextual, projection.weight[:, width:])
            return torch.cat([own, others], dim=-1)
        return self.model.head.emissions(contextual)
