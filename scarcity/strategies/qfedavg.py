"""q-FedAvg: Li, Sanjabi, Beirami & Smith (2020), "Fair Resource Allocation in Federated
Learning", ICLR.

Update rule (the paper's Algorithm 2, with Flower's `QFedAvg` arithmetic): with
L = 1/`qffl_learning_rate`, F_k = F_k(w^t) + 1e-10 the participant's loss of the broadcast
model on its own training data (`ClientUpdates.initial_loss`; the 1e-10 keeps F_k^(q−1)
finite at a zero loss, as Flower), Δw_k = L·(w^t − w_k), Δ_k = F_k^q·Δw_k and
h_k = q·F_k^(q−1)·‖Δw_k‖² + L·F_k^q, the new model is w^{t+1} = w^t − Σ_k Δ_k / Σ_k h_k
(computed in float64). Flower plugs one server-side evaluation loss in for every F_k; this
uses each client's own F_k, as the paper does. q = 0 gives the unweighted mean of the client
models. Defaults as Flower: q = 0.2, learning rate 0.1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.params import Param
from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import option, qffl_aggregate

Q_PARAM = Param("q_param", float | None, None, "q-FedAvg fairness q.", ge=0, le=100)
QFFL_LEARNING_RATE = Param(
    "qffl_learning_rate", float | None, None, "q-FedAvg step η (L = 1/η).", gt=0, le=10
)


class QFedAvg(Strategy):
    name: ClassVar[str] = "qfedavg"
    paper: ClassVar[str] = (
        "Li, Sanjabi, Beirami & Smith 2020, Fair Resource Allocation in Federated Learning (ICLR)"
    )
    summary: ClassVar[str] = "Fair aggregation: clients with a higher loss weigh more (q)."
    params: ClassVar[tuple[Param, ...]] = (Q_PARAM, QFFL_LEARNING_RATE)
    defaults: ClassVar[Mapping[str, Any]] = {"q_param": 0.2, "qffl_learning_rate": 0.1}
    uses_initial_loss: ClassVar[bool] = True

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        return qffl_aggregate(
            global_weights,
            updates.weights,
            updates.initial_loss,
            float(option(self, "q_param")),
            float(option(self, "qffl_learning_rate")),
        )
