"""Scenarios of who trains and what it holds (`availability`, `few_labels`, `arrivals`): each
schedule equals a direct computation from its definition, the newcomers' adapted accuracy equals
hand-derived SGD, both executions agree and a run resumed mid-scenario continues exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scarcity import Simulation, resolve_config
from scarcity.core.data import make_federated_data, scenario_rows
from scarcity.scenarios import Arrivals, Availability, ClientRows, FewLabels

SEED = 7


def stream(*words: int) -> np.random.Generator:
    """The scenario's own stream, as the definition states it: the seed, then 0xDA7A, 0x5CE."""
    return np.random.default_rng([SEED, 0xDA7A, 0x5CE, *words])


def literal_rows(clients: int = 6, rows: int = 10) -> ClientRows:
    """Client c's row i is [c, i], label i mod 3; held-out rows shifted."""
    xs = tuple(
        torch.tensor([[c, i] for i in range(rows)], dtype=torch.float32) for c in range(clients)
    )
    ys = tuple(torch.arange(rows) % 3 for _ in range(clients))
    return ClientRows(xs, ys, tuple(x + 100 for x in xs), ys)


def flat(state, path=""):
    """Every tensor of a nested state dict, by its path."""
    if torch.is_tensor(state):
        return {path: state.clone()}
    if not isinstance(state, dict | list | tuple):
        return {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    return {k: v for key, value in items for k, v in flat(value, f"{path}/{key}").items()}


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal, NaN (a state not measured yet) equal to NaN."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a[~a.isnan()], b[~b.isnan()])


def config(**overrides):
    fields = dict(preset="baseline", dataset="iris", num_clients=6, rounds=40, seed=SEED)
    return resolve_config(**(fields | overrides))


# -- availability -------------------------------------------------------------------------------
def test_random_traces_are_independent_draws_under_the_rate():
    cfg = config(scenario="availability", availability_rate=0.3)
    assert (cfg.availability_mode, cfg.availability_period) == ("random", 10)
    scenario = Availability(cfg, literal_rows(), classes=3)
    shares = []
    for r in range(1, 41):
        expected = stream(0xA7A1, r).random(6) < 0.3
        if not expected.any():  # nobody online: one client, drawn from the round's stream
            expected[stream(0xA7A3, r).integers(6)] = True
        assert scenario.online(r).tolist() == expected.tolist(), r
        shares.append(expected.mean())
    assert 0.15 < np.mean(shares) < 0.45


def test_periodic_traces_are_one_stretch_per_period_with_a_phase_per_client():
    cfg = config(
        scenario="availability",
        availability_mode="periodic",
        availability_rate=0.3,
        availability_period=5,
    )
    scenario = Availability(cfg, literal_rows(), classes=3)
    phase = stream(0xA7A2).integers(0, 5, size=6)
    trace = np.array([scenario.online(r) for r in range(1, 41)])  # [rounds, clients]
    for c in range(6):
        # on for round(0.3 · 5) = 2 rounds of every 5, starting at its phase
        on = [r for r in range(1, 41) if trace[r - 1, c]]
        assert on == [r for r in range(1, 41) if (r - 1 + phase[c]) % 5 < 2], c
        assert trace[:, c].sum() == 16
    if len(set(phase.tolist())) > 1:
        assert not (trace == trace[:, :1]).all()  # clients are online at different times


def test_a_drawn_client_that_is_offline_does_not_train():
    cfg = config(scenario="availability", availability_rate=0.4, clients_per_round=3)
    scenario = Availability(cfg, literal_rows(), classes=3)
    fell_back = 0
    for r in range(1, 41):
        drawn = torch.tensor([0, 2, 5])
        online = scenario.online(r)
        kept = scenario.available(r, drawn).tolist()
        expected = [c for c in (0, 2, 5) if online[c]]
        if expected:
            assert kept == expected
        else:  # none of them online: one online client, from the scenario's stream
            fell_back += 1
            candidates = np.flatnonzero(online)
            assert kept == [int(stream(0xA7A4, r).choice(candidates))]
    assert fell_back > 0


def test_a_run_trains_exactly_the_online_clients():
    cfg = config(
        scenario="availability",
        availability_rate=0.5,
        preset="stage2",
        rounds=6,
        num_clients=5,
    )
    sim = Simulation(cfg)
    assert isinstance(sim.scenario, Availability)
    for r in range(1, 7):
        before = flat(sim.pool.state_dict()) if r == 1 else None
        result = sim.run_round()
        online = np.flatnonzero(sim.scenario.online(r)).tolist()
        assert (list(result.participants) if result.participants else list(range(5))) == online
        if result.participants:
            assert result.metrics["clients_sampled"] == len(online)
        if before is not None and len(online) < 5:  # an offline client's state is untouched
            after = flat(sim.pool.state_dict())
            off = next(c for c in range(5) if c not in online)
            stacked = [k for k, v in before.items() if v.dim() > 0 and v.shape[0] == 5]
            assert any("weight" in k for k in stacked)
            changed = [k for k in stacked if not same(before[k][off], after[k][off])]
            assert changed == [], changed
            on = online[0]
            assert any(not same(before[k][on], after[k][on]) for k in stacked)


# -- few_labels ---------------------------------------------------------------------------------
def test_each_client_keeps_its_labelled_rows():
    cfg = config(scenario="few_labels", labelled_fraction=0.25)
    base = literal_rows(rows=10)
    scenario = FewLabels(cfg, base, classes=3)
    rng = stream(0x1AB1)
    rows = scenario.rows(1)
    for c in range(6):
        labelled = sorted(rng.permutation(10)[:3].tolist())  # ⌈0.25 · 10⌉ = 3
        assert torch.equal(rows.train_x[c], base.train_x[c][labelled])
        assert torch.equal(rows.train_y[c], base.train_y[c][labelled])
        assert rows.eval_x[c] is base.eval_x[c]
    tiny = FewLabels(config(scenario="few_labels", labelled_fraction=0.01), base, classes=3)
    assert [len(x) for x in tiny.rows(1).train_x] == [1] * 6  # at least one row each
    assert scenario.rows(9).train_x[0].tolist() == rows.train_x[0].tolist()  # chosen once


def test_supervised_training_reads_only_the_labelled_rows_and_label_free_reads_all():
    cfg = resolve_config(
        preset="baseline", dataset="digits", num_clients=3, rounds=1, scenario="few_labels"
    )
    sim = Simulation(cfg)
    sim.run_round()
    base = scenario_rows(make_federated_data(cfg))
    for c in range(3):
        n = len(base.train_x[c])
        assert len(sim.data.client_x[c]) == math.ceil(0.1 * n)
    free = resolve_config(
        preset="stage8",
        num_clients=3,
        rounds=1,
        samples_per_client=8,
        ssl_epochs=1,
        scenario="few_labels",
    )
    sim = Simulation(free)
    sim.run_round()
    assert [len(x) for x in sim.data.client_x] == [len(x) for x in sim.base_data.client_x]


# -- arrivals -----------------------------------------------------------------------------------
def test_the_unseen_clients_are_drawn_once_and_never_train():
    cfg = config(scenario="arrivals", unseen_fraction=0.34, rounds=3, preset="stage2")
    assert cfg.adapt_steps == [0, 1, 5]
    sim = Simulation(cfg)
    unseen = sorted(stream(0xA441).choice(6, size=2, replace=False).tolist())  # round(0.34 · 6)
    assert isinstance(sim.scenario, Arrivals)
    assert sim.scenario.unseen.tolist() == unseen
    for result in sim.rounds():
        assert result.participants == tuple(c for c in range(6) if c not in unseen)
        assert {"unseen_accuracy_k0", "unseen_accuracy_k1", "unseen_accuracy_k5"} <= set(
            result.metrics
        )


def test_adapted_accuracy_is_hand_derived_sgd_from_the_global_model():
    cfg = resolve_config(
        preset="baseline",
        dataset="digits",
        model="linear",
        num_clients=4,
        rounds=1,
        partition="iid",
        seed=SEED,
        scenario="arrivals",
        unseen_fraction=0.5,
        batch_size=8,
        learning_rate=0.5,
    )
    sim = Simulation(cfg)
    result = sim.run_round()
    base = scenario_rows(make_federated_data(cfg))
    w0 = sim.server.global_model.weight.detach().double()
    b0 = sim.server.global_model.bias.detach().double()
    expected = {0: [], 1: [], 5: []}
    for c in sim.scenario.unseen.tolist():
        x, y = base.train_x[c].double(), base.train_y[c]
        ex, ey = base.eval_x[c].double(), base.eval_y[c]
        w, b = w0.clone(), b0.clone()
        rng = stream(0xA443, 1, c)
        for step in range(6):
            if step in expected:
                expected[step].append(float(((ex @ w.T + b).argmax(1) == ey).double().mean()))
            if step == 5:
                break
            rows = torch.from_numpy(rng.choice(len(x), size=8, replace=False))
            xb, yb = x[rows], y[rows]
            # softmax cross-entropy: d/dlogits = (softmax − one-hot) / batch
            g = (torch.softmax(xb @ w.T + b, dim=1) - torch.eye(10, dtype=w.dtype)[yb]) / 8
            w, b = w - 0.5 * g.T @ xb, b - 0.5 * g.sum(0)
    for k, values in expected.items():
        assert result.metrics[f"unseen_accuracy_k{k}"] == pytest.approx(np.mean(values), abs=1e-9)
    assert expected[5] != expected[0]  # the steps move the model


def test_adaptation_changes_no_model_and_takes_no_draw_of_the_run():
    cfg = config(scenario="arrivals", rounds=2, dataset="digits", partition="iid")
    sim = Simulation(cfg)
    sim.run_round()
    weights = {k: v.clone() for k, v in sim.server.global_model.state_dict().items()}
    clients = flat(sim.pool.state_dict())
    torch_state = sim.generator.get_state().clone()
    numpy_state = json.dumps(sim.rng.bit_generator.state)
    global_state = torch.get_rng_state().clone()
    first = sim.scenario.model_metrics(1, sim.server.global_model)
    assert first == sim.scenario.model_metrics(1, sim.server.global_model)
    for k, v in sim.server.global_model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for k, v in flat(sim.pool.state_dict()).items():
        assert same(v, clients[k]), k
    assert torch.equal(sim.generator.get_state(), torch_state)
    assert json.dumps(sim.rng.bit_generator.state) == numpy_state
    assert torch.equal(torch.get_rng_state(), global_state)


def test_bad_settings_are_errors_naming_the_field():
    with pytest.raises(ValidationError, match="adapt_steps"):
        config(scenario="arrivals", adapt_steps=[2])
    with pytest.raises(ValidationError, match="scenario"):  # no shared model to receive
        resolve_config(preset="stage8", dataset="iris", scenario="arrivals")
    with pytest.raises(ValidationError, match="scenario"):  # accuracy needs class labels
        resolve_config(preset="baseline", dataset="diabetes", scenario="arrivals")
    with pytest.raises(ValidationError, match="availability_rate"):
        config(scenario="availability", availability_rate=0)
    with pytest.raises(ValidationError, match="labelled_fraction"):
        config(scenario="few_labels", labelled_fraction=1.5)


# -- both executions, checkpoints ---------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"scenario": "availability", "availability_rate": 0.4, "clients_per_round": 3},
        {
            "scenario": "availability",
            "availability_mode": "periodic",
            "availability_rate": 0.5,
            "availability_period": 4,
        },
        {"scenario": "few_labels", "labelled_fraction": 0.3, "preset": "stage2"},
        {"scenario": "arrivals", "unseen_fraction": 0.4, "clients_per_round": 3},
    ],
    ids=["availability-random", "availability-periodic", "few_labels", "arrivals"],
)
def test_both_executions_agree_and_a_resumed_run_continues_exactly(overrides):
    fields = (
        dict(
            preset="baseline",
            dataset="digits",
            num_clients=5,
            rounds=5,
            learning_rate=0.1,
            partition="iid",
        )
        | overrides
    )
    batched = list(Simulation(resolve_config(**fields)).rounds())
    reference = list(Simulation(resolve_config(**fields, execution="reference")).rounds())
    assert [r.participants for r in batched] == [r.participants for r in reference]
    for a, b in zip(batched, reference, strict=True):
        assert sorted(a.metrics) == sorted(b.metrics)
        for key in a.metrics:
            assert a.metrics[key] == pytest.approx(b.metrics[key], abs=1e-5), key
    for stop in (2, 3):
        sim = Simulation(resolve_config(**fields))
        for _ in range(stop):
            sim.run_round()
        resumed = Simulation.restore(resolve_config(**fields), sim.checkpoint())
        rest = list(resumed.rounds())
        assert [r.metrics for r in rest] == [r.metrics for r in batched[stop:]]
        assert [r.participants for r in rest] == [r.participants for r in batched[stop:]]
