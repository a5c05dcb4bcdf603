"""Client data: synthetic non-IID generator, bundled data sets, partitions, drift, FedAvg."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scarcity import Simulation, resolve_config, run_simulation
from scarcity.batched.padding import pad_clients
from scarcity.config import MAX_CLIENT_SIZE_FACTOR, MIN_CLIENT_SAMPLES
from scarcity.core.data import (
    client_sizes,
    dirichlet_partition,
    fill_to_size,
    load_dataset,
    load_split,
    make_federated_data,
    split_to_size,
    stratified_split,
)
from scarcity.partitions.sizes import DATA_STREAM


def test_synthetic_clients_differ_in_shift_and_scale():
    data = make_federated_data(resolve_config(preset="stage1"))
    assert len(data.client_x) == 5 and data.client_x[0].shape == (50, 10)
    means = [float(x.mean()) for x in data.client_x]
    stds = [float(x.std()) for x in data.client_x]
    assert max(means) - min(means) > 0.2 and max(stds) / min(stds) > 1.2
    assert data.test_x.shape[1] == 10 and len(data.test_x) == len(data.test_y) > 0


def test_drift_shifts_every_client_each_round():
    data = make_federated_data(resolve_config(preset="stage1", drift=0.5))
    x1, y1 = data.client_data(2, 1)
    x3, y3 = data.client_data(2, 3)
    assert torch.allclose(x3 - x1, torch.full_like(x1, 1.0))
    assert not torch.equal(y1, y3)
    still = make_federated_data(resolve_config(preset="stage1"))
    assert still.client_data(2, 4)[0] is still.client_data(2, 1)[0]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(quantity_skew=1.0, client_test_fraction=0.3, drift=0.7),  # ragged own rows
        dict(dataset="digits", partition="dirichlet", client_test_fraction=0.25, drift=0.5),
        dict(drift=0.5),  # synthetic data's test block per client
    ],
)
def test_the_padded_held_out_rows_are_each_clients_rows_of_the_round(overrides):
    data = make_federated_data(resolve_config(preset="stage7", num_clients=12, **overrides))
    participants = torch.tensor([7, 0, 3, 11])
    for k in (1, 3):
        sets = data.client_test_sets(k) if data.client_test_y else data.test_blocks(k)
        chosen = [sets[c] for c in participants.tolist()]
        rows = data.held_out_rows(k).take(participants)
        assert torch.equal(rows.sizes, torch.tensor([len(y) for _, y in chosen]))
        assert torch.equal(rows.x, pad_clients([x for x, _ in chosen]))  # zero padding, too
        assert torch.equal(rows.y, pad_clients([y for _, y in chosen]))
        assert all(
            torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            for a, b in zip(rows, chosen, strict=True)
        )
    assert not torch.equal(data.held_out_rows(1).x, data.held_out_rows(3).x)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "wine", "iris", "diabetes"])
def test_bundled_data_sets_load_scaled_and_split_once(name):
    config = resolve_config(preset="stage2", dataset=name, num_clients=3)
    data = make_federated_data(config)
    rows = len(load_dataset(name)[1])
    assert sum(data.sizes) + len(data.test_y) == rows  # every row once, train or test
    assert all(x.shape[1] == config.input_dim for x in data.client_x)
    train = torch.cat(data.client_x)
    if name == "digits":  # pixel intensities to [0, 1]
        assert config.feature_scaling == "minmax"
        assert float(train.min()) == 0.0 and float(train.max()) == 1.0
    else:
        assert config.feature_scaling == "standard"
        assert torch.allclose(train.mean(0), torch.zeros(config.input_dim), atol=1e-5)
    results = run_simulation(config.model_copy(update={"rounds": 2}))
    if name == "diabetes":
        assert data.task == "regression" and data.client_y[0].shape[1] == 1
        assert "test_accuracy" not in results[-1].metrics
        # the target is standardised with the training rows' statistics
        assert abs(float(torch.cat(data.client_y).mean())) < 1e-5
        assert math.isfinite(results[-1].metrics["test_loss"])
    else:
        assert data.task == "classification"
        assert int(data.test_y.max()) < config.output_dim
        assert 0.0 <= results[-1].metrics["test_accuracy"] <= 1.0


def test_stratified_split_keeps_class_proportions():
    labels = np.array([0] * 80 + [1] * 20)
    train, test = stratified_split(labels, 0.25, np.random.default_rng(0))
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 100
    assert (labels[test] == 0).sum() == 20 and (labels[test] == 1).sum() == 5


def test_dirichlet_partition_covers_every_sample_once_and_skews_labels():
    labels = np.repeat(np.arange(10), 100)
    parts = dirichlet_partition(labels, 10, 0.1, np.random.default_rng(0))
    merged = np.concatenate(parts)
    assert sorted(merged.tolist()) == list(range(1000))
    dominant = [np.bincount(labels[p], minlength=10).max() / max(len(p), 1) for p in parts]
    assert np.mean(dominant) > 0.5  # small alpha: clients dominated by few labels


def test_fill_to_size_samples_with_replacement_only_when_short():
    rng = np.random.default_rng(0)
    long_part = np.arange(100)
    picked = fill_to_size(long_part, 30, 100, rng)
    assert len(set(picked.tolist())) == 30
    short = fill_to_size(np.array([3, 4]), 5, 100, rng)
    assert len(short) == 5 and set(short.tolist()) <= {3, 4}
    assert len(fill_to_size(np.array([], dtype=np.int64), 4, 10, rng)) == 4


def test_split_to_size_keeps_the_held_out_rows_apart_from_the_training_rows():
    rng = np.random.default_rng(0)
    # five rows for 16 to train on and 4 held out: round(5 · 0.2) = 1 row held out, copied
    train, test = split_to_size(np.array([3, 4, 5, 6, 7]), 20, 4, 0.2, 100, rng)
    assert len(train) == 16 and len(test) == 4
    assert len(set(test.tolist())) == 1 and len(set(train.tolist())) == 4
    assert set(train.tolist()) | set(test.tolist()) == {3, 4, 5, 6, 7}
    # two rows: one each side, however small the fraction
    train, test = split_to_size(np.array([8, 9]), 10, 1, 0.05, 100, rng)
    assert {*train.tolist()} | {*test.tolist()} == {8, 9} and len(test) == 1 and len(train) == 9
    # one row trains; the held-out rows are other rows of the training set, distinct
    train, test = split_to_size(np.array([9]), 10, 3, 0.3, 12, rng)
    assert train.tolist() == [9] * 7 and len(set(test.tolist())) == 3 and 9 not in test
    # no row: both sides from the training set, apart
    train, test = split_to_size(np.array([], dtype=np.int64), 10, 3, 0.3, 12, rng)
    assert len(train) == 7 and len(set(test.tolist())) == 3
    assert not set(train.tolist()) & set(test.tolist()) and max(train.max(), test.max()) < 12


def _rows(x):
    return [tuple(r) for r in x.numpy().tolist()]


@pytest.mark.parametrize(("num_clients", "alpha"), [(20, 0.1), (20, 0.5), (100, 0.1)])
def test_resampled_clients_hold_out_no_copy_of_their_training_rows(num_clients, alpha):
    """resample_to_size fills a short share by drawing its rows again; from engine_version 6 a
    client's held-out rows are set aside first, so none is a copy of one of its training rows.
    Digits has no two equal images, so equal feature rows are copies of one row."""
    features, _ = load_dataset("digits")
    assert len(np.unique(features, axis=0)) == len(features)
    config = resolve_config(
        preset="stage2",
        dataset="digits",
        resample_to_size=True,
        partition="dirichlet",
        dirichlet_alpha=alpha,
        num_clients=num_clients,
        samples_per_client=50,
        client_test_fraction=0.2,
    )
    assert config.engine_version >= 6
    data = make_federated_data(config)
    assert list(data.sizes) == client_sizes(config) == [40] * num_clients
    # each client's share of the split, as resampling starts from it
    rng = np.random.default_rng([config.seed, DATA_STREAM])
    split = load_split(config, rng)
    parts = dirichlet_partition(split.y_train, num_clients, alpha, rng)
    for i, part in enumerate(parts):
        train, held = _rows(data.client_x[i]), _rows(data.client_test_x[i])
        assert len(held) == 10 and not set(held) & set(train)
        own = set(_rows(torch.from_numpy(split.x_train[part].astype(np.float32))))
        if 2 <= len(part) < 50:  # a short share: its own rows, round(m·f) of them held out
            assert set(train) | set(held) == own
            assert len(set(held)) == max(1, min(len(part) - 1, round(len(part) * 0.2)))
        elif len(part) == 1:  # one row: it trains, the held-out rows are others
            assert set(train) == own and len(set(held)) == 10
        elif len(part) >= 50:  # enough rows: 50 distinct ones, as before
            assert len(set(train) | set(held)) == 50 and set(train) | set(held) <= own
    # engine_version 5 kept its copies
    earlier = make_federated_data(config.model_copy(update={"engine_version": 5}))
    copies = sum(
        len(set(_rows(t)) & set(_rows(x)))
        for x, t in zip(earlier.client_x, earlier.client_test_x, strict=True)
    )
    assert copies > 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"preset": "stage8"},
        {
            "preset": "stage2",
            "dataset": "digits",
            "partition": "dirichlet",
            "num_clients": 7,
            "resample_to_size": True,
        },
        {"preset": "stage2", "dataset": "wine", "samples_per_client": 12, "resample_to_size": True},
    ],
)
def test_no_quantity_skew_gives_every_client_samples_per_client(overrides):
    config = resolve_config(**overrides)
    assert config.quantity_skew == 0.0
    data = make_federated_data(config)
    expected = [config.samples_per_client] * config.num_clients
    assert client_sizes(config) == expected and list(data.sizes) == expected
    assert [len(y) for y in data.client_y] == expected


def test_quantity_skew_sizes_differ_are_deterministic_and_clipped():
    config = resolve_config(preset="stage2", num_clients=200, quantity_skew=1.5)
    sizes = client_sizes(config)
    assert len(sizes) == 200 and len(set(sizes)) > 30
    assert sizes == client_sizes(config)  # a pure function of the config
    assert sizes != client_sizes(config.model_copy(update={"seed": 1}))
    low, high = MIN_CLIENT_SAMPLES, MAX_CLIENT_SIZE_FACTOR * config.samples_per_client
    assert min(sizes) == low and max(sizes) == high  # heavy skew reaches both clip bounds
    assert all(isinstance(n, int) and low <= n <= high for n in sizes)
    mild = client_sizes(config.model_copy(update={"quantity_skew": 0.3}))
    assert abs(np.mean(mild) - config.samples_per_client) < 2  # the mean is kept
    assert min(mild) > low and max(mild) < high


@pytest.mark.parametrize(
    "overrides",
    [
        {"preset": "stage8", "drift": 0.5},
        {
            "preset": "stage2",
            "dataset": "digits",
            "partition": "dirichlet",
            "resample_to_size": True,
        },
        {"preset": "stage2", "dataset": "iris", "partition": "iid", "resample_to_size": True},
    ],
)
def test_quantity_skew_shapes_the_client_data(overrides):
    config = resolve_config(**overrides, num_clients=8, quantity_skew=1.0)
    data = make_federated_data(config)
    sizes = client_sizes(config)
    assert list(data.sizes) == sizes and len(set(sizes)) > 1
    assert [len(y) for y in data.client_y] == sizes
    assert all(x.shape[1] == config.input_dim for x in data.client_x)
    x1, _ = data.client_data(3, 1)
    assert len(data.client_data(3, 4)[0]) == len(x1) == sizes[3]
    # the held-out set keeps its size: it does not depend on the client sizes
    unskewed = make_federated_data(config.model_copy(update={"quantity_skew": 0.0}))
    assert len(data.test_x) == len(unskewed.test_x)


@pytest.mark.parametrize("value", [-0.1, 3.5])
def test_quantity_skew_out_of_range_is_refused(value):
    with pytest.raises(ValidationError, match="quantity_skew"):
        resolve_config(quantity_skew=value)


def test_fedavg_weights_clients_by_their_data_size():
    config = resolve_config(preset="stage2", quantity_skew=1.0, rounds=1, execution="reference")
    sim = Simulation(config)
    sim.run_round()
    weights = [c.get_model_weights() for c in sim.clients]
    sizes = [c.num_samples for c in sim.clients]
    assert sizes == client_sizes(config)
    expected = sum(w["weight"] * n for w, n in zip(weights, sizes, strict=True)) / sum(sizes)
    assert torch.allclose(sim.server.global_weights()["weight"], expected, atol=1e-6)


def test_fedavg_on_digits_reaches_88_percent():
    # ~1437 training images / 10 clients ≈ 144 samples each uses the training set about once.
    config = resolve_config(
        preset="stage2",
        dataset="digits",
        num_clients=10,
        partition="dirichlet",
        dirichlet_alpha=0.5,
        rounds=20,
        local_epochs=1,
        batch_size=16,
        learning_rate=0.1,
        samples_per_client=144,
    )
    accuracy = run_simulation(config)[-1].metrics["test_accuracy"]
    print(f"FedAvg digits test_accuracy after 20 rounds: {accuracy:.4f}")
    assert accuracy >= 0.88
