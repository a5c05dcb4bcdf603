"""Personalised evaluation: the global model on each client's own held-out rows
(`client_test_fraction`), reported as the mean and the worst 10 % of clients (as LEAF reports
the spread of per-client accuracy) and per client in the insights."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scarcity import Simulation, resolve_config
from scarcity.core.data import client_sizes, make_federated_data, natural_split
from tests.scarcity.test_batched import assert_same_results

DIGITS = {
    "preset": "stage3",  # insights, with the shared model as an explicit option
    "federated_averaging": True,
    "dataset": "digits",
    "partition": "dirichlet",
    "dirichlet_alpha": 0.3,
    "num_clients": 8,
    "rounds": 3,
    "batch_size": 16,
    "learning_rate": 0.1,
    "client_test_fraction": 0.25,
}


def _rows(x, y):
    """A client's (features, label) rows as a sorted list: a multiset to compare."""
    return sorted(map(tuple, torch.cat([x, y[:, None].float()], dim=1).tolist()))


def test_each_client_holds_out_a_share_of_its_own_rows():
    config = resolve_config(DIGITS)
    data = make_federated_data(config)
    whole = make_federated_data(config.model_copy(update={"client_test_fraction": 0.0}))
    parts = natural_split(config).parts
    for i, part in enumerate(parts):
        held = data.client_test_y[i]
        assert len(held) == min(len(part) - 1, round(len(part) * 0.25)) > 0
        assert len(data.client_y[i]) + len(held) == len(part)
        # train and held-out rows are the client's rows, each once
        split = _rows(data.client_x[i], data.client_y[i]) + _rows(data.client_test_x[i], held)
        assert sorted(split) == _rows(whole.client_x[i], whole.client_y[i])
    assert client_sizes(config) == [len(y) for y in data.client_y]  # what the budget counts


def test_personal_accuracy_is_the_global_models_accuracy_on_each_clients_rows():
    config = resolve_config(DIGITS)
    sim = Simulation(config)
    results = list(sim.rounds())
    metrics = results[-1].metrics
    model = sim.server.global_model
    per_client = []
    with torch.no_grad():
        for x, y in sim.data.client_test_sets(config.rounds):
            per_client.append(float((model(x).argmax(1) == y).double().mean()))
    expected = np.array(per_client)
    worst = max(1, math.ceil(len(expected) / 10))
    assert math.isclose(metrics["personal_accuracy_mean"], expected.mean(), rel_tol=1e-9)
    assert math.isclose(
        metrics["personal_accuracy_worst10"], np.sort(expected)[:worst].mean(), rel_tol=1e-9
    )
    assert [i["personal_accuracy"] for i in results[-1].insights] == pytest.approx(per_client)
    print(f"personal accuracy mean {expected.mean():.3f}, worst client {expected.min():.3f}")


def test_batched_equals_the_reference_with_held_out_rows():
    config = resolve_config({**DIGITS, "preset": "stage8", "label_free": False, "rounds": 2})
    reference = list(Simulation(config.model_copy(update={"execution": "reference"})).rounds())
    batched = list(Simulation(config).rounds())
    assert_same_results(reference, batched)
    assert "personal_accuracy_mean" in batched[-1].metrics


def test_label_skew_shows_in_the_worst_clients():
    """Under strong label skew (α = 0.1) the worst clients see the global model far below the
    average client; under IID the spread is small."""

    def spread(partition, **extra):
        config = resolve_config(
            {**DIGITS, "preset": "baseline", "partition": partition, "rounds": 10, **extra}
        )
        m = list(Simulation(config).rounds())[-1].metrics
        return m["personal_accuracy_mean"] - m["personal_accuracy_worst10"]

    skewed, iid = spread("dirichlet", dirichlet_alpha=0.1), spread("iid")
    print(f"mean − worst 10 %: Dirichlet 0.1 {skewed:.3f}, IID {iid:.3f}")
    assert skewed > iid + 0.05


def test_regression_reports_the_personal_loss_and_no_split_reports_nothing():
    config = resolve_config(
        preset="baseline", dataset="diabetes", num_clients=5, rounds=2, client_test_fraction=0.3
    )
    metrics = list(Simulation(config).rounds())[-1].metrics
    assert metrics["personal_loss_worst10"] >= metrics["personal_loss_mean"] > 0
    plain = list(Simulation(config.model_copy(update={"client_test_fraction": 0.0})).rounds())
    assert not any(k.startswith("personal_") for k in plain[-1].metrics)
    with pytest.raises(ValidationError, match="client_test_fraction"):
        resolve_config(preset="stage1", client_test_fraction=0.2, ensemble_evaluation=False)
