"""Fashion-MNIST: 70,000 grey 28×28 images of clothing in 10 classes, with its own test split.

Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms", arXiv:1708.07747 (2017). © 2017 Zalando SE, MIT licence. The rows come
from Debian's `dataset-fashion-mnist` package (`make fashion-mnist` installs it; the Docker
image has it), which holds the four IDX files of the original release, gzipped, in
`/usr/share/datasets/fashion-mnist/`. `SCARCITY_FASHION_MNIST_DIR` names another folder with
the same four files (e.g. the package unpacked with `dpkg -x` by a user who is not root).

The 60,000 training and 10,000 test images are the release's own split (6,000 and 1,000 per
class; the config's `test_fraction` is not read). Each row is an image flattened row by row to
784 features, the pixel intensity divided by 255 (float32, in [0, 1]): what torchvision's
`ToTensor` gives NIID-Bench (Li et al., ICDE 2022), which trains on these values with no
further normalisation, so the default `feature_scaling` is `none`. (Per-pixel min-max on the
raw pixels would stretch the 54 border pixels whose training maximum is below 255, to test
values up to 1.83.)

Defaults: NIID-Bench's simple CNN (`simple_cnn`), one local epoch of mini-batches of 32, plain
SGD at learning rate 0.1. NIID-Bench trains with SGD at 0.01 and momentum 0.9 (batch 64, 10
epochs); the clients here have no momentum, and 0.1 is the step momentum 0.9 settles to,
0.01/(1 − 0.9). At 0.01 without momentum FedAvg of 10 IID clients was still at 23% test
accuracy after 3 rounds; at 0.1 it reached 79% after 5.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from scarcity.datasets.base import Arrays, Dataset, DatasetUnavailable

PACKAGE = "dataset-fashion-mnist"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
DIR_ENV = "SCARCITY_FASHION_MNIST_DIR"
FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
IMAGE_SIDE = 28
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: NIID-Bench's simple CNN with plain SGD at momentum's effective rate (the module docstring).
IMAGE_DEFAULTS = {"model": "simple_cnn", "learning_rate": 0.1, "batch_size": 32, "local_epochs": 1}


def data_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (LeCun's format: magic 0x0000_08_nd, nd big-endian int32
    sizes, then the bytes), gzipped, as a uint8 array of those sizes."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(raw[3])]
    offset = 4 + 4 * len(dims)
    if len(raw) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: {len(raw) - offset} bytes for sizes {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def pixels(images: np.ndarray) -> np.ndarray:
    """[n, 28, 28] uint8 images as [n, 784] float32 intensities in [0, 1]."""
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"expected 28×28 images, got shape {images.shape}")
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= 255
    return x


def load() -> Arrays:
    folder = data_dir()
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise DatasetUnavailable(
            f"fashion_mnist reads {', '.join(missing)} in {folder}, which are not there: "
            f"install Debian's {PACKAGE} package (`make fashion-mnist`, or "
            f"`apt-get install {PACKAGE}`), or set {DIR_ENV} to a folder holding them"
        )
    read = {key: read_idx(folder / name) for key, name in FILES.items()}
    for split in ("train", "test"):
        if len(read[f"{split}_x"]) != len(read[f"{split}_y"]):
            raise ValueError(f"fashion_mnist: {split} images and labels differ in number")
    return Arrays(
        x=pixels(read["train_x"]),
        y=read["train_y"].astype(np.int64),
        test_x=pixels(read["test_x"]),
        test_y=read["test_y"].astype(np.int64),
    )


FASHION_MNIST = Dataset(
    name="fashion_mnist",
    summary=(
        "Fashion-MNIST: 28×28 grey images of clothing, 60,000 training and 10,000 test rows "
        "(its own split), 784 features, 10 classes."
    ),
    source=(
        f"Debian package {PACKAGE}; Zalando SE, MIT licence; Xiao, Rasul & Vollgraf (2017), "
        "arXiv:1708.07747"
    ),
    task="classification",
    features=IMAGE_SIDE * IMAGE_SIDE,
    classes=len(CLASSES),
    load=load,
    scaling="none",  # intensities already in [0, 1], as NIID-Bench trains on them
    defaults=IMAGE_DEFAULTS,
    own_test_split=True,
)
