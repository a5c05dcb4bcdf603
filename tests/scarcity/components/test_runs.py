"""Every component in a run: after rounds of stage 8 (all four experts, replay, rate
adaptation, structure discovery, routing, sampling and clients of unequal size), each stacked
component's state equals the state of the per-client form it stands for (1e-5)."""

from __future__ import annotations

import math

import pytest
import torch

from scarcity import Simulation, resolve_config
from scarcity.core.experts import MemoryConsolidationExpert, MetaAdaptationExpert

TOLERANCE = 1e-5


@pytest.mark.parametrize("routing", [False, True])
def test_each_stacked_component_holds_what_the_clients_hold(routing: bool):
    request = dict(
        preset="stage8",
        extended_experts=True,
        expert_routing=routing,
        router_strategy="balanced",
        num_clients=6,
        clients_per_round=4,
        quantity_skew=0.5,
        rounds=3,
        drift=0.1,
    )
    batched = Simulation(resolve_config(request, execution="batched"))
    reference = Simulation(resolve_config(request, execution="reference"))
    for _ in range(3):
        batched.run_round()
        reference.run_round()
    pool = batched.pool
    assert pool is not None
    for c, client in enumerate(reference.clients):
        for e, expert in enumerate(client.experts):
            weights = expert.get_weights()
            for key, name in pool.expert_keys.items():  # local training, structure discovery
                assert torch.allclose(pool.w[key][c, e], weights[name], atol=TOLERANCE), name
            if isinstance(expert, MemoryConsolidationExpert):  # memory replay
                size = len(expert.memory.x)
                assert int(pool.buffers.size[c]) == size
                stored = pool.buffers.x[c, pool.buffers.capacity - size :]
                assert torch.allclose(stored, expert.memory.x, atol=TOLERANCE)
            if isinstance(expert, MetaAdaptationExpert):  # learning-rate adaptation
                state = pool.adaptation
                assert float(state.scale[c]) == pytest.approx(expert.rule.scale, abs=TOLERANCE)
                assert int(state.count[c]) == expert.rule.count
                assert float(state.mean[c]) == pytest.approx(expert.rule.mean, abs=TOLERANCE)
        drift = next(e for e in client.experts if e.name == "DriftExpert").drift
        previous = float(pool.summaries.previous_mean[c])  # data summaries and drift
        if drift.previous_mean is None:  # never drawn: no observation yet
            assert math.isnan(previous)
        else:
            assert previous == pytest.approx(drift.previous_mean, abs=TOLERANCE)
        usage = [client.router.usage[name] for name in client.expert_names]  # routing
        assert pool.router.usage[c].tolist() == usage
