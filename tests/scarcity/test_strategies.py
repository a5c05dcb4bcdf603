"""Federated strategies against direct NumPy evaluations of their papers' formulas.

Every reference below is written with NumPy from the update rule (loops where the rule is a
loop), never by calling the torch code. Models are a small Linear layer: `weight` [2, 3] and
`bias` [2], stacked over P clients; references work on the flattened [P, 8] rows.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from scarcity import checkpoint
from scarcity.config import ENGINE_VERSION, SimulationConfig
from scarcity.core.aggregate import fedavg, fedavg_stacked, reptile_step, reptile_step_stacked
from scarcity.strategies import (
    STRATEGIES,
    ClientUpdates,
    FitInstructions,
    Strategy,
    make_strategy,
)
from scarcity.strategies import functions as F
from scarcity.strategies.bulyan import Bulyan
from scarcity.strategies.ditto import Ditto
from scarcity.strategies.dp_fedavg import DPFedAvg
from scarcity.strategies.fedavg import FedAvg
from scarcity.strategies.fedavg_ft import FedAvgFT
from scarcity.strategies.fedavgm import FedAvgM
from scarcity.strategies.fedmedian import FedMedian
from scarcity.strategies.fedopt import FedAdagrad, FedAdam, FedYogi
from scarcity.strategies.fedprox import FedProx
from scarcity.strategies.fedtrimmedavg import FedTrimmedAvg
from scarcity.strategies.ifca import IFCA
from scarcity.strategies.krum import Krum, MultiKrum
from scarcity.strategies.local import Local
from scarcity.strategies.qfedavg import QFedAvg
from scarcity.strategies.reptile import Reptile
from scarcity.strategies.scaffold import Scaffold

DIM = 8
COUNTS = np.array([10.0, 20.0, 5.0, 40.0, 25.0])
LOSSES = np.array([0.5, 1.2, 0.3, 2.0, 0.9])
TOL = {"rtol": 1e-6, "atol": 1e-6}

# Parameters of every strategy unset, as a request that names none of them.
STRATEGY_FIELDS = {name: None for cls in STRATEGIES.values() for name in cls.defaults}


def cfg(**overrides: Any) -> SimpleNamespace:
    """The config attributes strategies read, strategy parameters unset unless given."""
    base: dict[str, Any] = {
        "strategy": "fedavg",
        "seed": 0,
        "num_clients": 5,
        "learning_rate": 0.01,
        "local_epochs": 1,
        "batch_size": 0,
        "reptile_step_size": 1.0,
        "engine_version": ENGINE_VERSION,
        **STRATEGY_FIELDS,
    }
    base.update(overrides)
    return SimpleNamespace(**base)


def rng_rows(seed: int, rows: int, center: np.ndarray | None = None, scale: float = 0.1):
    """`rows` flattened models (float32 values), around `center` when given."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, DIM))
    if center is not None:
        values = center + scale * values
    return values.astype(np.float32)


GLOBAL = rng_rows(1, 1)[0]
CLIENTS = rng_rows(2, 5, GLOBAL)


def to_model(flat: np.ndarray) -> dict[str, torch.Tensor]:
    """Flattened NumPy rows [..., 8] → {weight [..., 2, 3], bias [..., 2]} float32 tensors."""
    lead = flat.shape[:-1]
    t = torch.tensor(np.asarray(flat, dtype=np.float32))
    return {"weight": t[..., :6].reshape(*lead, 2, 3), "bias": t[..., 6:].reshape(*lead, 2)}


def to_flat(model: dict[str, torch.Tensor]) -> np.ndarray:
    lead = model["bias"].shape[:-1]
    w = model["weight"].reshape(*lead, 6).double().numpy()
    return np.concatenate([w, model["bias"].double().numpy()], axis=-1)


def updates(
    clients: np.ndarray,
    counts: np.ndarray | None = None,
    losses: np.ndarray | None = None,
    participants: list[int] | None = None,
    num_clients: int | None = None,
    sequential: bool = False,
) -> ClientUpdates:
    size = clients.shape[0]
    counts = COUNTS[:size] if counts is None else counts
    losses = LOSSES[:size] if losses is None else losses
    ids = list(range(size)) if participants is None else participants
    return ClientUpdates(
        weights=to_model(clients),
        sample_counts=torch.tensor(counts, dtype=torch.float32),
        initial_loss=torch.tensor(losses, dtype=torch.float64),
        participants=torch.tensor(ids, dtype=torch.long),
        num_clients=size if num_clients is None else num_clients,
        sequential=sequential,
        choice=torch.tensor([i % 2 for i in range(size)]),  # IFCA's: alternate clusters
    )


def started(strategy: Strategy) -> Strategy:
    """The strategy with its server models drawn, as the engine starts one that keeps several
    (IFCA's two clusters: the global model and one around it)."""
    if strategy.client_model == "cluster":
        strategy.start(to_model(np.stack([GLOBAL, rng_rows(9, 1, GLOBAL)[0]])))
    return strategy


def run_rounds(
    strategy: Strategy,
    global_flat: np.ndarray,
    rounds: list[np.ndarray],
    start: int = 1,
    fits: list[FitInstructions] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Each round: configure_fit (kept in `fits`), then aggregate; the result is the next
    global model."""
    out = []
    g = to_model(global_flat)
    if start == 1:
        started(strategy)
    for r, clients in enumerate(rounds, start=start):
        u = updates(clients)
        fit = strategy.configure_fit(r, g, u.participants)
        if fits is not None:
            fits.append(fit)
        g = strategy.aggregate(r, g, u)
        out.append(g)
    return out


def np_fedavg(clients: np.ndarray, counts: np.ndarray) -> np.ndarray:
    c = clients.astype(np.float64)
    return sum(n * c[i] for i, n in enumerate(counts)) / counts.sum()


ROUNDS = [rng_rows(10 + r, 5, GLOBAL) for r in range(5)]


# -- registry --------------------------------------------------------------------------


def test_registry_keys_are_the_config_strategy_names():
    schema = SimulationConfig.model_json_schema()["properties"]["strategy"]
    assert schema["enum"] == list(STRATEGIES)  # the registry is the one list
    for key, cls in STRATEGIES.items():
        assert cls.name == key
        assert cls.paper and cls.summary


def test_defaults_name_config_fields():
    fields = set(SimulationConfig.model_fields)
    for cls in STRATEGIES.values():
        assert set(cls.defaults) <= fields, cls.name


def test_make_strategy_builds_the_configured_one():
    for name, cls in STRATEGIES.items():
        assert type(make_strategy(cfg(strategy=name))) is cls
    with pytest.raises(ValueError):
        make_strategy(cfg(strategy="nope"))


def test_make_strategy_from_a_simulation_config():
    config = SimulationConfig(
        preset="stage2",
        federated_averaging=True,
        strategy="fedadam",
        server_learning_rate=0.1,
        beta_1=0.9,
        beta_2=0.99,
        tau=1e-9,
    )
    strategy = make_strategy(config)
    assert isinstance(strategy, FedAdam)
    out = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    assert out["weight"].shape == (2, 3)


# -- layout helpers --------------------------------------------------------------------


def test_flatten_unflatten_round_trip():
    stacked = to_model(CLIENTS)
    flat = F.flatten(stacked)
    np.testing.assert_array_equal(flat.numpy(), CLIENTS)
    back = F.unflatten(flat, to_model(GLOBAL))
    assert all(torch.equal(back[k], stacked[k]) for k in stacked)
    one = F.unflatten(F.flatten_one(to_model(GLOBAL)), to_model(GLOBAL))
    np.testing.assert_array_equal(to_flat(one), GLOBAL)


def test_clip_to_norm_scales_rows_above_the_bound():
    flat = np.array([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    out = F.clip_to_norm(torch.tensor(flat), 1.0).numpy()
    expected = np.array([[0.6, 0.8, 0.0], [0.3, 0.4, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(out, expected, **TOL)


def test_strategies_leave_their_inputs_untouched():
    for name, cls in STRATEGIES.items():
        u = updates(CLIENTS)
        g = to_model(GLOBAL)
        strategy = started(cls(cfg(strategy=name, reptile_step_size=0.5)))
        strategy.configure_fit(1, g, u.participants)
        strategy.aggregate(1, g, u)
        np.testing.assert_array_equal(to_flat(u.weights), CLIENTS.astype(np.float64))
        np.testing.assert_array_equal(to_flat(g), GLOBAL.astype(np.float64))


# -- FedAvg, Reptile, FedProx ----------------------------------------------------------


@pytest.mark.parametrize("sequential", [False, True])
def test_fedavg_is_the_sample_weighted_mean(sequential):
    out = FedAvg(cfg()).aggregate(1, to_model(GLOBAL), updates(CLIENTS, sequential=sequential))
    np.testing.assert_allclose(to_flat(out), np_fedavg(CLIENTS, COUNTS), **TOL)


def test_fedavg_is_bit_identical_to_the_seed_functions():
    stacked = to_model(CLIENTS)
    counts = torch.tensor(COUNTS, dtype=torch.float32)
    batched = FedAvg(cfg()).aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    expected = fedavg_stacked(stacked, counts)
    assert all(torch.equal(batched[k], expected[k]) for k in expected)

    serial = FedAvg(cfg()).aggregate(1, to_model(GLOBAL), updates(CLIENTS, sequential=True))
    rows = [{k: v[i].clone() for k, v in stacked.items()} for i in range(5)]
    expected = fedavg(rows, [int(n) for n in COUNTS])
    assert all(torch.equal(serial[k], expected[k]) for k in expected)


def test_reptile_steps_toward_the_mean_client():
    eps = 0.3
    out = Reptile(cfg(reptile_step_size=eps)).aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    g = GLOBAL.astype(np.float64)
    expected = g + eps * np.mean(CLIENTS.astype(np.float64) - g, axis=0)
    np.testing.assert_allclose(to_flat(out), expected, **TOL)


def test_reptile_is_bit_identical_to_the_seed_functions():
    eps = 0.3
    strategy = Reptile(cfg(reptile_step_size=eps))
    stacked = to_model(CLIENTS)
    batched = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    expected = reptile_step_stacked(to_model(GLOBAL), stacked, eps)
    assert all(torch.equal(batched[k], expected[k]) for k in expected)

    serial = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS, sequential=True))
    rows = [{k: v[i].clone() for k, v in stacked.items()} for i in range(5)]
    expected = reptile_step(to_model(GLOBAL), rows, eps)
    assert all(torch.equal(serial[k], expected[k]) for k in expected)


def test_fedprox_sends_mu_and_averages_like_fedavg():
    strategy = FedProx(cfg(proximal_mu=0.25))
    fit = strategy.configure_fit(1, to_model(GLOBAL), torch.arange(5))
    assert fit.proximal_mu == 0.25
    assert fit.correction is None and fit.clip_norm is None
    out = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    np.testing.assert_allclose(to_flat(out), np_fedavg(CLIENTS, COUNTS), **TOL)
    assert FedProx(cfg()).configure_fit(1, to_model(GLOBAL), torch.arange(5)).proximal_mu == 0.01


# -- FedAvgM ---------------------------------------------------------------------------


def np_fedavgm(rounds: list[np.ndarray], lr: float, beta: float) -> list[np.ndarray]:
    w = GLOBAL.astype(np.float64)
    v = None
    out = []
    for clients in rounds:
        grad = w - np_fedavg(clients, COUNTS)
        v = grad if v is None else beta * v + grad
        w = w - lr * v
        out.append(w)
    return out


def test_fedavgm_three_rounds_with_momentum():
    strategy = FedAvgM(cfg(server_learning_rate=0.7, server_momentum=0.9))
    got = run_rounds(strategy, GLOBAL, ROUNDS[:3])
    for out, expected in zip(got, np_fedavgm(ROUNDS[:3], 0.7, 0.9), strict=True):
        np.testing.assert_allclose(to_flat(out), expected, **TOL)


def test_fedavgm_without_momentum_is_a_server_sgd_step():
    strategy = FedAvgM(cfg(server_learning_rate=0.5, server_momentum=0.0))
    got = run_rounds(strategy, GLOBAL, ROUNDS[:3])
    w = GLOBAL.astype(np.float64)
    for out, clients in zip(got, ROUNDS[:3], strict=True):
        w = w - 0.5 * (w - np_fedavg(clients, COUNTS))
        np.testing.assert_allclose(to_flat(out), w, **TOL)
    assert strategy.momentum is None


def test_fedavgm_with_unit_step_and_no_momentum_is_fedavg():
    strategy = FedAvgM(cfg(server_learning_rate=1.0, server_momentum=0.0))
    plain = FedAvg(cfg())
    for seq in (False, True):
        a = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS, sequential=seq))
        b = plain.aggregate(1, to_model(GLOBAL), updates(CLIENTS, sequential=seq))
        assert all(torch.equal(a[k], b[k]) for k in b)


# -- FedAdagrad, FedAdam, FedYogi -----------------------------------------------------


def np_fedopt(kind: str, rounds: list[np.ndarray], eta: float, b1: float, b2: float, tau: float):
    w = GLOBAL.astype(np.float64)
    m = np.zeros(DIM)
    v = np.zeros(DIM)
    out = []
    for t, clients in enumerate(rounds, start=1):
        delta = np_fedavg(clients, COUNTS) - w
        if kind == "adagrad":
            m = delta
            v = v + delta**2
            step = eta
        elif kind == "adam":
            m = b1 * m + (1 - b1) * delta
            v = b2 * v + (1 - b2) * delta**2
            step = eta * math.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
        else:
            m = b1 * m + (1 - b1) * delta
            v = v - (1 - b2) * delta**2 * np.sign(v - delta**2)
            step = eta
        w = w + step * m / (np.sqrt(v) + tau)
        out.append(w)
    return out


@pytest.mark.parametrize(
    ("cls", "kind", "params"),
    [
        (FedAdagrad, "adagrad", {"server_learning_rate": 0.1, "tau": 1e-9}),
        (
            FedAdam,
            "adam",
            {"server_learning_rate": 0.1, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-9},
        ),
        (
            FedYogi,
            "yogi",
            {"server_learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3},
        ),
        (
            FedAdam,
            "adam",
            {"server_learning_rate": 0.05, "beta_1": 0.5, "beta_2": 0.9, "tau": 1e-3},
        ),
    ],
)
def test_fedopt_three_rounds(cls, kind, params):
    got = run_rounds(cls(cfg(**params)), GLOBAL, ROUNDS[:3])
    b1 = params.get("beta_1", 0.0)
    b2 = params.get("beta_2", 0.0)
    expected = np_fedopt(kind, ROUNDS[:3], params["server_learning_rate"], b1, b2, params["tau"])
    for out, ref in zip(got, expected, strict=True):
        np.testing.assert_allclose(to_flat(out), ref, **TOL)


@pytest.mark.parametrize("cls", [FedAdagrad, FedAdam, FedYogi])
def test_fedopt_gives_no_step_to_a_weight_no_client_moved(cls):
    """Digits' always-blank pixels: every client sends back the global value. The mean of
    the models can round to a neighbour of it (float32, shares of 1/3); Δ from the clients'
    own updates is exactly 0, so the weight stays. engine_version 2 took the rounded mean, and
    m / (√v + τ) made the rounding a step of about η."""
    start = np.array([0.1, 0.7, 1.3, -0.3, 2.9, 0.05, 0.2, 0.9], dtype=np.float32)
    clients = np.tile(start, (3, 1))
    clients[:, 0] += np.float32(0.25)  # the one coordinate that did move
    counts = np.ones(3)
    shares = torch.tensor(counts, dtype=torch.float32)
    rounded = to_flat(fedavg_stacked(to_model(clients), shares))
    assert rounded[7] != np.float64(start[7])  # the mean really rounds there
    received = updates(clients, counts, LOSSES[:3])
    params = dict(cls.defaults)
    out = to_flat(cls(cfg(**params)).aggregate(1, to_model(start), received))
    np.testing.assert_array_equal(out[1:], start[1:].astype(np.float64))
    assert out[0] > start[0]
    before = to_flat(cls(cfg(**params, engine_version=2)).aggregate(1, to_model(start), received))
    if params["tau"] < 1e-6:  # FedYogi's τ = 1e-3 keeps the rounding small
        assert abs(before[7] - start[7]) > params["server_learning_rate"] / 2


def test_fedopt_defaults_are_flowers():
    assert FedAdagrad.defaults == {"server_learning_rate": 0.1, "tau": 1e-9}
    assert FedAdam.defaults == {
        "server_learning_rate": 0.1,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-9,
    }
    assert FedYogi.defaults == {
        "server_learning_rate": 0.01,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-3,
    }
    # Unset parameters fall back to these defaults.
    got = run_rounds(FedYogi(cfg()), GLOBAL, ROUNDS[:2])
    expected = np_fedopt("yogi", ROUNDS[:2], 0.01, 0.9, 0.99, 1e-3)
    np.testing.assert_allclose(to_flat(got[-1]), expected[-1], **TOL)


# -- coordinate-wise robust means ------------------------------------------------------


@pytest.mark.parametrize("size", [5, 4])
def test_fedmedian_is_numpys_median(size):
    out = FedMedian(cfg()).aggregate(1, to_model(GLOBAL), updates(CLIENTS[:size]))
    np.testing.assert_allclose(to_flat(out), np.median(CLIENTS[:size], axis=0), **TOL)


def np_trimmed_mean(clients: np.ndarray, beta: float) -> np.ndarray:
    size = clients.shape[0]
    cut = int(beta * size)
    out = np.zeros(clients.shape[1])
    for j in range(clients.shape[1]):
        column = sorted(float(x) for x in clients[:, j])
        kept = column[cut : size - cut]
        out[j] = sum(kept) / len(kept)
    return out


@pytest.mark.parametrize(("size", "beta"), [(5, 0.2), (10, 0.25), (10, 0.45), (4, 0.1)])
def test_fedtrimmedavg_cuts_each_end(size, beta):
    clients = rng_rows(3, size, GLOBAL)
    counts = np.arange(1.0, size + 1)
    out = FedTrimmedAvg(cfg(trim_beta=beta)).aggregate(
        1, to_model(GLOBAL), updates(clients, counts, np.ones(size))
    )
    np.testing.assert_allclose(to_flat(out), np_trimmed_mean(clients, beta), **TOL)


def test_fedtrimmedavg_without_trimming_is_the_unweighted_mean():
    out = FedTrimmedAvg(cfg(trim_beta=0.0)).aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    np.testing.assert_allclose(to_flat(out), CLIENTS.astype(np.float64).mean(axis=0), **TOL)
    assert FedTrimmedAvg.defaults == {"trim_beta": 0.2}


# -- Krum, Multi-Krum, Bulyan ---------------------------------------------------------


def np_krum_scores(flat: np.ndarray, f: int) -> np.ndarray:
    x = flat.astype(np.float64)
    size = len(x)
    nearest = max(1, size - f - 2)
    scores = []
    for i in range(size):
        others = sorted(float(np.sum((x[i] - x[j]) ** 2)) for j in range(size) if j != i)
        scores.append(sum(others[:nearest]))
    return np.array(scores)


def with_outlier(seed: int, size: int) -> np.ndarray:
    clients = rng_rows(seed, size, GLOBAL, scale=0.05)
    clients[2] = GLOBAL + 50.0
    return clients


def test_krum_scores_and_choice_match_the_definition():
    for f in (0, 1, 2):
        np.testing.assert_allclose(
            F.krum_scores(torch.tensor(CLIENTS), f).numpy(), np_krum_scores(CLIENTS, f), **TOL
        )
        out = Krum(cfg(num_malicious_clients=f)).aggregate(1, to_model(GLOBAL), updates(CLIENTS))
        best = int(np.argmin(np_krum_scores(CLIENTS, f)))
        np.testing.assert_array_equal(to_flat(out), CLIENTS[best].astype(np.float64))


@pytest.mark.parametrize("size", [1, 5, 127, 128, 129, 300])
def test_the_upper_gram_is_the_full_product_and_exactly_symmetric(size):
    """engine_version 4's Krum distances come from the blocks on and above the diagonal,
    mirrored: the same matrix as y yᵀ (float rounding apart), symmetric to the bit, also at
    block edges and in a one-row last block."""
    y = torch.randn(size, 37, generator=torch.Generator().manual_seed(size))
    gram = F.upper_gram(y)
    assert torch.equal(gram, gram.T)
    np.testing.assert_allclose(gram.numpy(), (y.double() @ y.double().T).numpy(), atol=1e-4)
    halves = F.pairwise_squared_distances(y, half_products=True)
    assert torch.equal(halves, halves.T) and torch.all(halves.diagonal() == 0)
    np.testing.assert_allclose(
        halves.numpy(), F.pairwise_squared_distances(y).numpy(), rtol=1e-5, atol=1e-5
    )


def test_krum_takes_half_products_from_engine_version_4_only(monkeypatch):
    """Stored runs (engine_version ≤ 3) keep the full product, so they resume bit for bit."""
    calls = []
    real = F.pairwise_squared_distances

    def spy(flat, half_products=False):
        calls.append(half_products)
        return real(flat, half_products)

    monkeypatch.setattr(F, "pairwise_squared_distances", spy)
    for version in (3, 4):
        for strategy in (Krum, MultiKrum, Bulyan):
            f = 1 if strategy is Bulyan else 0
            aggregate = strategy(cfg(num_malicious_clients=f, engine_version=version)).aggregate
            aggregate(1, to_model(GLOBAL), updates(with_outlier(3, 7), np.ones(7), np.ones(7)))
    assert calls == [False] * 3 + [True] * 3


def test_krum_picks_an_honest_model_over_a_far_outlier():
    clients = with_outlier(4, 5)
    out = Krum(cfg(num_malicious_clients=1)).aggregate(1, to_model(GLOBAL), updates(clients))
    chosen = [i for i in range(5) if np.array_equal(to_flat(out), clients[i].astype(np.float64))]
    assert len(chosen) == 1 and chosen[0] != 2
    # f unset counts as 0: still the honest cluster.
    out = Krum(cfg()).aggregate(1, to_model(GLOBAL), updates(clients))
    assert np.abs(to_flat(out) - GLOBAL).max() < 1.0


def test_multikrum_averages_the_lowest_scores_sample_weighted():
    scores = np_krum_scores(CLIENTS, 1)
    keep = sorted(np.argsort(scores, kind="stable")[:3])
    out = MultiKrum(cfg(num_malicious_clients=1, num_clients_to_keep=3)).aggregate(
        1, to_model(GLOBAL), updates(CLIENTS)
    )
    np.testing.assert_allclose(to_flat(out), np_fedavg(CLIENTS[keep], COUNTS[keep]), **TOL)


def test_multikrum_keeps_p_minus_f_when_unset_and_drops_the_outlier():
    clients = with_outlier(5, 5)
    out = MultiKrum(cfg(num_malicious_clients=1)).aggregate(1, to_model(GLOBAL), updates(clients))
    honest = [0, 1, 3, 4]
    np.testing.assert_allclose(to_flat(out), np_fedavg(clients[honest], COUNTS[honest]), **TOL)


def test_multikrum_of_everyone_is_the_mean():
    strategy = MultiKrum(cfg(num_malicious_clients=0, num_clients_to_keep=5))
    equal = np.full(5, 7.0)
    out = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS, equal))
    np.testing.assert_allclose(to_flat(out), CLIENTS.astype(np.float64).mean(axis=0), **TOL)
    weighted = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    plain = FedAvg(cfg()).aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    assert all(torch.equal(weighted[k], plain[k]) for k in plain)


def np_bulyan(flat: np.ndarray, f: int) -> np.ndarray:
    x = flat.astype(np.float64)
    remaining = list(range(len(x)))
    selected = []
    for _ in range(len(x) - 2 * f):
        scores = np_krum_scores(x[remaining], f)
        selected.append(remaining.pop(int(np.argmin(scores))))
    chosen = x[selected]
    median = np.median(chosen, axis=0)
    beta = len(selected) - 2 * f
    out = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        order = np.argsort(np.abs(chosen[:, j] - median[j]), kind="stable")[:beta]
        out[j] = chosen[order, j].mean()
    return out


@pytest.mark.parametrize(("size", "f"), [(7, 1), (11, 2), (4, 0), (8, 1)])
def test_bulyan_matches_the_definition(size, f):
    clients = rng_rows(6 + size, size, GLOBAL)
    out = Bulyan(cfg(num_malicious_clients=f)).aggregate(
        1, to_model(GLOBAL), updates(clients, np.ones(size), np.ones(size))
    )
    np.testing.assert_allclose(to_flat(out), np_bulyan(clients, f), **TOL)


def test_bulyan_needs_4f_plus_3_clients_and_resists_an_outlier():
    clients = with_outlier(7, 7)
    with pytest.raises(ValueError):
        Bulyan(cfg(num_malicious_clients=2)).aggregate(
            1, to_model(GLOBAL), updates(clients, np.ones(7), np.ones(7))
        )
    out = Bulyan(cfg(num_malicious_clients=1)).aggregate(
        1, to_model(GLOBAL), updates(clients, np.ones(7), np.ones(7))
    )
    assert np.abs(to_flat(out) - GLOBAL).max() < 1.0


# -- q-FedAvg --------------------------------------------------------------------------


def np_qfedavg(clients: np.ndarray, losses: np.ndarray, q: float, lr: float) -> np.ndarray:
    lipschitz = 1.0 / lr
    w = GLOBAL.astype(np.float64)
    numerator = np.zeros(DIM)
    denominator = 0.0
    for k in range(len(clients)):
        loss = losses[k] + 1e-10
        grad = lipschitz * (w - clients[k].astype(np.float64))
        numerator += loss**q * grad
        denominator += q * loss ** (q - 1) * np.sum(grad**2) + lipschitz * loss**q
    return w - numerator / denominator


@pytest.mark.parametrize(("q", "lr"), [(0.2, 0.1), (1.0, 0.5), (5.0, 0.01)])
def test_qfedavg_matches_the_paper(q, lr):
    strategy = QFedAvg(cfg(q_param=q, qffl_learning_rate=lr))
    out = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    np.testing.assert_allclose(to_flat(out), np_qfedavg(CLIENTS, LOSSES, q, lr), **TOL)


def test_qfedavg_with_q_zero_is_the_unweighted_mean():
    strategy = QFedAvg(cfg(q_param=0.0, qffl_learning_rate=0.1))
    out = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    np.testing.assert_allclose(to_flat(out), CLIENTS.astype(np.float64).mean(axis=0), **TOL)


# -- DP-FedAvg -------------------------------------------------------------------------


def np_clipped_fedavg(clients: np.ndarray, counts: np.ndarray, clip: float) -> np.ndarray:
    g = GLOBAL.astype(np.float64)
    models = []
    for row in clients.astype(np.float64):
        delta = row - g
        models.append(g + delta * min(1.0, clip / np.sqrt(np.sum(delta**2))))
    return np_fedavg(np.array(models), counts)


def test_dp_server_clipping_without_noise():
    clients = CLIENTS.copy()
    clients[1] = GLOBAL + 3.0  # far beyond the bound
    strategy = DPFedAvg(cfg(dp_clipping_norm=0.2, dp_noise_multiplier=0.0))
    fit = strategy.configure_fit(1, to_model(GLOBAL), torch.arange(5))
    assert fit.clip_norm is None
    out = strategy.aggregate(1, to_model(GLOBAL), updates(clients))
    np.testing.assert_allclose(to_flat(out), np_clipped_fedavg(clients, COUNTS, 0.2), **TOL)
    assert strategy.round_metrics() == {"dp_noise_multiplier": 0.0, "dp_noise_std": 0.0}


def test_dp_client_clipping_leaves_clipping_to_the_clients():
    clients = CLIENTS.copy()
    clients[1] = GLOBAL + 3.0
    strategy = DPFedAvg(cfg(dp_clipping_norm=0.2, dp_noise_multiplier=0.0, dp_clipping="client"))
    assert strategy.configure_fit(1, to_model(GLOBAL), torch.arange(5)).clip_norm == 0.2
    out = strategy.aggregate(1, to_model(GLOBAL), updates(clients))
    np.testing.assert_allclose(to_flat(out), np_fedavg(clients, COUNTS), **TOL)


def test_dp_without_noise_and_a_huge_bound_is_fedavg():
    strategy = DPFedAvg(cfg(dp_clipping_norm=1e6, dp_noise_multiplier=0.0))
    out = strategy.aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    plain = FedAvg(cfg()).aggregate(1, to_model(GLOBAL), updates(CLIENTS))
    np.testing.assert_allclose(to_flat(out), to_flat(plain), **TOL)


def big_updates(size: int) -> tuple[dict[str, torch.Tensor], ClientUpdates]:
    gen = torch.Generator().manual_seed(3)
    g = {"weight": torch.randn(100, 50, generator=gen), "bias": torch.randn(100, generator=gen)}
    stacked = {k: v + 0.01 * torch.randn(size, *v.shape, generator=gen) for k, v in g.items()}
    u = ClientUpdates(
        weights=stacked,
        sample_counts=torch.arange(1.0, size + 1),
        initial_loss=torch.ones(size, dtype=torch.float64),
        participants=torch.arange(size),
        num_clients=size,
    )
    return g, u


def test_dp_noise_std_is_z_c_over_p():
    g, u = big_updates(4)
    noisy = DPFedAvg(cfg(dp_clipping_norm=0.5, dp_noise_multiplier=2.0))
    clean = DPFedAvg(cfg(dp_clipping_norm=0.5, dp_noise_multiplier=0.0))
    with_noise, without = noisy.aggregate(1, g, u), clean.aggregate(1, g, u)
    noise = torch.cat([(with_noise[k] - without[k]).reshape(-1) for k in with_noise])
    metrics = noisy.round_metrics()  # and epsilon (tests/scarcity/test_privacy.py)
    assert (metrics["dp_noise_multiplier"], metrics["dp_noise_std"]) == (2.0, 0.25)
    assert noise.numel() == 5100
    assert abs(float(noise.std()) - 0.25) < 0.0125
    assert abs(float(noise.mean())) < 0.02


def test_dp_noise_is_deterministic_given_the_seed():
    g, u = big_updates(3)
    a = DPFedAvg(cfg(seed=7, dp_clipping_norm=1.0, dp_noise_multiplier=1.0)).aggregate(1, g, u)
    b = DPFedAvg(cfg(seed=7, dp_clipping_norm=1.0, dp_noise_multiplier=1.0)).aggregate(1, g, u)
    c = DPFedAvg(cfg(seed=8, dp_clipping_norm=1.0, dp_noise_multiplier=1.0)).aggregate(1, g, u)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["weight"], c["weight"])


# -- SCAFFOLD --------------------------------------------------------------------------


def test_scaffold_three_rounds_with_sampled_participants():
    total = 6
    counts_all = np.array([12.0, 20.0, 5.0, 40.0, 25.0, 9.0])
    epochs, batch, lr_local, lr_server = 2, 8, 0.1, 0.8
    plan = [[0, 2, 3], [1, 2, 5], [0, 4, 5]]
    strategy = Scaffold(
        cfg(
            num_clients=total,
            local_epochs=epochs,
            batch_size=batch,
            learning_rate=lr_local,
            server_learning_rate=lr_server,
        )
    )
    g = to_model(GLOBAL)
    w = GLOBAL.astype(np.float64)
    c = np.zeros(DIM)
    c_clients = np.zeros((total, DIM))
    for r, parts in enumerate(plan, start=1):
        clients = rng_rows(20 + r, len(parts), GLOBAL, scale=0.05)
        fit = strategy.configure_fit(r, g, torch.tensor(parts))
        assert fit.correction is not None
        np.testing.assert_allclose(to_flat(fit.correction), c - c_clients[parts], **TOL)

        new_controls = []
        for j, i in enumerate(parts):
            n = counts_all[i]
            steps = epochs * math.ceil(n / batch) if 0 < batch < n else epochs
            new_controls.append(c_clients[i] - c + (w - clients[j]) / (steps * lr_local))
        w = w + lr_server * np.mean(clients.astype(np.float64) - w, axis=0)
        c = c + sum(new_controls[j] - c_clients[i] for j, i in enumerate(parts)) / total
        for j, i in enumerate(parts):
            c_clients[i] = new_controls[j]

        u = updates(clients, counts_all[parts], np.ones(3), parts, total)
        g = strategy.aggregate(r, g, u)
        np.testing.assert_allclose(to_flat(g), w, **TOL)
        assert strategy.server_control is not None and strategy.client_controls is not None
        np.testing.assert_allclose(to_flat(strategy.server_control), c, **TOL)
        np.testing.assert_allclose(to_flat(strategy.client_controls), c_clients, **TOL)
    assert np.all(c_clients[3] != 0) and np.all(c_clients[1] != 0)


def test_scaffold_local_steps():
    counts = torch.tensor([5.0, 8.0, 9.0, 40.0])
    assert F.local_steps(counts, 3, 0).tolist() == [3, 3, 3, 3]
    assert F.local_steps(counts, 3, 8).tolist() == [3, 3, 6, 15]
    assert F.local_steps(counts, 2, 100).tolist() == [2, 2, 2, 2]


# -- local, FedAvg-FT, Ditto, IFCA ---------------------------------------------------------


def test_local_averages_nothing_and_the_personalised_globals_are_fedavgs():
    g, u = to_model(GLOBAL), updates(CLIENTS)
    assert same_round(Local(cfg()).aggregate(1, g, u), g)  # the server's model stays w⁰
    for cls, extra in ((Ditto, {"ditto_lambda": 0.3}), (FedAvgFT, {"finetune_epochs": 2})):
        out = cls(cfg(**extra)).aggregate(1, g, u)
        np.testing.assert_allclose(to_flat(out), np_fedavg(CLIENTS, COUNTS), **TOL)
    fit = Ditto(cfg(ditto_lambda=0.3)).configure_fit(1, g, torch.arange(5))
    assert fit.personal_mu == 0.3 and fit.proximal_mu == 0 and fit.correction is None
    assert Ditto(cfg()).configure_fit(1, g, torch.arange(5)).personal_mu == 0.1  # default
    assert (
        FedAvgFT(cfg()).finetune_epochs() == 1
        and FedAvgFT(cfg(finetune_epochs=3)).finetune_epochs() == 3
    )
    kinds = {name: cls.client_model for name, cls in STRATEGIES.items()}
    assert {k: v for k, v in kinds.items() if v != "global"} == {
        "local": "own",
        "fedavg_ft": "finetuned",
        "ditto": "personal",
        "ifca": "cluster",
    }


def np_cluster_means(clusters, clients, counts, choice):
    out = clusters.astype(np.float64).copy()
    for j in range(len(clusters)):
        members = [i for i, c in enumerate(choice) if c == j]
        if members:
            out[j] = sum(counts[i] * clients[i].astype(np.float64) for i in members)
            out[j] /= sum(counts[i] for i in members)
    return out


@pytest.mark.parametrize("sequential", [False, True])
def test_ifca_averages_each_cluster_over_the_clients_that_chose_it(sequential):
    """Three clusters, five clients choosing 2, 0, 2, 0, 2: clusters 0 and 2 become their
    members' sample-weighted means, cluster 1 (no member) stays."""
    clusters = rng_rows(30, 3, GLOBAL)
    choice = [2, 0, 2, 0, 2]
    strategy = IFCA(cfg(num_clusters=3))
    assert strategy.num_models == 3 and IFCA(cfg()).num_models == 2
    strategy.start(to_model(clusters))
    u = dataclasses.replace(updates(CLIENTS, sequential=sequential), choice=torch.tensor(choice))
    g = to_model(GLOBAL)
    assert same_round(strategy.aggregate(1, g, u), g)  # no one global model
    got = strategy.candidates()
    assert got is not None
    np.testing.assert_allclose(
        to_flat(got), np_cluster_means(clusters, CLIENTS, COUNTS, choice), **TOL
    )
    np.testing.assert_array_equal(to_flat(got)[1], clusters[1].astype(np.float64))
    assert strategy.round_metrics() == {"ifca_clusters_chosen": 2.0}
    line = strategy.round_lines(detail=True)[0]
    assert line == "IFCA clusters: 0 ← clients 1, 3; 1 ← clients none; 2 ← clients 0, 2, 4"
    assert strategy.round_lines(detail=False)[0].endswith("2 ← 3 clients")
    with pytest.raises(ValueError, match="choices"):
        strategy.aggregate(2, g, dataclasses.replace(u, choice=None))


def test_ifca_with_one_cluster_is_fedavg():
    one = IFCA(cfg(num_clusters=1))
    one.start(to_model(GLOBAL[None]))
    u = dataclasses.replace(updates(CLIENTS), choice=torch.zeros(5, dtype=torch.long))
    one.aggregate(1, to_model(GLOBAL), u)
    got = one.candidates()
    assert got is not None
    expected = FedAvg(cfg()).aggregate(1, to_model(GLOBAL), u)
    assert all(torch.equal(got[k][0], expected[k]) for k in expected)


# -- checkpoints -----------------------------------------------------------------------

# The stateful strategies with parameters that exercise their state.
STATEFUL_CONFIGS = {
    "fedavgm": cfg(server_learning_rate=0.7, server_momentum=0.9),
    "fedadagrad": cfg(server_learning_rate=0.1, tau=1e-9),
    "fedadam": cfg(server_learning_rate=0.1, beta_1=0.9, beta_2=0.99, tau=1e-9),
    "fedyogi": cfg(server_learning_rate=0.01, beta_1=0.9, beta_2=0.99, tau=1e-3),
    "dp_fedavg": cfg(seed=3, dp_clipping_norm=0.1, dp_noise_multiplier=1.0),
    "scaffold": cfg(server_learning_rate=0.5, local_epochs=2, batch_size=8, learning_rate=0.1),
}


def same_round(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_checkpoint_continues_exactly(name):
    config = STATEFUL_CONFIGS.get(name, cfg(strategy=name, reptile_step_size=0.5))
    cls = STRATEGIES[name]
    fits: list[FitInstructions] = []
    straight = run_rounds(cls(config), GLOBAL, ROUNDS, fits=fits)

    first = cls(config)
    resumed_fits: list[FitInstructions] = []
    head = run_rounds(first, GLOBAL, ROUNDS[:3], fits=resumed_fits)
    state = checkpoint.loads(checkpoint.dumps(first.state_dict()))
    second = cls(config)
    second.load_state_dict(state)
    restart = to_flat(head[-1]).astype(np.float32)
    tail = run_rounds(second, restart, ROUNDS[3:], start=4, fits=resumed_fits)
    for a, b in zip(straight, head + tail, strict=True):
        assert same_round(a, b), name
    for fa, fb in zip(fits, resumed_fits, strict=True):
        assert fa.proximal_mu == fb.proximal_mu and fa.clip_norm == fb.clip_norm
        assert (fa.correction is None) == (fb.correction is None)
        if fa.correction is not None and fb.correction is not None:
            assert same_round(fa.correction, fb.correction), name

    if name in STATEFUL_CONFIGS:  # the state matters: a fresh instance does not continue
        fresh_fits: list[FitInstructions] = []
        fresh = run_rounds(cls(config), restart, ROUNDS[3:], start=4, fits=fresh_fits)
        if name == "scaffold":  # its state steers the clients, not the server step
            assert fresh_fits[0].correction is not None and fits[3].correction is not None
            assert not same_round(fresh_fits[0].correction, fits[3].correction)
        else:
            assert not same_round(fresh[-1], straight[-1]), name


def test_krum_scores_of_mutual_nearest_neighbours_tie_exactly():
    """With one neighbour counted, a and b (each other's nearest) share one distance, so
    their scores are equal to the bit and the lower index wins in either execution (a score
    taken as the total less the farthest would differ in the last bits here)."""
    from scarcity.strategies.functions import krum_scores

    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        flat = torch.randn(3, 5, generator=gen)
        flat[2] = flat[1] + 1e-3 * torch.randn(5, generator=gen)
        scores = krum_scores(flat, 1)  # 3 models, f = 1: the nearest one counts
        assert scores[1].item() == scores[2].item()
        assert scores[0].item() > scores[1].item()


def _bulyan_select_directly(flat: torch.Tensor, f: int) -> list[int]:
    """Bulyan's selection as its definition reads: Krum over the remaining models, again."""
    from scarcity.strategies.functions import (
        krum_scores_from_distances,
        pairwise_squared_distances,
    )

    distances = pairwise_squared_distances(flat)
    remaining = list(range(flat.shape[0]))
    selected = []
    for _ in range(flat.shape[0] - 2 * f):
        index = torch.tensor(remaining)
        scores = krum_scores_from_distances(distances[index][:, index], f)
        selected.append(remaining.pop(int(torch.argmin(scores))))
    return selected


@pytest.mark.parametrize("seed", range(6))
def test_bulyans_incremental_selection_is_repeated_krum(seed):
    from scarcity.strategies.functions import bulyan_select

    gen = torch.Generator().manual_seed(seed)
    for size, f in ((7, 1), (11, 2), (23, 5), (60, 3), (60, 14)):
        flat = torch.randn(size, 9, generator=gen)
        flat[: size // 3] += 4.0  # a cluster apart, so that selections are not all central
        assert bulyan_select(flat, f).tolist() == _bulyan_select_directly(flat, f), (size, f)
