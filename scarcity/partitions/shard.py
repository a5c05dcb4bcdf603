"""FedAvg's sort-and-shard split (McMahan et al. 2017, "Communication-Efficient Learning of
Deep Networks from Decentralized Data": sort by label, cut into 2·N shards, give each client
2 at random).

As Flower Datasets' `ShardPartitioner` with `num_shards_per_partition` and no `shard_size`:
the rows are sorted by label (stable, so ties keep row order), cut into shards of
⌊n / (N·s)⌋ consecutive rows, and each client gets s shards drawn at random without
replacement; each client's rows are then shuffled. The last n mod (N·s) rows of the sorted
order are left out, so the union is the training set less fewer than N·s rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from scarcity.partitions.base import Partitioner, PartitionError, shuffled

if TYPE_CHECKING:
    from scarcity.config import SimulationConfig


def split(
    labels: np.ndarray, config: SimulationConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    n, per_client = config.num_clients, config.num_shards_per_partition
    shards = n * per_client
    shard_size = len(labels) // shards
    if shard_size == 0:
        raise PartitionError(
            "num_shards_per_partition",
            f"{n} clients × {per_client} shards = {shards} shards of a training set of "
            f"{len(labels)} rows leave no row per shard",
        )
    order = np.argsort(labels, kind="stable")
    picked = rng.permutation(shards).reshape(n, per_client)
    parts = [
        np.concatenate([order[s * shard_size : (s + 1) * shard_size] for s in row])
        for row in picked
    ]
    return shuffled(parts, rng)


PARTITIONER = Partitioner(
    name="shard",
    summary="Rows sorted by label, cut into equal shards, s random shards per client.",
    mirrors="Flower Datasets ShardPartitioner; FedAvg's pathological split (McMahan et al. 2017)",
    split=split,
    parameters=("num_shards_per_partition",),
    by_label=True,
)
