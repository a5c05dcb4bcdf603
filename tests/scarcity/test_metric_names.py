"""`scarcity.results.METRIC_NAMES` lists every metric a round can report (the filter language of
`GET /simulations` answers 422 for any other name, so a missing one would be unsearchable)."""

from __future__ import annotations

import pytest

from scarcity import Simulation, resolve_config
from scarcity.results import METRIC_NAMES

CONFIGS = [
    {"preset": "stage8", "num_clients": 3, "rounds": 2, "samples_per_client": 8, "ssl_epochs": 1},
    {"preset": "stage7", "dataset": "iris", "num_clients": 3, "rounds": 1},
    {"preset": "stage8", "dataset": "iris", "num_clients": 3, "rounds": 1, "ssl_epochs": 1},
    {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 4,
        "clients_per_round": 3,
        "rounds": 2,
        "strategy": "dp_fedavg",
        "malicious_fraction": 0.25,
        "client_test_fraction": 0.25,
    },
    {
        "preset": "baseline",
        "dataset": "diabetes",
        "num_clients": 3,
        "rounds": 1,
        "client_test_fraction": 0.25,
    },
    {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 3,
        "rounds": 2,
        "scenario": "drift",
        "drift_blocks": 2,
        "drift_kind": "rotation",
        "learning_rate": 0.1,
    },
    {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 3,
        "rounds": 2,
        "scenario": "tasks",
        "num_tasks": 2,
    },
    {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 4,
        "rounds": 1,
        "scenario": "arrivals",
        "unseen_fraction": 0.25,
    },
    {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 3,
        "rounds": 1,
        "scenario": "availability",
    },
    {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 3,
        "rounds": 1,
        "scenario": "few_labels",
    },
    {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 4,
        "rounds": 1,
        "strategy": "ifca",
        "client_test_fraction": 0.25,
    },
    {
        "preset": "stage4",
        "dataset": "iris",
        "num_clients": 3,
        "rounds": 8,
        "scenario": "drift",
        "drift_blocks": 2,
        "learning_rate": 0.1,
        "drift_detector": "page_hinkley",
    },
]


@pytest.mark.parametrize(
    "overrides",
    CONFIGS,
    ids=[
        "stage8",
        "stage7-labelled",
        "stage8-labelled",
        "baseline-dp-attack",
        "baseline-regression",
        "drift",
        "tasks",
        "arrivals",
        "availability",
        "few_labels",
        "baseline-ifca",
        "drift-detector",
    ],
)
def test_every_reported_metric_is_a_known_name(overrides: dict) -> None:
    seen = {
        name for result in Simulation(resolve_config(overrides)).rounds() for name in result.metrics
    }
    assert seen <= set(METRIC_NAMES), seen - set(METRIC_NAMES)
    assert "loss" in seen


def test_the_runs_cover_every_name() -> None:
    seen: set[str] = set()
    for overrides in CONFIGS:
        for result in Simulation(resolve_config(overrides)).rounds():
            seen |= set(result.metrics)
    assert seen == set(METRIC_NAMES)
