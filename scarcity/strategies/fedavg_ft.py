"""FedAvg with local fine-tuning (FedAvg-FT): Wang, Mathews, Kiddon, Eichner, Beaufays & Ramage
(2019), "Federated Evaluation of On-device Personalization", arXiv:1910.10252; the global model
by FedAvg (McMahan et al. 2017).

Update rule: the global model is FedAvg's, w ← Σ_i n_i·w_i / Σ_i n_i, untouched by
personalisation. Before evaluation every client fine-tunes a copy of the current global model
on its own training rows of the round: `finetune_epochs` epochs of plain mini-batch SGD
(`batch_size`, `learning_rate`, the shuffles from a stream of their own, so the run's other
draws and its global model are FedAvg's exactly). Personal metrics score the fine-tuned copies,
which are then discarded; `test_loss` and `test_accuracy` are the global model's. Default: one
epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from scarcity.params import Param
from scarcity.strategies.base import ClientModel
from scarcity.strategies.fedavg import FedAvg
from scarcity.strategies.functions import option

FINETUNE_EPOCHS = Param(
    "finetune_epochs",
    int | None,
    None,
    "FedAvg-FT: local epochs each client fine-tunes a copy of the global model before "
    "personal evaluation.",
    ge=1,
    le=100,
)


class FedAvgFT(FedAvg):
    name: ClassVar[str] = "fedavg_ft"
    paper: ClassVar[str] = (
        "Wang et al. 2019, Federated Evaluation of On-device Personalization (arXiv); "
        "FedAvg by McMahan et al. 2017"
    )
    summary: ClassVar[str] = (
        "FedAvg; each client fine-tunes a copy of the global model on its own rows to be scored."
    )
    params: ClassVar[tuple[Param, ...]] = (FINETUNE_EPOCHS,)
    defaults: ClassVar[Mapping[str, Any]] = {"finetune_epochs": 1}
    client_model: ClassVar[ClientModel] = "finetuned"

    def finetune_epochs(self) -> int:
        return int(option(self, "finetune_epochs"))
