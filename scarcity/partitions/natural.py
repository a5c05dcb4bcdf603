"""The natural split: one client per value of the data set's client id (a hospital, a
speaker), as Flower Datasets' `NaturalIdPartitioner` and the cross-silo benchmarks use it
(FLamby, du Terrail et al., NeurIPS 2022 Datasets and Benchmarks; LEAF, Caldas et al. 2018).

Client i holds every training row whose id is the i-th id in the data set's order, rows in
data-set order (Flower keeps them unshuffled). With fewer clients than ids, `num_clients`
ids are drawn at random without replacement and kept in that order (LEAF samples its users);
more clients than ids cannot be made.
"""

from __future__ import annotations

import numpy as np

from scarcity.params import RunConfig
from scarcity.partitions.base import Partitioner, PartitionError


def split(client_ids: np.ndarray, config: RunConfig, rng: np.random.Generator) -> list[np.ndarray]:
    ids = np.unique(client_ids)
    n = config.num_clients
    if n > len(ids):
        raise PartitionError(
            "num_clients",
            f"{config.dataset} has {len(ids)} natural clients, so at most {len(ids)} clients, "
            f"got {n}",
        )
    chosen = ids if n == len(ids) else np.sort(rng.choice(ids, size=n, replace=False))
    return [np.flatnonzero(client_ids == c) for c in chosen]


PARTITIONER = Partitioner(
    name="natural",
    summary="One client per natural id (hospital, speaker) of the data set.",
    mirrors="Flower Datasets NaturalIdPartitioner; FLamby's and LEAF's natural clients",
    split=split,
    by_client_id=True,
)
