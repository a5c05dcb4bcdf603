"""Pathological label skew, exactly k classes per client (McMahan et al. 2017's
pathological non-IID; NIID-Bench's "#C=k", Li et al. 2022).

As Flower Datasets' `PathologicalPartitioner` (`num_classes_per_partition`,
`class_assignment_mode`): each client is given k distinct classes (`random`: k drawn without
replacement; `deterministic`: classes (i + j) mod C for j < k; `first-deterministic`: class
i mod C, then random ones, as NIID-Bench does); each class's rows are split evenly, in row
order, among the clients that have it; each client's rows are then shuffled. A class no client
was given is left out of the federation (possible with `random` when N·k < C).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from scarcity.params import Param, RunConfig
from scarcity.partitions.base import (
    Partitioner,
    PartitionError,
    class_indices,
    require_rows,
    shuffled,
)


def assign_classes(
    num_clients: int, num_classes: int, k: int, mode: str, rng: np.random.Generator
) -> list[list[int]]:
    """The k classes of each client."""
    if mode == "deterministic":
        return [[(i + j) % num_classes for j in range(k)] for i in range(num_clients)]
    if mode == "random":
        return [rng.choice(num_classes, size=k, replace=False).tolist() for _ in range(num_clients)]
    chosen = []  # first-deterministic
    for i in range(num_clients):
        classes = [i % num_classes]
        while len(classes) < k:
            cls = int(rng.choice(num_classes))
            if cls not in classes:
                classes.append(cls)
        chosen.append(classes)
    return chosen


def split(labels: np.ndarray, config: RunConfig, rng: np.random.Generator) -> list[np.ndarray]:
    n, k = config.num_clients, config.num_classes_per_partition
    require_rows(len(labels), n)
    rows_of = class_indices(labels)
    if k > len(rows_of):
        raise PartitionError(
            "num_classes_per_partition",
            f"{k} classes per client but the data set has {len(rows_of)}",
        )
    classes_of = assign_classes(n, len(rows_of), k, config.class_assignment_mode, rng)
    parts: list[list[int]] = [[] for _ in range(n)]
    for cls, rows in enumerate(rows_of):
        holders = [i for i in range(n) if cls in classes_of[i]]
        if len(holders) > len(rows):
            raise PartitionError(
                "num_classes_per_partition",
                f"class {cls} has {len(rows)} training rows but {len(holders)} clients are "
                "given it; fewer clients, a smaller k or class_assignment_mode=deterministic",
            )
        if holders:
            for client, chunk in zip(holders, np.array_split(rows, len(holders)), strict=True):
                parts[client].extend(chunk.tolist())
    return shuffled(parts, rng)


NUM_CLASSES_PER_PARTITION = Param(
    "num_classes_per_partition",
    int,
    2,
    "pathological: classes each client holds (NIID-Bench's #C=k).",
    ge=1,
)
CLASS_ASSIGNMENT_MODE = Param(
    "class_assignment_mode",
    Literal["random", "deterministic", "first-deterministic"],
    "random",
    "pathological: how each client's classes are picked.",
)

PARTITIONER = Partitioner(
    name="pathological",
    summary="Exactly k classes per client, each class split evenly among its holders.",
    mirrors="Flower Datasets PathologicalPartitioner; NIID-Bench #C=k (McMahan et al. 2017)",
    split=split,
    parameters=("num_classes_per_partition", "class_assignment_mode"),
    params=(NUM_CLASSES_PER_PARTITION, CLASS_ASSIGNMENT_MODE),
    by_label=True,
)
