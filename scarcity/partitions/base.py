"""What a partitioner is: a named rule that splits the training rows of a data set among the
clients, each row to at most one client, at the sizes the rule gives (natural sizes).

A partitioner is a pure function of the training labels, the config and a NumPy generator. It
names what it reads from the config (`parameters`) and the public benchmark whose split it
mirrors; it raises `PartitionError` naming the field when the split cannot be made, so a
request gets a 422 on that field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scarcity.errors import ConfigError
from scarcity.params import Param, RunConfig

#: (training labels — or natural client ids for a `by_client_id` rule —, config, generator)
#: → one index array per client.
SplitFunction = Callable[["np.ndarray", "RunConfig", np.random.Generator], list[np.ndarray]]


class PartitionError(ConfigError):
    """A split that cannot be made; the message reads "field: why"."""


@dataclass(frozen=True)
class Partitioner:
    name: str
    summary: str
    #: The benchmark (and paper) whose split this one mirrors.
    mirrors: str
    split: SplitFunction
    #: Config fields the split reads, besides num_clients and seed.
    parameters: tuple[str, ...] = ()
    #: The fields among them this partitioner declares (the others are the run's own, or
    #: declared by another partitioner): `scarcity.config` assembles the config from them.
    params: tuple[Param, ...] = ()
    #: Whether the rule splits by label (so it needs a labelled data set).
    by_label: bool = False
    #: Whether the rule splits by each row's natural client id instead (the split function
    #: gets the ids where the others get the labels; the data set must have them).
    by_client_id: bool = False


def require_rows(num_rows: int, num_clients: int) -> None:
    if num_clients > num_rows:
        raise PartitionError(
            "num_clients",
            f"{num_clients} clients but the training set has only {num_rows} rows "
            "(each row goes to one client)",
        )


def shuffled(
    parts: list[list[int]] | list[np.ndarray], rng: np.random.Generator
) -> list[np.ndarray]:
    """Each client's rows in a random order (as Flower Datasets' `shuffle=True`)."""
    return [rng.permutation(np.asarray(p, dtype=np.int64)) for p in parts]


def class_indices(labels: np.ndarray) -> list[np.ndarray]:
    """The row indices of each class, in row order, classes ascending."""
    return [np.flatnonzero(labels == cls) for cls in np.unique(labels)]
