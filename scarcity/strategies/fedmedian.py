"""FedMedian: Yin, Chen, Ramchandran & Bartlett (2018), "Byzantine-Robust Distributed
Learning: Towards Optimal Statistical Rates", ICML.

Update rule: the coordinate-wise median of the participants' models, unweighted; for an even
count the mean of the two middle values (Flower's `FedMedian` / `aggregate_median`, which is
numpy.median).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import coordinate_median


class FedMedian(Strategy):
    name: ClassVar[str] = "fedmedian"
    paper: ClassVar[str] = (
        "Yin et al. 2018, Byzantine-Robust Distributed Learning: Towards Optimal Statistical "
        "Rates (ICML)"
    )
    summary: ClassVar[str] = "Coordinate-wise median of the client models (Byzantine-robust)."

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        return coordinate_median(updates.weights)
