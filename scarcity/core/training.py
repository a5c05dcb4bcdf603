"""Training helpers shared by experts, clients and the server: initialisation and task losses.
The local SGD loops are `scarcity.components.training`; a strategy's terms of the local loss,
`LocalObjective`, are `scarcity.components.objective` (re-exported here).

Every random draw goes through a caller-supplied `torch.Generator`, never torch's global RNG,
so simulations in one process do not disturb each other.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scarcity.components.objective import LocalObjective

if TYPE_CHECKING:
    from scarcity.config import SimulationConfig

__all__ = ["LocalObjective", "Task", "make_linear", "mean_loss", "per_sample_loss", "ssl_rate"]

Task = Literal["regression", "classification"]


def make_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    """A `nn.Linear` with PyTorch's default uniform(±1/√fan_in) init, drawn from `generator`."""
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        for param in (layer.weight, layer.bias):
            param.copy_(torch.rand(param.shape, generator=generator) * (2 * bound) - bound)
    return layer


def per_sample_loss(task: Task, prediction: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy for classification (integer labels), mean squared error for regression."""
    if task == "classification":
        return F.cross_entropy(prediction, target, reduction="none")
    return ((prediction - target) ** 2).mean(dim=1)


def mean_loss(task: Task, prediction: Tensor, target: Tensor) -> Tensor:
    if task == "classification":
        return F.cross_entropy(prediction, target)
    return F.mse_loss(prediction, target)


def ssl_rate(config: SimulationConfig, broadcast_lr: float) -> float:
    """A label-free client's autoencoder rate under the meta-learner's broadcast: the same
    multiple of `ssl_learning_rate` as the broadcast is of `learning_rate` (the seed's rule
    raises the rate ×2 or ×5 while the clients' mean loss, here the reconstruction loss, is
    high)."""
    return config.ssl_learning_rate * broadcast_lr / config.learning_rate
