"""Bulyan: El Mhamdi, Guerraoui & Rouault (2018), "The Hidden Vulnerability of Distributed
Learning in Byzantium", ICML.

Update rule (Flower's `Bulyan` / `aggregate_bulyan` with Krum as the first rule): with
f = `num_malicious_clients` (unset: 0) and P ≥ 4f + 3 participants, select θ = P − 2f models
one at a time, each the Krum choice (lowest sum of squared distances to its
max(1, n − f − 2) nearest others) among the n models not yet selected; then, per coordinate,
average (unweighted) the β = θ − 2f selected values closest to the selected models'
coordinate-wise median (numpy.median: an even count takes the mean of the middle two). Ties
go to the earlier model. Fewer than 4f + 3 participants raise ConfigError, as in Flower.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.params import Param, RunConfig
from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import bulyan
from scarcity.strategies.krum import (
    NUM_MALICIOUS_CLIENTS,
    half_products,
    num_malicious,
    require_participants,
    tolerated,
)


class Bulyan(Strategy):
    name: ClassVar[str] = "bulyan"
    paper: ClassVar[str] = (
        "El Mhamdi, Guerraoui & Rouault 2018, The Hidden Vulnerability of Distributed "
        "Learning in Byzantium (ICML)"
    )
    summary: ClassVar[str] = "Repeated Krum selection, then a trimmed mean around the median."
    params: ClassVar[tuple[Param, ...]] = (NUM_MALICIOUS_CLIENTS,)
    defaults: ClassVar[Mapping[str, Any]] = {"num_malicious_clients": None}

    @classmethod
    def resolve(cls, config: RunConfig, participants: int) -> dict[str, Any]:
        values = super().resolve(config, participants)
        f = tolerated(config, participants, values)
        require_participants(cls.name, f, participants, 4 * f + 3)
        return values

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        return bulyan(updates.weights, num_malicious(self), half_products(self))
