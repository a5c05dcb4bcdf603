"""FedAdagrad, FedAdam, FedYogi: Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar &
McMahan (2021), "Adaptive Federated Optimization", ICLR.

Update rule, exactly as Flower's `FedAdagrad` / `FedAdam` / `FedYogi` (each built on FedOpt):
with Δ = FedAvg(clients) − w (the sample-weighted mean of the client models minus the
current global model; computed as the weighted mean of the clients' own w_i − w, equal in
exact arithmetic and exactly 0 where no client moved, see `FedOpt.pseudo_gradient`) and the
moments m, v starting at zero,

    m ← β₁·m + (1 − β₁)·Δ
    FedAdagrad: v ← v + Δ²
    FedAdam:    v ← β₂·v + (1 − β₂)·Δ²
    FedYogi:    v ← v − (1 − β₂)·Δ²·sign(v − Δ²)
    w ← w + η_t·m / (√v + τ)

η_t = η for FedAdagrad and FedYogi. FedAdam uses Flower's bias-corrected step
η_t = η·√(1 − β₂^(t+1)) / (1 − β₁^(t+1)) with t the server round (1 on the first aggregate),
i.e. Flower's exponent `server_round + 1` (Kingma & Ba's α_t would use t). FedAdagrad has no
first moment in Flower (β₁ = 0, m = Δ) and reads no β. The paper initialises v to τ²; Flower,
and so this module, starts it at 0. Defaults as Flower: FedAdagrad η = 0.1, τ = 1e-9;
FedAdam η = 0.1, β₁ = 0.9, β₂ = 0.99, τ = 1e-9; FedYogi η = 0.01, β₁ = 0.9, β₂ = 0.99,
τ = 1e-3.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from scarcity.params import Param, RunConfig
from scarcity.strategies.base import ClientUpdates, Strategy, Weights
from scarcity.strategies.fedavgm import SERVER_LEARNING_RATE
from scarcity.strategies.functions import option, weighted_mean

_PAPER = "Reddi et al. 2021, Adaptive Federated Optimization (ICLR)"


BETA_1 = Param("beta_1", float | None, None, "FedAdam/FedYogi first moment.", ge=0, lt=1)
BETA_2 = Param("beta_2", float | None, None, "FedAdam/FedYogi second moment.", ge=0, lt=1)
TAU = Param("tau", float | None, None, "FedAdagrad/Adam/Yogi adaptivity τ.", gt=0, le=1)


class FedOpt(Strategy):
    """The shared server optimiser; subclasses give the second-moment rule."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.step = 0
        self.m: dict[str, Tensor] | None = None
        self.v: dict[str, Tensor] | None = None

    def beta_1(self) -> float:
        return float(option(self, "beta_1"))

    def beta_2(self) -> float:
        return float(option(self, "beta_2"))

    @abstractmethod
    def second_moment(self, v: Tensor, delta: Tensor) -> Tensor:
        """The new v from the old one and this round's Δ."""

    def step_size(self) -> float:
        """η_t of the current step."""
        return float(option(self, "server_learning_rate"))

    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        delta = self.pseudo_gradient(global_weights, updates)
        m = self.m if self.m is not None else {k: torch.zeros_like(d) for k, d in delta.items()}
        v = self.v if self.v is not None else {k: torch.zeros_like(d) for k, d in delta.items()}
        beta_1 = self.beta_1()
        self.m = {key: beta_1 * m[key] + (1 - beta_1) * d for key, d in delta.items()}
        self.v = {key: self.second_moment(v[key], d) for key, d in delta.items()}
        self.step += 1
        eta = self.step_size()
        tau = float(option(self, "tau"))
        return {
            key: value + eta * self.m[key] / (self.v[key].sqrt() + tau)
            for key, value in global_weights.items()
        }

    def pseudo_gradient(self, global_weights: Weights, updates: ClientUpdates) -> Weights:
        """Δ, from engine_version 3 as the weighted mean of the clients' own Δ_i = w_i − w: a
        coordinate no client moved has Δ exactly 0. Before, as Flower, FedAvg(clients) − w,
        whose float rounding leaves ±1 ulp there, which m / (√v + τ) turns into a full ±η step
        (digits' always-blank pixels; the two executions round differently)."""
        counts, sequential = updates.sample_counts, updates.sequential
        if self.config.engine_version >= 3:
            own = {key: value - global_weights[key] for key, value in updates.weights.items()}
            return weighted_mean(own, counts, sequential)
        averaged = weighted_mean(updates.weights, counts, sequential)
        return {key: value - global_weights[key] for key, value in averaged.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "m": self.m, "v": self.v}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.m = None if state["m"] is None else dict(state["m"])
        self.v = None if state["v"] is None else dict(state["v"])


class FedAdagrad(FedOpt):
    name: ClassVar[str] = "fedadagrad"
    paper: ClassVar[str] = _PAPER
    summary: ClassVar[str] = "Adagrad server optimiser on the FedAvg pseudo-gradient."
    params: ClassVar[tuple[Param, ...]] = (SERVER_LEARNING_RATE, TAU)
    defaults: ClassVar[Mapping[str, Any]] = {"server_learning_rate": 0.1, "tau": 1e-9}

    def beta_1(self) -> float:
        return 0.0

    def second_moment(self, v: Tensor, delta: Tensor) -> Tensor:
        return v + delta * delta


class FedAdam(FedOpt):
    name: ClassVar[str] = "fedadam"
    paper: ClassVar[str] = _PAPER
    summary: ClassVar[str] = "Adam server optimiser (bias-corrected step) on the FedAvg update."
    params: ClassVar[tuple[Param, ...]] = (SERVER_LEARNING_RATE, BETA_1, BETA_2, TAU)
    defaults: ClassVar[Mapping[str, Any]] = {
        "server_learning_rate": 0.1,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-9,
    }

    def second_moment(self, v: Tensor, delta: Tensor) -> Tensor:
        beta_2 = self.beta_2()
        return beta_2 * v + (1 - beta_2) * (delta * delta)

    def step_size(self) -> float:
        exponent = self.step + 1.0
        return (
            super().step_size()
            * math.sqrt(1 - self.beta_2() ** exponent)
            / (1 - self.beta_1() ** exponent)
        )


class FedYogi(FedOpt):
    name: ClassVar[str] = "fedyogi"
    paper: ClassVar[str] = _PAPER
    summary: ClassVar[str] = "Yogi server optimiser on the FedAvg pseudo-gradient."
    params: ClassVar[tuple[Param, ...]] = (SERVER_LEARNING_RATE, BETA_1, BETA_2, TAU)
    defaults: ClassVar[Mapping[str, Any]] = {
        "server_learning_rate": 0.01,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-3,
    }

    def second_moment(self, v: Tensor, delta: Tensor) -> Tensor:
        square = delta * delta
        return v - (1.0 - self.beta_2()) * square * torch.sign(v - square)
