"""FedAvg: McMahan, Moore, Ramage, Hampson & Agüera y Arcas (2017), "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS.

Update rule: the new global model is the sample-weighted mean of the participants' models,
w ← Σ_i n_i·w_i / Σ_i n_i (Flower's `FedAvg` / `aggregate`). The seed's computation: one
contraction over the client axis, or summed client by client for the reference execution
(`ClientUpdates.sequential`), so stored runs continue bit-identically.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import weighted_mean


class FedAvg(Strategy):
    name: ClassVar[str] = "fedavg"
    paper: ClassVar[str] = (
        "McMahan et al. 2017, Communication-Efficient Learning of Deep Networks from "
        "Decentralized Data (AISTATS)"
    )
    summary: ClassVar[str] = "Sample-weighted mean of the client models."

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        return weighted_mean(updates.weights, updates.sample_counts, updates.sequential)
