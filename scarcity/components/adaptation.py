"""Learning-rate adaptation (`MetaAdaptationExpert`, seed stage 7), per client and stacked.

After every epoch of an objective (supervised, self-supervised) the rate is multiplied by
`decrease` when the epoch loss rose and by `increase` when it dropped by more than
`threshold`; running mean and variance of the rate history use Welford's algorithm
(Welford 1962). `LearningRateRule` is one client's state, `LearningRateAdaptation` every
client's as [N] tensors.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from scarcity.components import select_rows

if TYPE_CHECKING:
    from scarcity.config import SimulationConfig

OBJECTIVES = ("supervised", "self_supervised")


class LearningRateRule:
    """One client's rate scale, last epoch loss per objective, adjustments and rate stats."""

    def __init__(self, base_lr: float, decrease: float, increase: float, threshold: float) -> None:
        self.decrease, self.increase, self.threshold = decrease, increase, threshold
        self.scale = 1.0
        self.last_loss: dict[str, float] = {}
        self.total_adjustments = 0
        self.round_adjustments = 0
        # Running statistics of the rate history (count, mean, M2 of Welford's algorithm).
        self.count, self.mean, self.m2 = 1, base_lr, 0.0

    def start_round(self) -> None:
        self.round_adjustments = 0

    def adapt(self, objective: str, loss: float, base_lr: float) -> bool:
        """Apply the rule to one epoch loss of `objective`; whether the scale changed."""
        previous = self.last_loss.get(objective)
        self.last_loss[objective] = loss
        if previous is None:
            return False
        if loss > previous:
            self.scale *= self.decrease
        elif previous - loss > self.threshold:
            self.scale *= self.increase
        else:
            return False
        self.total_adjustments += 1
        self.round_adjustments += 1
        current = base_lr * self.scale
        self.count += 1
        delta = current - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (current - self.mean)
        return True

    def summary(self, base_lr: float) -> dict[str, float]:
        """`MetaAdaptationExpert.summarize`."""
        return {
            "current_lr": base_lr * self.scale,
            "avg_lr": self.mean,
            "lr_history_length": float(self.count),
            "lr_variance": self.m2 / self.count,
            "lr_adjustments": float(self.round_adjustments),
        }

    def state_dict(self) -> dict[str, Any]:
        """The keys `MetaAdaptationExpert` has always stored."""
        return {
            "lr_scale": self.scale,
            "last_loss": dict(self.last_loss),
            "adjustments": [self.total_adjustments, self.round_adjustments],
            "lr_stats": [self.count, self.mean, self.m2],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = state["lr_scale"]
        self.last_loss = dict(state["last_loss"])
        self.total_adjustments, self.round_adjustments = state["adjustments"]
        self.count, self.mean, self.m2 = state["lr_stats"]


class LearningRateAdaptation:
    """Every client's rate scale, last epoch loss per objective, adjustment counts, rate stats."""

    def __init__(
        self,
        num_clients: int,
        base_lr: float,
        decrease: float,
        increase: float,
        threshold: float,
    ) -> None:
        self.base_lr, self.decrease, self.increase = base_lr, decrease, increase
        self.threshold = threshold
        self.scale = torch.ones(num_clients, dtype=torch.float64)
        self.last_loss = {
            o: torch.full((num_clients,), math.nan, dtype=torch.float64) for o in OBJECTIVES
        }
        self.total_adjustments = torch.zeros(num_clients, dtype=torch.long)
        self.round_adjustments = torch.zeros(num_clients, dtype=torch.long)
        self.count = torch.ones(num_clients, dtype=torch.long)
        self.mean = torch.full((num_clients,), base_lr, dtype=torch.float64)
        self.m2 = torch.zeros(num_clients, dtype=torch.float64)

    @classmethod
    def of(cls, num_clients: int, config: SimulationConfig) -> LearningRateAdaptation:
        """Every client's adaptation as `config` sets it (`MetaAdaptationExpert`'s factors)."""
        return cls(
            num_clients,
            config.learning_rate,
            config.lr_decrease_factor,
            config.lr_increase_factor,
            config.lr_improvement_threshold,
        )

    def start_round(self) -> None:
        self.round_adjustments.zero_()

    def adapt(self, objective: str, loss: Tensor, clients: Tensor) -> None:
        """`MetaAdaptationExpert.adapt` for `clients`, given their epoch losses."""
        loss = loss.double()
        previous = self.last_loss[objective][clients]
        self.last_loss[objective][clients] = loss
        seen = ~previous.isnan()
        rose = seen & (loss > previous)
        big_drop = seen & ~rose & ((previous - loss) > self.threshold)
        scale = self.scale[clients]
        scale = torch.where(
            rose, scale * self.decrease, torch.where(big_drop, scale * self.increase, scale)
        )
        adjusted = rose | big_drop
        self.scale[clients] = scale
        self.total_adjustments[clients] += adjusted.long()
        self.round_adjustments[clients] += adjusted.long()
        count = self.count[clients] + adjusted.long()
        current = self.base_lr * scale
        mean = self.mean[clients]
        delta = current - mean
        new_mean = torch.where(adjusted, mean + delta / count, mean)
        self.m2[clients] += torch.where(adjusted, delta * (current - new_mean), 0.0)
        self.mean[clients] = new_mean
        self.count[clients] = count

    def summary(self) -> dict[str, Tensor]:
        """`MetaAdaptationExpert.summarize`, float64 [N] per key."""
        count = self.count.double()
        return {
            "current_lr": self.base_lr * self.scale,
            "avg_lr": self.mean.clone(),
            "lr_history_length": count,
            "lr_variance": self.m2 / count,
            "lr_adjustments": self.round_adjustments.double(),
        }

    def take(self, clients: Tensor) -> LearningRateAdaptation:
        """The state of `clients` alone (copies)."""
        part = LearningRateAdaptation(0, self.base_lr, self.decrease, self.increase, self.threshold)
        part.load_state_dict(select_rows(self.state_dict(), clients))
        return part

    def put(self, clients: Tensor, part: LearningRateAdaptation) -> None:
        """Write back what `take(clients)` returned (after it changed)."""
        self.scale[clients] = part.scale
        for key, loss in part.last_loss.items():
            self.last_loss[key][clients] = loss
        self.total_adjustments[clients] = part.total_adjustments
        self.round_adjustments[clients] = part.round_adjustments
        self.count[clients], self.mean[clients] = part.count, part.mean
        self.m2[clients] = part.m2

    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale.clone(),
            "last_loss": {key: t.clone() for key, t in self.last_loss.items()},
            "adjustments": [self.total_adjustments.clone(), self.round_adjustments.clone()],
            "stats": [self.count.clone(), self.mean.clone(), self.m2.clone()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = state["scale"].clone()
        self.last_loss = {key: t.clone() for key, t in state["last_loss"].items()}
        self.total_adjustments, self.round_adjustments = (t.clone() for t in state["adjustments"])
        self.count, self.mean, self.m2 = (t.clone() for t in state["stats"])
