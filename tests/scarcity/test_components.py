"""The seed's building blocks on their own: experts, router, gossip, meta-learner."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from scarcity import (
    Client,
    DriftExpert,
    Expert,
    MemoryConsolidationExpert,
    MetaAdaptationExpert,
    MetaLearner,
    Router,
    Server,
    StructureExpert,
    resolve_config,
    run_simulation,
)
from scarcity.core.gossip import GossipScheduler
from scarcity.core.router import ROUTER_STRATEGIES, register_strategy
from scarcity.results import ExpertReport, Insight
from tests.scarcity.conftest import INSIGHT_KEYS


def test_seed_usage_constructs_with_defaults():
    expert = Expert(expert_id=0)
    router = Router(num_experts=3)
    client = Client(client_id=0)
    server = Server(num_clients=5)
    meta = MetaLearner()
    assert expert.expert_id == 0 and router.num_experts == 3
    assert client.client_id == 0 and server.num_clients == 5
    assert (meta.mean, meta.std) == (0.0, 1.0)
    insight = client.train_round() and client.generate_insight()
    assert set(insight) >= INSIGHT_KEYS


def test_expert_train_reduces_loss():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 10, generator=g)
    y = x @ torch.randn(10, 1, generator=g)
    metrics = StructureExpert(0).train(x, y, epochs=20, generator=g)
    assert metrics["final_loss"] < metrics["initial_loss"]


def test_structure_summary_statistics():
    x = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    s = StructureExpert(0, input_dim=2).summarize(x)
    assert s["mean"] == pytest.approx(4.0)
    assert s["variance"] == pytest.approx(5.0)
    assert s["std"] == pytest.approx(5.0**0.5)
    assert (s["min"], s["max"]) == (1.0, 7.0)


def test_drift_is_absolute_change_of_mean():
    expert = DriftExpert(0, input_dim=2)
    assert expert.summarize(torch.zeros(3, 2))["drift"] == 0.0
    assert expert.summarize(torch.full((3, 2), 0.5))["drift"] == pytest.approx(0.5)
    assert expert.summarize(torch.full((3, 2), 0.5))["drift"] == 0.0


def test_self_supervised_training_reduces_reconstruction_loss():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 10, generator=g)
    metrics = StructureExpert(0).train_self_supervised(x, epochs=50, generator=g)
    assert metrics["recon_loss"] < metrics["initial_recon_loss"]


def test_memory_buffer_is_bounded_and_reports_utilisation():
    expert = MemoryConsolidationExpert(0, memory_capacity=50)
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        expert.train_self_supervised(torch.randn(50, 10, generator=g), epochs=2, generator=g)
    summary = expert.summarize(torch.zeros(1, 10))
    assert summary["memory_buffer_size"] == 50 and summary["memory_utilization"] == 1.0
    assert summary["avg_replay_error"] > 0


def test_meta_adaptation_lr_rule():
    expert = MetaAdaptationExpert(0, learning_rate=0.1)
    expert.adapt("ssl", 1.0)
    expert.adapt("ssl", 1.5)  # rose → ×0.9
    assert expert.current_lr == pytest.approx(0.09)
    expert.adapt("ssl", 1.3)  # dropped by 0.2 > 0.1 → ×1.05
    assert expert.current_lr == pytest.approx(0.09 * 1.05)
    expert.adapt("ssl", 1.25)  # dropped by 0.05: unchanged
    assert expert.current_lr == pytest.approx(0.09 * 1.05)
    summary = expert.summarize(torch.zeros(1, 10))
    assert summary["lr_history_length"] == 3 and summary["lr_adjustments"] == 2
    history = [0.1, 0.09, 0.09 * 1.05]
    assert summary["avg_lr"] == pytest.approx(np.mean(history))
    assert summary["lr_variance"] == pytest.approx(np.var(history))
    assert expert.optimizer.param_groups[0]["lr"] == pytest.approx(expert.current_lr)


def test_variance_router_sends_high_variance_to_structure_expert():
    names = ["StructureExpert", "DriftExpert"]
    router = Router(2, "variance", threshold=0.5)
    g = torch.Generator().manual_seed(0)
    assert names[router.select_expert(3 * torch.randn(50, 10, generator=g), names)] == names[0]


def test_variance_router_sends_low_variance_to_drift_expert():
    names = ["StructureExpert", "DriftExpert"]
    router = Router(2, "variance", threshold=0.5)
    g = torch.Generator().manual_seed(0)
    assert names[router.select_expert(0.1 * torch.randn(50, 10, generator=g), names)] == names[1]
    assert router.usage == {"DriftExpert": 1}


def test_round_robin_and_random_strategies():
    names = ["a", "b", "c"]
    rr = Router(3, "round_robin")
    assert [rr.select_expert(torch.zeros(1), names) for _ in range(4)] == [0, 1, 2, 0]
    picks = [
        Router(3, "random", rng=np.random.default_rng(5)).select_expert(torch.zeros(1), names)
        for _ in range(2)
    ]
    assert picks[0] == picks[1]


def test_a_new_strategy_is_one_registered_function():
    @register_strategy("always_last")
    def always_last(data, expert_names, router, rng):
        return len(expert_names) - 1

    try:
        assert Router(3, "always_last").select_expert(torch.zeros(1)) == 2
    finally:
        del ROUTER_STRATEGIES["always_last"]


def test_unknown_router_strategy_is_rejected():
    with pytest.raises(ValueError, match="router_strategy"):
        Router(2, "nope")


def test_gossip_pairs_are_disjoint_and_sitters_rotate():
    scheduler = GossipScheduler(5)
    rng = np.random.default_rng(0)
    sitters = []
    for _ in range(5):
        pairs = scheduler.pairs(rng)
        members = [c for pair in pairs for c in pair]
        assert len(pairs) == 2 and len(set(members)) == 4
        sitters.append(next(iter(set(range(5)) - set(members))))
    assert sorted(sitters) == [0, 1, 2, 3, 4]  # a different client sits out each time


def test_sync_with_leaves_both_clients_with_the_average():
    a, b = Client(client_id=0), Client(client_id=1)
    before_a, before_b = a.get_expert_weights(1), b.get_expert_weights(1)
    a.sync_with(b, 1)
    after_a, after_b = a.get_expert_weights(1), b.get_expert_weights(1)
    for key in before_a:
        assert torch.equal(after_a[key], after_b[key])
        assert torch.allclose(after_a[key], (before_a[key] + before_b[key]) / 2)


def test_meta_learner_aggregates_uncertainty():
    insights = [
        {"client_id": i, "uncertainty": u, "experts": {}} for i, u in enumerate([1.0, 2.0, 6.0])
    ]
    summary = MetaLearner().aggregate(insights)
    assert summary["avg_uncertainty"] == pytest.approx(3.0)
    assert summary["high_uncertainty_clients"] == [2]
    assert summary["low_uncertainty_clients"] == [0, 1]


def test_the_meta_learner_reads_typed_insights_as_their_dict_form():
    """Typed insights are read field by field, dicts through the mapping: the same values."""
    config = resolve_config(preset="stage8", num_clients=6, rounds=2, seed=3)
    insights = list(run_simulation(config)[1].insights)
    insights[1] = dataclasses.replace(insights[1], personal={"personal_accuracy": 0.5})
    typed, plain = MetaLearner(), MetaLearner()
    assert typed.aggregate(insights) == plain.aggregate([i.to_dict() for i in insights])
    typed.update_global_params(insights)
    plain.update_global_params([i.to_dict() for i in insights])
    typed.compute_structural_priors(insights)
    plain.compute_structural_priors([i.to_dict() for i in insights])
    assert typed.broadcast_params() == plain.broadcast_params()
    assert typed.priors["prior_recon_loss"] > 0 and typed.mean != 0.0
    assert typed.std != 1.0


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_both_executions_report_one_typed_insight(execution):
    config = resolve_config(preset="stage8", num_clients=3, rounds=1, execution=execution)
    insight = run_simulation(config)[0].insights[0]
    assert type(insight) is Insight and isinstance(insight.experts["DriftExpert"], ExpertReport)
    # The seed's dict form: read-only mapping access, and one JSON shape.
    assert insight["client_id"] == insight.client_id == 0
    assert (
        insight["experts"]["StructureExpert"]["summary"]["mean"]
        == (insight.experts["StructureExpert"].summary["mean"])
    )
    assert json.loads(json.dumps(insight.to_dict())) == insight.to_dict()
    assert set(insight.to_dict()) == set(insight) == set(Insight.KEYS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        insight.loss = 0.0  # type: ignore[misc]
    with pytest.raises(KeyError):
        insight["weights"]  # no raw weights in an insight


def test_the_fast_constructors_build_what_the_dataclass_constructors_do():
    metrics, summary = {"loss": 0.5}, {"mean": 1.0}
    report = ExpertReport.of(metrics, summary)
    assert report == ExpertReport(metrics, summary)
    assert vars(report) == vars(ExpertReport(metrics, summary))
    assert [f.name for f in dataclasses.fields(ExpertReport)] == ["metrics", "summary"]
    fields = {
        "client_id": 3,
        "loss": 0.25,
        "mean_grad": 0.1,
        "uncertainty": 0.2,
        "loss_improvement": 0.05,
        "selected_expert": "DriftExpert",
        "experts": {"DriftExpert": report},
    }
    insight = Insight.of(**fields)
    assert insight == Insight(**fields)
    assert vars(insight) == vars(Insight(**fields))  # every field, personal={} included
    assert [f.name for f in dataclasses.fields(Insight)] == [*fields, "personal"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        insight.loss = 0.0  # type: ignore[misc]
    assert dataclasses.replace(insight, personal={"personal_loss": 1.0})["personal_loss"] == 1.0


def test_non_finite_names_the_first_nan_or_inf_in_a_nested_payload():
    from scarcity.results import non_finite

    assert non_finite({"a": 1.0, "b": [2.0, {"c": 3.0}]}) is None
    path, value = non_finite({"a": 1.0, "b": [2.0, {"c": float("inf")}], "d": float("nan")})
    assert (path, value) == ("b.c", float("inf"))


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_diverging_run_stops_with_the_quantity_that_broke(execution):
    from scarcity import SimulationError

    config = resolve_config(
        preset="stage3", learning_rate=10, local_epochs=20, rounds=20, execution=execution
    )
    with pytest.raises(SimulationError, match="diverged"):
        run_simulation(config)


# Synthetic stage 5 under strong drift: every loss grows by orders of magnitude a round, but
# stays finite for many rounds (its ensemble_loss passes 1e12 in round 4 and 1e27 by round 7).
EXPLODING = {"preset": "stage5", "drift": 10.0, "rounds": 5}


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_an_exploding_loss_fails_the_run_naming_the_round_and_the_metric(execution):
    from scarcity import SimulationError

    config = resolve_config({**EXPLODING, "execution": execution})
    assert config.engine_version >= 5
    with pytest.raises(SimulationError, match=r"^round 4: ensemble_loss is 9\.\d+e\+16 \(above"):
        run_simulation(config)


def test_runs_of_engine_version_4_keep_finishing_with_a_finite_exploding_loss():
    """Stored runs are judged as they were made: only NaN/inf failed them."""
    results = run_simulation(resolve_config({**EXPLODING, "engine_version": 4}))
    assert [r.round for r in results] == [1, 2, 3, 4, 5]
    assert results[-1].metrics["ensemble_loss"] > 1e23
