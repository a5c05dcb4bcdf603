"""Every round's bytes up and down (`scarcity.accounting`): equal to the sizes of what the round
moves, counted here independently of the engine's counting, the same in both executions,
resumed exactly from a checkpoint, and absent from runs of engine_version 7 (the version before)."""

from __future__ import annotations

from typing import Any

import pytest

from scarcity import Simulation, resolve_config, run_simulation
from scarcity import checkpoint as checkpoint_format
from scarcity.accounting import BYTE_METRICS

FLOAT32 = 4
#: synthetic data's defaults: 10 features, one regression target, a latent of 4
LINEAR = (10 * 1 + 1) * FLOAT32  # the shared Linear(10, 1)
MLP = (10 * 8 + 8 + 8 * 1 + 1) * FLOAT32  # Linear(10, 8), ReLU, Linear(8, 1)
#: one expert of stage 6: head Linear(10, 1), encoder Linear(10, 4), decoder Linear(4, 10)
EXPERT = (11 + 10 * 4 + 4 + 4 * 10 + 10) * FLOAT32

BASELINE = {"preset": "baseline", "num_clients": 5, "clients_per_round": 3, "rounds": 2}
STAGE6 = {"preset": "stage6", "num_clients": 5, "rounds": 2, "samples_per_client": 20}


def run(overrides: dict[str, Any], **more: Any) -> list[Any]:
    return run_simulation(resolve_config({**overrides, **more}))


def bytes_of(results: list[Any]) -> list[dict[str, float]]:
    return [{k: r.metrics[k] for k in BYTE_METRICS} for r in results]


def payload_bytes(value: Any) -> int:
    """The module's rule, walking an insight's JSON form: 8 per number, strings in UTF-8
    (dict keys are the schema, not counted)."""
    if isinstance(value, dict):
        return sum(payload_bytes(v) for v in value.values())
    if isinstance(value, str):
        return len(value.encode())
    assert isinstance(value, int | float), value
    return 8


def test_fedavg_moves_the_model_down_and_up_to_each_participant():
    results = run(BASELINE)
    for k, r in enumerate(results, start=1):
        assert r.metrics["bytes_up"] == r.metrics["bytes_down"] == 3 * LINEAR
        assert r.metrics["bytes_up_total"] == r.metrics["bytes_down_total"] == k * 3 * LINEAR
    mlp = run(BASELINE, model="mlp", hidden_sizes=[8], clients_per_round=None)
    assert mlp[0].metrics["bytes_up"] == mlp[0].metrics["bytes_down"] == 5 * MLP


def test_scaffold_adds_the_control_variate_down_and_its_change_up():
    (result,) = run(BASELINE, strategy="scaffold", rounds=1)
    assert result.metrics["bytes_up"] == result.metrics["bytes_down"] == 3 * (LINEAR + LINEAR)


def test_qfedavg_clients_also_send_their_loss_of_the_global_model():
    (result,) = run(BASELINE, strategy="qfedavg", rounds=1)
    assert result.metrics["bytes_up"] == 3 * (LINEAR + 8)  # F_k(w) as a float64
    assert result.metrics["bytes_down"] == 3 * LINEAR


def test_local_training_moves_nothing():
    assert {v for r in run(BASELINE, strategy="local") for v in bytes_of([r])[0].values()} == {0}


def test_ifca_sends_every_cluster_model_down_and_the_chosen_index_up():
    (result,) = run(BASELINE, strategy="ifca", num_clusters=3, rounds=1)
    assert result.metrics["bytes_down"] == 3 * 3 * LINEAR  # 3 participants × 3 clusters
    assert result.metrics["bytes_up"] == 3 * (LINEAR + 8)  # its model and an int64 index


@pytest.mark.parametrize("strategy", ["ditto", "fedavg_ft"])
def test_personal_models_stay_on_the_clients(strategy):
    (result,) = run(BASELINE, strategy=strategy, rounds=1)
    assert result.metrics["bytes_up"] == result.metrics["bytes_down"] == 3 * LINEAR


def test_insights_meta_parameters_and_gossip_of_stage6():
    results = run(STAGE6)
    sim_pairs = 0
    for r in results:
        insights = sum(payload_bytes(i.to_dict()) for i in r.insights)
        assert len(r.insights) == 5 and insights > 0
        meta = 5 * 8 * len(r.meta_params)  # each of the 5 participants receives them
        gossip = 2 * EXPERT * len(r.gossip_pairs)  # each side of a pair sends and receives one
        sim_pairs += len(r.gossip_pairs)
        assert r.metrics["bytes_up"] == insights + gossip
        assert r.metrics["bytes_down"] == meta + gossip
    assert sim_pairs == 4  # 5 clients: two pairs a round, one sits out
    assert results[1].metrics["bytes_up_total"] == sum(r.metrics["bytes_up"] for r in results)


def test_stage6_with_the_shared_model_adds_fedavgs_bytes():
    alone, shared = run(STAGE6, rounds=1), run(STAGE6, rounds=1, federated_averaging=True)
    for key in ("bytes_up", "bytes_down"):
        assert shared[0].metrics[key] - alone[0].metrics[key] == 5 * LINEAR


def test_meta_init_sends_theta_to_newcomers_and_every_participants_experts_up():
    config = {"preset": "stage2", "num_clients": 5, "clients_per_round": 3, "rounds": 2}
    results = run(config, meta_init=True, samples_per_client=20)
    experts = 2 * EXPERT  # stage 2's portfolio: StructureExpert and DriftExpert
    seen: set[int] = set()
    for r in results:
        assert r.participants is not None
        newcomers = len(set(r.participants) - seen)
        seen |= set(r.participants)
        assert r.metrics["bytes_up"] == 3 * LINEAR + 3 * experts
        assert r.metrics["bytes_down"] == 3 * LINEAR + newcomers * experts
    assert len(seen) > 3  # the second round brought someone new


@pytest.mark.parametrize(
    "overrides",
    [
        {**BASELINE, "strategy": "scaffold"},
        {**BASELINE, "strategy": "qfedavg"},
        {**BASELINE, "strategy": "ifca"},
        {**STAGE6, "clients_per_round": 3, "federated_averaging": True, "rounds": 3},
    ],
    ids=["scaffold-sampled", "qfedavg-sampled", "ifca-sampled", "stage6-sampled-fedavg"],
)
def test_batched_and_reference_count_the_same_bytes(overrides):
    batched = bytes_of(run(overrides, execution="batched"))
    assert batched == bytes_of(run(overrides, execution="reference"))
    assert all(b["bytes_up"] > 0 and b["bytes_down"] > 0 for b in batched)


def test_a_checkpoint_resumes_the_totals_exactly():
    config = resolve_config({**STAGE6, "federated_averaging": True, "rounds": 4})
    whole = bytes_of(run_simulation(config))
    sim = Simulation(config)
    sim.run_round()
    sim.run_round()
    restored = Simulation.restore(config, sim.checkpoint())
    assert whole[2:] == bytes_of(list(restored.rounds()))
    assert whole[3]["bytes_up_total"] == sum(b["bytes_up"] for b in whole)


def test_a_checkpoint_without_totals_starts_them_at_zero():
    config = resolve_config({**BASELINE, "rounds": 3})
    sim = Simulation(config)
    sim.run_round()
    state = checkpoint_format.loads(sim.checkpoint())
    del state["accounting"]  # as written before the totals existed
    restored = Simulation.restore(config, checkpoint_format.dumps(state))
    second = restored.run_round().metrics
    assert second["bytes_up_total"] == second["bytes_up"] == 3 * LINEAR


@pytest.mark.parametrize("overrides", [BASELINE, STAGE6], ids=["baseline", "stage6"])
def test_engine_version_7_reports_no_bytes_and_the_rest_unchanged(overrides):
    before = run(overrides, engine_version=7)
    now = run(overrides)
    for old, new in zip(before, now, strict=True):
        assert not set(BYTE_METRICS) & set(old.metrics)
        assert dict(old.metrics) == {k: v for k, v in new.metrics.items() if k not in BYTE_METRICS}


def test_a_run_that_counts_nothing_keeps_its_checkpoint_layout():
    sim = Simulation(resolve_config({**BASELINE, "engine_version": 7}))
    sim.run_round()
    assert "accounting" not in checkpoint_format.loads(sim.checkpoint())


@pytest.mark.parametrize("preset", ["stage3", "stage4"])
def test_insights_with_personal_scores_count_every_number_they_carry(preset):
    """Stage 3 trains every expert, stage 4 the routed one; with FedAvg and own held-out rows
    each insight also carries its client's personal score."""
    config = {"preset": preset, "num_clients": 6, "clients_per_round": 3, "rounds": 2}
    for r in run(config, federated_averaging=True, client_test_fraction=0.3):
        assert len(r.insights) == 3 and all("personal_loss" in i for i in r.insights)
        insights = sum(payload_bytes(i.to_dict()) for i in r.insights)
        assert r.metrics["bytes_up"] == insights + 3 * LINEAR


@pytest.mark.parametrize(
    "overrides",
    [
        {"preset": "stage7", "clients_per_round": 7, "replay_size": 5, "meta_init": True},
        {"preset": "stage8", "clients_per_round": 7},
        {"preset": "stage8", "label_free": True},
        {"preset": "stage3"},
    ],
)
@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_rounds_insight_bytes_are_the_sum_over_its_insights(overrides, execution):
    sim = Simulation(resolve_config(num_clients=9, rounds=2, execution=execution, **overrides))
    for _ in range(2):
        sim.run_round()
        insights = sim.population.insights()
        expected = sum(payload_bytes(i.to_dict()) for i in insights)
        assert sim.population.insight_bytes(insights) == expected > 0
