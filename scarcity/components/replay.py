"""Experience replay of past training rows (`replay_size`), per client and stacked.

Each client keeps at most `replay_size` of the labelled rows it has trained on, chosen by
reservoir sampling (Vitter 1985, "Random Sampling with a Reservoir", Algorithm R): the t-th
row a client sees (t counted over the whole run, from 1) fills slot t − 1 while the buffer has
room; afterwards it replaces slot j = ⌊u·t⌋ if j < `replay_size` (u uniform in [0, 1)), so
every row seen so far is in the buffer with the same probability. This is the episodic memory
of experience replay for continual learning (Chaudhry et al. 2019, "On Tiny Episodic Memories
in Continual Learning", the reservoir-filled ER baseline).

How the buffer is replayed: in a round, a client's supervised training set (its shared model
with FedAvg, its experts, the memory expert's store draw) is its rows of the round followed by
the rows in its buffer as the buffer stood at the start of the round. Every local epoch
shuffles and passes over that union exactly as it passes over a client's rows without replay
(same mini-batch size, the shuffles drawn from the run's training generator), so each epoch
trains on the round's rows plus the buffer's. After the round's training the client offers
the round's rows (never the replayed ones) to its reservoir. The FedAvg weight of a client
stays its own sample count; structure discovery, data summaries, drift, and Ditto's personal
model see the round's rows alone.

The reservoir's uniforms come from a generator of its own for the round (the run's seed,
`REPLAY_STREAM`, the round), one float64 per offered row, client by client in the order the
participants train: the reservoir moves no other draw of the run.

Per client: `RowReservoir`. Stacked: `RowReservoirs` ([N, replay_size, ...] rows, labels,
and rows seen [N]), the same rule vectorised (`offer`) and the union of the round's rows with
the buffer's, padded (`union`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

__all__ = ["REPLAY_STREAM", "RowReservoir", "RowReservoirs", "reservoir_generator"]

#: Second seed word of the reservoir's stream (`reservoir_generator`).
REPLAY_STREAM = 0x8E91A7


def reservoir_generator(seed: int, round_index: int) -> torch.Generator:
    """The reservoir's generator for one round, a fixed function of the run's seed."""
    word = np.random.SeedSequence([seed, REPLAY_STREAM, round_index]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(word[0]))


def slots(seen: Tensor, uniforms: Tensor, capacity: int) -> Tensor:
    """Algorithm R's slot for each offered row (`capacity`: not kept).

    `seen` [...] rows seen before, `uniforms` [..., m] one draw per offered row; row i is the
    (seen + i + 1)-th row. Later rows overwrite earlier ones at the same slot."""
    # t counted in float64 is exact (whole numbers far below 2**53), as is t converted to it;
    # u·t ≥ 0, so truncating it is its floor.
    t = seen.double().unsqueeze(-1) + torch.arange(1, uniforms.shape[-1] + 1, dtype=torch.float64)
    replaced = (uniforms * t).long().clamp_(max=capacity)
    if seen.numel() and int(seen.min()) >= capacity:  # every buffer full: no row fills one
        return replaced
    return torch.where(t <= capacity, t.long() - 1, replaced)


class RowReservoir:
    """One client's buffer of past training rows and labels (`capacity` at most)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.x: Tensor | None = None  # [filled, ...]
        self.y: Tensor | None = None
        self.seen = 0

    def rows(self) -> tuple[Tensor, Tensor] | None:
        """The rows in the buffer and their labels (None: empty)."""
        if self.x is None or self.y is None:
            return None
        return self.x, self.y

    def training_rows(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The round's rows followed by the buffer's: what supervised training passes over."""
        kept = self.rows()
        if kept is None:
            return x, y
        return torch.cat([x, kept[0]]), torch.cat([y, kept[1]])

    def offer(self, x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        """Algorithm R over the rows `x`, `y` in order (one uniform each from `generator`)."""
        u = torch.rand(len(x), generator=generator, dtype=torch.float64)
        where = slots(torch.tensor(self.seen), u, self.capacity).tolist()
        filled = min(self.seen, self.capacity)
        bx = list(self.x) if self.x is not None else []
        by = list(self.y) if self.y is not None else []
        for row, slot in enumerate(where):
            if slot == self.capacity:
                continue
            if slot == filled:  # the buffer still had room: the next free slot
                bx.append(x[row].clone())
                by.append(y[row].clone())
                filled += 1
            else:
                bx[slot], by[slot] = x[row].clone(), y[row].clone()
        self.seen += len(x)
        if bx:
            self.x, self.y = torch.stack(bx), torch.stack(by)

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.y, self.seen = state["x"], state["y"], int(state["seen"])


class RowReservoirs:
    """Every client's buffer: rows [N, capacity, ...], labels [N, capacity, ...], seen [N]
    (a client's first min(seen, capacity) slots hold rows, the others zeros)."""

    def __init__(self, x: Tensor, y: Tensor, seen: Tensor) -> None:
        self.x, self.y, self.seen = x, y, seen

    @classmethod
    def empty(cls, num_clients: int, capacity: int, x: Tensor, y: Tensor) -> RowReservoirs:
        """Buffers for rows shaped like `x` [N, n, ...] and labels like `y` [N, n, ...]."""
        return cls(
            x.new_zeros(num_clients, capacity, *x.shape[2:]),
            y.new_zeros(num_clients, capacity, *y.shape[2:]),
            torch.zeros(num_clients, dtype=torch.long),
        )

    @property
    def capacity(self) -> int:
        return self.x.shape[1]

    @property
    def filled(self) -> Tensor:
        """Rows in each buffer [N]."""
        return self.seen.clamp(max=self.capacity)

    def union(self, x: Tensor, y: Tensor, sizes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Each client's round rows (`sizes` [N] of the padded `x`, `y`) followed by its
        buffer's, zero-padded to the longest: rows, labels and each client's count."""
        n, filled = x.shape[1], self.filled
        total = sizes + filled
        width = int(total.max())
        if bool((sizes == n).all()):  # no padding in x: the buffers follow it, their empty
            # slots already zero
            return (
                torch.cat([x, self.x], dim=1)[:, :width].contiguous(),
                torch.cat([y, self.y], dim=1)[:, :width].contiguous(),
                total,
            )
        clients = torch.arange(len(x))
        out_x = x.new_zeros(len(x), width, *x.shape[2:])
        out_y = y.new_zeros(len(y), width, *y.shape[2:])
        out_x[:, :n], out_y[:, :n] = x, y  # padding of x is zero, overwritten below if needed
        pos = torch.arange(self.capacity)
        kept = pos < filled.unsqueeze(1)  # [N, capacity]
        owner = clients.unsqueeze(1).expand_as(kept)[kept]
        target = (sizes.unsqueeze(1) + pos)[kept]
        out_x[owner, target], out_y[owner, target] = self.x[kept], self.y[kept]
        return out_x, out_y, total

    def offer(
        self,
        x: Tensor,
        y: Tensor,
        sizes: Tensor,
        order: Sequence[int] | None,
        generator: torch.Generator,
    ) -> None:
        """`RowReservoir.offer` of every client (`sizes` [N] real rows of `x`, `y`); the
        uniforms are drawn client by client in `order` (positions in this component; None:
        their own order)."""
        # One draw for all: a CPU generator's float64 uniforms come one at a time, so
        # rand(a + b) gives the values of rand(a) then rand(b), client by client in `order`.
        num, n, cap = len(x), x.shape[1], self.capacity
        if order is not None and list(order) == list(range(num)):
            order = None
        clients = None if order is None else torch.tensor(order, dtype=torch.long)
        counts = sizes if clients is None else sizes[clients]
        drawn = torch.rand(int(counts.sum()), generator=generator, dtype=torch.float64)
        if clients is None and bool((sizes == n).all()):
            # Every client offers all n rows, in its own order: the draws are the grid.
            where = slots(self.seen, drawn.view(num, n), cap)
        else:
            block = torch.ones(len(counts), n, dtype=torch.float64)  # padding: never kept
            block[torch.arange(n) < counts.unsqueeze(1)] = drawn
            u = block
            if clients is not None:
                u = torch.ones(num, n, dtype=torch.float64)
                u[clients] = block
            where = slots(self.seen, u, cap)
            where[torch.arange(n) >= sizes.unsqueeze(1)] = cap
        # The last offered row for each slot wins (column `cap` takes the rows not kept).
        winner = torch.full((num, cap + 1), -1, dtype=torch.long)
        winner.scatter_reduce_(1, where, torch.arange(n).expand_as(where), "amax")
        # The slots a row won, and that row's place in the rows flattened to [N·n, ...].
        winner = winner[:, :cap].flatten()
        slot = (winner >= 0).nonzero().squeeze(1)
        row = slot.div(cap, rounding_mode="floor").mul_(n).add_(winner[slot])
        for kept, offered in ((self.x, x), (self.y, y)):
            kept.view(num * cap, *kept.shape[2:]).index_copy_(
                0, slot, offered.reshape(num * n, *offered.shape[2:]).index_select(0, row)
            )
        self.seen = self.seen + sizes

    def take(self, clients: Tensor) -> Self:
        return type(self)(self.x[clients], self.y[clients], self.seen[clients])

    def put(self, clients: Tensor, part: RowReservoirs) -> None:
        self.x[clients], self.y[clients], self.seen[clients] = part.x, part.y, part.seen

    def state_dict(self) -> dict[str, Tensor]:
        return {"x": self.x.clone(), "y": self.y.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.y, self.seen = (state[k].clone() for k in ("x", "y", "seen"))
