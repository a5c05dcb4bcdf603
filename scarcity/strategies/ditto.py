"""Ditto: Li, Hu, Beirami & Smith (2021), "Ditto: Fair and Robust Federated Learning Through
Personalization", ICML, Algorithm 1.

Update rule: the global model w is FedAvg's, the sample-weighted mean of the participants'
ordinary local updates of the broadcast w^t. Each client also keeps a personal model v_k
(v_k = w⁰ at the start); every round it takes part it runs local SGD on
F_k(v) + λ/2·‖v − w^t‖², each step v ← v − η·(∇F_k(v) + λ·(v − w^t)) (the official code's
`eff_grad`), for `local_epochs` epochs of `batch_size` mini-batches at η = `learning_rate`
(`FitInstructions.personal_mu`; the clients' `PersonalModel`). Its shuffles come from a stream
of their own, so the global model is FedAvg's exactly. Personal metrics score v_k; `test_loss`
and `test_accuracy` are the global model's. Default λ = 0.1 (the paper tunes λ over
{0.05, 0.1, 0.2, 0.5, 1, 2}).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.params import Param
from scarcity.strategies.base import ClientModel, FitInstructions, Weights
from scarcity.strategies.fedavg import FedAvg
from scarcity.strategies.functions import option

DITTO_LAMBDA = Param(
    "ditto_lambda",
    float | None,
    None,
    "Ditto: λ of the personal models' pull λ/2·‖v − w_global‖² towards the global model.",
    ge=0,
    le=100,
)


class Ditto(FedAvg):
    name: ClassVar[str] = "ditto"
    paper: ClassVar[str] = (
        "Li, Hu, Beirami & Smith 2021, Ditto: Fair and Robust Federated Learning Through "
        "Personalization (ICML)"
    )
    summary: ClassVar[str] = (
        "FedAvg, and each client a personal model trained on F_k(v) + λ/2·‖v − w_global‖²."
    )
    params: ClassVar[tuple[Param, ...]] = (DITTO_LAMBDA,)
    defaults: ClassVar[Mapping[str, Any]] = {"ditto_lambda": 0.1}
    client_model: ClassVar[ClientModel] = "personal"

    def configure_fit(
        self, round_index: int, global_weights: Weights, participants: Tensor
    ) -> FitInstructions:
        return FitInstructions(personal_mu=float(option(self, "ditto_lambda")))
