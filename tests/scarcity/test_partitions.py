"""Partitions of a real data set: disjoint shares at natural sizes, Flower Datasets' rules.

Each rule is checked on digits at N = 10 and N = 100 (disjoint, the documented union, its own
property, a pure function of the seed), on small literal label arrays against a count made by
hand, and for the 422 it gives when a split cannot be made.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from scarcity import resolve_config, run_simulation
from scarcity.core.data import make_federated_data, natural_split
from scarcity.partitions import PARTITIONERS
from scarcity.partitions.base import PartitionError
from scarcity.partitions.dirichlet import draw
from scarcity.partitions.pathological import assign_classes
from scarcity.partitions.size_skew import sizes_from_units
from scarcity.plan import ConfigError, plan

# What each rule needs to split digits' 1,438 training rows among 100 clients.
SETTINGS = {
    "inner_dirichlet": {"samples_per_client": 10},
    "pathological": {"num_classes_per_partition": 2},
}


def _split(partition, num_clients, seed=0, **extra):
    config = resolve_config(
        preset="stage2",
        dataset="digits",
        partition=partition,
        num_clients=num_clients,
        seed=seed,
        **SETTINGS.get(partition, {}),
        **extra,
    )
    return config, natural_split(config)


@pytest.mark.parametrize("num_clients", [10, 100])
@pytest.mark.parametrize(
    "partition", sorted(name for name, p in PARTITIONERS.items() if not p.by_client_id)
)
def test_every_partition_is_disjoint_covers_what_it_says_and_is_seeded(partition, num_clients):
    config, split = _split(partition, num_clients)
    parts = split.parts
    train_rows = len(split.data.y_train)
    assert len(parts) == num_clients
    everything = np.concatenate(parts)
    assert len(everything) == len(set(everything.tolist()))  # no row twice, to one or two
    assert everything.min() >= 0 and everything.max() < train_rows
    if partition == "shard":  # shards left over and rows that fill no shard are left out
        shards = num_clients * config.num_shards_per_partition
        assert train_rows - shards < len(everything) <= train_rows
        assert len({len(p) for p in parts}) == 1
    elif partition == "inner_dirichlet":  # the requested sizes
        assert [len(p) for p in parts] == [config.samples_per_client] * num_clients
    elif partition == "pathological" and num_clients >= 10:
        pass  # random classes: checked below
    else:
        assert len(everything) == train_rows
    labels = split.data.y_train
    if partition == "pathological":
        assert all(len(np.unique(labels[p])) == 2 for p in parts)
    if partition == "dirichlet":
        assert min(len(p) for p in parts) >= config.min_partition_size
    if partition in ("linear", "square", "exponential"):
        sizes = [len(p) for p in parts]
        assert sizes == sorted(sizes) and sizes[0] >= config.min_partition_size
    # the same seed, the same split (a fresh computation, not the cache); another seed, another
    again = PARTITIONERS[partition].split(
        labels, config, _fresh_rng_after_split(config, len(labels))
    )
    assert [np.sort(p).tolist() for p in again] == [p.tolist() for p in parts]
    _, other = _split(partition, num_clients, seed=1)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other.parts, strict=True))
    # the clients' data is exactly their rows
    data = make_federated_data(config)
    assert list(data.sizes) == [len(p) for p in parts]
    for p, y in zip(parts, data.client_y, strict=True):
        assert (
            np.bincount(y.numpy(), minlength=10).tolist()
            == np.bincount(labels[p], minlength=10).tolist()
        )


def _fresh_rng_after_split(config, n_labels):
    """The data generator as the partition found it: after the stratified train/test split."""
    from scarcity.core.data import load_split
    from scarcity.partitions.sizes import DATA_STREAM

    rng = np.random.default_rng([config.seed, DATA_STREAM])
    assert len(load_split(config, rng).y_train) == n_labels
    return rng


def test_pathological_random_classes_cover_the_data_when_every_class_is_given():
    config, split = _split("pathological", 100)
    held = np.unique(np.concatenate([split.data.y_train[p] for p in split.parts]))
    covered = sum(len(p) for p in split.parts)
    assert len(held) == 10 and covered == len(split.data.y_train)


def test_dirichlet_on_literal_labels_cuts_each_class_at_the_drawn_proportions():
    labels = np.array([0] * 6 + [1] * 4)
    rng = np.random.default_rng(3)
    parts = draw(labels, 3, 0.7, False, rng)
    check = np.random.default_rng(3)
    expected: list[list[int]] = [[], [], []]
    for rows in (np.arange(6), np.arange(6, 10)):
        p = check.dirichlet([0.7, 0.7, 0.7])
        cuts = [int(np.cumsum(p)[0] * len(rows)), int(np.cumsum(p)[1] * len(rows))]
        for client, chunk in enumerate((rows[: cuts[0]], rows[cuts[0] : cuts[1]], rows[cuts[1] :])):
            expected[client] += chunk.tolist()
    assert parts == expected


def test_dirichlet_self_balancing_stops_feeding_a_client_above_the_average():
    labels = np.repeat(np.arange(5), 20)  # 100 rows, average 25 over 4 clients
    parts = draw(labels, 4, 0.05, True, np.random.default_rng(0))
    sizes = [len(p) for p in parts]
    plain = [len(p) for p in draw(labels, 4, 0.05, False, np.random.default_rng(0))]
    # a client over 25 rows takes at most the rest of the class that pushed it over
    assert max(sizes) <= 25 + 20 and max(sizes) < max(plain)


def test_dirichlet_min_partition_size_is_met_or_refused_by_name():
    config, split = _split("dirichlet", 20, min_partition_size=30, dirichlet_alpha=5.0)
    assert min(len(p) for p in split.parts) >= 30
    with pytest.raises(ConfigError, match="min_partition_size"):
        _split("dirichlet", 100, min_partition_size=14, dirichlet_alpha=0.1)


def test_pathological_class_assignment_modes():
    rng = np.random.default_rng(0)
    assert assign_classes(4, 5, 2, "deterministic", rng) == [[0, 1], [1, 2], [2, 3], [3, 4]]
    first = assign_classes(7, 5, 3, "first-deterministic", rng)
    assert [c[0] for c in first] == [0, 1, 2, 3, 4, 0, 1]
    assert all(len(set(c)) == 3 for c in first)
    assert all(len(set(c)) == 2 for c in assign_classes(50, 5, 2, "random", rng))


def test_pathological_splits_each_class_evenly_among_its_holders():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    config = resolve_config(
        preset="stage2",
        dataset="iris",
        partition="pathological",
        num_clients=3,
        class_assignment_mode="deterministic",
    )
    parts = PARTITIONERS["pathological"].split(labels, config, np.random.default_rng(0))
    # clients hold classes {0, 1}, {1, 2}, {2, 0}: class 0's rows 0-1 | 2-3, class 1's 4-5 | 6 …
    assert [sorted(p.tolist()) for p in parts] == [
        [0, 1, 4, 5],
        [6, 7, 8, 9],
        [2, 3, 10, 11],
    ]


def _flower_shard_partitioner(labels, num_partitions, num_shards_per_partition, seed=42):
    """Flower Datasets 0.6.1's `ShardPartitioner` with `num_shards_per_partition`, no
    `shard_size`, `keep_incomplete_shard=False`, `shuffle=True`, re-stated on a list of labels:
    each partition's rows, as indices into `labels`, in the order it returns them.

    It sorts the data set by label (a stable Arrow sort), computes the shard size as
    int(rows / (partitions · shards per partition)) and the usable shards as
    floor(rows / shard size), takes the first partitions · shards of a permutation of the
    usable shards from `np.random.default_rng(seed)`, hands them out in runs of
    `num_shards_per_partition`, and shuffles each partition's list in place, in partition order.
    """
    rng = np.random.default_rng(seed)
    by_label = sorted(range(len(labels)), key=lambda row: labels[row])  # Python's sort is stable
    used = num_partitions * num_shards_per_partition
    size = int(len(labels) / used)
    usable = math.floor(len(labels) / size)
    chosen = rng.permutation(usable)[:used].tolist()
    partitions = []
    for pid in range(num_partitions):
        mine = chosen[pid * num_shards_per_partition : (pid + 1) * num_shards_per_partition]
        positions = []
        for shard in mine:
            positions.extend(range(shard * size, min((shard + 1) * size, len(labels))))
        partitions.append(positions)
    for positions in partitions:
        rng.shuffle(positions)
    return [[by_label[position] for position in positions] for positions in partitions]


def _digits_training_labels():
    return natural_split(resolve_config(preset="stage2", dataset="digits")).data.y_train


@pytest.mark.parametrize(
    ("labels", "num_clients", "per_client", "left_over"),
    [
        # Flower's own test data (labels i mod 3, 113 rows), 3 × 3 shards: sizes [36, 36, 36]
        ([i % 3 for i in range(113)], 3, 3, 0),
        # the same data, 5 × 3 shards of 7 rows: 16 whole shards, one of them left over
        ([i % 3 for i in range(113)], 5, 3, 1),
        # digits' 1,438 training rows, 30 × 3 shards of 15: 95 whole shards, 5 left over
        ("digits", 30, 3, 5),
    ],
)
def test_shard_equals_flower_datasets_shard_partitioner(labels, num_clients, per_client, left_over):
    labels = _digits_training_labels().tolist() if labels == "digits" else labels
    config = resolve_config(
        preset="stage2",
        dataset="iris",
        partition="shard",
        num_clients=num_clients,
        num_shards_per_partition=per_client,
    )
    ours = PARTITIONERS["shard"].split(np.array(labels), config, np.random.default_rng(42))
    flower = _flower_shard_partitioner(labels, num_clients, per_client, seed=42)
    assert [p.tolist() for p in ours] == flower  # the same rows, in the same order
    size = len(labels) // (num_clients * per_client)
    assert [len(p) for p in flower] == [per_client * size] * num_clients
    assert len(labels) // size - num_clients * per_client == left_over


def test_shard_leaves_random_shards_out_of_digits_not_the_highest_labels():
    """30 clients × 3 shards of 15 rows leave 1,438 − 1,350 = 88 rows out: from
    engine_version 6 five random shards and the last 13 rows of the sorted order, before it
    the last 88 rows, which were all 9s (88 of its 144)."""

    def left_out(engine_version):
        config = resolve_config(
            preset="stage2",
            dataset="digits",
            partition="shard",
            num_clients=30,
            num_shards_per_partition=3,
            engine_version=engine_version,
        )
        split = natural_split(config)
        labels = split.data.y_train
        out = np.setdiff1d(np.arange(len(labels)), np.concatenate(split.parts))
        return labels, out

    labels, before = left_out(5)
    assert len(labels) == 1438 and (labels == 9).sum() == 144
    assert len(before) == 88 and set(labels[before].tolist()) == {9}
    labels, now = left_out(6)
    assert len(now) == 88 and len(set(labels[now].tolist())) > 1
    tail = np.argsort(labels, kind="stable")[-13:]  # 1,438 mod 15: no whole shard
    assert set(tail.tolist()) <= set(now.tolist())


def test_shard_of_engine_version_5_deals_the_first_shards_only():
    """Stored runs keep their rule: a permutation of the N·s first shards, the tail left out."""
    labels = np.array([2, 0, 1, 0, 2, 1, 0, 1, 2, 9])  # 10 rows, 2 clients × 2 shards of 2
    config = resolve_config(
        preset="stage2", dataset="iris", partition="shard", num_clients=2, engine_version=5
    )
    parts = PARTITIONERS["shard"].split(labels, config, np.random.default_rng(1))
    shards = [[1, 3], [6, 2], [5, 7], [0, 4]]  # the stable label order, cut in twos
    picked = np.random.default_rng(1).permutation(4).reshape(2, 2)
    expected = [sorted(shards[a] + shards[b]) for a, b in picked]
    assert [sorted(p.tolist()) for p in parts] == expected  # rows 8 and 9 fill no shard
    # from engine_version 6 the fifth shard, rows 8 and 9, is one of five drawn
    newer = PARTITIONERS["shard"].split(
        labels, config.model_copy(update={"engine_version": 6}), np.random.default_rng(1)
    )
    chosen = np.random.default_rng(1).permutation(5)[:4].reshape(2, 2)
    shards.append([8, 9])
    assert [sorted(p.tolist()) for p in newer] == [sorted(shards[a] + shards[b]) for a, b in chosen]


def test_size_skewed_sizes_follow_flowers_rule():
    assert sizes_from_units(np.array([1.0, 2, 3, 4]), 100, 0).tolist() == [10, 20, 30, 40]
    # square: ⌊100·i²/30⌋ = 3, 13, 30, 53, the rounding remainder to the last client
    assert sizes_from_units(np.array([1.0, 4, 9, 16]), 100, 0).tolist() == [3, 13, 30, 54]
    # a floor of 5 each first, then the 80 rows left ∝ i
    assert sizes_from_units(np.array([1.0, 2, 3, 4]), 100, 5).tolist() == [13, 21, 29, 37]
    with pytest.raises(PartitionError, match="num_clients"):
        sizes_from_units(np.exp(np.arange(1.0, 11)), 100, 0)  # e¹/Σeⁱ · 100 < 1 row


# What the config alone shows wrong is a validation error; what needs the data (the split
# tried) is the run plan's ConfigError. Both name the field.
@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        ({"dataset": "iris", "num_clients": 500}, "num_clients", ConfigError),
        (
            {"dataset": "iris", "partition": "pathological", "num_classes_per_partition": 4},
            "num_classes_per_partition",
            ConfigError,
        ),
        (
            {
                "dataset": "wine",
                "partition": "shard",
                "num_clients": 50,
                "num_shards_per_partition": 3,
            },
            "num_shards_per_partition",
            ConfigError,
        ),
        (
            {"dataset": "digits", "partition": "inner_dirichlet", "num_clients": 40},
            "samples_per_client",
            ConfigError,
        ),
        ({"partition": "dirichlet"}, "partition", ValidationError),  # synthetic data is not split
        ({"dataset": "diabetes", "partition": "dirichlet"}, "partition", ValidationError),
        ({"dataset": "digits", "quantity_skew": 1.0}, "quantity_skew", ValidationError),
        (
            {"dataset": "digits", "partition": "shard", "resample_to_size": True},
            "resample_to_size",
            ValidationError,
        ),
        ({"dataset": "digits", "partition": "voronoi"}, "partition", ValidationError),
        ({"feature_scaling": "minmax"}, "feature_scaling", ValidationError),
    ],
)
def test_a_split_that_cannot_be_made_is_refused_naming_the_field(overrides, field, error):
    with pytest.raises(error) as caught:
        plan(resolve_config(preset="stage2", **overrides))
    message = str(caught.value)
    assert f"{field}:" in message, message
    if error is ConfigError:
        assert caught.value.field == field


def test_feature_noise_grows_with_the_client_index_and_leaves_the_test_set():
    base = resolve_config(preset="stage2", dataset="wine", num_clients=5)
    noisy_config = base.model_copy(update={"feature_noise": 0.8})
    clean, noisy = make_federated_data(base), make_federated_data(noisy_config)
    spread = [float((n - c).std()) for c, n in zip(clean.client_x, noisy.client_x, strict=True)]
    assert spread[0] == 0.0  # client 0: std 0
    assert all(abs(s - 0.8 * i / 4) < 0.08 for i, s in enumerate(spread))  # std σ·i/(N − 1)
    assert bool((noisy.test_x == clean.test_x).all())
    again = make_federated_data(noisy_config)
    assert all(bool((a == b).all()) for a, b in zip(again.client_x, noisy.client_x, strict=True))


def test_fedavg_on_digits_dirichlet_matches_the_reference_figure_and_alpha_matters():
    """FedAvg, Linear, N = 10, 20 rounds, E = 1, batch 16, lr 0.1, natural sizes: a reference
    implementation reaches 0.911 test accuracy at α = 0.5, seed 0; the mean over seeds 0–2
    must be within 3 pp, and strong label skew (α = 0.1) must cost clearly against α = 1."""

    def accuracy(alpha, seed):
        config = resolve_config(
            preset="baseline",
            dataset="digits",
            partition="dirichlet",
            dirichlet_alpha=alpha,
            num_clients=10,
            rounds=20,
            local_epochs=1,
            batch_size=16,
            learning_rate=0.1,
            seed=seed,
        )
        return run_simulation(config)[-1].metrics["test_accuracy"]

    mean = {a: float(np.mean([accuracy(a, s) for s in (0, 1, 2)])) for a in (0.1, 0.5, 1.0)}
    print(f"FedAvg digits test accuracy, mean of seeds 0-2: {mean}")
    assert abs(mean[0.5] - 0.911) <= 0.03
    assert mean[1.0] - mean[0.1] >= 0.03


def test_natural_split_gives_each_id_its_rows_in_data_set_order():
    ids = np.array([2, 0, 1, 0, 2, 2, 1])
    config = SimpleNamespace(num_clients=3, dataset="literal")
    parts = PARTITIONERS["natural"].split(ids, config, np.random.default_rng(0))
    assert [p.tolist() for p in parts] == [[1, 3], [2, 6], [0, 4, 5]]


def test_natural_split_samples_ids_when_fewer_clients_and_refuses_more():
    ids = np.repeat(np.arange(10), 3)
    config = SimpleNamespace(num_clients=4, dataset="literal")
    parts = PARTITIONERS["natural"].split(ids, config, np.random.default_rng(5))
    chosen = np.sort(np.random.default_rng(5).choice(np.arange(10), size=4, replace=False))
    assert [p.tolist() for p in parts] == [list(range(3 * c, 3 * c + 3)) for c in chosen]
    with pytest.raises(PartitionError, match="num_clients"):
        PARTITIONERS["natural"].split(
            ids, SimpleNamespace(num_clients=11, dataset="literal"), np.random.default_rng(0)
        )


def test_natural_partition_needs_a_data_set_with_natural_clients():
    with pytest.raises(ValidationError, match="partition"):
        resolve_config(preset="baseline", dataset="digits", partition="natural")
