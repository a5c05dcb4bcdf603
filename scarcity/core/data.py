"""Client data: the seed's synthetic non-IID generator and scikit-learn's bundled data sets.

Synthetic (regression): a hidden low-rank structure shared by all clients,
x = shift_c + scale_c · (z·M + 0.3·ε)/√1.09 with z ~ N(0, I_rank), per-client shift ~ N(0, 1)
per feature and scale ~ U(0.5, 2) (non-IID), target y = x·W* + 0.1·ε from one hidden linear
map W*. Each client holds its requested size (`scarcity.partitions.sizes`). The held-out test
set draws ⌈n·f/(1−f)⌉ samples from every client's distribution (n = `samples_per_client`).

Real data sets (`digits`, `breast_cancer`, `wine`, `iris` labelled, `diabetes` regression,
bundled with scikit-learn, no download): a train/test split (`test_fraction`, stratified by
class when labelled), features scaled with train statistics (`feature_scaling`: standardised,
or min-max to [0, 1] for digits' pixels; a constant feature is left at 0) and a regression
target standardised, then the training rows split among the clients by `partition`
(`scarcity.partitions`): disjoint shares at natural sizes, each row held once by one client.

`resample_to_size` keeps the data of simulations stored before natural sizes: an `iid` split
(shuffle, near-equal parts) or a `dirichlet` one (each class permuted, then cut with Dir(α)
proportions), then every client resized to exactly its requested size, drawn without
replacement from its part when the part is large enough, otherwise the whole part plus draws
with replacement from it (an empty part draws from the whole training set).

Personalised evaluation (`client_test_fraction` f > 0): each client's rows are split once into
its training rows and round(n·f) held-out rows of its own (at least one row left to train on),
drawn from their own stream (seed, "data", "client test"). A held-out row must be unseen in
training (LEAF splits each user's samples into disjoint train and test sets), which a part
filled with replacement does not give when the split comes after the filling: with
engine_version 5, 28 % of the held-out rows were copies of a training row of the same client
(digits, Dirichlet 0.1, 20 clients of 50 rows, f = 0.2, seeds 0–4). From engine_version 6 a
short part is split first, in the data stream (`split_to_size`): round(m·f) of its m rows held
out (at least one, and one left to train on), then each side filled to its size from its own
rows, so held-out rows may repeat one another but never a training row; a part of one row
trains on it, an empty one on the rest of the training set, and both hold out other rows of
the training set. Parts large enough to be drawn without replacement are split as before.
Natural clients of a data set whose test rows carry client ids (a hospital's own test set) hold
those test rows as their own held-out rows when f = 0, and a natural split that drew fewer
clients than the data set has is scored on the drawn clients' test rows only (LEAF's protocol).

Feature skew (`feature_noise` σ, NIID-Bench's noise): client i's training features get Gaussian
noise of std σ·i/(N − 1), drawn once from their own stream (seed, "data", "noise").

Drift: in round r every client's features (and the test set's) are shifted by drift·(r − 1);
synthetic targets follow the same hidden map, labels are unchanged (covariate shift).
All other randomness comes from a numpy Generator seeded from (seed, "data").
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scarcity.attacks import malicious_clients
from scarcity.batched.padding import PaddedRows, real_rows
from scarcity.config import SimulationConfig, is_regression
from scarcity.core.training import Task
from scarcity.datasets import load_arrays
from scarcity.partitions import PARTITIONERS, PartitionError
from scarcity.partitions.sizes import DATA_STREAM, requested_sizes
from scarcity.scenarios import ClientRows

NOISE_STREAM = 0x9015  # third seed word: feature noise, apart from the data draws
CLIENT_TEST_STREAM = 0x7E57  # third seed word: each client's held-out rows
#: The first engine_version whose resampled clients hold out no copy of a training row.
DISTINCT_HELD_OUT = 6
SYNTHETIC_RANK = 4
SYNTHETIC_NOISE = 0.3


@dataclass(frozen=True)
class FederatedData:
    """Every client's base (round-1) data, the held-out test set, and the drift rule."""

    task: Task
    client_x: tuple[Tensor, ...]
    client_y: tuple[Tensor, ...]
    test_x: Tensor
    test_y: Tensor
    drift: float = 0.0
    #: How a unit feature shift moves a synthetic target (ones · W*); None = it does not
    #: (labels, and a real data set's targets: covariate shift).
    target_shift: Tensor | None = None
    #: Each client's own held-out rows (`client_test_fraction`); empty tuples = none.
    client_test_x: tuple[Tensor, ...] = ()
    client_test_y: tuple[Tensor, ...] = ()
    #: Synthetic data: the test set is one block of this many rows per client, block i drawn
    #: from client i's own distribution; 0 = one test set for all (a real data set).
    test_rows_per_client: int = 0

    def _shift(self, x: Tensor, y: Tensor, round_index: int) -> tuple[Tensor, Tensor]:
        offset = self.drift * (round_index - 1)
        if offset == 0:
            return x, y
        if self.target_shift is not None:
            y = y + offset * self.target_shift
        return x + offset, y

    def client_data(self, client_id: int, round_index: int = 1) -> tuple[Tensor, Tensor]:
        """Client `client_id`'s training data in round `round_index` (rounds start at 1)."""
        return self._shift(self.client_x[client_id], self.client_y[client_id], round_index)

    def test_set(self, round_index: int = 1) -> tuple[Tensor, Tensor]:
        return self._shift(self.test_x, self.test_y, round_index)

    def test_blocks(self, round_index: int = 1) -> list[tuple[Tensor, Tensor]]:
        """Synthetic data: each client's block of the test set in round `round_index`."""
        x, y = self.test_set(round_index)
        n = self.test_rows_per_client
        return [(x[i * n : (i + 1) * n], y[i * n : (i + 1) * n]) for i in range(len(x) // n)]

    def client_test_sets(self, round_index: int = 1) -> list[tuple[Tensor, Tensor]]:
        """Every client's own held-out rows in round `round_index` (empty without a split)."""
        return [
            self._shift(x, y, round_index)
            for x, y in zip(self.client_test_x, self.client_test_y, strict=True)
        ]

    def held_out_rows(self, round_index: int = 1) -> PaddedRows:
        """Every client's held-out rows in round `round_index`, padded: its own
        (`client_test_sets`), else synthetic data's test block (`test_blocks`). The padding is
        done once; a round only shifts the rows (drift)."""
        rows = self._held_out_rows
        if self.drift * (round_index - 1) == 0:
            return rows
        x, y = self._shift(rows.x, rows.y, round_index)
        width = rows.x.shape[1]
        if bool((rows.sizes != width).any()):  # the padding stays zero
            pad = ~real_rows(rows.sizes, width)
            x = x.masked_fill(pad.view(*pad.shape, *[1] * (x.dim() - 2)), 0)
            y = y.masked_fill(pad.view(*pad.shape, *[1] * (y.dim() - 2)), 0)
        return PaddedRows(x, y, rows.sizes)

    @functools.cached_property
    def _held_out_rows(self) -> PaddedRows:
        if self.client_test_y:
            return PaddedRows.of(list(zip(self.client_test_x, self.client_test_y, strict=True)))
        n = self.test_rows_per_client
        blocks = len(self.test_x) // n
        x = self.test_x[: blocks * n].reshape(blocks, n, *self.test_x.shape[1:])
        y = self.test_y[: blocks * n].reshape(blocks, n, *self.test_y.shape[1:])
        return PaddedRows(x, y, torch.full((blocks,), n, dtype=torch.long))

    @functools.cached_property
    def _pooled_client_tests(self) -> tuple[Tensor, Tensor, Tensor]:
        return pool_client_rows(self.client_test_x, self.client_test_y)

    def pooled_client_tests(self, round_index: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """Every client's held-out rows in one batch, and the client each row belongs to."""
        x, y, owner = self._pooled_client_tests
        return (*self._shift(x, y, round_index), owner)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Training samples of each client."""
        return tuple(x.shape[0] for x in self.client_x)  # not len(): a Python-level call


def pool_client_rows(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-client rows (client i's xs[i], ys[i]) in one batch, and the client of each row."""
    owner = torch.cat([torch.full((len(y),), i, dtype=torch.long) for i, y in enumerate(ys)])
    return torch.cat(list(xs)), torch.cat(list(ys)), owner


def scenario_rows(data: FederatedData) -> ClientRows:
    """Each client's training rows and the held-out rows a scenario judges it on: its own
    (`client_test_fraction`, a natural client's test rows), else its block of synthetic data's
    test set, else the test set dealt out in turn (row i to client i mod N)."""
    n = len(data.client_x)
    if data.client_test_y:
        sets = data.client_test_sets()
    elif data.test_rows_per_client:
        sets = data.test_blocks()
    else:
        x, y = data.test_set()
        sets = [(x[c::n], y[c::n]) for c in range(n)]
    return ClientRows(
        data.client_x,
        data.client_y,
        tuple(x for x, _ in sets),
        tuple(y for _, y in sets),
    )


def with_rows(data: FederatedData, rows: ClientRows) -> FederatedData:
    """`data` with the clients' rows of a scenario's round: training rows and own held-out rows."""
    return dataclasses.replace(
        data,
        client_x=rows.train_x,
        client_y=rows.train_y,
        client_test_x=rows.eval_x,
        client_test_y=rows.eval_y,
    )


def client_sizes(config: SimulationConfig) -> list[int]:
    """How many training samples each client holds (its own held-out rows excluded)."""
    if config.dataset == "synthetic" or config.resample_to_size:
        sizes = requested_sizes(config)
    else:
        sizes = [len(part) for part in natural_split(config).parts]
    return [n - local_test_size(n, config.client_test_fraction) for n in sizes]


def local_test_size(rows: int, fraction: float) -> int:
    """A client's held-out rows: round(rows · fraction), keeping at least one to train on."""
    return min(rows - 1, round(rows * fraction)) if fraction > 0 else 0


def make_federated_data(config: SimulationConfig) -> FederatedData:
    """The data of one simulation, a pure function of `config`."""
    rng = np.random.default_rng([config.seed, DATA_STREAM])
    held_out: list[np.ndarray | None] = []
    if config.dataset == "synthetic":
        data = _synthetic(config, rng)
    elif config.resample_to_size:
        data, held_out = _resampled(config, rng)
    else:
        data = _natural(config)
    return with_client_test_split(with_feature_noise(data, config), config, held_out)


def with_client_test_split(
    data: FederatedData,
    config: SimulationConfig,
    held_out: list[np.ndarray | None] | None = None,
) -> FederatedData:
    """Each client's rows split into its training rows and its own held-out rows (a random
    `client_test_fraction` of them, from their own stream), for personalised evaluation.

    `held_out`: per client, the positions of the rows its resampling already set aside
    (`split_to_size`), or None where they are drawn here; empty: drawn for every client."""
    if config.client_test_fraction == 0:
        return data
    rng = np.random.default_rng([config.seed, DATA_STREAM, CLIENT_TEST_STREAM])
    train_x, train_y, test_x, test_y = [], [], [], []
    for i, (x, y) in enumerate(zip(data.client_x, data.client_y, strict=True)):
        given = held_out[i] if held_out else None
        if given is None:
            order = torch.from_numpy(rng.permutation(len(x)))
            held = order[: local_test_size(len(x), config.client_test_fraction)]
            kept = order[len(held) :].sort().values  # training rows keep their order
        else:
            held = torch.from_numpy(given)
            kept = torch.from_numpy(np.setdiff1d(np.arange(len(x)), given))
        train_x.append(x[kept])
        train_y.append(y[kept])
        test_x.append(x[held])
        test_y.append(y[held])
    return dataclasses.replace(
        data,
        client_x=tuple(train_x),
        client_y=tuple(train_y),
        client_test_x=tuple(test_x),
        client_test_y=tuple(test_y),
    )


def with_feature_noise(data: FederatedData, config: SimulationConfig) -> FederatedData:
    """Client i's features plus fixed N(0, (σ·i/(N−1))²) noise (NIID-Bench's feature skew)."""
    n = len(data.client_x)
    if config.feature_noise == 0 or n == 1:
        return data
    rng = np.random.default_rng([config.seed, DATA_STREAM, NOISE_STREAM])
    noisy = tuple(
        x + _f32(rng.normal(0.0, config.feature_noise * i / (n - 1), size=tuple(x.shape)))
        for i, x in enumerate(data.client_x)
    )
    return dataclasses.replace(data, client_x=noisy)


def _synthetic(config: SimulationConfig, rng: np.random.Generator) -> FederatedData:
    d, out = config.input_dim, config.output_dim
    rank = min(SYNTHETIC_RANK, d)
    mixing = rng.normal(size=(rank, d))
    mixing /= np.linalg.norm(mixing, axis=0, keepdims=True)
    hidden_map = rng.normal(size=(d, out))
    fraction = config.test_fraction
    n_test = math.ceil(config.samples_per_client * fraction / (1 - fraction))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    test_xs: list[np.ndarray] = []
    test_ys: list[np.ndarray] = []
    for size in requested_sizes(config):
        shift = rng.normal(size=d)
        scale = rng.uniform(0.5, 2.0)
        for n, x_out, y_out in ((size, xs, ys), (n_test, test_xs, test_ys)):
            z = rng.normal(size=(n, rank))
            noise = rng.normal(size=(n, d))
            x = shift + scale * (z @ mixing + SYNTHETIC_NOISE * noise) / math.sqrt(
                1 + SYNTHETIC_NOISE**2
            )
            x_out.append(x)
            y_out.append(x @ hidden_map + 0.1 * rng.normal(size=(n, out)))
    return FederatedData(
        task="regression",
        client_x=tuple(_f32(x) for x in xs),
        client_y=tuple(_f32(y) for y in ys),
        test_x=_f32(np.concatenate(test_xs)),
        test_y=_f32(np.concatenate(test_ys)),
        drift=config.drift,
        target_shift=_f32(hidden_map.sum(axis=0)),
        test_rows_per_client=n_test,
    )


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and targets (integer labels, or floats for regression) of a registered data
    set's training rows (`scarcity.datasets`)."""
    arrays = load_arrays(name)
    return arrays.x, arrays.y


def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with every class split in the proportion `test_fraction`."""
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_fraction)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def holdout_split(
    num_rows: int, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices of a regression data set: a random `test_fraction` held out."""
    order = rng.permutation(num_rows)
    n_test = min(num_rows - 1, max(1, round(num_rows * test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@dataclass(frozen=True)
class RealSplit:
    """A real data set's scaled train and test arrays (rows in data-set order), and each
    row's natural client where the data set has them."""

    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    client_ids: np.ndarray | None = None
    test_client_ids: np.ndarray | None = None


def load_split(config: SimulationConfig, rng: np.random.Generator) -> RealSplit:
    """The train/test split of `config.dataset` (its own when it has one, else a random
    `test_fraction`), features scaled and a regression target standardised with the training
    rows' statistics."""
    arrays = load_arrays(config.dataset)
    regression = is_regression(config.dataset)
    features, targets = arrays.x, arrays.y
    if arrays.test_x is not None and arrays.test_y is not None:
        x_train, y_train, x_test, y_test = features, targets, arrays.test_x, arrays.test_y
        ids, test_ids = arrays.client_ids, arrays.test_client_ids
    else:
        if regression:
            train, test = holdout_split(len(targets), config.test_fraction, rng)
        else:
            train, test = stratified_split(targets, config.test_fraction, rng)
        x_train, y_train, x_test, y_test = (
            features[train],
            targets[train],
            features[test],
            targets[test],
        )
        ids = None if arrays.client_ids is None else arrays.client_ids[train]
        test_ids = None if arrays.client_ids is None else arrays.client_ids[test]
    scale = _scaler(config.feature_scaling, x_train)
    if regression:
        target_scale = _scaler("standard", y_train.reshape(len(y_train), -1))
        y_train = target_scale(y_train.reshape(len(y_train), -1))
        y_test = target_scale(y_test.reshape(len(y_test), -1))
    return RealSplit(
        "regression" if regression else "classification",
        scale(x_train),
        y_train,
        scale(x_test),
        y_test,
        ids,
        test_ids,
    )


def _scaler(kind: str | None, train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Scaling with the training rows' statistics: standard (a constant feature to 0), minmax
    to [0, 1], or none. Applied to rows after selection, elementwise as before, so the values
    equal scaling the whole array and selecting afterwards."""
    if kind == "none":
        return lambda values: values
    if kind == "minmax":
        low = train.min(axis=0)
        span = train.max(axis=0) - low
        span[span == 0] = 1.0
        return lambda values: (values - low) / span
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return lambda values: (values - mean) / std


@dataclass(frozen=True)
class NaturalSplit:
    """A real data set's split and each client's training rows (indices into x_train)."""

    data: RealSplit
    parts: tuple[np.ndarray, ...]


_NATURAL_SPLITS: dict[tuple[object, ...], NaturalSplit] = {}


def natural_split(config: SimulationConfig) -> NaturalSplit:
    """The clients' disjoint shares of a real data set under `config.partition` (cached: the
    run plan (`scarcity.plan`) makes it once, the data reads it again).

    Raises `scarcity.partitions.PartitionError` naming the field when it cannot be made.
    """
    partitioner = PARTITIONERS[config.partition]
    key = (
        config.dataset,
        config.feature_scaling,
        config.test_fraction,
        config.seed,
        config.partition,
        config.num_clients,
        config.engine_version,  # a rule may deal differently from one version on (shard: 6)
        *(getattr(config, name) for name in partitioner.parameters),
    )
    cached = _NATURAL_SPLITS.get(key)
    if cached is None:
        rng = np.random.default_rng([config.seed, DATA_STREAM])
        data = load_split(config, rng)
        if partitioner.by_client_id:
            if data.client_ids is None:
                raise PartitionError(
                    "partition", f"{config.dataset} has no natural clients (no client id per row)"
                )
            keys = data.client_ids
        elif data.task == "classification":
            keys = data.y_train
        else:
            keys = np.zeros(len(data.y_train))
        parts = tuple(np.sort(p) for p in partitioner.split(keys, config, rng))
        if partitioner.by_client_id:
            data = drawn_clients_test(data, parts)
        cached = NaturalSplit(data, parts)
        if len(_NATURAL_SPLITS) >= 64:  # a handful of configs per process is the common case
            _NATURAL_SPLITS.clear()
        _NATURAL_SPLITS[key] = cached
    return cached


def drawn_clients_test(data: RealSplit, parts: tuple[np.ndarray, ...]) -> RealSplit:
    """A natural split that drew some of a data set's clients (LEAF samples its users) is
    scored on those clients' own test rows, as LEAF scores it, not on every client's: the
    test rows whose id is one the run holds, in data-set order."""
    if data.client_ids is None or data.test_client_ids is None:
        return data
    held = np.unique(np.concatenate([data.client_ids[p] for p in parts]))
    if len(held) == len(np.unique(data.client_ids)):
        return data  # every client drawn: the whole test set
    keep = np.flatnonzero(np.isin(data.test_client_ids, held))
    return dataclasses.replace(
        data,
        x_test=data.x_test[keep],
        y_test=data.y_test[keep],
        test_client_ids=data.test_client_ids[keep],
    )


def _natural(config: SimulationConfig) -> FederatedData:
    split = natural_split(config)
    return with_own_client_tests(_federated(config, split.data, split.parts), config, split)


def with_own_client_tests(
    data: FederatedData, config: SimulationConfig, split: NaturalSplit
) -> FederatedData:
    """Natural clients whose data set's test rows name their client (FLamby's hospitals):
    each client's own held-out rows are the test rows of its id, so the personal metrics are
    the global model's score on each client's own test set. Not with `client_test_fraction`
    (which holds out a share of the client's training rows instead) nor another partition."""
    ids, test_ids = split.data.client_ids, split.data.test_client_ids
    if (
        config.client_test_fraction > 0
        or ids is None
        or test_ids is None
        or not PARTITIONERS[config.partition].by_client_id
    ):
        return data
    owners = [ids[part[0]] for part in split.parts]  # one id per part, none empty
    held = [torch.from_numpy(np.flatnonzero(test_ids == owner)) for owner in owners]
    return dataclasses.replace(
        data,
        client_test_x=tuple(data.test_x[rows] for rows in held),
        client_test_y=tuple(data.test_y[rows] for rows in held),
    )


def _federated(
    config: SimulationConfig, data: RealSplit, chosen: tuple[np.ndarray, ...] | list[np.ndarray]
) -> FederatedData:
    def targets(y: np.ndarray) -> Tensor:
        if data.task == "regression":
            return _f32(y)
        return torch.from_numpy(np.ascontiguousarray(y))

    # One gather for all clients, then each client's rows as a view (not one copy each).
    rows = np.concatenate([np.asarray(c, dtype=np.intp) for c in chosen])
    sizes = [len(c) for c in chosen]
    return FederatedData(
        task=data.task,
        client_x=_f32(data.x_train[rows]).split(sizes),
        client_y=targets(data.y_train[rows]).split(sizes),
        test_x=_f32(data.x_test),
        test_y=targets(data.y_test),
        drift=config.drift,
    )


def iid_partition(n: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle and split `range(n)` into `num_clients` near-equal parts (resample_to_size)."""
    return list(np.array_split(rng.permutation(n), num_clients))


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split each class, permuted, across clients with proportions drawn from Dir(α·1)
    (resample_to_size; the natural `dirichlet` partition is Flower's rule)."""
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(proportions)[:-1] * len(idx)).astype(np.int64)
        for client, chunk in enumerate(np.split(idx, cuts)):
            parts[client].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def fill_to_size(part: np.ndarray, size: int, pool: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly `size` indices from `part` (with replacement only when it is short)."""
    if len(part) >= size:
        return np.sort(rng.choice(part, size=size, replace=False))
    source = part if len(part) else np.arange(pool)
    return np.concatenate([part, rng.choice(source, size=size - len(part), replace=True)])


def split_to_size(
    part: np.ndarray,
    size: int,
    held: int,
    fraction: float,
    pool: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A short part's `size − held` training rows and `held` held-out rows, no held-out row
    a copy of a training row (resample_to_size, engine_version ≥ 6).

    The part's m distinct rows are split first, as a client holding just them would split them:
    round(m·fraction) held out, at least one, at least one left to train on. Then each side is
    filled to its size from its own rows (`fill_to_size`: again with replacement when short).
    One row, or none, cannot be split: the held-out rows come from the rest of the training set
    (`pool` rows), and an empty part trains on what they leave.
    """
    rows = part if len(part) >= 2 else np.setdiff1d(np.arange(pool), part)
    count = min(held, max(1, local_test_size(len(rows), fraction)))
    test_rows = rng.choice(rows, size=count, replace=False)
    train_rows = part if len(part) == 1 else np.setdiff1d(rows, test_rows)
    return fill_to_size(train_rows, size - held, pool, rng), fill_to_size(
        test_rows, held, pool, rng
    )


def _resampled(
    config: SimulationConfig, rng: np.random.Generator
) -> tuple[FederatedData, list[np.ndarray | None]]:
    """The clients' rows resized to their requested sizes, and per client the positions of the
    held-out rows its resizing set aside (None: `with_client_test_split` draws them)."""
    data = load_split(config, rng)
    n_train = len(data.y_train)
    if config.partition == "dirichlet":
        # dirichlet's own field (declared by the partitioner, so not on the config's static type)
        alpha = float(getattr(config, "dirichlet_alpha"))  # noqa: B009
        parts = dirichlet_partition(data.y_train, config.num_clients, alpha, rng)
    else:
        parts = iid_partition(n_train, config.num_clients, rng)
    fraction = config.client_test_fraction
    distinct = config.engine_version >= DISTINCT_HELD_OUT and fraction > 0
    chosen: list[np.ndarray] = []
    held_out: list[np.ndarray | None] = []
    for part, size in zip(parts, requested_sizes(config), strict=True):
        held = local_test_size(size, fraction)
        if distinct and held and len(part) < size:  # filling would copy rows: split them first
            train, test = split_to_size(part, size, held, fraction, n_train, rng)
            chosen.append(np.concatenate([train, test]))
            held_out.append(np.arange(len(train), size))
        else:
            chosen.append(fill_to_size(part, size, n_train, rng))
            held_out.append(None)
    return _federated(config, data, chosen), held_out


def _f32(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


@dataclass(frozen=True)
class ClientDataSummary:
    """What one client holds: its training rows and their labels (or target moments)."""

    client_id: int
    train_samples: int
    #: The client's own held-out rows (`client_test_fraction`).
    test_samples: int
    #: Rows per class (classification), else None.
    label_counts: tuple[int, ...] | None
    #: Mean and standard deviation of each regression target, else None.
    target_mean: tuple[float, ...] | None
    target_std: tuple[float, ...] | None
    #: Whether it is one of the run's Byzantine attackers (`scarcity.attacks.malicious_clients`:
    #: fixed per run; false for every client of a run without `malicious_fraction`).
    malicious: bool = False

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {
            key: None if value is None else list(value)
            for key, value in (
                ("label_counts", self.label_counts),
                ("target_mean", self.target_mean),
                ("target_std", self.target_std),
            )
        }


def describe_clients(
    config: SimulationConfig, data: FederatedData | None = None
) -> list[ClientDataSummary]:
    """Every client's data in round 1, as the simulation of `config` holds it (`data`: that
    simulation's data when at hand, else made from the config), and whether it is one of the
    run's attackers (its labels as the partition gave them, before a `label_flip`)."""
    data = make_federated_data(config) if data is None else data
    held_out = [len(y) for y in data.client_test_y] or [0] * len(data.client_y)
    attackers = set(malicious_clients(config).tolist())
    summaries = []
    for client_id, (y, tests) in enumerate(zip(data.client_y, held_out, strict=True)):
        malicious = client_id in attackers
        if data.task == "classification":
            counts = torch.bincount(y, minlength=config.output_dim)
            summaries.append(
                ClientDataSummary(
                    client_id, len(y), tests, tuple(counts.tolist()), None, None, malicious
                )
            )
        else:
            std = y.double().std(dim=0, correction=0)
            summaries.append(
                ClientDataSummary(
                    client_id,
                    len(y),
                    tests,
                    None,
                    tuple(y.double().mean(dim=0).tolist()),
                    tuple(std.tolist()),
                    malicious,
                )
            )
    return summaries
