"""Dirichlet label skew: each class is split among the clients in proportions drawn from
Dir(α·1) (Hsu et al. 2019, "Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification"; NIID-Bench's "noniid-labeldir").

As Flower Datasets' `DirichletPartitioner`: a class's rows are cut in row order at
⌊cumsum(p)·n_k⌋; with `self_balancing` a client already holding more than the average number
of rows gets no share of the later classes (its proportion set to 0, the rest renormalised);
the whole draw is repeated while some client holds fewer than `min_partition_size` rows, at
most 10 times more, then the request is refused naming `min_partition_size`. Each client's
rows are finally shuffled.
"""

from __future__ import annotations

import numpy as np

from scarcity.params import Param, RunConfig
from scarcity.partitions.base import (
    Partitioner,
    PartitionError,
    class_indices,
    require_rows,
    shuffled,
)
from scarcity.partitions.sizes import MIN_CLIENT_SAMPLES

#: Draws after the first before giving up on `min_partition_size` (Flower's bound).
MAX_REDRAWS = 10


def draw(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    self_balancing: bool,
    rng: np.random.Generator,
) -> list[list[int]]:
    """One Dirichlet draw: every class's rows cut among the clients."""
    average = len(labels) / num_clients
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for rows in class_indices(labels):
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        if self_balancing:
            full = np.array([len(p) > average for p in parts])
            proportions = np.where(full, 0.0, proportions)
            proportions = proportions / proportions.sum()
        cuts = (np.cumsum(proportions) * len(rows)).astype(int)[:-1]
        for client, chunk in enumerate(np.split(rows, cuts)):
            parts[client].extend(chunk.tolist())
    return parts


def split(labels: np.ndarray, config: RunConfig, rng: np.random.Generator) -> list[np.ndarray]:
    n = config.num_clients
    require_rows(len(labels), n)
    for _ in range(MAX_REDRAWS + 1):
        parts = draw(labels, n, config.dirichlet_alpha, config.self_balancing, rng)
        if min(len(p) for p in parts) >= config.min_partition_size:
            return shuffled(parts, rng)
    raise PartitionError(
        "min_partition_size",
        f"Dirichlet(α={config.dirichlet_alpha}) left a client with fewer than "
        f"{config.min_partition_size} of {len(labels)} rows in {MAX_REDRAWS + 1} draws among "
        f"{n} clients; lower min_partition_size, raise dirichlet_alpha or use fewer clients",
    )


# Shared with inner_dirichlet (α) and the size-skewed splits (the minimum size).
DIRICHLET_ALPHA = Param(
    "dirichlet_alpha", float, 0.5, "dirichlet / inner_dirichlet: concentration α.", gt=0, le=1000
)
# At least 1: a client holds some data (Flower Datasets allows empty partitions).
MIN_PARTITION_SIZE = Param(
    "min_partition_size",
    int,
    MIN_CLIENT_SAMPLES,
    "dirichlet: redraw (at most 10 times more) until every client holds at least this many "
    "rows; linear/square/exponential: rows every client gets before the skewed split "
    "(Flower's default is 10).",
    ge=1,
)
SELF_BALANCING = Param(
    "self_balancing", bool, False, "dirichlet: a client above the average size gets no later class."
)

PARTITIONER = Partitioner(
    name="dirichlet",
    summary="Each class split among the clients in Dir(α) proportions (label skew).",
    mirrors="Flower Datasets DirichletPartitioner; NIID-Bench noniid-labeldir (Hsu et al. 2019)",
    split=split,
    parameters=("dirichlet_alpha", "min_partition_size", "self_balancing"),
    params=(DIRICHLET_ALPHA, MIN_PARTITION_SIZE, SELF_BALANCING),
    by_label=True,
)
