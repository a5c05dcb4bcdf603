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

from scarcity.batched.padding import real_rows
from scarcity.config import SimulationConfig

# Draws are stored as int32 (positions within one client's rows): at 10,000 clients the SSL
# shuffles alone hold clients × experts × epochs × rows entries, in int64 the largest tensors
# of a round. Each is drawn as the reference draws it (int64 randperm) and narrowed at once.
INDEX = torch.int32


class _Permutations:
    """Rows of permutations, each drawn as `padded_randperm` draws it (its client's own
    `randperm`, then the padding positions in order) but stacked in one masked copy at the end
    instead of one concatenation and conversion per row: rows of a 1,000-client round are
    thousands. A row may instead be the identity (a client that trains full-batch) or zeros
    (no draw, `empty`)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.drawn: list[Tensor] = []
        self.sizes: list[int] = []  # how many leading positions a draw fills (0: none)
        self.zero_rows: list[int] = []

    def __len__(self) -> int:
        return len(self.sizes)

    def draw(self, size: int, generator: torch.Generator) -> None:
        self.drawn.append(torch.randperm(size, generator=generator))
        self.sizes.append(size)

    def identity(self) -> None:
        self.sizes.append(0)

    def empty(self) -> None:
        self.zero_rows.append(len(self.sizes))
        self.sizes.append(0)

    def epochs(self, epochs: int, size: int, shuffled: bool, generator: torch.Generator) -> None:
        """One client's shuffle of each epoch; the identity (no draw) when it trains
        full-batch."""
        for _ in range(epochs):
            if shuffled:
                self.draw(size, generator)
            else:
                self.identity()

    def stacked(self, *shape: int) -> Tensor | None:
        """The rows as [*shape, width] (None without rows)."""
        if not self.sizes:
            return None
        # Padding position j of a row holds j, as does every position of an identity row.
        out = torch.arange(self.width).repeat(len(self.sizes), 1)
        if self.zero_rows:
            out[self.zero_rows] = 0
        if self.drawn:
            out[real_rows(torch.tensor(self.sizes), self.width)] = torch.cat(self.drawn)
        return out.to(INDEX).view(*shape, self.width)


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
    shuffles = [0 < batch_size < size for size in sizes]
    minibatch = any(shuffles)
    if train_sizes is None:
        train_sizes, n_train, train_minibatch = sizes, n, minibatch
    else:
        n_train = max(train_sizes)
        train_minibatch = any(0 < batch_size < size for size in train_sizes)
    shared, sup_store, sup = (_Permutations(n_train) for _ in range(3))
    ssl_store, ssl = _Permutations(n), _Permutations(n)
    for size, train_size, shuffled, experts in zip(
        sizes, train_sizes, shuffles, trained, strict=True
    ):
        sup_shuffled = 0 < batch_size < train_size
        if train_minibatch:
            shared.epochs(shared_epochs, train_size, sup_shuffled, generator)
        stores = False
        for e in experts:
            if e == memory:
                sup_store.draw(train_size, generator)
                stores = True
            if train_minibatch:
                sup.epochs(epochs, train_size, sup_shuffled, generator)
        if not stores:
            sup_store.empty()
        if structure_discovery:
            for e in range(num_experts):
                if e == memory:
                    ssl_store.draw(size, generator)
                if minibatch:
                    ssl.epochs(ssl_epochs, size, shuffled, generator)
    clients = len(trained)
    return RoundDraws(
        shared=shared.stacked(clients, shared_epochs),
        supervised_store=sup_store.stacked(clients) if memory is not None else None,
        supervised=sup.stacked(clients, len(trained[0]) if trained else 0, epochs),
        ssl_store=ssl_store.stacked(clients),
        ssl=ssl.stacked(clients, num_experts, ssl_epochs),
    )


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
        trained = chosen.unsqueeze(1).tolist()
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
    perms = _Permutations(n)
    for size, shuffled in zip(sizes, shuffles, strict=True):
        perms.epochs(epochs, size, shuffled, generator)
    return perms.stacked(len(sizes), epochs)
