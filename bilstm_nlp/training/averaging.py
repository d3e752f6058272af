"""Weight averaging over the last epochs of a run (`train.average_epochs`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightAverage:
    """Running mean of a model's floating-point weights over the epochs it was given.

    Polyak averaging of the last epochs, as stochastic weight averaging does (Izmailov et al.
    2018): the average sits in a wider optimum than any single epoch's weights.
    """

    COUNT = "__count__"

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.count = 0

    def update(self, model: torch.nn.Module) -> None:
        self.count += 1
        for name, value in model.state_dict().items():
            if not value.is_floating_point():
                continue  # the CRF's allowed-transition masks and other fixed buffers
            value = value.detach().to(torch.float64)
            if name in self.tensors:
                self.tensors[name] += (value - self.tensors[name]) / self.count
            else:
                self.tensors[name] = value.clone()

    @contextlib.contextmanager
    def swapped_into(self, model: torch.nn.Module) -> Iterator[None]:
        """Put the averaged weights into `model` for the block, then the model's own back."""
        current = model.state_dict()
        kept = {name: current[name].detach().clone() for name in self.tensors}
        averaged = {name: t.to(current[name].dtype) for name, t in self.tensors.items()}
        model.load_state_dict(averaged, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(kept, strict=False)

    def checkpoint(self) -> dict[str, torch.Tensor]:
        if not self.count:
            return {}
        return self.tensors | {self.COUNT: torch.tensor(self.count, dtype=torch.int64)}

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor]) -> WeightAverage:
        average = cls()
        if tensors:
            average.count = int(tensors.pop(cls.COUNT))
            average.tensors = tensors
        return average
