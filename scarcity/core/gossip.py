"""Peer-to-peer gossip (seed stage 6): random disjoint client pairs average one expert.

Each round the clients are shuffled and paired; with an odd count one client sits out, chosen
at random among those that have sat out least, so every client is paired within two rounds.
With client sampling only the round's participants gossip (the others are offline).
Each pair averages the full weights of one randomly chosen expert (`pairwise_average`), with no
server involved (randomized gossip, Boyd et al. 2006). `gossip_round` syncs `Client` objects,
`stacked_gossip_round` the pool's stacked weights with the same draws.

`gossip_peers: insight` lets the server pair the clients by what their insights say instead
(`insight_pairs`, no random draw): the clients that chose the same expert are paired among
themselves, neighbours in the order of their data mean (StructureExpert's `mean`; pairing
neighbours of the sorted order is the matching of least total difference), each pair averaging
the expert they both chose; the clients left over (one per expert at most) are paired the same
way, each such pair averaging the expert of the peer with the lower uncertainty; an odd one out
(the last in that order) sits out. In even rounds the first client of each expert's order joins
the left-over ones first, so the pairs alternate (1–2, 3–4, … then 2–3, 4–5, …) and an expert
travels along the whole order over the rounds instead of staying within fixed pairs. Each
peer's expert weighs inversely to its uncertainty (the spread of its per-row losses):
w_a = u_b / (u_a + u_b), ½ when both are 0, as inverse-variance weighting trusts the surer
estimate. `weighted_gossip` applies those pairs to `Client`s, `stacked_weighted_gossip` to
stacked weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from scarcity.core.aggregate import pairwise_average, weighted_pair
from scarcity.results import Insight

#: A server-made gossip pair: client a, client b, the expert they average, a's weight.
WeightedPair = tuple[int, int, str, float]


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


def insight_pairs(insights: Sequence[Insight], round_index: int = 1) -> list[WeightedPair]:
    """`gossip_peers: insight`: round `round_index`'s pairs from the participants' insights
    (the rule in the module docstring)."""

    def order(i: Insight) -> tuple[float, int]:
        return (i.experts["StructureExpert"].summary["mean"], i.client_id)

    def weight(a: Insight, b: Insight) -> float:
        total = a.uncertainty + b.uncertainty
        return b.uncertainty / total if total > 0 else 0.5

    by_expert: dict[str, list[Insight]] = {}
    for insight in insights:
        by_expert.setdefault(insight.selected_expert, []).append(insight)
    pairs: list[WeightedPair] = []
    left: list[Insight] = []
    for name in sorted(by_expert):
        group = sorted(by_expert[name], key=order)
        if round_index % 2 == 0 and len(group) > 1:  # even rounds: the pairs shifted by one
            left.append(group.pop(0))
        if len(group) % 2:
            left.append(group.pop())
        pairs += [(a.client_id, b.client_id, name, weight(a, b)) for a, b in _neighbours(group)]
    for a, b in _neighbours(sorted(left, key=order)[: len(left) // 2 * 2]):
        surer = min((a, b), key=lambda i: (i.uncertainty, i.client_id))
        pairs.append((a.client_id, b.client_id, surer.selected_expert, weight(a, b)))
    return pairs


def _neighbours(items: Sequence[Insight]) -> list[tuple[Insight, Insight]]:
    return list(zip(items[0::2], items[1::2], strict=True))


def weighted_gossip(
    clients: Sequence[Any], pairs: Sequence[WeightedPair]
) -> list[tuple[int, int, str]]:
    """Each pair of `Client`s ends with the weighted average of the named expert."""
    for a, b, name, weight_a in pairs:
        index = clients[a].expert_names.index(name)
        averaged = weighted_pair(
            clients[a].get_expert_weights(index), clients[b].get_expert_weights(index), weight_a
        )
        clients[a].set_expert_weights(index, averaged)
        clients[b].set_expert_weights(index, averaged)
    return [(a, b, name) for a, b, name, _ in pairs]


def stacked_weighted_gossip(
    weights: dict[str, Tensor],
    expert_keys: Iterable[str],
    names: Sequence[str],
    pairs: Sequence[WeightedPair],
) -> list[tuple[int, int, str]]:
    """`weighted_gossip` on stacked weights ([N, K, ...] under `expert_keys`), in place."""
    if not pairs:
        return []
    first, second, experts, weights_a = zip(*pairs, strict=True)
    index = {name: names.index(name) for name in set(experts)}
    # Rows of the [N·K, ...] view: client·K + expert (built through numpy: torch.tensor
    # reads a long list of Python numbers element by element).
    e = _longs([index[name] for name in experts])
    a = _longs(first).mul_(len(names)).add_(e)
    b = _longs(second).mul_(len(names)).add_(e)
    # Each weight rounds once from the float to the key's dtype, as the float64 tensor does.
    weight64 = torch.from_numpy(np.array(weights_a, dtype=np.float64))
    cast: dict[torch.dtype, tuple[Tensor, Tensor]] = {}
    for key in expert_keys:
        stacked = weights[key]
        rows = stacked.flatten(0, 1)  # a view, unless the layout asks for a copy
        wa = rows.index_select(0, a)
        if wa.dtype not in cast:
            w = weight64.to(wa.dtype)
            cast[wa.dtype] = w, 1.0 - w
        shape = (len(pairs),) + (1,) * (wa.dim() - 1)
        w, rest = (t.view(shape) for t in cast[wa.dtype])
        averaged = wa.mul_(w).add_(rows.index_select(0, b).mul_(rest))  # w·a + (1 − w)·b
        rows.index_copy_(0, a, averaged)
        rows.index_copy_(0, b, averaged)
        if rows.data_ptr() != stacked.data_ptr():
            stacked.copy_(rows.view(stacked.shape))
    return list(zip(first, second, experts, strict=True))


def _longs(values: Sequence[int]) -> Tensor:
    return torch.from_numpy(np.array(values, dtype=np.int64))
