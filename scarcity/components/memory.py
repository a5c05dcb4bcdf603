"""Memory replay (`MemoryConsolidationExpert`, seed stage 8), per client and stacked.

A bounded buffer of (input, latent) pairs: each training call stores a random share of the
client's rows with their current latents, and self-supervised training adds the latent-replay
term, mean ‖Ex + e − z‖² over the buffer, against catastrophic forgetting (latent replay:
van de Ven, Siegelmann & Tolias 2020). `ReplayBuffer` is one client's, `ReplayBuffers`
every client's.

Stacked layout: each client's buffer is a fixed [capacity, ·] block, right-aligned: the
newest rows last, empty slots zero (so they add nothing to the buffer's moments). Appending
k rows shifts the block left by k and drops the oldest, as `torch.cat([...])[-capacity:]`
does per client (k may differ between clients).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from scarcity.batched.autoencoder import ReplayMoments, replay_loss
from scarcity.batched.linear import gather_rows

if TYPE_CHECKING:
    from scarcity.components import StackedClients

#: Share of the capacity stored per training call, so a full buffer spans several rounds.
STORE_FRACTION = 0.2
#: Weight of the replay (consolidation) term in the self-supervised loss.
REPLAY_WEIGHT = 0.5


def rows_per_store(capacity: int, num_samples: int) -> int:
    """How many rows one training call stores: the share of the capacity, at least one."""
    return min(num_samples, max(1, round(capacity * STORE_FRACTION)))


def summary(size: Tensor | float, capacity: int, replay_error: Tensor | float) -> dict[str, Any]:
    """`MemoryConsolidationExpert.summarize`: floats, or float64 [N] tensors."""
    return {
        "memory_buffer_size": size,
        "memory_capacity": (
            torch.full_like(size, float(capacity)) if isinstance(size, Tensor) else float(capacity)
        ),
        "avg_replay_error": replay_error,
        "memory_utilization": size / capacity,
    }


class ReplayBuffer:
    """One client's (input, latent) pairs, the newest last, at most `capacity` of them."""

    def __init__(self, capacity: int, input_dim: int, latent_dim: int) -> None:
        self.capacity = capacity
        self.x = torch.zeros(0, input_dim)
        self.z = torch.zeros(0, latent_dim)

    def store(self, x: Tensor, encoder: nn.Module, generator: torch.Generator) -> None:
        """Store a random share of the rows `x` with their latents under `encoder`."""
        k = rows_per_store(self.capacity, len(x))
        idx = torch.randperm(len(x), generator=generator)[:k]
        with torch.no_grad():
            z = encoder(x[idx])
        self.x = torch.cat([self.x, x[idx]])[-self.capacity :]
        self.z = torch.cat([self.z, z])[-self.capacity :]

    def replay_term(self, encoder: nn.Module) -> Tensor:
        """Mean squared distance between current and stored latents (differentiable)."""
        return ((encoder(self.x) - self.z) ** 2).sum(1).mean()

    def replay_error(self, encoder: nn.Module) -> float:
        """`replay_term`'s value, 0 with an empty buffer."""
        if len(self.x) == 0:
            return 0.0
        with torch.no_grad():
            return float(self.replay_term(encoder))

    def summary(self, encoder: nn.Module) -> dict[str, float]:
        out: dict[str, float] = summary(
            float(len(self.x)), self.capacity, self.replay_error(encoder)
        )
        return out

    def state_dict(self) -> dict[str, Tensor]:
        """The keys `MemoryConsolidationExpert` has always stored."""
        return {"memory_x": self.x.clone(), "memory_z": self.z.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.z = state["memory_x"].clone(), state["memory_z"].clone()


class ReplayBuffers:
    """(input, latent) pairs of every client, with the number of rows in use.

    `x`, `z` and `size` change only through `append`, `put` and `load_state_dict` (or by
    assigning them whole): the buffers' moments are kept from one call of `moments` to the
    next, and only the buffers changed in between are summed again (a round stores to few
    of them)."""

    def __init__(self, num_clients: int, capacity: int, input_dim: int, latent_dim: int) -> None:
        self.capacity = capacity
        self._shapes = (num_clients, capacity, input_dim), (num_clients, capacity, latent_dim)
        # Allocated on first use: runs without the memory expert never touch them.
        self._x: Tensor | None = None
        self._z: Tensor | None = None
        # `moments()` as last computed, and the buffers changed since ([N] bool).
        self._moments: ReplayMoments | None = None
        self._size = torch.zeros(num_clients, dtype=torch.long)
        self._changed = torch.zeros(num_clients, dtype=torch.bool)

    @property
    def x(self) -> Tensor:
        """Every client's stored inputs [N, capacity, d] (zeros where unused)."""
        if self._x is None:
            self._x = torch.zeros(self._shapes[0])
        return self._x

    @x.setter
    def x(self, value: Tensor) -> None:
        self._x, self._moments = value, None

    @property
    def z(self) -> Tensor:
        """Their latents [N, capacity, latent]."""
        if self._z is None:
            self._z = torch.zeros(self._shapes[1])
        return self._z

    @z.setter
    def z(self, value: Tensor) -> None:
        self._z, self._moments = value, None

    @property
    def size(self) -> Tensor:
        """Rows in use in each buffer [N]."""
        return self._size

    @size.setter
    def size(self, value: Tensor) -> None:
        self._size, self._moments = value, None

    def append(self, clients: Tensor, x: Tensor, z: Tensor, counts: Tensor | None = None) -> None:
        """Add rows x [M, k, d] and their latents z [M, k, L] to the buffers of `clients`.

        `counts` [M]: only each client's first `counts` rows are new (clients of unequal size
        store fewer); None = all k.
        """
        cap = self.capacity
        x_all = torch.cat([self.x[clients], x], dim=1)
        z_all = torch.cat([self.z[clients], z], dim=1)
        if counts is None:
            self.x[clients], self.z[clients] = x_all[:, -cap:], z_all[:, -cap:]
        else:  # the `cap` slots ending after each client's last new row
            keep = (counts.unsqueeze(1) + torch.arange(cap)).unsqueeze(2)
            self.x[clients] = x_all.gather(1, keep.expand(-1, -1, x.shape[2]))
            self.z[clients] = z_all.gather(1, keep.expand(-1, -1, z.shape[2]))
        added = x.shape[1] if counts is None else counts
        self.size[clients] = (self.size[clients] + added).clamp(max=cap)
        self._changed[clients] = True

    def store(
        self,
        x: Tensor,
        perm: Tensor | None,
        clients: Tensor,
        encoder: tuple[Tensor, Tensor],
        sizes: Tensor | None,
    ) -> Tensor | None:
        """`ReplayBuffer.store` of `clients`: the first rows of their permutation `perm` of
        `x` [N, n, d] (zero-padded when `sizes` [N] says how many rows are real), with
        their latents under `encoder` (weight [M, L, d], bias [M, L] of those clients).
        Returns how many rows each stored (None: none stored)."""
        if perm is None or len(clients) == 0:
            return None
        k = rows_per_store(self.capacity, x.shape[1])
        picked = gather_rows(x[clients], perm[clients, :k], 1)
        enc_w, enc_b = encoder
        z = torch.baddbmm(enc_b.unsqueeze(1), picked, enc_w.transpose(1, 2))
        # A client smaller than k stores all of its rows (the rest of `picked` is padding).
        counts = None if sizes is None else sizes[clients].clamp(max=k)
        self.append(clients, picked, z, counts)
        return torch.full((len(clients),), k) if counts is None else counts

    def moments(self, leave_out_newest: Tensor | None = None) -> ReplayMoments:
        """The buffers' moments; `leave_out_newest` [N]: rows just stored, left out of the sums
        (not of the mean's count). Their latents came from the encoder as it is, so before it
        takes a step their residual is exactly zero, as the per-client reference computes it:
        float64 moments would leave rounding noise there, which Adam turns into a full step on
        weights whose true gradient is zero (features that are 0 in the batch)."""
        if leave_out_newest is None:
            return self._current_moments()
        slots = torch.arange(self.capacity)
        keep = (slots < self.capacity - leave_out_newest.unsqueeze(1)).unsqueeze(2)
        return ReplayMoments.of(
            self.x * keep, self.z * keep, self.size - leave_out_newest, divisor=self.size
        )

    def _current_moments(self) -> ReplayMoments:
        """Every buffer's moments: those kept, with the changed buffers' summed again (one
        buffer's sums do not depend on the others in the batch, so they come out the same)."""
        if self._moments is None or len(self._changed) != len(self.size):
            self._moments = ReplayMoments.of(self.x, self.z, self.size)
        elif bool(self._changed.any()):
            rows = self._changed.nonzero().squeeze(1)
            fresh = ReplayMoments.of(self.x[rows], self.z[rows], self.size[rows])
            self._moments = self._moments.replace_rows(rows, fresh)
        self._changed = torch.zeros(len(self.size), dtype=torch.bool)
        return self._moments

    def replay_error(self, enc_w: Tensor, enc_b: Tensor) -> Tensor:
        """Mean squared distance between current and stored latents (0 when empty), [N]."""
        error = replay_loss(enc_w, enc_b, self.moments())
        return torch.where(self.size > 0, error.float().double(), 0.0)

    def summary(self, replay_error: Tensor) -> dict[str, Tensor]:
        """`MemoryConsolidationExpert.summarize`, float64 [N] per key."""
        out: dict[str, Tensor] = summary(self.size.double(), self.capacity, replay_error)
        return out

    def take(self, clients: Tensor) -> ReplayBuffers:
        """The buffers of `clients` alone (copies)."""
        part = ReplayBuffers(0, self.capacity, self.x.shape[2], self.z.shape[2])
        part.x, part.z, part.size = self.x[clients], self.z[clients], self.size[clients]
        if self._moments is not None:  # after the assignments, which drop the part's
            part._moments = self._moments.take(clients)
        part._changed = self._changed[clients]
        return part

    def put(self, clients: Tensor, part: ReplayBuffers) -> None:
        """Write back what `take(clients)` returned (after it changed)."""
        self.x[clients], self.z[clients], self.size[clients] = part.x, part.z, part.size
        if self._moments is not None and part._moments is not None:
            self._moments = self._moments.replace_rows(clients, part._moments)
            self._changed[clients] = part._changed
        else:
            self._changed[clients] = True

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.clone(), "z": self.z.clone(), "size": self.size.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.z, self.size = (state[k].clone() for k in ("x", "z", "size"))


def store_memory_rows(
    clients: StackedClients,
    x: Tensor,
    perm: Tensor | None,
    which: Tensor,
    sizes: Tensor | None,
) -> Tensor | None:
    """The memory expert's store draw of the clients `which` (`ReplayBuffers.store`), with
    its own encoder; how many rows each stored (None: none). `sizes`: the ragged row counts
    of `x` (None: every client's rows are real)."""
    memory = clients.memory
    assert memory is not None
    encoder = (clients.w["enc_w"][which, memory], clients.w["enc_b"][which, memory])
    return clients.buffers.store(x, perm, which, encoder, sizes)


def memory_replay_error(clients: StackedClients) -> Tensor:
    """Each client's latent replay error under its memory expert's encoder (0 with an empty
    buffer), float64 [N]."""
    memory = clients.memory
    assert memory is not None
    w = clients.w
    return clients.buffers.replay_error(w["enc_w"][:, memory], w["enc_b"][:, memory])
