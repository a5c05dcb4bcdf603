"""Reptile meta-initialisation of the experts (`meta_init`), kept by the server.

Nichol, Achiam & Schulman (2018), "On First-Order Meta-Learning Algorithms" (arXiv:1803.02999),
Algorithm 2 (batched Reptile): each round's participants are the batch of tasks; each adapts
the initialisation by its local training (φ_i), and the server moves it towards their mean,

    θ ← θ + ε·((1/n)·Σ_i φ_i − θ),    ε = `meta_step_size`.

One θ per expert of the portfolio (every weight an expert holds: its head and its
autoencoder, `Expert.get_weights`' keys), and, with a shared model, one for it. θ starts as
the mean over all clients of their initial weights of that expert (the shared model's: the
server's initial model), and moves once per round from the participants' experts as their
local training left them (before gossip). A client that has not trained yet starts from θ:
before the round's training each participant taking part for the first time has every expert
set to its θ. Under `scenario=arrivals`, the clients that never train adapt from the shared
model's θ instead of the global model (`model`).

ε = 1 (the default) makes θ the plain mean of the round's adapted experts (the batched
version's largest step; Nichol et al.'s experiments start the outer step at 1); a smaller ε
averages over more rounds' participants. It adds expert weights to what reaches the server:
from stage 3 the seed sends the server no weights, so `meta_init` is an explicit choice.

With a `drift_detector`, an expert whose client's detector alarms restarts from its θ (the
experience of every client so far) instead of a fresh draw, before θ's update of the round.

The meta-parameters the seed broadcasts (EMA statistics, the learning-rate rule) stay as they
were; this is a second, separate mechanism.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import Tensor, nn

__all__ = ["SHARED", "ExpertWeights", "MetaInitialisation", "reptile_update"]

#: θ's key for the shared model.
SHARED = "shared"


class ExpertWeights(Protocol):
    """What the meta-initialisation reads and writes of a population (both executions)."""

    def stacked_expert_weights(self, expert: int, clients: Tensor) -> dict[str, Tensor]:
        """Expert `expert`'s weights of `clients`, each [C, ...] (`Expert.get_weights` keys)."""
        ...

    def every_expert_weights(self, clients: Tensor) -> list[dict[str, Tensor]]:
        """`stacked_expert_weights` of every expert, in order (views of the weights, maybe:
        read before the weights change)."""
        ...

    def set_stacked_expert_weights(
        self, expert: int, clients: Tensor, weights: Mapping[str, Tensor]
    ) -> None:
        """Set expert `expert` of every one of `clients` to `weights` (one value each)."""


def reptile_update(
    theta: Mapping[str, Tensor], adapted: Mapping[str, Tensor], step_size: float
) -> dict[str, Tensor]:
    """θ + ε·(mean over the first axis of `adapted` − θ), per weight."""
    return {
        key: value + step_size * (first_axis_mean(adapted[key]) - value)
        for key, value in theta.items()
    }


def first_axis_mean(t: Tensor) -> Tensor:
    """`t.mean(dim=0)` bit for bit as of a contiguous copy of `t`, without the copy where a
    view's rows are contiguous blocks of two values or more (each value's sum then runs over
    the rows in a copy's order); a strided vector (one value a row) is summed in another order,
    so it is copied."""
    if len(t) and t[0].numel() > 1 and t[0].is_contiguous():
        return t.mean(dim=0)
    return t.contiguous().mean(dim=0)


class MetaInitialisation:
    """θ per expert (by name) and for the shared model, and which clients have trained."""

    def __init__(
        self,
        names: tuple[str, ...],
        population: ExpertWeights,
        num_clients: int,
        step_size: float,
        shared: Mapping[str, Tensor] | None,
    ) -> None:
        self.names, self.step_size = names, step_size
        everyone = torch.arange(num_clients)
        self.theta: dict[str, dict[str, Tensor]] = {
            name: {
                key: t.mean(dim=0)
                for key, t in population.stacked_expert_weights(e, everyone).items()
            }
            for e, name in enumerate(names)
        }
        if shared is not None:
            self.theta[SHARED] = {key: t.detach().clone() for key, t in shared.items()}
        #: Whether each client has trained (taken part in a round) [N].
        self.trained = torch.zeros(num_clients, dtype=torch.bool)

    def start(self, population: ExpertWeights, participants: Tensor) -> None:
        """The participants that have not trained yet start every expert from θ."""
        newcomers = participants[~self.trained[participants]]
        if len(newcomers) == 0:
            return
        for e, name in enumerate(self.names):
            population.set_stacked_expert_weights(e, newcomers, self.theta[name])

    def restart(self, population: ExpertWeights, alarmed: list[tuple[int, str]]) -> None:
        """`drift_detector`: each (client, expert) whose detector alarmed restarts that expert
        from θ (instead of the fresh draw it gets without `meta_init`)."""
        for client, name in alarmed:
            e = self.names.index(name)
            population.set_stacked_expert_weights(e, torch.tensor([client]), self.theta[name])

    def update(
        self,
        population: ExpertWeights,
        participants: Tensor,
        shared: Mapping[str, Tensor] | None,
    ) -> None:
        """One Reptile step of every θ from the participants' adapted models (`shared`
        [P, ...]: their shared models, None without one)."""
        every = population.every_expert_weights(participants)
        for name, adapted in zip(self.names, every, strict=True):
            self.theta[name] = reptile_update(self.theta[name], adapted, self.step_size)
        if shared is not None and SHARED in self.theta:
            self.theta[SHARED] = reptile_update(self.theta[SHARED], shared, self.step_size)
        self.trained[participants] = True

    def model(self, template: nn.Module) -> nn.Module:
        """A copy of `template` (the shared model) holding the shared model's θ."""
        local = copy.deepcopy(template)
        local.load_state_dict(self.theta[SHARED])
        return local

    def state_dict(self) -> dict[str, Any]:
        theta = {name: {k: t.clone() for k, t in w.items()} for name, w in self.theta.items()}
        return {"theta": theta, "trained": self.trained.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        theta = state["theta"]
        self.theta = {name: {k: t.clone() for k, t in w.items()} for name, w in theta.items()}
        self.trained = state["trained"].clone()
