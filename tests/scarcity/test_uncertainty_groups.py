"""The meta-learner's high / low uncertainty clients (`MetaLearner.aggregate`) are in every
round's result, the same in both executions."""

import pytest

from scarcity import resolve_config, run_simulation
from scarcity.core.meta_learner import MetaLearner

from .test_batched import assert_same_results

GROUPS = ("high_uncertainty_clients", "low_uncertainty_clients")


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_every_round_has_the_clients_above_and_below_the_mean_uncertainty(execution):
    config = resolve_config(
        preset="stage5", dataset="wine", num_clients=6, rounds=3, execution=execution
    )
    for result in run_simulation(config):
        expected = MetaLearner().aggregate(result.insights)
        groups = result.uncertainty_groups
        assert {key: list(groups[key]) for key in GROUPS} == {key: expected[key] for key in GROUPS}
        high, low = groups["high_uncertainty_clients"], groups["low_uncertainty_clients"]
        assert high and low and sorted(high + low) == list(range(6))
        mean = sum(i.uncertainty for i in result.insights) / 6
        by_id = {i.client_id: i.uncertainty for i in result.insights}
        assert all(by_id[c] > mean for c in high) and all(by_id[c] <= mean for c in low)
        assert result.to_dict()["high_uncertainty_clients"] == list(high)


def test_only_the_round_participants_are_split():
    config = resolve_config(preset="stage5", num_clients=8, clients_per_round=3, rounds=2)
    for result in run_simulation(config):
        ids = sorted(i.client_id for i in result.insights)
        groups = result.uncertainty_groups
        assert sorted(groups["high_uncertainty_clients"] + groups["low_uncertainty_clients"]) == ids


def test_without_meta_learning_there_are_none():
    (result,) = run_simulation(resolve_config(preset="stage4", rounds=1))
    assert result.uncertainty_groups == {}
    assert result.to_dict()["low_uncertainty_clients"] == []


def test_batched_and_reference_agree():
    overrides = {"preset": "stage8", "dataset": "iris", "num_clients": 7, "rounds": 3}
    reference = run_simulation(resolve_config(overrides, execution="reference"))
    batched = run_simulation(resolve_config(overrides, execution="batched"))
    assert_same_results(reference, batched)
    assert reference[-1].uncertainty_groups == batched[-1].uncertainty_groups
