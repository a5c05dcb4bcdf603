"""IID: shuffle the training rows and split them into near-equal parts (Flower Datasets'
`IidPartitioner`; the homogeneous split of every FL benchmark, NIID-Bench's "homo",
Li et al. 2022, "Federated Learning on Non-IID Data Silos: An Experimental Study")."""

from __future__ import annotations

import numpy as np

from scarcity.params import RunConfig
from scarcity.partitions.base import Partitioner, require_rows


def split(labels: np.ndarray, config: RunConfig, rng: np.random.Generator) -> list[np.ndarray]:
    require_rows(len(labels), config.num_clients)
    return list(np.array_split(rng.permutation(len(labels)), config.num_clients))


PARTITIONER = Partitioner(
    name="iid",
    summary="Shuffled rows split into near-equal parts.",
    mirrors="Flower Datasets IidPartitioner; NIID-Bench homo",
    split=split,
)
