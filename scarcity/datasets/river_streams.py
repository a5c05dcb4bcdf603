"""Synthetic concept-drift streams from river's generators: `sea`, `stagger` and `hyperplane`,
a fixed number of rows drawn with a fixed seed (nothing is downloaded; the same rows on every
machine), in time order (row i arrived before row i + 1), binary classification.

Generators: river (Montiel, Halford, Mastelini, Bolmier, Sourty, Vaysse, Zouitine, Gomes, Read,
Abdessalem & Bifet 2021, "River: machine learning for streaming data in Python", JMLR 22(110);
BSD-3-Clause), `river.datasets.synth`, with `ConceptDriftStream` chaining the concepts.

- `sea`: SEA concepts (Street & Kim 2001, "A streaming ensemble algorithm (SEA) for large-scale
  classification", KDD). Three features uniform in [0, 10], label x₀ + x₁ > θ; the four
  concepts θ = 8, 9, 7, 9.5 (river's variants 0–3) follow one another, 2,500 rows each, with
  10 % of the labels flipped as in the paper. Drift points: rows 2,500, 5,000 and 7,500
  (`ConceptDriftStream` with width 20: the new concept's share of the rows is a
  sigmoid of the row, 1/2 at the drift point, over 98 % 20 rows later).
- `stagger`: STAGGER concepts (Schlimmer & Granger 1986, "Incremental learning from noisy
  data", Machine Learning 1(3)). Size, colour and shape, three values each, one-hot (9
  features); the concepts size = small ∧ colour = red, colour = green ∨ shape = circle, and
  size = medium ∨ large (river's functions 0–2) follow one another, 1,000 rows each. Drift
  points: rows 1,000 and 2,000 (width 20, as `sea`).
- `hyperplane`: the rotating hyperplane (Hulten, Spencer & Domingos 2001, "Mining
  time-changing data streams", KDD). Ten features uniform in [0, 1], label Σ wᵢxᵢ ≥ ½ Σ wᵢ,
  5 % of the labels flipped (river's and MOA's default); the weights of the first two features
  grow by 0.001 per row (no reversals, σ = 0), so the hyperplane turns on every one of the
  10,000 rows: continuous drift, no single drift point (`drift_points` marks the quarters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable

SEED = 42
#: Rows over which a chained stream moves from one concept to the next (the drift's width).
DRIFT_WIDTH = 20
SEA_ROWS_PER_CONCEPT = 2_500
SEA_NOISE = 0.1
STAGGER_ROWS_PER_CONCEPT = 1_000
HYPERPLANE_ROWS = 10_000
HYPERPLANE_FEATURES = 10
HYPERPLANE_DRIFT_FEATURES = 2
HYPERPLANE_CHANGE = 0.001
HYPERPLANE_NOISE = 0.05
#: What a stream trains with unless the request says: the defaults of scikit-learn's toy sets.
STREAM_DEFAULTS = {"learning_rate": 0.1, "batch_size": 16, "local_epochs": 1}


def _synth() -> Any:
    try:
        from river.datasets import synth
    except ModuleNotFoundError:
        raise DatasetUnavailable(
            "the drift streams are drawn by river's generators: pip install river==0.26.1"
        ) from None
    return synth


def chained(concepts: list[Any], length: int, seed: int) -> Any:
    """The concepts one after another, `length` rows each: a `ConceptDriftStream` whose drift
    stream is the chain of the rest, each change a sigmoid `DRIFT_WIDTH` rows wide (river's
    sigmoid overflows below a width of about 4·length/709)."""
    synth = _synth()
    stream = concepts[-1]
    for k, concept in enumerate(reversed(concepts[:-1])):
        stream = synth.ConceptDriftStream(
            stream=concept, drift_stream=stream, position=length, width=DRIFT_WIDTH, seed=seed + k
        )
    return stream


def rows(stream: Iterable[tuple[dict[Any, Any], Any]], count: int) -> Arrays:
    """The stream's first `count` rows: features in the dict's key order, labels 0/1."""
    x, y = [], []
    for _, (features, label) in zip(range(count), stream, strict=False):
        x.append(list(features.values()))
        y.append(int(label))
    return Arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64))


def load_sea() -> Arrays:
    synth = _synth()
    concepts = [synth.SEA(variant=v, noise=SEA_NOISE, seed=SEED + v) for v in range(4)]
    return rows(chained(concepts, SEA_ROWS_PER_CONCEPT, SEED), 4 * SEA_ROWS_PER_CONCEPT)


def load_stagger() -> Arrays:
    synth = _synth()
    concepts = [synth.STAGGER(classification_function=f, seed=SEED + f) for f in range(3)]
    codes = rows(chained(concepts, STAGGER_ROWS_PER_CONCEPT, SEED), 3 * STAGGER_ROWS_PER_CONCEPT)
    # size, colour, shape: codes 0–2 each, one-hot (a code's order means nothing)
    one_hot = (codes.x[:, :, None] == np.arange(3)).reshape(len(codes.x), 9)
    return Arrays(one_hot.astype(np.float64), codes.y)


def load_hyperplane() -> Arrays:
    stream = _synth().Hyperplane(
        seed=SEED,
        n_features=HYPERPLANE_FEATURES,
        n_drift_features=HYPERPLANE_DRIFT_FEATURES,
        mag_change=HYPERPLANE_CHANGE,
        noise_percentage=HYPERPLANE_NOISE,
        sigma=0.0,
    )
    return rows(stream, HYPERPLANE_ROWS)


def _stream(
    name: str,
    summary: str,
    citation: str,
    features: int,
    load: Callable[[], Arrays],
    drift_points: tuple[int, ...],
    scaling: Any = "standard",
) -> Dataset:
    return Dataset(
        name=name,
        summary=summary,
        source=f"river 0.26.1's generator (BSD-3-Clause; Montiel et al. 2021, JMLR); {citation}",
        task="classification",
        features=features,
        classes=2,
        load=load,
        scaling=scaling,
        defaults=STREAM_DEFAULTS,
        stream=True,
        drift_points=drift_points,
    )


SEA = _stream(
    "sea",
    "SEA concepts stream: 10,000 rows in time order, 3 features, 2 classes, 10 % label noise; "
    "the threshold changes (8, 9, 7, 9.5) at rows 2,500, 5,000 and 7,500.",
    "Street & Kim (2001), KDD",
    3,
    load_sea,
    (2_500, 5_000, 7_500),
)
STAGGER = _stream(
    "stagger",
    "STAGGER concepts stream: 3,000 rows in time order, size/colour/shape one-hot (9 "
    "features), 2 classes; the concept changes at rows 1,000 and 2,000.",
    "Schlimmer & Granger (1986), Machine Learning 1(3)",
    9,
    load_stagger,
    (1_000, 2_000),
    scaling="none",  # one-hot
)
HYPERPLANE = _stream(
    "hyperplane",
    "Rotating hyperplane stream: 10,000 rows in time order, 10 features, 2 classes, 5 % label "
    "noise; two weights grow by 0.001 a row (continuous drift).",
    "Hulten, Spencer & Domingos (2001), KDD",
    HYPERPLANE_FEATURES,
    load_hyperplane,
    (2_500, 5_000, 7_500),
)
