"""Data summaries and drift (`StructureExpert`, `DriftExpert`, seed stage 4), per client and
stacked.

Once a round every client summarises its data: mean, standard deviation, variance, min and
max over all values (the structure statistics), and the drift, |mean − previous mean|
between consecutive observations (0 on the first). `structure_summary` and `DriftMeter` are
one client's; `DataSummaries` every client's, float64 [N] per key.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from scarcity.batched.padding import masked_min_max, masked_var_mean
from scarcity.components.memory import memory_replay_error

if TYPE_CHECKING:
    from scarcity.components import StackedClients


def structure_summary(x: Tensor) -> dict[str, float]:
    """`StructureExpert.summarize`: statistics over every value of one client's data."""
    var, mean = torch.var_mean(x, correction=0)
    return {
        "mean": float(mean),
        "std": float(var.sqrt()),
        "variance": float(var),
        "min": float(x.min()),
        "max": float(x.max()),
    }


class DriftMeter:
    """One client's `DriftExpert`: the mean of its last observation."""

    def __init__(self) -> None:
        self.previous_mean: float | None = None

    def observe(self, x: Tensor) -> dict[str, float]:
        current = float(x.mean())
        drift = 0.0 if self.previous_mean is None else abs(current - self.previous_mean)
        self.previous_mean = current
        return {"current_mean": current, "drift": drift}


class DataSummaries:
    """Every client's structure statistics and drift; the previous mean NaN before the first.

    Drift moves every feature of a client by one offset a round, so the statistics are
    computed once from the round-1 data (`observe`'s `x`) and shifted."""

    def __init__(self, num_clients: int) -> None:
        self.previous_mean = torch.full((num_clients,), math.nan, dtype=torch.float64)
        self._base: tuple[Tensor, ...] | None = None

    def observe(self, x: Tensor, sizes: Tensor | None, offset: float) -> dict[str, Tensor]:
        """The `StructureExpert.*` and `DriftExpert.*` summaries of every client, given its
        round-1 data `x` [N, n, d] (zero-padded when `sizes` [N] says how many rows are real)
        and this round's drift `offset`."""
        if self._base is None:
            self._base = _statistics(x, sizes)
        var, mean, low, high, current = self._base
        if offset != 0.0:
            mean, low, high, current = mean + offset, low + offset, high + offset, current + offset
        drift = torch.where(self.previous_mean.isnan(), 0.0, (current - self.previous_mean).abs())
        self.previous_mean = current
        return {
            "StructureExpert.mean": mean,
            "StructureExpert.std": var.float().sqrt().double(),
            "StructureExpert.variance": var,
            "StructureExpert.min": low,
            "StructureExpert.max": high,
            "DriftExpert.current_mean": current,
            "DriftExpert.drift": drift,
        }

    def take(self, clients: Tensor) -> DataSummaries:
        """The drift memory of `clients` (their statistics are computed from their own data)."""
        part = DataSummaries(0)
        part.previous_mean = self.previous_mean[clients]
        return part

    def put(self, clients: Tensor, part: DataSummaries) -> None:
        self.previous_mean[clients] = part.previous_mean

    def state_dict(self) -> Tensor:
        """The pool's `previous_mean`, as checkpoints have always stored it."""
        return self.previous_mean.clone()

    def load_state_dict(self, state: Any) -> None:
        self.previous_mean = state.clone()


def expert_summaries(clients: StackedClients, offset: float) -> dict[str, Tensor]:
    """Every expert's `summarize` of every client's data, once a round ("Expert.key" → [N]):
    the data statistics and drift, the memory expert's buffer, the meta expert's rates."""
    if not clients.names:
        return {}
    data = clients.data
    out = clients.summaries.observe(data.base_x, data.ragged_sizes, offset)
    if clients.memory is not None:
        memory = clients.buffers.summary(memory_replay_error(clients))
        out.update({f"MemoryConsolidationExpert.{k}": v for k, v in memory.items()})
    if clients.meta is not None:
        meta = clients.adaptation.summary()
        out.update({f"MetaAdaptationExpert.{k}": v for k, v in meta.items()})
    return out


def _statistics(x: Tensor, sizes: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Variance, mean, min, max (StructureExpert) and mean (DriftExpert), float64 [N]."""
    if sizes is None:
        flat = x.flatten(1)
        var, mean = torch.var_mean(flat, dim=1, correction=0)
        return (
            var.double(),
            mean.double(),
            flat.amin(dim=1).double(),
            flat.amax(dim=1).double(),
            x.mean(dim=(1, 2)).double(),
        )
    var, mean = masked_var_mean(x, sizes)
    low, high = masked_min_max(x, sizes)
    return var, mean, low.double(), high.double(), mean
