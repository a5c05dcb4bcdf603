"""The random draws of one round, taken in exactly the order the per-client reference takes them.

The reference consumes one shared `torch.Generator` client by client: the shared model's
epoch permutations, then for each expert it trains supervised the memory expert's store
permutation and its epoch permutations, then the same for self-supervised training. None of
these draws depends on training results, so the batched pool takes them up front, in that
order, and stacks them. Only mini-batch training and the memory expert draw at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RoundDraws:
    """Stacked permutations of one round; None where nothing was drawn."""

    shared: Tensor | None  # [N, epochs, n]
    supervised_store: Tensor | None  # [N, n]: memory expert's store draw (rows it trained)
    supervised: Tensor | None  # [N, J, epochs, n]: per trained expert
    ssl_store: Tensor | None  # [N, n]
    ssl: Tensor | None  # [N, K, ssl_epochs, n]


def draw_round(
    generator: torch.Generator,
    *,
    num_samples: int,
    trained: list[list[int]],
    num_experts: int,
    memory: int | None,
    shared_epochs: int,
    epochs: int,
    ssl_epochs: int,
    minibatch: bool,
    structure_discovery: bool,
) -> RoundDraws:
    """`trained[c]`: the experts client c trains supervised; `shared_epochs` 0 = no FedAvg."""
    n, gen = num_samples, generator
    perm = torch.randperm
    shared: list[Tensor] = []
    sup_store: list[Tensor] = []
    sup: list[Tensor] = []
    ssl_store: list[Tensor] = []
    ssl: list[Tensor] = []
    empty = torch.zeros(n, dtype=torch.long)
    for experts in trained:
        if minibatch:
            shared.extend(perm(n, generator=gen) for _ in range(shared_epochs))
        store = empty
        for e in experts:
            if e == memory:
                store = perm(n, generator=gen)
            if minibatch:
                sup.extend(perm(n, generator=gen) for _ in range(epochs))
        sup_store.append(store)
        if structure_discovery:
            for e in range(num_experts):
                if e == memory:
                    ssl_store.append(perm(n, generator=gen))
                if minibatch:
                    ssl.extend(perm(n, generator=gen) for _ in range(ssl_epochs))
    clients = len(trained)

    def stacked(items: list[Tensor], *shape: int) -> Tensor | None:
        return torch.stack(items).view(clients, *shape, n) if items else None

    return RoundDraws(
        shared=stacked(shared, shared_epochs),
        supervised_store=stacked(sup_store) if memory is not None else None,
        supervised=stacked(sup, len(trained[0]) if trained else 0, epochs),
        ssl_store=stacked(ssl_store),
        ssl=stacked(ssl, num_experts, ssl_epochs),
    )
