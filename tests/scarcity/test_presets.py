"""Every preset with the seed's defaults (5 clients, 5 rounds, 10 features, 50 samples)
shows the seed's claims."""

import math

import pytest
import torch

from scarcity import PRESETS, Simulation, resolve_config
from scarcity.core.server import INSIGHT_MEMORY
from tests.scarcity.conftest import INSIGHT_KEYS


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_runs_with_the_seed_defaults(run_preset, preset):
    results = run_preset(preset)
    assert [r.round for r in results] == [1, 2, 3, 4, 5]
    config = resolve_config(preset=preset)
    assert (config.num_clients, config.input_dim, config.samples_per_client) == (5, 10, 50)
    # The baseline has no experts: no data summaries, just the shared model's figures.
    expected = {"loss", "data_mean", "data_std", "drift"} if config.expert_ensemble else {"loss"}
    for result in results:
        assert expected <= set(result.metrics)
        assert all(type(v) is float and math.isfinite(v) for v in result.metrics.values())
        assert result.logs[0].startswith(f"Round {result.round}/5: loss=")


def test_stage2_fedavg_loss_falls_by_a_quarter(run_preset):
    results = run_preset("stage2")
    first, last = results[0].metrics["loss"], results[-1].metrics["loss"]
    print(f"stage2 loss {first:.4f} -> {last:.4f}")
    assert last <= 0.75 * first
    assert results[-1].metrics["test_loss"] < results[0].metrics["test_loss"]
    assert "test_accuracy" not in results[0].metrics  # regression: no accuracy


def test_the_baseline_trains_the_shared_model_alone(run_preset):
    results = run_preset("baseline")
    first, last = results[0].metrics, results[-1].metrics
    bytes_moved = {"bytes_up", "bytes_down", "bytes_up_total", "bytes_down_total"}
    assert set(last) == {"loss", "test_loss"} | bytes_moved and last["loss"] < 0.75 * first["loss"]
    assert results[-1].expert_usage == {} and results[-1].insights == ()


def test_stage1_has_no_shared_model(run_preset):
    results = run_preset("stage1")
    assert "test_loss" not in results[0].metrics and results[0].insights == ()


def test_stage3_keeps_all_25_insights():
    sim = Simulation(resolve_config(preset="stage3"))
    results = list(sim.rounds())
    assert sum(len(r.insights) for r in results) == 25
    assert len(sim.server.memory) == 25 and sim.server.insights_received == 25
    insight = results[0].insights[0]
    assert set(insight) >= INSIGHT_KEYS
    assert set(insight["experts"]) == {"StructureExpert", "DriftExpert"}
    assert "avg_uncertainty" in results[0].metrics


def test_stage4_routes_high_variance_data_to_structure_expert(run_preset):
    results = run_preset("stage4", variance_threshold=0.0)
    assert all(r.expert_usage == {"StructureExpert": 5, "DriftExpert": 0} for r in results)
    assert all(i["selected_expert"] == "StructureExpert" for i in results[0].insights)


def test_stage4_routes_low_variance_data_to_drift_expert(run_preset):
    results = run_preset("stage4", variance_threshold=1000.0)
    assert all(r.expert_usage == {"StructureExpert": 0, "DriftExpert": 5} for r in results)


def test_stage4_variance_routing_matches_each_clients_data(run_preset):
    results = run_preset("stage4")
    for insight in results[0].insights:
        variance = insight["experts"]["StructureExpert"]["summary"]["variance"]
        expected = "StructureExpert" if variance > 0.5 else "DriftExpert"
        assert insight["selected_expert"] == expected


def test_stage5_meta_params_follow_the_ema_rule(run_preset):
    results = run_preset("stage5")
    mean, std = 0.0, 1.0  # the meta-learner's starting point
    for r in results:
        mean = 0.9 * mean + 0.1 * r.metrics["data_mean"]
        std = 0.9 * std + 0.1 * r.metrics["data_std"]
        assert r.meta_params["mean"] == pytest.approx(mean)
        assert r.meta_params["std"] == pytest.approx(std)
        assert r.meta_params["updates"] == r.round
        assert r.meta_params["lr"] > 0
    gaps = [abs(r.meta_params["std"] - r.metrics["data_std"]) for r in results]
    assert gaps == sorted(gaps, reverse=True)  # moves toward the data's statistics


def _expert_weights(sim: Simulation, client: int, expert: str) -> dict[str, torch.Tensor]:
    if sim.pool is not None:
        return sim.pool.expert_weights(client, sim.pool.names.index(expert))
    return sim.clients[client].get_expert_weights(sim.clients[client].expert_names.index(expert))


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_stage6_gossip_pairs_are_disjoint_and_synced_weights_equal(execution):
    sim = Simulation(resolve_config(preset="stage6", execution=execution))
    paired: set[int] = set()
    for result in sim.rounds():
        members = [c for p in result.gossip_pairs for c in (p.client_a, p.client_b)]
        assert len(result.gossip_pairs) == 2 and len(set(members)) == len(members)
        for pair in result.gossip_pairs:
            wa = _expert_weights(sim, pair.client_a, pair.expert)
            wb = _expert_weights(sim, pair.client_b, pair.expert)
            assert all(torch.equal(wa[k], wb[k]) for k in wa)
        paired |= set(members)
        if result.round == 3:
            assert paired == set(range(5))  # everyone paired within a few rounds


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_stage7_has_four_experts_per_client(execution):
    sim = Simulation(resolve_config(preset="stage7", execution=execution))
    result = sim.run_round()
    if sim.pool is not None:
        assert sim.pool.w["head_w"].shape[:2] == (5, 4)
    assert all(len(c.experts) == 4 for c in sim.clients)
    assert all(len(i["experts"]) == 4 for i in result.insights)
    assert set(result.expert_usage) == {
        "StructureExpert",
        "DriftExpert",
        "MemoryConsolidationExpert",
        "MetaAdaptationExpert",
    }


def test_stage8_reconstruction_loss_halves(run_preset):
    results = run_preset("stage8")
    first, last = results[0].metrics["recon_loss"], results[-1].metrics["recon_loss"]
    print(f"stage8 recon_loss {first:.4f} -> {last:.4f}")
    assert last <= 0.5 * first
    priors = results[-1].meta_params
    assert {"prior_recon_loss", "prior_replay_error", "prior_drift", "prior_lr_adjustments"} <= set(
        priors
    )
    assert priors["prior_recon_loss"] == pytest.approx(results[-1].metrics["recon_loss"])


def test_stage8_drift_is_positive_with_drift_on(run_preset):
    results = run_preset("stage8", drift=0.5)
    assert results[0].metrics["drift"] == 0.0  # nothing to compare with yet
    assert all(r.metrics["drift"] == pytest.approx(0.5, rel=1e-4) for r in results[1:])


def test_stage8_drift_is_zero_with_drift_off(run_preset):
    assert all(r.metrics["drift"] == 0.0 for r in run_preset("stage8", drift=0.0))


def test_meta_reptile_option_runs_and_learns(run_preset):
    results = run_preset(
        "stage5", federated_averaging=True, meta_reptile=True, reptile_step_size=0.5
    )
    assert results[-1].metrics["test_loss"] < results[0].metrics["test_loss"]


def test_the_server_keeps_the_most_recent_insights_and_counts_all():
    config = resolve_config(preset="stage3", num_clients=4, rounds=3)
    sim = Simulation(config)
    assert sim.server.memory.maxlen == INSIGHT_MEMORY  # bounded by default
    sim.server.memory = type(sim.server.memory)(maxlen=5)  # a small memory, as at 10,000 clients
    results = list(sim.rounds())
    assert sim.server.insights_received == 12
    last = [i["client_id"] for r in results for i in r.insights][-5:]
    assert [i["client_id"] for i in sim.server.memory] == last
    assert [i["client_id"] for i in results[-1].insights] == [0, 1, 2, 3]  # results keep all


def test_a_thousand_clients_insights_are_kept_out_of_full_collections_until_the_run_ends(
    monkeypatch,
):
    """From `FREEZE_FROM` insights a round the objects alive are frozen (the collector's full
    scans skip them), and handed back when the run ends, also when its caller stops early."""
    import gc

    import scarcity.long_lived as long_lived

    monkeypatch.setattr(long_lived, "FREEZE_FROM", 4)  # 4 clients stand in for 1,000
    gc.unfreeze()
    sim = Simulation(resolve_config(preset="stage3", num_clients=4, rounds=3))
    sim.run_round()
    assert gc.get_freeze_count() > 0 and sim.long_lived.frozen
    rounds = sim.rounds()
    next(rounds)
    rounds.close()  # stopped before the last round
    assert gc.get_freeze_count() == 0 and not sim.long_lived.frozen
    sim.run_round()  # the last round releases them itself
    assert gc.get_freeze_count() == 0
    small = Simulation(resolve_config(preset="stage3", num_clients=3, rounds=1))
    small.run_round()  # below FREEZE_FROM: nothing frozen
    assert gc.get_freeze_count() == 0 and not small.long_lived.frozen
