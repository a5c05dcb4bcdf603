"""Size-skewed IID splits: client i (1-based) holds a share of the rows proportional to
i (`linear`), i² (`square`) or eⁱ (`exponential`), as Flower Datasets' `LinearPartitioner`,
`SquarePartitioner` and `ExponentialPartitioner` (its `IdToSizeFncPartitioner`): sizes
⌊f(i)/Σf · n⌋, the rounding remainder to the last client, rows taken in a shuffled order.

One difference, for data scarcity with many clients: every client first gets
`min_partition_size` rows (at least 1) and the proportional rule splits the rest; Flower's
rule is the same without the floor, and refuses a split that leaves a client with no row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scarcity.params import RunConfig
from scarcity.partitions.base import Partitioner, PartitionError, require_rows
from scarcity.partitions.dirichlet import MIN_PARTITION_SIZE


def sizes_from_units(units: np.ndarray, num_rows: int, floor: int) -> np.ndarray:
    """Flower's size rule on the rows left after everyone's floor."""
    spare = num_rows - floor * len(units)
    if spare < 0:
        raise PartitionError(
            "min_partition_size",
            f"{len(units)} clients × {floor} rows each exceed the {num_rows} training rows",
        )
    sizes = floor + (units / units.sum() * spare).astype(np.int64)
    sizes[-1] += num_rows - sizes.sum()
    if sizes.min() < 1:
        raise PartitionError(
            "num_clients",
            f"{len(units)} clients leave client {int(np.argmin(sizes))} with no row under this "
            "size rule; use fewer clients",
        )
    return sizes


def _size_skewed(
    units_of: Callable[[np.ndarray], np.ndarray],
) -> Callable[[np.ndarray, RunConfig, np.random.Generator], list[np.ndarray]]:
    def split(labels: np.ndarray, config: RunConfig, rng: np.random.Generator) -> list[np.ndarray]:
        n = config.num_clients
        require_rows(len(labels), n)
        ids = np.linspace(1, n, n)
        sizes = sizes_from_units(units_of(ids), len(labels), config.min_partition_size)
        return np.split(rng.permutation(len(labels)), np.cumsum(sizes)[:-1])

    return split


LINEAR = Partitioner(
    name="linear",
    summary="Client i holds a share ∝ i of the shuffled rows.",
    mirrors="Flower Datasets LinearPartitioner",
    split=_size_skewed(lambda i: i),
    parameters=("min_partition_size",),
    params=(MIN_PARTITION_SIZE,),
)
SQUARE = Partitioner(
    name="square",
    summary="Client i holds a share ∝ i² of the shuffled rows.",
    mirrors="Flower Datasets SquarePartitioner",
    split=_size_skewed(np.square),
    parameters=("min_partition_size",),
    params=(MIN_PARTITION_SIZE,),
)
EXPONENTIAL = Partitioner(
    name="exponential",
    summary="Client i holds a share ∝ eⁱ of the shuffled rows.",
    mirrors="Flower Datasets ExponentialPartitioner",
    # e^(i − N): the same shares as e^i without overflowing for large N.
    split=_size_skewed(lambda i: np.exp(i - i[-1])),
    parameters=("min_partition_size",),
    params=(MIN_PARTITION_SIZE,),
)
