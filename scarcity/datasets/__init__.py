"""The data sets a simulation can train on (the config's `dataset`): the registry.

Each entry is one module (its source, licence and citation in the module docstring) and one
line here. `synthetic` is not here: it is generated from the seed (`scarcity.core.data`). An
uploaded data set is named by its id (`ds_` and 24 hex digits of its content's sha256) and
found in the upload store (`scarcity.datasets.uploaded`).
"""

from __future__ import annotations

from functools import lru_cache

from scarcity.datasets import (
    fashion_mnist,
    heart_disease,
    mnist,
    rainfall,
    river_streams,
    scikit_learn,
    shakespeare,
)
from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        scikit_learn.DIGITS,
        scikit_learn.BREAST_CANCER,
        scikit_learn.WINE,
        scikit_learn.IRIS,
        scikit_learn.DIABETES,
        heart_disease.HEART_DISEASE,
        fashion_mnist.FASHION_MNIST,
        mnist.MNIST,
        shakespeare.SHAKESPEARE,
        river_streams.SEA,
        river_streams.STAGGER,
        river_streams.HYPERPLANE,
        rainfall.RAINFALL,
    )
}

SYNTHETIC = "synthetic"


def find_dataset(name: str) -> Dataset | None:
    """The data set called `name` (a registry name or an upload's id), None when unknown."""
    known = DATASETS.get(name)
    if known is not None:
        return known
    from scarcity.datasets import uploaded

    return uploaded.find(name)


def is_stream(name: str) -> bool:
    """Whether data set `name` is a registered stream (its row order is time)."""
    known = DATASETS.get(name)
    return known is not None and known.stream


@lru_cache(maxsize=4)
def load_arrays(name: str) -> Arrays:
    """The rows of data set `name`, cached per process for the few data sets a worker uses in
    turn (an upload's id names fixed bytes); a long-lived worker that meets many uploads keeps
    only the last four."""
    dataset = find_dataset(name)
    if dataset is None:
        raise DatasetUnavailable(f"unknown data set {name!r}")
    return dataset.load()


__all__ = [
    "DATASETS",
    "SYNTHETIC",
    "Arrays",
    "Dataset",
    "DatasetUnavailable",
    "find_dataset",
    "is_stream",
]
