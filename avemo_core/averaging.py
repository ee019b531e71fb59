"""Weight averaging over the last epochs: a model less fitted to the few validation speakers.

Picking the best epoch by validation fits that choice to the validation split (four actors on
RAVDESS); the mean of the weights after each of the last epochs of a cosine schedule (stochastic
weight averaging over a decaying learning rate) is one model chosen by no validation score. Buffers
that are not floating point (none in the model today) are taken from the latest epoch.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """Running mean of a model's floating-point state (parameters, buffers) over `update` calls."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def update(self, model: nn.Module) -> None:
        """Add the model's current state (float64 sums, so many epochs lose nothing)."""
        for name, value in model.state_dict().items():
            value = value.detach()
            if not value.is_floating_point():
                self._sums[name] = value.clone()
            elif name in self._sums:
                self._sums[name] += value.double()
            else:
                self._sums[name] = value.double().clone()
        self.count += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged state, in the model's own dtypes (load it with `load_state_dict`)."""
        if self.count == 0:
            raise ValueError("no state averaged yet: call update() first")
        return {
            name: (total / self.count) if total.is_floating_point() else total
            for name, total in self._sums.items()
        }

    def apply_to(self, model: nn.Module) -> None:
        """Load the averaged state into `model` (its parameters' dtypes and devices are kept)."""
        current = model.state_dict()
        averaged = {
            name: value.to(dtype=current[name].dtype, device=current[name].device)
            for name, value in self.state_dict().items()
        }
        model.load_state_dict(averaged)
