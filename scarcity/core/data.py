"""Client data: the seed's synthetic non-IID generator and scikit-learn's bundled data sets.

Synthetic (regression): a hidden low-rank structure shared by all clients,
x = shift_c + scale_c · (z·M + 0.3·ε)/√1.09 with z ~ N(0, I_rank), per-client shift ~ N(0, 1)
per feature and scale ~ U(0.5, 2) (non-IID), target y = x·W* + 0.1·ε from one hidden linear
map W*. The held-out test set draws ⌈n·f/(1−f)⌉ samples from every client's distribution
(n = `samples_per_client`, whatever the client's own size).

Labelled (`digits`, `breast_cancer`, `wine`, `iris`, bundled with scikit-learn, no download):
stratified train/test split (`test_fraction`), features standardised with train statistics
(constant features left at 0), then an `iid` partition (shuffle and split evenly) or a
`dirichlet` one (each class split across clients with proportions ~ Dir(α), as in Hsu et al.
2019). Each client then holds exactly its size in samples: drawn without replacement from its
part when the part is large enough, otherwise the whole part plus draws with replacement from
it (an empty part draws from the whole training set). Choosing
`samples_per_client ≈ len(train) / num_clients` uses the training data about once.

Sizes (`client_sizes`): `samples_per_client` each, or with `quantity_skew` σ > 0 lognormal
quantity skew as in LEAF / FedProx: round(samples_per_client · w_i / mean(w)) with
w_i ~ LogNormal(0, σ²), clipped to [MIN_CLIENT_SAMPLES, MAX_CLIENT_SIZE_FACTOR ·
samples_per_client], drawn from their own stream (seed, "data", "sizes") so they do not depend
on the data set.

Drift: in round r every client's features (and the test set's) are shifted by drift·(r − 1);
synthetic targets follow the same hidden map, labels are unchanged (covariate shift).
All other randomness comes from a numpy Generator seeded from (seed, "data").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from scarcity.config import MAX_CLIENT_SIZE_FACTOR, MIN_CLIENT_SAMPLES, SimulationConfig
from scarcity.core.training import Task

DATA_STREAM = 0xDA7A  # second seed word, so data draws never collide with training draws
SIZE_STREAM = 0x512E  # third seed word: client sizes, apart from the data draws
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
    #: How a unit feature shift moves a regression target (ones · W*); None = labels.
    target_shift: Tensor | None = None

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

    @property
    def sizes(self) -> tuple[int, ...]:
        """Training samples of each client."""
        return tuple(len(x) for x in self.client_x)


def client_sizes(config: SimulationConfig) -> list[int]:
    """How many training samples each client holds (see the module docstring)."""
    n = config.samples_per_client
    if config.quantity_skew == 0:
        return [n] * config.num_clients
    rng = np.random.default_rng([config.seed, DATA_STREAM, SIZE_STREAM])
    weights = rng.lognormal(0.0, config.quantity_skew, size=config.num_clients)
    sizes = np.rint(n * weights / weights.mean())
    return np.clip(sizes, MIN_CLIENT_SAMPLES, MAX_CLIENT_SIZE_FACTOR * n).astype(int).tolist()


def make_federated_data(config: SimulationConfig) -> FederatedData:
    """The data of one simulation, a pure function of `config`."""
    rng = np.random.default_rng([config.seed, DATA_STREAM])
    if config.dataset == "synthetic":
        return _synthetic(config, rng)
    return _labelled(config, rng)


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
    for size in client_sizes(config):
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
    )


@cache
def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and integer labels of a data set bundled with scikit-learn."""
    from sklearn import datasets

    loaders = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }
    bunch = loaders[name]()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


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


def iid_partition(n: int, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle and split `range(n)` into `num_clients` near-equal parts."""
    return list(np.array_split(rng.permutation(n), num_clients))


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split each class across clients with proportions drawn from Dir(α·1)."""
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


def _labelled(config: SimulationConfig, rng: np.random.Generator) -> FederatedData:
    features, labels = load_dataset(config.dataset)
    train, test = stratified_split(labels, config.test_fraction, rng)
    mean = features[train].mean(axis=0)
    std = features[train].std(axis=0)
    std[std == 0] = 1.0
    scaled = (features - mean) / std
    x_train, y_train = scaled[train], labels[train]
    if config.partition == "dirichlet":
        parts = dirichlet_partition(y_train, config.num_clients, config.dirichlet_alpha, rng)
    else:
        parts = iid_partition(len(train), config.num_clients, rng)
    sizes = client_sizes(config)
    chosen = [fill_to_size(p, n, len(train), rng) for p, n in zip(parts, sizes, strict=True)]
    return FederatedData(
        task="classification",
        client_x=tuple(_f32(x_train[c]) for c in chosen),
        client_y=tuple(torch.from_numpy(y_train[c].copy()) for c in chosen),
        test_x=_f32(scaled[test]),
        test_y=torch.from_numpy(labels[test].copy()),
        drift=config.drift,
    )


def _f32(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
