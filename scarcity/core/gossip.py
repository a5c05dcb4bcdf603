"""Peer-to-peer gossip (seed stage 6): random disjoint client pairs average one expert.

Each round the clients are shuffled and paired; with an odd count one client sits out, chosen
at random among those that have sat out least, so every client is paired within two rounds.
With client sampling only the round's participants gossip (the others are offline).
Each pair averages the full weights of one randomly chosen expert (`pairwise_average`), with no
server involved (randomized gossip, Boyd et al. 2006). `gossip_round` syncs `Client` objects,
`stacked_gossip_round` the pool's stacked weights with the same draws.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from scarcity.core.aggregate import pairwise_average


class _Syncable(Protocol):
    client_id: int

    @property
    def expert_names(self) -> list[str]: ...

    def sync_with(self, peer: Any, expert_idx: int) -> None: ...


class GossipScheduler:
    """Draws each round's disjoint pairs and remembers how often each client sat out."""

    def __init__(self, num_clients: int) -> None:
        self.num_clients = num_clients
        self.sit_outs = np.zeros(num_clients, dtype=np.int64)

    def pairs(
        self, rng: np.random.Generator, among: Sequence[int] | None = None
    ) -> list[tuple[int, int]]:
        """This round's disjoint pairs of client indices (of `among`, None = every client)."""
        if among is None or len(among) == self.num_clients:
            order = rng.permutation(self.num_clients)
            present = np.arange(self.num_clients)
        else:
            present = np.asarray(among, dtype=np.int64)
            order = present[rng.permutation(len(present))]
        if len(order) % 2 == 1:
            sat = self.sit_outs[present]
            candidates = present[sat == sat.min()]
            sitter = int(rng.choice(candidates))
            self.sit_outs[sitter] += 1
            order = order[order != sitter]
        return [(int(a), int(b)) for a, b in zip(order[0::2], order[1::2], strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return {"sit_outs": self.sit_outs.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sit_outs = np.asarray(state["sit_outs"], dtype=np.int64)


def gossip_round(
    clients: Sequence[_Syncable],
    scheduler: GossipScheduler,
    rng: np.random.Generator,
    among: Sequence[int] | None = None,
) -> list[tuple[int, int, str]]:
    """Pair the clients (`among`, None = all) and sync one random expert per pair; returns
    (a, b, expert name)."""
    synced = []
    for a, b in scheduler.pairs(rng, among):
        expert_idx = int(rng.integers(len(clients[a].expert_names)))
        clients[a].sync_with(clients[b], expert_idx)
        synced.append(
            (clients[a].client_id, clients[b].client_id, clients[a].expert_names[expert_idx])
        )
    return synced


def stacked_gossip_round(
    weights: dict[str, Tensor],
    expert_keys: Iterable[str],
    names: Sequence[str],
    scheduler: GossipScheduler,
    rng: np.random.Generator,
    among: Sequence[int] | None = None,
) -> list[tuple[int, int, str]]:
    """`gossip_round` on stacked weights ([N, K, ...] under `expert_keys`), in place: the
    same pairs and expert draws, every pair's average in one operation."""
    pairs = scheduler.pairs(rng, among)
    if not pairs:
        return []
    chosen = [int(rng.integers(len(names))) for _ in pairs]
    a = torch.tensor([p[0] for p in pairs])
    b = torch.tensor([p[1] for p in pairs])
    e = torch.tensor(chosen)
    keys = list(expert_keys)
    averaged = pairwise_average(
        {p: weights[p][a, e] for p in keys}, {p: weights[p][b, e] for p in keys}
    )
    for p in keys:
        weights[p][a, e] = averaged[p]
        weights[p][b, e] = averaged[p]
    return [(pa, pb, names[i]) for (pa, pb), i in zip(pairs, chosen, strict=True)]
