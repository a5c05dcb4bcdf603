"""The small data sets scikit-learn ships inside its wheel (no download): `digits` (UCI
optical digits, 8×8), `breast_cancer` (Wisconsin diagnostic), `wine`, `iris` (labelled) and
`diabetes` (regression; Efron et al. 2004). scikit-learn is BSD-3-Clause; the data sets' own
provenance is in scikit-learn's user guide, "Toy datasets".

Defaults: minibatch SGD as FL papers train small models (batch 16, learning rate 0.1, one local
epoch), enough for FedAvg of the Linear model to pass 0.9 test accuracy on digits in 10 rounds.
"""

from __future__ import annotations

from typing import Any

from scarcity.datasets.base import Arrays, Dataset, Scaling, as_float, as_labels

SMALL_MODEL_DEFAULTS = {"learning_rate": 0.1, "batch_size": 16, "local_epochs": 1}


def _toy(
    name: str,
    summary: str,
    citation: str,
    features: int,
    classes: int,
    scaling: Scaling = "standard",
) -> Dataset:
    """One of scikit-learn's toy sets, read with its `load_<name>` (1 class: regression)."""
    regression = classes == 1

    def load() -> Arrays:
        from sklearn import datasets

        bunch: Any = getattr(datasets, f"load_{name}")()
        y = as_float(bunch.target) if regression else as_labels(bunch.target)
        return Arrays(as_float(bunch.data), y)

    return Dataset(
        name=name,
        summary=summary,
        source=f"scikit-learn's bundled toy data sets (BSD-3-Clause); {citation}",
        task="regression" if regression else "classification",
        features=features,
        classes=classes,
        load=load,
        scaling=scaling,
        defaults=SMALL_MODEL_DEFAULTS,
    )


DIGITS = _toy(
    "digits",
    "8×8 grey images of handwritten digits, 1,797 rows, 10 classes.",
    "UCI Optical Recognition of Handwritten Digits (Alpaydin & Kaynak 1998)",
    64,
    10,
    scaling="minmax",  # pixel intensities 0–16
)
BREAST_CANCER = _toy(
    "breast_cancer",
    "Breast cancer Wisconsin (diagnostic), 569 rows, 30 features, 2 classes.",
    "UCI (Wolberg, Street & Mangasarian 1995)",
    30,
    2,
)
WINE = _toy(
    "wine",
    "Wine recognition, 178 rows, 13 features, 3 classes.",
    "UCI (Aeberhard & Forina 1991)",
    13,
    3,
)
IRIS = _toy("iris", "Fisher's iris, 150 rows, 4 features, 3 classes.", "Fisher (1936)", 4, 3)
DIABETES = _toy(
    "diabetes",
    "Diabetes progression after one year, 442 rows, 10 features (regression).",
    "Efron, Hastie, Johnstone & Tibshirani (2004)",
    10,
    1,
)
