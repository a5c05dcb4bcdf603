"""Reptile: Nichol, Achiam & Schulman (2018), "On First-Order Meta-Learning Algorithms",
arXiv:1803.02999.

Update rule: θ ← θ + ε·mean_i(θ_i − θ), an unweighted mean over the participants with
ε = `reptile_step_size` (ε = 1 is the plain mean of the client models). The seed's
computation (stacked, or client by client for the reference execution), so stored runs
continue bit-identically. Not in Flower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import reptile


class Reptile(Strategy):
    name: ClassVar[str] = "reptile"
    paper: ClassVar[str] = (
        "Nichol, Achiam & Schulman 2018, On First-Order Meta-Learning Algorithms (arXiv)"
    )
    summary: ClassVar[str] = "Move the global model a step ε toward the mean client model."
    defaults: ClassVar[Mapping[str, Any]] = {"reptile_step_size": 1.0}

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        step_size = float(self.config.reptile_step_size)
        return reptile(global_weights, updates.weights, step_size, updates.sequential)
