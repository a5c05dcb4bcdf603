"""MLP: fully connected layers of `hidden_sizes` units with ReLU between them.

The multilayer perceptron FedAvg's paper trains on MNIST ("2NN", McMahan et al. 2017, two
hidden layers of 200); here the layer sizes are the config's `hidden_sizes` (one layer of 64
by default, sized for the small tabular data sets and 8×8 digits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field
from torch import nn

from scarcity.backbones.base import Backbone
from scarcity.params import Param


class MLPBackbone(Backbone):
    name = "mlp"
    description = "Linear → ReLU layers of hidden_sizes units, then a linear output layer."
    params = (
        Param(
            "hidden_sizes",
            list[Annotated[int, Field(ge=1, le=4096)]],
            [64],
            "mlp: units of each hidden layer.",
            min_length=1,
            max_length=8,
        ),
    )

    def __init__(self, input_dim: int, output_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__(input_dim, output_dim)
        self.hidden_sizes = tuple(hidden_sizes)

    def layers(self) -> nn.Module:
        sizes = (self.input_dim, *self.hidden_sizes)
        layers: list[nn.Module] = []
        for fan_in, width in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], self.output_dim))
        return nn.Sequential(*layers)
