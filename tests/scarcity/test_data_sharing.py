"""The seed's data-sharing rules per stage, for new requests.

Stage 3–5 send the server insights, not weights; stage 6+ share expert weights only peer to
peer (gossip); stage 8 reads no label of the training data and is scored by a linear probe on
held-out labelled rows (`label_free`, `scarcity.core.probe`). The shared model stays an
explicit option (`federated_averaging`) for a supervised hybrid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import scarcity.simulation as simulation_module
from scarcity import Simulation, resolve_config, run_simulation
from scarcity.config import SimulationConfig, stored_config
from scarcity.core.probe import RIDGE, probe_scores
from scarcity.core.server import Server
from scarcity.strategies.fedavg import FedAvg
from tests.scarcity.test_batched import assert_same_results

EXECUTIONS = ["reference", "batched"]


class WeightsReachedTheServer(AssertionError):
    pass


@pytest.fixture
def server_refuses_weights(monkeypatch):
    """Any model weights handed to the server (aggregated or set) fail the test."""

    def refuse(*args, **kwargs):
        raise WeightsReachedTheServer("model weights reached the server")

    monkeypatch.setattr(Server, "set_global_weights", refuse)
    monkeypatch.setattr(FedAvg, "aggregate", refuse)


@pytest.mark.parametrize("preset", ["stage3", "stage5", "stage6", "stage8"])
@pytest.mark.parametrize("execution", EXECUTIONS)
def test_from_stage3_no_model_weights_reach_the_server(server_refuses_weights, preset, execution):
    config = resolve_config(preset=preset, execution=execution, rounds=2)
    assert not config.federated_averaging
    results = run_simulation(config)
    assert all(r.insights for r in results)  # what the clients do send
    assert not any(k.startswith("test_") for r in results for k in r.metrics)
    if config.gossip:  # expert weights travel between peers instead
        assert all(r.gossip_pairs for r in results)


def test_the_shared_model_is_an_explicit_option_and_the_check_sees_it(server_refuses_weights):
    hybrid = resolve_config(preset="stage3", federated_averaging=True, rounds=1)
    with pytest.raises(WeightsReachedTheServer):
        run_simulation(hybrid)


def _with_permuted_training_labels(monkeypatch, classes: int) -> None:
    """Every client's training labels mapped through a fixed permutation of the classes (the
    held-out rows keep theirs)."""
    make = simulation_module.make_federated_data
    permutation = torch.tensor(np.random.default_rng(0).permutation(classes))

    def permuted(config):
        data = make(config)
        return dataclasses.replace(data, client_y=tuple(permutation[y] for y in data.client_y))

    monkeypatch.setattr(simulation_module, "make_federated_data", permuted)


DIGITS_STAGE8 = {
    "preset": "stage8",
    "dataset": "digits",
    "partition": "dirichlet",
    "dirichlet_alpha": 0.5,
    "num_clients": 6,
    "rounds": 3,
    "batch_size": 16,
}


def _without_probe(results):
    out = []
    for r in results:
        d = r.to_dict()
        for key in ("duration_seconds", "logs"):
            d.pop(key)
        d["metrics"].pop("probe_accuracy")
        out.append(d)
    return out


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_stage8_reads_no_training_label(monkeypatch, execution):
    config = resolve_config(DIGITS_STAGE8, execution=execution, num_clients=4, rounds=2)
    assert config.label_free
    plain = run_simulation(config)
    _with_permuted_training_labels(monkeypatch, config.output_dim)
    permuted = run_simulation(config)
    assert _without_probe(permuted) == _without_probe(plain)
    # The check sees labels being read: the supervised stage 8 changes with them.
    supervised = config.model_copy(update={"label_free": False})
    monkeypatch.undo()
    unpermuted = run_simulation(supervised)
    _with_permuted_training_labels(monkeypatch, config.output_dim)
    assert run_simulation(supervised)[-1].metrics["loss"] != unpermuted[-1].metrics["loss"]


def test_stage8_reports_the_self_supervised_loss_and_a_probe_well_above_chance():
    config = resolve_config(DIGITS_STAGE8, rounds=8, num_clients=10)
    results = run_simulation(config)
    metrics = results[-1].metrics
    assert metrics["loss"] == pytest.approx(metrics["recon_loss"])  # the training objective
    assert "ensemble_accuracy" not in metrics and "test_accuracy" not in metrics
    print(f"probe accuracy {metrics['probe_accuracy']:.3f} (chance 0.1)")
    assert metrics["probe_accuracy"] > 0.3
    for insight in results[-1].insights:  # nothing supervised in any expert's report
        assert all("train_loss" not in e.metrics for e in insight.experts.values())


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"client_test_fraction": 0.3, "clients_per_round": 4, "quantity_skew": 0.0},
        {"router_strategy": "variance", "partition": "iid"},
    ],
    ids=["test-set", "own-rows-sampled", "variance-router"],
)
def test_both_executions_agree_label_free(overrides):
    config = resolve_config({**DIGITS_STAGE8, **overrides})
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    batched = run_simulation(config)
    assert "probe_accuracy" in batched[-1].metrics
    assert_same_results(reference, batched)


def test_both_executions_agree_label_free_with_unequal_sizes_on_synthetic_data():
    config = resolve_config(preset="stage8", quantity_skew=1.0, batch_size=8, rounds=3)
    assert Simulation(config).pool.ragged_sizes is not None
    reference = run_simulation(config.model_copy(update={"execution": "reference"}))
    batched = run_simulation(config)
    assert "probe_loss" in batched[-1].metrics  # synthetic data is a regression
    assert_same_results(reference, batched)


def test_the_probe_is_a_ridge_regression_on_the_latents():
    """Literal arrays against NumPy's least squares on the augmented system."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3))
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0])
    weight = rng.normal(size=(2, 3))
    bias = rng.normal(size=2)
    features = np.hstack([x @ weight.T + bias, np.ones((9, 1))])
    fit, held = features[:5], features[5:]
    penalty = np.sqrt(RIDGE * 5) * np.eye(3)
    coefficients = np.linalg.lstsq(
        np.vstack([fit, penalty]), np.vstack([np.eye(3)[y[:5]], np.zeros((3, 3))]), rcond=None
    )[0]
    expected = float(((held @ coefficients).argmax(axis=1) == y[5:]).mean())
    got = probe_scores(
        "classification",
        3,
        torch.tensor(weight)[None],
        torch.tensor(bias)[None],
        [(torch.tensor(x), torch.tensor(y))],
    )
    assert got.tolist() == [expected]
    regression = probe_scores(
        "regression",
        1,
        torch.tensor(weight)[None],
        torch.tensor(bias)[None],
        [(torch.tensor(x), torch.tensor(y, dtype=torch.float64)[:, None])],
    )
    coefficients = np.linalg.lstsq(
        np.vstack([fit, penalty]), np.concatenate([y[:5], np.zeros(3)]), rcond=None
    )[0]
    assert regression.item() == pytest.approx(float(((held @ coefficients - y[5:]) ** 2).mean()))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"federated_averaging": True}, "label_free"),
        ({"structure_discovery": False}, "label_free"),
        ({"malicious_fraction": 0.2, "attack": "label_flip"}, "attack"),
    ],
)
def test_label_free_refuses_what_would_read_labels(overrides, field):
    with pytest.raises(ValidationError, match=field):
        resolve_config(preset="stage8", **overrides)


def test_the_meta_learner_hears_only_what_the_clients_send():
    with pytest.raises(ValidationError, match="meta_learning: .* needs insight_exchange"):
        resolve_config(preset="stage5", insight_exchange=False)
    # a run stored by an earlier engine keeps what it did
    earlier = resolve_config(preset="stage5", insight_exchange=False, engine_version=2)
    assert run_simulation(earlier.model_copy(update={"rounds": 2}))[-1].meta_params


def test_stored_stage8_runs_keep_the_supervised_round():
    stored = resolve_config(preset="stage8", federated_averaging=True, label_free=False)
    fields = stored.model_dump(mode="json")
    del fields["label_free"]  # a config stored (or checkpointed) before the field existed
    assert not SimulationConfig.model_validate(stored_config(fields)).label_free
