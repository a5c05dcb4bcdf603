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

import numpy as np

from scarcity.params import Param, RunConfig
from scarcity.partitions.base import Partitioner, PartitionError, shuffled


def split(labels: np.ndarray, config: RunConfig, rng: np.random.Generator) -> list[np.ndarray]:
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


NUM_SHARDS_PER_PARTITION = Param(
    "num_shards_per_partition",
    int,
    2,
    "shard: label-sorted shards each client holds (FedAvg's 2).",
    ge=1,
)

PARTITIONER = Partitioner(
    name="shard",
    summary="Rows sorted by label, cut into equal shards, s random shards per client.",
    mirrors="Flower Datasets ShardPartitioner; FedAvg's pathological split (McMahan et al. 2017)",
    split=split,
    parameters=("num_shards_per_partition",),
    params=(NUM_SHARDS_PER_PARTITION,),
    by_label=True,
)
