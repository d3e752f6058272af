"""Dynamic int8 quantization of a trained model's LSTMs and linear layers, for tagging on CPU.

A model folder exported with `bilstm-nlp export --quantize int8` keeps its float weights and says
`"quantize": "int8"` in `config.json`; `serialize.load_model` quantizes on load. Quantizing at
load time, rather than storing torch's packed int8 parameters, keeps the folder a plain
safetensors file that any torch version reads, and the model can still be trained further or
exported to ONNX from the same weights (`load_model(..., quantized=False)`).

Weights become int8 per tensor; activations are quantized batch by batch (torch's dynamic
quantization, which covers `nn.LSTM` and `nn.Linear`). Embeddings and the char CNN stay float.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

QUANTIZATIONS = ("int8",)


def quantize_int8(model: nn.Module) -> dict[str, Tensor]:
    """Swap `model`'s LSTMs and linear layers for dynamically quantized int8 ones, in place.

    Returns:
        The float state dict from before (tensors shared with the model where unchanged), which
        is what a quantized model saves: torch's packed int8 parameters are no safetensors.
    """
    float_state = dict(model.state_dict())
    model.eval()
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager API still works in the
        # pinned torch, and torchao would be one more large dependency for two layer types.
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(
            model, {nn.LSTM, nn.Linear}, dtype=torch.qint8, inplace=True
        )
    return float_state
