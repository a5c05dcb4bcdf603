"""FedTrimmedAvg: Yin, Chen, Ramchandran & Bartlett (2018), "Byzantine-Robust Distributed
Learning: Towards Optimal Statistical Rates", ICML.

Update rule: per coordinate, drop the int(β·P) smallest and the int(β·P) largest of the P
participants' values and take the unweighted mean of the rest (Flower's `FedTrimmedAvg` /
`aggregate_trimmed_avg`, which is scipy.stats.trim_mean). β = `trim_beta`, default 0.2 (as
Flower's `beta`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.params import Param
from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import option, trimmed_mean

TRIM_BETA = Param(
    "trim_beta",
    float | None,
    None,
    "FedTrimmedAvg: share cut from each end per coordinate.",
    ge=0,
    lt=0.5,
)


class FedTrimmedAvg(Strategy):
    name: ClassVar[str] = "fedtrimmedavg"
    paper: ClassVar[str] = (
        "Yin et al. 2018, Byzantine-Robust Distributed Learning: Towards Optimal Statistical "
        "Rates (ICML)"
    )
    summary: ClassVar[str] = "Coordinate-wise mean after cutting a share β from each end."
    params: ClassVar[tuple[Param, ...]] = (TRIM_BETA,)
    defaults: ClassVar[Mapping[str, Any]] = {"trim_beta": 0.2}

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        return trimmed_mean(updates.weights, float(option(self, "trim_beta")))
