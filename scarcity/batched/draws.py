"""The random draws of one round, taken in exactly the order the per-client reference takes them.

The reference consumes one shared `torch.Generator` client by client: the shared model's
epoch permutations, then for each expert it trains supervised the memory expert's store
permutation and its epoch permutations, then the same for self-supervised training. None of
these draws depends on training results, so the batched pool takes them up front, in that
order, and stacks them. Only mini-batch training and the memory expert draw at all; each client
draws permutations of its own size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scarcity.batched.padding import padded_randperm
from scarcity.config import SimulationConfig

# Draws are stored as int32 (positions within one client's rows): at 10,000 clients the SSL
# shuffles alone hold clients × experts × epochs × rows entries, in int64 the largest tensors
# of a round. Each is drawn as the reference draws it (int64 randperm) and narrowed at once.
INDEX = torch.int32


def _perm(size: int, n: int, generator: torch.Generator) -> Tensor:
    return padded_randperm(size, n, generator).to(INDEX)


@dataclass(frozen=True)
class RoundDraws:
    """Stacked permutations of one round (n = the largest client); None where nothing was drawn.

    A smaller client's permutation is its own draw followed by its padding positions; a client
    that trains full-batch while others shuffle gets the identity (one batch holds all of it).
    """

    shared: Tensor | None  # [N, epochs, n]
    supervised_store: Tensor | None  # [N, n]: memory expert's store draw (rows it trained)
    supervised: Tensor | None  # [N, J, epochs, n]: per trained expert
    ssl_store: Tensor | None  # [N, n]
    ssl: Tensor | None  # [N, K, ssl_epochs, n]


def draw_round(
    generator: torch.Generator,
    *,
    sizes: Sequence[int],
    batch_size: int,
    trained: list[list[int]],
    num_experts: int,
    memory: int | None,
    shared_epochs: int,
    epochs: int,
    ssl_epochs: int,
    structure_discovery: bool,
    train_sizes: Sequence[int] | None = None,
) -> RoundDraws:
    """`sizes[c]`: client c's samples; `trained[c]`: the experts it trains supervised;
    `shared_epochs` 0 = no FedAvg. A client shuffles when 0 < batch_size < its size.
    `train_sizes[c]`: the rows client c trains supervised on when they are not its samples
    (replay adds its buffer's, `scarcity.components.replay`); the supervised draws are then
    [.., n_train] with n_train the largest of them."""
    n = max(sizes)
    n_train = n if train_sizes is None else max(train_sizes)
    train_sizes = sizes if train_sizes is None else train_sizes
    # Some client shuffles when the largest does.
    minibatch, train_minibatch = 0 < batch_size < n, 0 < batch_size < n_train
    if not (minibatch or train_minibatch):
        return _store_draws(generator, sizes, train_sizes, trained, memory, structure_discovery)
    shuffles = [0 < batch_size < size for size in sizes]
    shared: list[Tensor] = []
    sup_store: list[Tensor] = []
    sup: list[Tensor] = []
    ssl_store: list[Tensor] = []
    ssl: list[Tensor] = []
    empty = torch.zeros(n_train, dtype=INDEX)
    for size, train_size, shuffled, experts in zip(
        sizes, train_sizes, shuffles, trained, strict=True
    ):
        sup_shuffled = 0 < batch_size < train_size
        if train_minibatch:
            shared.extend(_epoch_perms(shared_epochs, train_size, n_train, sup_shuffled, generator))
        store = empty
        for e in experts:
            if e == memory:
                store = _perm(train_size, n_train, generator)
            if train_minibatch:
                sup.extend(_epoch_perms(epochs, train_size, n_train, sup_shuffled, generator))
        sup_store.append(store)
        if structure_discovery:
            for e in range(num_experts):
                if e == memory:
                    ssl_store.append(_perm(size, n, generator))
                if minibatch:
                    ssl.extend(_epoch_perms(ssl_epochs, size, n, shuffled, generator))
    clients = len(trained)

    def stacked(items: list[Tensor], *shape: int, width: int = n) -> Tensor | None:
        return torch.stack(items).view(clients, *shape, width) if items else None

    return RoundDraws(
        shared=stacked(shared, shared_epochs, width=n_train),
        supervised_store=stacked(sup_store, width=n_train) if memory is not None else None,
        supervised=stacked(sup, len(trained[0]) if trained else 0, epochs, width=n_train),
        ssl_store=stacked(ssl_store),
        ssl=stacked(ssl, num_experts, ssl_epochs),
    )


def _store_draws(
    generator: torch.Generator,
    sizes: Sequence[int],
    train_sizes: Sequence[int],
    trained: list[list[int]],
    memory: int | None,
    structure_discovery: bool,
) -> RoundDraws:
    """`draw_round` when no client shuffles: the memory expert's store draws alone, client by
    client (supervised, then self-supervised), written into the zeros the loop would stack."""
    if memory is None:
        return RoundDraws(None, None, None, None, None)
    sup_store = torch.zeros(len(trained), max(train_sizes), dtype=INDEX)
    ssl_store = torch.zeros(len(trained), max(sizes), dtype=INDEX) if structure_discovery else None
    for c, experts in enumerate(trained):
        if memory in experts:
            sup_store[c] = _perm(train_sizes[c], sup_store.shape[1], generator)
        if ssl_store is not None:
            ssl_store[c] = _perm(sizes[c], ssl_store.shape[1], generator)
    return RoundDraws(None, sup_store, None, ssl_store, None)


def draw_config_round(
    generator: torch.Generator,
    config: SimulationConfig,
    sizes: Tensor,
    chosen: Tensor | None,
    num_experts: int,
    memory: int | None,
    train_sizes: Tensor | None = None,
) -> RoundDraws:
    """`draw_round` of a round as `config` runs it: each client trains its router's pick
    `chosen` [N] (None: every expert), none with `label_free`; `train_sizes` [N]: the rows
    each trains supervised on, when replay adds to its samples."""
    if config.label_free:  # no supervised training: the pick only names the representation
        trained: list[list[int]] = [[] for _ in range(len(sizes))]
    elif chosen is not None:
        trained = [[expert] for expert in chosen.tolist()]
    else:
        trained = [list(range(num_experts))] * len(sizes)
    return draw_round(
        generator,
        sizes=sizes.tolist(),
        batch_size=config.batch_size,
        trained=trained,
        num_experts=num_experts,
        memory=memory,
        shared_epochs=config.local_epochs if config.federated_averaging else 0,
        epochs=config.local_epochs,
        ssl_epochs=config.ssl_epochs,
        structure_discovery=config.structure_discovery,
        train_sizes=None if train_sizes is None else train_sizes.tolist(),
    )


def draw_epochs(
    generator: torch.Generator, sizes: Sequence[int], epochs: int, batch_size: int
) -> Tensor | None:
    """One model per client trained `epochs` epochs as `fit` trains it: each client's shuffle
    of each epoch, client by client, [C, epochs, n] (n = the largest client); None when no
    client shuffles (every one trains full-batch)."""
    n = max(sizes)
    shuffles = [0 < batch_size < size for size in sizes]
    if not any(shuffles):
        return None
    perms = [
        perm
        for size, shuffled in zip(sizes, shuffles, strict=True)
        for perm in _epoch_perms(epochs, size, n, shuffled, generator)
    ]
    return torch.stack(perms).view(len(sizes), epochs, n)


def _epoch_perms(
    epochs: int, size: int, n: int, shuffled: bool, generator: torch.Generator
) -> list[Tensor]:
    """One client's shuffle of each epoch; the identity (no draw) when it trains full-batch."""
    if shuffled:
        return [_perm(size, n, generator) for _ in range(epochs)]
    return [torch.arange(n, dtype=INDEX)] * epochs
