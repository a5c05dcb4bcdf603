"""FedProx: Li, Sahu, Zaheer, Sanjabi, Talwalkar & Smith (2020), "Federated Optimization in
Heterogeneous Networks", MLSys.

Client side: each participant minimises f_i(w) + μ/2·‖w − w^t‖² around the broadcast model
w^t (`FitInstructions.proximal_mu`; Flower's `FedProx` sends `proximal_mu` in the fit
config). Server side: FedAvg, the sample-weighted mean of the client models. Default
μ = 0.01 (Flower requires it explicitly).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.params import Param
from scarcity.strategies.base import FitInstructions, Weights
from scarcity.strategies.fedavg import FedAvg
from scarcity.strategies.functions import option

PROXIMAL_MU = Param("proximal_mu", float | None, None, "FedProx proximal μ.", ge=0, le=100)


class FedProx(FedAvg):
    name: ClassVar[str] = "fedprox"
    paper: ClassVar[str] = (
        "Li et al. 2020, Federated Optimization in Heterogeneous Networks (MLSys)"
    )
    summary: ClassVar[str] = "FedAvg with a proximal term μ/2·‖w − w_global‖² in local training."
    params: ClassVar[tuple[Param, ...]] = (PROXIMAL_MU,)
    defaults: ClassVar[Mapping[str, Any]] = {"proximal_mu": 0.01}

    def configure_fit(
        self, round_index: int, global_weights: Weights, participants: Tensor
    ) -> FitInstructions:
        mu = float(option(self, "proximal_mu"))
        return FitInstructions(proximal_mu=mu)
