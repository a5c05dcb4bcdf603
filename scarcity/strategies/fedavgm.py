"""FedAvgM: Hsu, Qi & Brown (2019), "Measuring the Effects of Non-Identical Data Distribution
for Federated Visual Classification", arXiv:1909.06335.

Update rule (Flower's `FedAvgM`, PyTorch's SGD-momentum convention): with the pseudo-gradient
Δ = w − FedAvg(clients), the server momentum v ← β·v + Δ (v = Δ on the first round) and
w ← w − η·v; with β = 0 no momentum is kept and w ← w − η·Δ. With β = 0 and η = 1 the FedAvg
result is returned unchanged, as Flower does. Defaults η = 1.0 (as Flower) and β = 0.9
(Flower defaults to β = 0, which is plain FedAvg; 0.9 is the paper's usual momentum).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.params import Param, RunConfig
from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import option, weighted_mean

SERVER_LEARNING_RATE = Param(
    "server_learning_rate",
    float | None,
    None,
    "Server step η (FedAvgM, FedAdagrad/Adam/Yogi, SCAFFOLD).",
    gt=0,
    le=10,
)
SERVER_MOMENTUM = Param(
    "server_momentum", float | None, None, "FedAvgM server momentum β.", ge=0, lt=1
)


class FedAvgM(Strategy):
    name: ClassVar[str] = "fedavgm"
    paper: ClassVar[str] = (
        "Hsu, Qi & Brown 2019, Measuring the Effects of Non-Identical Data Distribution for "
        "Federated Visual Classification (arXiv)"
    )
    summary: ClassVar[str] = "FedAvg with server momentum: v ← βv + Δ, w ← w − ηv."
    params: ClassVar[tuple[Param, ...]] = (SERVER_LEARNING_RATE, SERVER_MOMENTUM)
    defaults: ClassVar[Mapping[str, Any]] = {"server_learning_rate": 1.0, "server_momentum": 0.9}

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.momentum: dict[str, Tensor] | None = None

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        averaged = weighted_mean(updates.weights, updates.sample_counts, updates.sequential)
        lr = float(option(self, "server_learning_rate"))
        beta = float(option(self, "server_momentum"))
        if beta == 0.0 and lr == 1.0:
            return averaged
        step = {key: global_weights[key] - value for key, value in averaged.items()}
        if beta > 0.0:
            if self.momentum is None:
                self.momentum = step
            else:
                self.momentum = {
                    key: beta * value + step[key] for key, value in self.momentum.items()
                }
            step = self.momentum
        return {key: global_weights[key] - lr * value for key, value in step.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": self.momentum}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        momentum = state["momentum"]
        self.momentum = None if momentum is None else dict(momentum)
