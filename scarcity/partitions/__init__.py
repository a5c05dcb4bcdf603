"""Partitioners of a labelled data set among the clients: the registry.

Each entry is one module (the rule, its paper and the benchmark it mirrors in the module
docstring) and one line here; the config's `partition` field is checked against this list.
"""

from scarcity.params import Param, unique
from scarcity.partitions import (
    dirichlet,
    iid,
    inner_dirichlet,
    natural,
    pathological,
    shard,
    size_skew,
)
from scarcity.partitions.base import Partitioner, PartitionError

PARTITIONERS: dict[str, Partitioner] = {
    p.name: p
    for p in (
        iid.PARTITIONER,
        dirichlet.PARTITIONER,
        pathological.PARTITIONER,
        shard.PARTITIONER,
        inner_dirichlet.PARTITIONER,
        size_skew.LINEAR,
        size_skew.SQUARE,
        size_skew.EXPONENTIAL,
        natural.PARTITIONER,
    )
}


def partition_params() -> list[Param]:
    """The config fields the partitioners declare, each once, in registry order."""
    return unique(param for p in PARTITIONERS.values() for param in p.params)


__all__ = ["PARTITIONERS", "PartitionError", "Partitioner", "partition_params"]
