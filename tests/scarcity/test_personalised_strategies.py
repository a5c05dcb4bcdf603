"""The personalised baselines inside real simulations: local, fedavg_ft, ditto, ifca.

The update rules are checked on literal arrays beside their components
(tests/scarcity/components/test_personal_models.py, test_clusters.py) and in
test_strategies.py; here the whole round: what each strategy leaves of FedAvg, that personal
evaluation (`Simulation.score_clients`) reads each client's own model, both executions agree,
checkpoints resume exactly, and IFCA finds two planted concepts.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import scarcity.simulation as simulation_module
from scarcity import Simulation, resolve_config, run_simulation
from scarcity.core.data import make_federated_data
from tests.scarcity.test_batched import assert_same_results

PERSONALISED = ["local", "fedavg_ft", "ditto", "ifca"]

DIGITS = {
    "preset": "baseline",
    "dataset": "digits",
    "partition": "dirichlet",
    "dirichlet_alpha": 0.3,
    "num_clients": 6,
    "rounds": 3,
    "batch_size": 16,
    "learning_rate": 0.1,
    "client_test_fraction": 0.25,
}


def _run(**overrides):
    sim = Simulation(resolve_config({**DIGITS, **overrides}))
    return sim, list(sim.rounds())


def _weights_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("strategy", ["ditto", "fedavg_ft"])
def test_ditto_and_fedavg_ft_leave_fedavgs_global_model_exactly(strategy):
    """Their personal models take their own shuffles: the global model, the training loss and
    the test metrics are FedAvg's to the bit, the personal scores are their own."""
    fedavg_sim, fedavg = _run(strategy="fedavg")
    sim, results = _run(strategy=strategy)
    assert _weights_equal(sim.server.global_weights(), fedavg_sim.server.global_weights())
    for got, want in zip(results, fedavg, strict=True):
        for key in ("loss", "test_loss", "test_accuracy"):
            assert got.metrics[key] == want.metrics[key], key
    assert (
        results[-1].metrics["personal_accuracy_mean"]
        != fedavg[-1].metrics["personal_accuracy_mean"]
    )
    # The fine-tuned copies leave the global model alone (scored again: the same).
    before = sim.server.global_weights()
    again = sim.score_clients(*sim.data.pooled_client_tests(3))
    assert _weights_equal(sim.server.global_weights(), before)
    assert torch.equal(again, sim.score_clients(*sim.data.pooled_client_tests(3)))


def test_fedavg_ft_scores_each_client_with_the_global_model_fine_tuned_on_its_rows():
    """One full-batch epoch: each client's copy is one gradient step from the global model on
    its training rows, written out here with autograd on a fresh module."""
    sim, _ = _run(strategy="fedavg_ft", batch_size=0, rounds=2)
    x, y, owner = sim.data.pooled_client_tests(2)
    scores = sim.score_clients(x, y, owner)
    global_weights = sim.server.global_weights()
    for c in range(DIGITS["num_clients"]):
        model = torch.nn.Linear(64, 10)
        model.load_state_dict(global_weights)
        cx, cy = sim.data.client_data(c, 2)
        loss = torch.nn.functional.cross_entropy(model(cx), cy)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= DIGITS["learning_rate"] * g
            mine = owner == c
            accuracy = float((model(x[mine]).argmax(1) == y[mine]).double().mean())
        assert math.isclose(float(scores[c]), accuracy, abs_tol=1e-9), c


def test_local_trains_each_client_alone_from_the_common_start():
    """Full batches (no draw): after R rounds client i's model is R gradient steps of its own
    loss from the initial model w⁰, which the server keeps; nothing is averaged."""
    rounds = 3
    sim = Simulation(resolve_config({**DIGITS, "strategy": "local", "batch_size": 0}))
    start = sim.server.global_weights()
    results = list(sim.rounds())
    assert _weights_equal(sim.server.global_weights(), start)
    models = sim.pool.own_models().params if sim.pool is not None else None
    assert models is not None
    x, y = sim.data.test_set(rounds)
    losses, accuracies = [], []
    for c in range(DIGITS["num_clients"]):
        model = torch.nn.Linear(64, 10)
        model.load_state_dict(start)
        cx, cy = sim.data.client_data(c, 1)
        for _ in range(rounds):
            loss = torch.nn.functional.cross_entropy(model(cx), cy)
            grads = torch.autograd.grad(loss, list(model.parameters()))
            with torch.no_grad():
                for p, g in zip(model.parameters(), grads, strict=True):
                    p -= DIGITS["learning_rate"] * g
        assert torch.allclose(models["weight"][c], model.weight, atol=1e-5), c
        assert torch.allclose(models["bias"][c], model.bias, atol=1e-5), c
        with torch.no_grad():
            losses.append(float(torch.nn.functional.cross_entropy(model(x), y)))
            accuracies.append(float((model(x).argmax(1) == y).double().mean()))
    # test metrics: the mean over the clients of their own models'
    metrics = results[-1].metrics
    assert math.isclose(metrics["test_loss"], sum(losses) / len(losses), rel_tol=1e-5)
    assert math.isclose(metrics["test_accuracy"], sum(accuracies) / len(accuracies), rel_tol=1e-5)
    assert not torch.allclose(models["weight"][0], models["weight"][1])


def test_local_with_one_client_is_fedavg_with_one_client():
    """FedAvg of one client broadcasts back what it sent: the same trajectory."""
    one = {"num_clients": 1, "partition": "iid", "rounds": 3}
    (_, local), (_, fedavg) = _run(strategy="local", **one), _run(strategy="fedavg", **one)
    for a, b in zip(local, fedavg, strict=True):
        assert a.metrics["loss"] == b.metrics["loss"]  # the same training, to the bit
        for key in ("personal_accuracy_mean", "test_loss", "test_accuracy"):  # other sums
            assert math.isclose(a.metrics[key], b.metrics[key], rel_tol=1e-6), key


def test_ifca_with_one_cluster_is_fedavg():
    (_, ifca), (_, fedavg) = _run(strategy="ifca", num_clusters=1), _run(strategy="fedavg")
    for a, b in zip(ifca, fedavg, strict=True):
        assert a.metrics["ifca_clusters_chosen"] == 1.0
        assert a.metrics["loss"] == b.metrics["loss"]
        for key in ("personal_accuracy_mean", "test_loss", "test_accuracy"):
            assert math.isclose(a.metrics[key], b.metrics[key], rel_tol=1e-6), key


def test_ifca_clients_train_the_cluster_with_their_lowest_loss():
    sim = Simulation(resolve_config({**DIGITS, "strategy": "ifca", "num_clusters": 3}))
    pool = sim.pool
    assert pool is not None and pool.clusters is not None
    assert (pool.clusters.cluster == -1).all()  # no estimate before round 1
    clusters = sim.strategy.candidates()
    assert clusters is not None and clusters["weight"].shape == (3, 10, 64)
    assert not torch.equal(clusters["weight"][0], clusters["weight"][1])  # started apart
    first = {k: t.clone() for k, t in clusters.items()}
    result = sim.run_round()
    # each client's estimate is the argmin of its losses, on its rows of round 1, of the
    # three models it received
    for c in range(DIGITS["num_clients"]):
        cx, cy = sim.data.client_data(c, 1)
        losses = []
        for j in range(3):
            model = torch.nn.Linear(64, 10)
            model.load_state_dict({k: t[j] for k, t in first.items()})
            with torch.no_grad():
                losses.append(float(torch.nn.functional.cross_entropy(model(cx), cy)))
        assert int(pool.clusters.cluster[c]) == min(range(3), key=losses.__getitem__), c
    assert result.metrics["ifca_clusters_chosen"] == len(set(pool.clusters.cluster.tolist()))
    assert any(line.startswith("IFCA clusters: 0 ← clients") for line in result.logs)


def _two_concepts(config):
    """The odd clients see every label y as 9 − y, in training and held-out rows alike."""
    data = make_federated_data(config)

    def relabel(i, y):
        return 9 - y if i % 2 else y

    return dataclasses.replace(
        data,
        client_y=tuple(relabel(i, y) for i, y in enumerate(data.client_y)),
        client_test_y=tuple(relabel(i, y) for i, y in enumerate(data.client_test_y)),
    )


def test_ifca_recovers_two_planted_concepts(monkeypatch):
    """Two groups of four clients whose labels are permuted differently, five seeds: the
    estimates match the groups up to relabelling, or (a random start IFCA cannot leave) every
    client chose one cluster in round 1 — never a mix. Recovered, the clients' own rows score
    far above FedAvg's one model for both concepts."""
    monkeypatch.setattr(simulation_module, "make_federated_data", _two_concepts)
    base = {**DIGITS, "partition": "iid", "num_clients": 8, "rounds": 5, "learning_rate": 0.5}
    groups = torch.arange(8) % 2
    recovered = 0
    for seed in range(5):
        sim, results = _run(**base, strategy="ifca", seed=seed)
        assert sim.pool is not None and sim.pool.clusters is not None
        chosen = sim.pool.clusters.cluster
        if torch.equal(chosen, groups) or torch.equal(chosen, 1 - groups):
            recovered += 1
            _, fedavg = _run(**base, strategy="fedavg", seed=seed)
            ifca_score = results[-1].metrics["personal_accuracy_mean"]
            assert ifca_score > fedavg[-1].metrics["personal_accuracy_mean"] + 0.3
        else:
            assert len(set(chosen.tolist())) == 1, (seed, chosen)
    print(f"IFCA recovered the two concepts in {recovered} of 5 seeds")
    assert recovered >= 3


@pytest.mark.parametrize("strategy", PERSONALISED)
@pytest.mark.parametrize(
    "extra",
    [
        {"clients_per_round": 4},  # Dirichlet 0.3: clients of unequal sizes
        {"model": "mlp", "clients_per_round": 5, "rounds": 2},
    ],
    ids=["linear_sampled_unequal", "mlp_sampled"],
)
def test_batched_matches_the_reference(strategy, extra):
    config = resolve_config({**DIGITS, "strategy": strategy, **extra})
    pool = Simulation(config).pool
    assert pool is not None and pool.ragged_sizes is not None  # really padded
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    batched = run_simulation(config)
    assert_same_results(reference, batched)
    assert "personal_accuracy_mean" in batched[-1].metrics
    if strategy == "ifca":  # the same clients chose the same clusters
        lines = [[line for line in r.logs if line.startswith("IFCA")] for r in batched]
        assert lines == [[line for line in r.logs if line.startswith("IFCA")] for r in reference]


@pytest.mark.parametrize("execution", ["batched", "reference"])
@pytest.mark.parametrize("strategy", PERSONALISED)
def test_checkpoint_resumes_exactly(strategy, execution):
    """Mid-run, with a sample each round: the clients' own models, personal models and
    estimates and IFCA's clusters are in the checkpoint (the personal scores read them;
    FedAvg-FT keeps nothing beyond FedAvg's)."""
    config = resolve_config(
        {**DIGITS, "strategy": strategy, "rounds": 4, "clients_per_round": 4},
        execution=execution,
    )
    straight = [r.metrics for r in run_simulation(config)]
    sim = Simulation(config)
    first = [sim.run_round().metrics for _ in range(2)]
    blob = sim.checkpoint()
    resumed = Simulation.restore(config, blob)
    assert first + [r.metrics for r in resumed.rounds()] == straight
    if strategy == "fedavg_ft":
        return
    # the state matters: a fresh simulation given only the run's RNGs and server does not
    fresh = Simulation(config)
    fresh.rounds_completed = 2
    fresh.generator.set_state(sim.generator.get_state())
    fresh.rng.bit_generator.state = sim.rng.bit_generator.state
    fresh.server.load_state_dict(sim.server.state_dict())
    assert [r.metrics for r in fresh.rounds()] != straight[2:]


def test_score_clients_is_nan_without_rows_and_the_global_models_for_fedavg():
    sim, _ = _run(strategy="fedavg", rounds=1)
    x, y, owner = sim.data.pooled_client_tests(1)
    mine = owner != 2  # client 2's rows left out
    scores = sim.score_clients(x[mine], y[mine], owner[mine])
    assert math.isnan(scores[2]) and not scores[[0, 1, 3, 4, 5]].isnan().any()
    expected = sim.server.evaluate_clients(x, y, owner, DIGITS["num_clients"])
    assert torch.equal(sim.score_clients(x, y, owner), expected)
    local, _ = _run(strategy="local", rounds=1)
    got = local.score_clients(x[mine], y[mine], owner[mine])
    assert math.isnan(got[2]) and got.shape == (DIGITS["num_clients"],)


@pytest.mark.parametrize("strategy", PERSONALISED)
def test_every_personalised_strategy_runs_on_regression_data(strategy):
    config = resolve_config(
        preset="baseline",
        dataset="diabetes",
        num_clients=4,
        rounds=2,
        client_test_fraction=0.25,
        strategy=strategy,
    )
    metrics = run_simulation(config)[-1].metrics
    assert metrics["personal_loss_worst10"] >= metrics["personal_loss_mean"] > 0
    assert metrics["test_loss"] > 0 and "test_accuracy" not in metrics
