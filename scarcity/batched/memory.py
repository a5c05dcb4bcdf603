"""`MemoryConsolidationExpert`'s replay buffers for every client at once.

Each client's buffer is a fixed [capacity, ·] block, right-aligned: the newest rows last,
empty slots zero (so they add nothing to the buffer's moments). Appending k rows shifts the
block left by k and drops the oldest, as `torch.cat([...])[-capacity:]` does per client (k may
differ between clients).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from scarcity.batched.autoencoder import ReplayMoments, replay_loss_and_grads


class ReplayBuffers:
    """(input, latent) pairs of every client, with the number of rows in use."""

    def __init__(self, num_clients: int, capacity: int, input_dim: int, latent_dim: int) -> None:
        self.capacity = capacity
        self.x = torch.zeros(num_clients, capacity, input_dim)
        self.z = torch.zeros(num_clients, capacity, latent_dim)
        self.size = torch.zeros(num_clients, dtype=torch.long)

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

    def moments(self, leave_out_newest: Tensor | None = None) -> ReplayMoments:
        """The buffers' moments; `leave_out_newest` [N]: rows just stored, left out of the sums
        (not of the mean's count). Their latents came from the encoder as it is, so before it
        takes a step their residual is exactly zero, as the per-client reference computes it:
        float64 moments would leave rounding noise there, which Adam turns into a full step on
        weights whose true gradient is zero (features that are 0 in the batch)."""
        if leave_out_newest is None:
            return ReplayMoments.of(self.x, self.z, self.size)
        slots = torch.arange(self.capacity)
        keep = (slots < self.capacity - leave_out_newest.unsqueeze(1)).unsqueeze(2)
        return ReplayMoments.of(
            self.x * keep, self.z * keep, self.size - leave_out_newest, divisor=self.size
        )

    def replay_error(self, enc_w: Tensor, enc_b: Tensor) -> Tensor:
        """Mean squared distance between current and stored latents (0 when empty), [N]."""
        error = replay_loss_and_grads(enc_w, enc_b, self.moments())[0]
        return torch.where(self.size > 0, error.float().double(), 0.0)

    def summary(self, replay_error: Tensor) -> dict[str, Tensor]:
        """`MemoryConsolidationExpert.summarize`, float64 [N] per key."""
        size = self.size.double()
        return {
            "memory_buffer_size": size,
            "memory_capacity": torch.full_like(size, float(self.capacity)),
            "avg_replay_error": replay_error,
            "memory_utilization": size / self.capacity,
        }

    def take(self, clients: Tensor) -> ReplayBuffers:
        """The buffers of `clients` alone (copies)."""
        part = ReplayBuffers(0, self.capacity, self.x.shape[2], self.z.shape[2])
        part.x, part.z, part.size = self.x[clients], self.z[clients], self.size[clients]
        return part

    def put(self, clients: Tensor, part: ReplayBuffers) -> None:
        """Write back what `take(clients)` returned (after it changed)."""
        self.x[clients], self.z[clients], self.size[clients] = part.x, part.z, part.size

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.clone(), "z": self.z.clone(), "size": self.size.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.z, self.size = (state[k].clone() for k in ("x", "z", "size"))
