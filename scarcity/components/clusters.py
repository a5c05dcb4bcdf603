"""IFCA's client side, per client and stacked: which of the server's cluster models a client
uses.

Ghosh, Chung, Yin & Ramchandran (2020), "An Efficient Framework for Clustered Federated
Learning", NeurIPS, Algorithm 2: each participating client receives the k cluster models,
estimates its cluster as ĵ = argmin_j F_i(θ_j), the lowest mean loss on its own training rows of
the round (`choose`; ties go to the lowest j, as `torch.argmin`), and trains θ_ĵ. A client keeps
its last estimate (−1 until it first takes part): personal evaluation scores it with that
cluster's current model.

Per client: `candidate_losses` (one client's F_i(θ_j) for every j, each model a module) and
`ClusterChoice`; stacked: `stacked_candidate_losses` (every client's, the k models as k rows per
client of the stacked step's initial loss, `ClosedFormStep` or `AutogradStep`) and
`StackedClusterChoices` ([N] int64).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import torch
from torch import Tensor, nn

from scarcity.batched.models import mean_losses
from scarcity.core.training import Task, mean_loss

if TYPE_CHECKING:
    from scarcity.batched.models import StackedModel

__all__ = [
    "ClusterChoice",
    "StackedClusterChoices",
    "candidate_losses",
    "choose",
    "stacked_candidate_losses",
]

#: A client's estimate before it first takes part.
NONE = -1


def choose(losses: Tensor) -> Tensor:
    """IFCA's estimate: the index of the lowest loss along the last axis ([..., k] → [...])."""
    return losses.argmin(dim=-1)


def candidate_losses(task: Task, models: Sequence[nn.Module], x: Tensor, y: Tensor) -> Tensor:
    """One client's mean loss of each model on its rows `x`, `y` [k] (float32)."""
    with torch.no_grad():
        return torch.stack([mean_loss(task, model(x), y) for model in models])


def stacked_candidate_losses(
    task: Task,
    candidates: Mapping[str, Tensor],
    x: Tensor,
    y: Tensor,
    sizes: Tensor | None,
    model: StackedModel | None,
) -> Tensor:
    """`candidate_losses` of every client of `x` [C, n, ...] (zero-padded to n, `sizes` [C]
    when they differ): the k models [k, ...] as k rows per client → [C, k]."""
    clients = len(x)
    k = len(next(iter(candidates.values())))
    params = {
        key: t.unsqueeze(0).expand(clients, *t.shape).reshape(clients * k, *t.shape[1:])
        for key, t in candidates.items()
    }
    return mean_losses(task, params, x, y, k, sizes, model)


class ClusterChoice:
    """One client's estimate of its cluster."""

    def __init__(self) -> None:
        self.cluster = NONE

    def choose(self, losses: Tensor) -> int:
        """Estimate from its losses of the k models [k] and keep the estimate."""
        self.cluster = int(choose(losses))
        return self.cluster

    def state_dict(self) -> dict[str, int]:
        return {"cluster": self.cluster}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.cluster = int(state["cluster"])


class StackedClusterChoices:
    """Every client's estimate [N] (int64, −1 before it first takes part)."""

    def __init__(self, clusters: Tensor) -> None:
        self.cluster = clusters

    @classmethod
    def of(cls, clients: int) -> StackedClusterChoices:
        return cls(torch.full((clients,), NONE, dtype=torch.long))

    def choose(self, losses: Tensor, clients: Tensor) -> Tensor:
        """Estimate for `clients` [C] from their losses [C, k], keep and return the estimates."""
        chosen = choose(losses)
        self.cluster[clients] = chosen
        return chosen

    def take(self, clients: Tensor) -> Self:
        return type(self)(self.cluster[clients].clone())

    def put(self, clients: Tensor, part: Self) -> None:
        self.cluster[clients] = part.cluster

    def state_dict(self) -> Tensor:
        return self.cluster.clone()

    def load_state_dict(self, state: Tensor) -> None:
        self.cluster = state.clone()
