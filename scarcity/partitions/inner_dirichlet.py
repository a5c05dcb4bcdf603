"""Given client sizes, each client's labels drawn from its own Dir(α) prior over the classes
(FedLab's and Flower Datasets' `InnerDirichletPartitioner`; the "unbalanced Dirichlet" split of
Zhu et al. 2021, "FedLab: A Flexible Federated Learning Framework").

The sizes are the requested ones (`samples_per_client` each, or lognormal `quantity_skew`);
they must fit in the training set, and when they sum to less the rest is left out. As
Flower's: class priors p_i ~ Dir(α·1) per client; repeatedly a not-yet-full client is drawn
uniformly, then a class from p_i (an exhausted class's prior mass is set to zero for everyone
and the priors renormalised), and the client takes that class's last unassigned row; each
client's rows are then shuffled.
"""

from __future__ import annotations

import numpy as np

from scarcity.params import RunConfig
from scarcity.partitions.base import (
    Partitioner,
    PartitionError,
    class_indices,
    require_rows,
    shuffled,
)
from scarcity.partitions.dirichlet import DIRICHLET_ALPHA
from scarcity.partitions.sizes import requested_sizes


def split(labels: np.ndarray, config: RunConfig, rng: np.random.Generator) -> list[np.ndarray]:
    n = config.num_clients
    require_rows(len(labels), n)
    sizes = requested_sizes(config)
    if sum(sizes) > len(labels):
        raise PartitionError(
            "samples_per_client",
            f"the clients' sizes sum to {sum(sizes)} but the training set has {len(labels)} "
            "rows; lower samples_per_client (inner_dirichlet takes the requested sizes)",
        )
    rows_of = class_indices(labels)
    left_in_class = [len(r) for r in rows_of]
    priors = rng.dirichlet(np.full(len(rows_of), config.dirichlet_alpha), size=n)
    left_to_fill = list(sizes)
    parts: list[list[int]] = [[] for _ in range(n)]
    open_clients = list(range(n))
    while open_clients:
        client = int(rng.choice(open_clients))
        if left_to_fill[client] == 0:
            open_clients.remove(client)
            continue
        left_to_fill[client] -= 1
        while True:
            cls = int(rng.choice(len(rows_of), p=priors[client]))
            if left_in_class[cls] == 0:
                priors[:, cls] = 0.0
                priors /= priors.sum(axis=1, keepdims=True)
                continue
            left_in_class[cls] -= 1
            parts[client].append(int(rows_of[cls][left_in_class[cls]]))
            break
    return shuffled(parts, rng)


PARTITIONER = Partitioner(
    name="inner_dirichlet",
    summary="Requested sizes; each client's labels drawn from its own Dir(α) class prior.",
    mirrors="Flower Datasets InnerDirichletPartitioner; FedLab unbalanced Dirichlet",
    split=split,
    parameters=("samples_per_client", "quantity_skew", "dirichlet_alpha"),
    params=(DIRICHLET_ALPHA,),
    by_label=True,
)
