"""`balanced` routing (the stage7/stage8 default): every expert of the portfolio trains.

The seed's variance rule picks StructureExpert or DriftExpert only, so the Memory and
MetaAdaptation experts of stage 7 never trained (empty replay buffer, one lr in the history).
"""

import numpy as np
import pytest

from scarcity import resolve_config, run_simulation
from scarcity.config import stored_config
from scarcity.core.router import Router

from .test_batched import assert_same_results

FOUR = (
    "StructureExpert",
    "DriftExpert",
    "MemoryConsolidationExpert",
    "MetaAdaptationExpert",
)


def _trained(results):
    usage = dict.fromkeys(FOUR, 0)
    for result in results:
        for name, count in result.expert_usage.items():
            usage[name] += count
    return usage


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_stage7_with_default_settings_trains_all_four_experts_within_5_rounds(execution):
    config = resolve_config(preset="stage7", execution=execution)
    assert config.router_strategy == "balanced" and config.rounds == 5
    results = run_simulation(config)
    assert all(count > 0 for count in _trained(results).values()), _trained(results)
    last = {i.client_id: i.experts for i in results[-1].insights}
    for experts in last.values():
        assert experts["MemoryConsolidationExpert"].summary["memory_buffer_size"] > 0
        assert experts["MetaAdaptationExpert"].summary["lr_history_length"] > 1
    assert results[-1].metrics["replay_error"] > 0


def test_the_seeds_variance_rule_leaves_two_of_the_four_untrained():
    """What the issue found, kept as a guard that the test above can fail."""
    results = run_simulation(resolve_config(preset="stage7", router_strategy="variance"))
    usage = _trained(results)
    assert usage["MemoryConsolidationExpert"] == usage["MetaAdaptationExpert"] == 0
    assert results[-1].metrics["replay_error"] == 0


def test_each_client_trains_every_expert_once_in_four_rounds_in_the_variance_order():
    router = Router(4, "balanced", threshold=0.5)
    quiet = np.zeros((6, 3))  # variance 0: the variance rule says DriftExpert
    picks = [FOUR[router.select_expert(quiet, FOUR)] for _ in range(8)]
    assert picks[:4] == [
        "MetaAdaptationExpert",
        "DriftExpert",
        "StructureExpert",
        "MemoryConsolidationExpert",
    ]
    assert picks[4:] == picks[:4]
    loud = np.arange(18.0).reshape(6, 3)  # variance > 0.5: StructureExpert before DriftExpert
    router = Router(4, "balanced", threshold=0.5)
    assert [FOUR[router.select_expert(loud, FOUR)] for _ in range(3)][1:] == [
        "StructureExpert",
        "DriftExpert",
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"preset": "stage7"},
        {"preset": "stage8", "dataset": "digits", "num_clients": 6, "rounds": 6},
        {"preset": "stage7", "num_clients": 7, "clients_per_round": 3, "rounds": 6},
        {"preset": "stage7", "quantity_skew": 1.0, "variance_threshold": 1.0, "rounds": 6},
        {"preset": "stage6", "router_strategy": "balanced"},
    ],
    ids=["stage7", "stage8-digits", "stage7-sampled", "stage7-skewed", "stage6-two-experts"],
)
def test_batched_matches_the_reference(overrides):
    reference = run_simulation(resolve_config(overrides, execution="reference"))
    batched = run_simulation(resolve_config(overrides, execution="batched"))
    assert_same_results(reference, batched)


def test_stored_stage7_and_stage8_configs_keep_the_variance_rule():
    """A stored config carries every field it was resolved with, router_strategy included."""
    for preset in ("stage7", "stage8"):
        old = resolve_config(preset=preset, router_strategy="variance").model_dump(mode="json")
        assert resolve_config(stored_config(old)).router_strategy == "variance"
        assert resolve_config(preset=preset).router_strategy == "balanced"
