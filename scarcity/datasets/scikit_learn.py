"""The small data sets scikit-learn ships inside its wheel (no download): `digits` (UCI
optical digits, 8×8), `breast_cancer` (Wisconsin diagnostic), `wine`, `iris` (labelled) and
`diabetes` (regression; Efron et al. 2004). scikit-learn is BSD-3-Clause; the data sets' own
provenance is in scikit-learn's user guide, "Toy datasets".

Defaults: minibatch SGD as FL papers train small models (batch 16, learning rate 0.1, one local
epoch), enough for FedAvg of the Linear model to pass 0.9 test accuracy on digits in 10 rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scarcity.datasets.base import Arrays, Dataset, as_float, as_labels

SMALL_MODEL_DEFAULTS = {"learning_rate": 0.1, "batch_size": 16, "local_epochs": 1}


def _loader(name: str, regression: bool = False) -> Callable[[], Arrays]:
    def load() -> Arrays:
        from sklearn import datasets

        bunch: Any = getattr(datasets, f"load_{name}")()
        y = as_float(bunch.target) if regression else as_labels(bunch.target)
        return Arrays(as_float(bunch.data), y)

    return load


SOURCE = "scikit-learn's bundled toy data sets (BSD-3-Clause)"

DIGITS = Dataset(
    name="digits",
    summary="8×8 grey images of handwritten digits, 1,797 rows, 10 classes.",
    source=f"{SOURCE}; UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak 1998)",
    task="classification",
    features=64,
    classes=10,
    load=_loader("digits"),
    scaling="minmax",  # pixel intensities 0–16
    defaults=SMALL_MODEL_DEFAULTS,
)
BREAST_CANCER = Dataset(
    name="breast_cancer",
    summary="Breast cancer Wisconsin (diagnostic), 569 rows, 30 features, 2 classes.",
    source=f"{SOURCE}; UCI (Wolberg, Street & Mangasarian 1995)",
    task="classification",
    features=30,
    classes=2,
    load=_loader("breast_cancer"),
    defaults=SMALL_MODEL_DEFAULTS,
)
WINE = Dataset(
    name="wine",
    summary="Wine recognition, 178 rows, 13 features, 3 classes.",
    source=f"{SOURCE}; UCI (Aeberhard & Forina 1991)",
    task="classification",
    features=13,
    classes=3,
    load=_loader("wine"),
    defaults=SMALL_MODEL_DEFAULTS,
)
IRIS = Dataset(
    name="iris",
    summary="Fisher's iris, 150 rows, 4 features, 3 classes.",
    source=f"{SOURCE}; Fisher (1936)",
    task="classification",
    features=4,
    classes=3,
    load=_loader("iris"),
    defaults=SMALL_MODEL_DEFAULTS,
)
DIABETES = Dataset(
    name="diabetes",
    summary="Diabetes progression after one year, 442 rows, 10 features (regression).",
    source=f"{SOURCE}; Efron, Hastie, Johnstone & Tibshirani (2004)",
    task="regression",
    features=10,
    classes=1,
    load=_loader("diabetes", regression=True),
    defaults=SMALL_MODEL_DEFAULTS,
)
