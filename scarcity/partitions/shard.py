"""FedAvg's sort-and-shard split (McMahan et al. 2017, "Communication-Efficient Learning of
Deep Networks from Decentralized Data": sort by label, cut into 2·N shards, give each client
2 at random).

As Flower Datasets' `ShardPartitioner` (flwr-datasets 0.6.1) with `num_shards_per_partition` s,
no `shard_size` and `keep_incomplete_shard=False`: the n rows are sorted by label (a stable
sort, so ties keep row order, as its Arrow sort does), cut into shards of q = ⌊n / (N·s)⌋
consecutive rows, which makes ⌊n / q⌋ whole shards: N·s + ⌊r / q⌋ with r = n mod (N·s). One
permutation of the whole shards is drawn and its first N·s are dealt out in order, s to a
client; then each client's rows are shuffled, client by client, from the same generator. The
⌊r / q⌋ shards left over are random ones; only the last n mod q rows of the sorted order, less
than a shard, are always left out. Every client holds s·q rows, and the union is the training
set less r < N·s rows.

Runs of `engine_version` 5 and earlier keep the rule they were made with: a permutation of the
first N·s shards only, so the last n mod (N·s) rows of the sorted order (the highest labels) were
always the ones left out. Both rules give every client s·q rows, and they agree whenever
⌊n / q⌋ = N·s.
"""

from __future__ import annotations

import numpy as np

from scarcity.params import Param, RunConfig
from scarcity.partitions.base import Partitioner, PartitionError, shuffled

#: The first engine_version that draws the shards left over at random, as Flower Datasets does.
RANDOM_LEFTOVER_SHARDS = 6


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
    if config.engine_version >= RANDOM_LEFTOVER_SHARDS:
        whole_shards = len(labels) // shard_size
        picked = rng.permutation(whole_shards)[:shards].reshape(n, per_client)
    else:
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
