"""The BiLSTM encoder over packed sequences: token features → contextual features.

Sits between the token embedder and the heads. Packing means padding costs no LSTM steps and the
backward direction starts at each sentence's real last token.

Inference on a large padded batch takes a faster path than `nn.LSTM`'s packed one
(`stepped_bilstm`): both directions step together over length-sorted rows, in time-major packed
buffers, with every gate a sigmoid. It gives the same output to float32 rounding; training, small
batches, unpadded batches and quantized LSTMs keep `nn.LSTM`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# Below this many sentences the stepped path's Python per step costs more than it saves. The
# crossover on one thread lies between 24 and 32 rows of EWT sentences (`python
# bench/stepped_crossover.py`: 0.95x at 16, 0.98x at 24, 1.02x at 32, 1.04x at 48).
STEPPED_MIN_BATCH = 32


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
            # which cost a short sentence as much as its LSTM steps; nn.LSTM's fused oneDNN
            # kernel takes unpacked input.
            return self.lstm(features)[0]
        if _can_step(self.lstm, features, features.shape[0]):
            return self._stepped(features, lengths)
        packed = nn.utils.rnn.pack_padded_sequence(
            features, lengths, batch_first=True, enforce_sorted=False
        )
        output, _ = self.lstm(packed)
        # shape: (batch, seq_len, 2 * hidden)
        padded, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=seq_len)
        return padded

    def forward_types(
        self,
        type_features: Tensor,
        token_types: Tensor,
        mask: Tensor,
        projection: nn.Module | None = None,
    ) -> Tensor:
        """`forward` of `type_features[token_types]`, for inference: tokens given as rows of a
        table of distinct token features. A batch repeats its frequent words, so on the stepped
        path the first layer's input products are made once per distinct row (a batch of 256
        EWT sentences holds 37% as many distinct tokens as tokens).

        Args:
            type_features: `(types, input_dim)` float.
            token_types: `(batch, seq_len)` long, each token's row of `type_features`.
            mask: `(batch, seq_len)` bool, True on real tokens, left-aligned.
            projection: a layer to apply to the output (a tagger's emission layer); the stepped
                path applies an `nn.Linear` to its packed states, before they are laid out
                padded: a tenth of the width to move.
        Returns:
            as `forward`, or `projection` of it.
        """
        lengths = mask.sum(dim=1).cpu()
        padded = not bool((lengths == mask.shape[1]).all())
        if padded and _can_step(self.lstm, type_features, mask.shape[0]):
            linear = projection if type(projection) is nn.Linear else None
            output = self._stepped(type_features, lengths, rows=token_types, projection=linear)
            return projection(output) if projection is not None and linear is None else output
        output = self(type_features[token_types], mask)
        return projection(output) if projection is not None else output

    def _stepped(
        self,
        features: Tensor,
        lengths: Tensor,
        rows: Tensor | None = None,
        projection: nn.Linear | None = None,
    ) -> Tensor:
        # The first layer reads `features` (through `rows` if given); the next read its output;
        # the last applies `projection`.
        layers = self.lstm.num_layers
        output = features
        for layer in range(layers):
            output = stepped_bilstm(
                _layer_weights(self.lstm, layer),
                output,
                lengths,
                rows=rows if layer == 0 else None,
                projection=(projection.weight, projection.bias)
                if projection is not None and layer == layers - 1
                else None,
            )
        return output


def _can_step(lstm: nn.Module, features: Tensor, batch: int) -> bool:
    """The stepped path is for float32 CPU inference on large batches with a plain `nn.LSTM`
    (int8 swaps in another module; tracing for export must see `nn.LSTM`; a training-mode
    stack drops out between layers, which the stepped path does not)."""
    return (
        type(lstm) is nn.LSTM
        and not torch.is_grad_enabled()
        and not (lstm.training and lstm.num_layers > 1 and lstm.dropout > 0)
        and batch >= STEPPED_MIN_BATCH
        and features.dtype == torch.float32
        and features.device.type == "cpu"
        and lstm.weight_hh_l0.dtype == torch.float32
        and lstm.proj_size == 0
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )


def _layer_weights(lstm: nn.LSTM, layer: int) -> tuple[Tensor, Tensor, Tensor]:
    """One layer's weights for `stepped_bilstm`: `(2, input, 4 * hidden)` input and `(2, hidden,
    4 * hidden)` recurrent products and `(2, 4 * hidden)` biases, forward then backward direction,
    in torch's gate order (input, forget, cell, output), the cell gate doubled so that one sigmoid
    serves all four gates (tanh(x) = 2 sigmoid(2x) - 1; torch's tanh costs several times its
    sigmoid). Made per call, in a few whole-tensor operations."""
    hidden = lstm.hidden_size
    dtype = lstm.weight_hh_l0.dtype
    # shape: (4 * hidden, 1)
    scale = torch.ones(4 * hidden, 1, dtype=dtype)
    scale[2 * hidden : 3 * hidden] = 2.0
    directions = (f"_l{layer}", f"_l{layer}_reverse")

    def stacked(name: str) -> Tensor:
        return torch.stack([getattr(lstm, name + suffix) for suffix in directions])

    # shape: (2, 4 * hidden, input) -> (2, input, 4 * hidden), a transposed view
    weight_in = (stacked("weight_ih") * scale).transpose(1, 2)
    weight_rec = (stacked("weight_hh") * scale).transpose(1, 2)
    if lstm.bias:
        bias = (stacked("bias_ih") + stacked("bias_hh")) * scale[:, 0]
    else:
        bias = torch.zeros(2, 4 * hidden, dtype=dtype)
    return weight_in, weight_rec, bias


def stepped_bilstm(
    weights: tuple[Tensor, Tensor, Tensor],
    features: Tensor,
    lengths: Tensor,
    rows: Tensor | None = None,
    projection: tuple[Tensor, Tensor | None] | None = None,
) -> Tensor:
    """One bidirectional LSTM layer at inference, both directions stepping together.

    Rows are sorted longest first, so the sentences still running at step t are the first
    `active[t]` rows and every step works on a prefix. The backward direction reads each sentence
    reversed within its own length, so it too starts at step 0 on the real last token. Input
    products are made once per distinct row of a `rows` table shorter than the batch's tokens
    (each step gathers its own), else over the real tokens, laid out time-major (the rows of
    step t are contiguous); each step's hidden states are written where the next step and the
    final gather read them.

    Args:
        weights: `_layer_weights` of the layer.
        features: `(batch, seq_len, input)` float32; with `rows`, `(types, input)`: a table of
            distinct token features, whose input products are made once per row when the table
            is shorter than the batch's tokens.
        lengths: `(batch,)` int64 on the CPU, each at most `seq_len`.
        rows: `(batch, seq_len)` long, each token's row of `features`, or None.
        projection: `(weight, bias)` of a linear layer `(out, 2 * hidden)`, `(out,)` (or None
            bias) to apply to the output: each direction's packed states are multiplied by
            their half of `weight`, and the narrow products are laid out padded instead of the
            states.
    Returns:
        `(batch, seq_len, 2 * hidden)`: forward then backward states; zeros at padding. With
        `projection`, `(batch, seq_len, out)`: the layer applied to them (its bias at padding).
    """
    weight_in, weight_rec, bias = weights
    if rows is None:
        batch, seq_len, input_dim = features.shape
    else:
        (batch, seq_len), input_dim = rows.shape, features.shape[1]
    hidden = weight_rec.shape[1]
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order]
    steps = torch.arange(seq_len)
    # shape: (batch, seq_len), rows sorted; True where the sentence has a token at that step
    running = sorted_lengths.unsqueeze(1) > steps
    active = running.sum(dim=0).tolist()
    offsets = [0]
    for count in active:
        offsets.append(offsets[-1] + count)
    total = offsets[-1]
    # Position read at each step by the backward direction: the sentence reversed in its length.
    reversed_steps = sorted_lengths.unsqueeze(1) - 1 - steps
    reversed_steps = torch.where(running, reversed_steps, steps)
    # Rows of the feature table (features.view(batch * seq_len, input) without `rows`) in
    # packed time-major order.
    running_by_step = running.t()
    if rows is None:
        table = features.reshape(batch * seq_len, input_dim)
        first_row = (order * seq_len).unsqueeze(1)
        forward_rows = (first_row + steps).t()[running_by_step]
        backward_rows = (first_row + reversed_steps).t()[running_by_step]
    else:
        table = features
        sorted_rows = rows[order]
        forward_rows = sorted_rows.t()[running_by_step]
        backward_rows = sorted_rows.gather(1, reversed_steps).t()[running_by_step]
    width = 4 * hidden
    gathering = table.shape[0] < total
    if gathering:
        # Fewer distinct rows than tokens: each row's products once, (2 * rows, 4 * hidden),
        # and each step gathers its own from them, both directions in one call: no packed copy
        # of every token's products, which would be written and read back through memory.
        products = torch.baddbmm(bias.unsqueeze(1), table.expand(2, -1, -1), weight_in)
        products = products.view(2 * table.shape[0], width)
        # The rows step t reads, forward direction then backward, at [2 * offsets[t], ...).
        step_of = torch.repeat_interleave(torch.arange(seq_len), torch.tensor(active))
        step_starts = torch.tensor(offsets[:-1])[step_of]
        place = step_starts + torch.arange(total)
        step_rows = torch.empty(2 * total, dtype=torch.long)
        step_rows[place] = forward_rows
        step_rows[place + torch.tensor(active)[step_of]] = backward_rows + table.shape[0]
    else:
        # shape: (2, total, 4 * hidden): the input products of the real tokens, packed
        inputs = features.new_empty(2, total, width)
        for direction, direction_rows in enumerate((forward_rows, backward_rows)):
            table_rows = table.index_select(0, direction_rows)
            torch.addmm(bias[direction], table_rows, weight_in[direction], out=inputs[direction])

    # Hidden states, packed time-major, plus one zero row that padding positions gather.
    states = features.new_empty(2, total + 1, hidden)
    states[:, total].zero_()
    cell = features.new_zeros(2, batch, hidden)
    squashed = features.new_empty(2, batch, hidden)
    # Each step's gates are a contiguous (2, count, 4 * hidden) prefix of one buffer.
    gate_buffer = features.new_empty(2 * batch * width)
    for step in range(seq_len):
        count, start = active[step], offsets[step]
        step_gates = gate_buffer[: 2 * count * width].view(2, count, width)
        if gathering:
            rows_now = step_rows[2 * start : 2 * (start + count)]
            torch.index_select(products, 0, rows_now, out=step_gates.view(2 * count, width))
            if step:
                previous = offsets[step - 1]
                step_gates.baddbmm_(states[:, previous : previous + count], weight_rec)
        elif step:
            previous = offsets[step - 1]
            torch.baddbmm(
                inputs[:, start : start + count],
                states[:, previous : previous + count],
                weight_rec,
                out=step_gates,
            )
        else:
            step_gates.copy_(inputs[:, :count])
        step_gates.sigmoid_()
        candidate = step_gates[..., 2 * hidden : 3 * hidden]
        candidate.mul_(2.0).sub_(1.0)
        step_cell = cell[:, :count]
        step_cell.mul_(step_gates[..., hidden : 2 * hidden]).addcmul_(
            step_gates[..., :hidden], candidate
        )
        step_squashed = squashed[:, :count]
        torch.mul(step_cell, 2.0, out=step_squashed).sigmoid_()
        step_squashed.mul_(2.0).sub_(1.0)
        torch.mul(
            step_gates[..., 3 * hidden :],
            step_squashed,
            out=states[:, start : start + count],
        )

    # Back to (batch, seq_len) in the caller's row order: packed row of (sorted row j, step t) is
    # offsets[t] + j; padding reads the zero row.
    step_offsets = torch.tensor(offsets[:-1])
    position = torch.empty_like(order)
    position[order] = torch.arange(batch)
    sorted_row = position.unsqueeze(1)
    real = running[position]
    forward_index = torch.where(real, step_offsets + sorted_row, total)
    backward_index = torch.where(real, step_offsets[reversed_steps[position]] + sorted_row, total)
    index = torch.stack([forward_index, backward_index + total + 1], dim=2)
    if projection is None:
        gathered = states.view(2 * (total + 1), hidden).index_select(0, index.reshape(-1))
        return gathered.view(batch, seq_len, 2 * hidden)
    weight, projection_bias = projection
    out = weight.shape[0]
    # shape: (2, total + 1, out): each direction's states times its half of the weight
    halves = torch.bmm(states, weight.view(out, 2, hidden).permute(1, 2, 0))
    gathered = halves.view(2 * (total + 1), out).index_select(0, index.reshape(-1))
    projected = gathered.view(batch, seq_len, 2, out).sum(dim=2)
    return projected if projection_bias is None else projected.add_(projection_bias)
