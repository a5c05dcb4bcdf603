"""The ensemble predicts: each client's experts, as the router chose, on held-out rows every
round (`ensemble_loss`, `ensemble_accuracy`), the same in both executions."""

import pytest
import torch

from scarcity import Simulation, resolve_config, run_simulation
from scarcity.batched.ensemble import head_outputs
from scarcity.config import SimulationConfig, stored_config
from scarcity.core.training import make_linear

from .test_batched import assert_same_results

DIGITS = {"preset": "stage7", "dataset": "digits", "batch_size": 32, "learning_rate": 0.1}


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_the_stage7_ensemble_on_digits_is_well_above_chance(execution):
    results = run_simulation(resolve_config(DIGITS, rounds=8, execution=execution))
    accuracy = [r.metrics["ensemble_accuracy"] for r in results]
    assert accuracy[-1] > 0.4, accuracy  # ten classes: chance is 0.1
    assert all(0 < r.metrics["ensemble_loss"] < 2.3 for r in results[1:])


def _expected(sim, held_out):
    """The definition, client by client: the routed expert's head (or all experts' mean)."""
    losses, hits = [], []
    for client, (x, y) in zip(sim.population.active, held_out, strict=True):
        heads = [e.model for e in client.experts]
        selected = client.last_round.selected_expert
        with torch.no_grad():
            if selected == "all":
                out = torch.stack([h(x) for h in heads]).mean(dim=0)
            else:
                out = heads[client.expert_names.index(selected)](x)
        losses.append(float(torch.nn.functional.cross_entropy(out, y)))
        hits.append(float((out.argmax(dim=1) == y).float().mean()))
    return sum(losses) / len(losses), sum(hits) / len(hits)


@pytest.mark.parametrize(
    "overrides",
    [
        {"preset": "stage7", "dataset": "wine"},  # routed expert, the global test set
        {"preset": "stage3", "dataset": "wine"},  # every expert trained: their mean
        {"preset": "stage7", "dataset": "wine", "client_test_fraction": 0.3},  # own rows
    ],
    ids=["routed-test-set", "mean-test-set", "routed-own-rows"],
)
def test_each_client_predicts_with_its_routed_expert_on_its_held_out_rows(overrides):
    sim = Simulation(resolve_config(overrides, execution="reference", num_clients=4))
    for k in (1, 2):
        metrics = sim.run_round().metrics
        if sim.config.client_test_fraction > 0:
            held_out = sim.data.client_test_sets(k)
        else:
            held_out = [sim.data.test_set(k)] * 4
        loss, accuracy = _expected(sim, held_out)
        assert metrics["ensemble_loss"] == pytest.approx(loss, abs=1e-6)
        assert metrics["ensemble_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_synthetic_clients_predict_their_own_block_of_the_test_set():
    """The synthetic test set is one block per client, drawn from that client's distribution."""
    sim = Simulation(resolve_config(preset="stage4", execution="reference", drift=0.2))
    n = sim.data.test_rows_per_client
    assert n > 0 and len(sim.data.test_y) == 5 * n
    for k in (1, 2):
        metrics = sim.run_round().metrics
        x, y = sim.data.test_set(k)
        losses = []
        for client in sim.population.active:
            i = client.client_id
            expert = client.experts[client.expert_names.index(client.last_round.selected_expert)]
            with torch.no_grad():
                out = expert.model(x[i * n : (i + 1) * n])
            losses.append(float(((out - y[i * n : (i + 1) * n]) ** 2).mean()))
        assert metrics["ensemble_loss"] == pytest.approx(sum(losses) / 5, rel=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        {**DIGITS, "rounds": 3, "num_clients": 6},
        {"preset": "stage3", "dataset": "iris", "num_clients": 4},
        {
            **DIGITS,
            "partition": "dirichlet",
            "client_test_fraction": 0.2,
            "num_clients": 9,
            "clients_per_round": 4,
            "rounds": 4,
        },
        {
            "preset": "stage8",
            "label_free": False,  # the supervised heads predict
            "quantity_skew": 1.0,
            "drift": 0.3,
            "client_test_fraction": 0.1,
        },
        {"preset": "stage1", "dataset": "diabetes", "num_clients": 3},
    ],
    ids=["routed", "mean", "own-rows-sampled", "regression-skewed-drift", "stage1-regression"],
)
def test_batched_matches_the_reference(overrides):
    reference = run_simulation(resolve_config(overrides, execution="reference"))
    batched = run_simulation(resolve_config(overrides, execution="batched"))
    assert "ensemble_loss" in batched[-1].metrics
    assert_same_results(reference, batched)


def test_regression_reports_the_loss_and_the_baseline_nothing():
    (result,) = run_simulation(resolve_config(preset="stage2", rounds=1))
    assert "ensemble_loss" in result.metrics and "ensemble_accuracy" not in result.metrics
    (result,) = run_simulation(resolve_config(preset="baseline", dataset="iris", rounds=1))
    assert not {"ensemble_loss", "ensemble_accuracy"} & result.metrics.keys()


def test_stored_configs_report_no_ensemble_metrics():
    """A config stored before the field existed lacks it: its runs keep their metrics (the
    migration writes the same into stored rows, `tests/models/test_migrations.py`)."""
    stored = resolve_config(preset="stage7", dataset="iris", rounds=1).model_dump(mode="json")
    del stored["ensemble_evaluation"]
    config = resolve_config(stored_config(stored))
    assert config.ensemble_evaluation is False
    (result,) = run_simulation(config)
    assert "ensemble_loss" not in result.metrics
    assert SimulationConfig().ensemble_evaluation is True  # a new config


def test_the_batched_head_evaluation_is_nn_linear():
    gen = torch.Generator().manual_seed(0)
    layers = [make_linear(5, 3, gen) for _ in range(4)]
    heads = {
        "weight": torch.stack([layer.weight.detach() for layer in layers]),
        "bias": torch.stack([layer.bias.detach() for layer in layers]),
    }
    shared = torch.randn(7, 5, generator=gen)
    own = torch.randn(4, 7, 5, generator=gen)
    with torch.no_grad():
        assert torch.allclose(
            head_outputs(heads, shared), torch.stack([layer(shared) for layer in layers]), atol=1e-6
        )
        assert torch.allclose(
            head_outputs(heads, own),
            torch.stack([layer(x) for layer, x in zip(layers, own, strict=True)]),
            atol=1e-6,
        )


@pytest.mark.parametrize("preset", ["stage7", "stage3"], ids=["routed", "mean"])
def test_clients_evaluated_in_chunks_give_the_same_scores(monkeypatch, preset):
    config = resolve_config(preset=preset, dataset="wine", num_clients=5, rounds=2)
    whole = [r.metrics for r in run_simulation(config)]
    monkeypatch.setattr("scarcity.batched.ensemble.CHUNK", 2)  # chunks of 2, 2 and 1
    chunked = [r.metrics for r in run_simulation(config)]
    for a, b in zip(chunked, whole, strict=True):  # equal up to the products' float rounding
        assert a.keys() == b.keys()
        assert all(a[name] == pytest.approx(b[name], rel=1e-6, abs=1e-9) for name in a)
