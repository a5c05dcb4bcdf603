"""Krum and Multi-Krum: Blanchard, El Mhamdi, Guerraoui & Stainer (2017), "Machine Learning
with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS.

Update rule (Flower's `Krum` / `aggregate_krum`): with f = `num_malicious_clients`, each of
the P participants' models gets the score s_i = Σ ‖w_i − w_j‖² over its max(1, P − f − 2)
nearest other models. Krum returns the model of lowest score. Multi-Krum keeps the m lowest-
score models (m = `num_clients_to_keep`, unset: P − f; at most P) and returns their
sample-weighted mean, as Flower does (Blanchard et al. average them unweighted; equal sample
counts give the same). Ties go to the lower client index. f unset (None, the engine did not
resolve it) counts as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig
from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.functions import (
    flatten,
    krum_select,
    multi_krum_select,
    option,
    rows,
    weighted_mean,
)

_PAPER = (
    "Blanchard et al. 2017, Machine Learning with Adversaries: Byzantine Tolerant Gradient "
    "Descent (NeurIPS)"
)


NUM_MALICIOUS_CLIENTS = Param(
    "num_malicious_clients",
    int | None,
    None,
    "Krum/Multi-Krum/Bulyan: Byzantine participants tolerated (f).",
    ge=0,
)
NUM_CLIENTS_TO_KEEP = Param(
    "num_clients_to_keep", int | None, None, "Multi-Krum: models averaged (m); m = 1 is Krum.", ge=1
)


def tolerated(config: RunConfig, participants: int, values: dict[str, Any]) -> int:
    """f: the configured count, else the attackers expected among the participants,
    round(malicious_fraction · P), which goes into `values` (the resolved fields)."""
    if config.num_malicious_clients is not None:
        return int(config.num_malicious_clients)
    values["num_malicious_clients"] = round(config.malicious_fraction * participants)
    return int(values["num_malicious_clients"])


def require_participants(name: str, f: int, participants: int, least: int) -> None:
    """A rule tolerating f attackers needs `least` participants a round."""
    if participants < least:
        raise ConfigError(
            "num_malicious_clients",
            f"{name} tolerating f={f} needs at least {least} participants per round, "
            f"got {participants}",
        )


def half_products(strategy: Strategy) -> bool:
    """Distances from half the matrix products (`upper_gram`): runs of engine_version 4 on."""
    return strategy.config.engine_version >= 4


def num_malicious(strategy: Strategy) -> int:
    """f: the configured count, 0 while unset."""
    value = option(strategy, "num_malicious_clients")
    return 0 if value is None else int(value)


class Krum(Strategy):
    name: ClassVar[str] = "krum"
    paper: ClassVar[str] = _PAPER
    summary: ClassVar[str] = "The one client model closest to its P − f − 2 nearest neighbours."
    params: ClassVar[tuple[Param, ...]] = (NUM_MALICIOUS_CLIENTS,)
    defaults: ClassVar[Mapping[str, Any]] = {"num_malicious_clients": None}

    @classmethod
    def resolve(cls, config: RunConfig, participants: int) -> dict[str, Any]:
        values = super().resolve(config, participants)
        f = tolerated(config, participants, values)
        require_participants(cls.name, f, participants, 2 * f + 3)
        return values

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        best = krum_select(flatten(updates.weights), num_malicious(self), half_products(self))
        return {key: value[best].clone() for key, value in updates.weights.items()}


class MultiKrum(Strategy):
    name: ClassVar[str] = "multikrum"
    paper: ClassVar[str] = _PAPER
    summary: ClassVar[str] = "Sample-weighted mean of the m client models of lowest Krum score."
    params: ClassVar[tuple[Param, ...]] = (NUM_MALICIOUS_CLIENTS, NUM_CLIENTS_TO_KEEP)
    defaults: ClassVar[Mapping[str, Any]] = {
        "num_malicious_clients": None,
        "num_clients_to_keep": None,
    }

    @classmethod
    def resolve(cls, config: RunConfig, participants: int) -> dict[str, Any]:
        values = super().resolve(config, participants)
        f = tolerated(config, participants, values)
        require_participants(cls.name, f, participants, 2 * f + 3)
        keep = config.num_clients_to_keep
        if keep is None:
            values["num_clients_to_keep"] = max(1, participants - f)
        elif keep > participants:
            raise ConfigError(
                "num_clients_to_keep", f"{keep} is more than the {participants} participants"
            )
        return values

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        f = num_malicious(self)
        size = int(updates.sample_counts.shape[0])
        keep = option(self, "num_clients_to_keep")
        keep = max(1, size - f) if keep is None else int(keep)
        chosen = multi_krum_select(flatten(updates.weights), f, keep, half_products(self))
        return weighted_mean(rows(updates.weights, chosen), updates.sample_counts[chosen])
