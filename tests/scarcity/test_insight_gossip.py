"""`gossip_peers: insight`: the server's pairing rule on literal insights, the weighted average
on literal weights (stacked and per client), and both executions running it alike."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from scarcity import Simulation, resolve_config
from scarcity.core.gossip import insight_pairs, stacked_weighted_gossip, weighted_gossip
from scarcity.results import ExpertReport, Insight
from tests.scarcity.conftest import full_and_resumed
from tests.scarcity.test_batched import assert_same_results


def insight(client: int, expert: str, mean: float, uncertainty: float) -> Insight:
    experts = {"StructureExpert": ExpertReport({}, {"mean": mean})}
    return Insight(client, 0.0, 0.0, uncertainty, 0.0, expert, experts)


INSIGHTS = [
    insight(0, "DriftExpert", 0.9, 1.0),
    insight(1, "StructureExpert", 0.1, 0.5),
    insight(2, "DriftExpert", 0.2, 3.0),
    insight(3, "StructureExpert", 0.15, 0.0),
    insight(4, "DriftExpert", 0.5, 1.0),
    insight(5, "StructureExpert", 0.7, 2.0),
    insight(6, "DriftExpert", 0.4, 0.0),
]


def test_the_server_pairs_same_expert_neighbours_then_the_rest():
    # Drift by mean: 2 (0.2), 6 (0.4), 4 (0.5), 0 (0.9); Structure: 1 (0.1), 3 (0.15), 5 (0.7)
    pairs = insight_pairs(INSIGHTS, round_index=1)
    assert pairs == [
        (2, 6, "DriftExpert", pytest.approx(0.0 / 3.0)),  # w_2 = u_6 / (u_2 + u_6)
        (4, 0, "DriftExpert", 0.5),
        (1, 3, "StructureExpert", pytest.approx(0.0 / 0.5)),
        # 5 is left over alone: sits out
    ]
    # even rounds shift each order by one: Drift 6–4 (2 and 0 left), Structure 3–5 (1 left);
    # the left-overs by mean 1 (0.1), 2 (0.2), 0 (0.9): 1–2 average the surer one's (1's)
    # expert, 0 sits out
    shifted = insight_pairs(INSIGHTS, round_index=2)
    assert shifted == [
        (6, 4, "DriftExpert", pytest.approx(1.0 / 1.0)),
        (3, 5, "StructureExpert", pytest.approx(2.0 / 2.0)),
        (1, 2, "StructureExpert", pytest.approx(3.0 / 3.5)),
    ]
    used = [c for a, b, _, _ in shifted for c in (a, b)]
    assert len(used) == len(set(used))  # disjoint


def test_a_weighted_sync_is_the_same_stacked_and_per_client():
    class Peer:
        expert_names = ["StructureExpert", "DriftExpert"]

        def __init__(self, weights):
            self.w = weights

        def get_expert_weights(self, i):
            return {"k": self.w[i].clone()}

        def set_expert_weights(self, i, weights):
            self.w[i] = weights["k"]

    values = torch.arange(12.0).view(3, 2, 2)  # [clients, experts, 2]
    clients = [Peer([values[c, e].clone() for e in range(2)]) for c in range(3)]
    pairs = [(0, 2, "DriftExpert", 0.25)]
    weighted_gossip(clients, pairs)
    stacked = {"k": values.clone()}
    stacked_weighted_gossip(stacked, ["k"], ("StructureExpert", "DriftExpert"), pairs)
    expected = 0.25 * values[0, 1] + 0.75 * values[2, 1]  # [2, 3] and [10, 11]: [8, 9]
    assert expected.tolist() == [8.0, 9.0]
    for c in (0, 2):
        assert torch.equal(clients[c].w[1], expected)
        assert torch.equal(stacked["k"][c, 1], expected)
    assert torch.equal(stacked["k"][1], values[1])  # not paired: unchanged
    assert torch.equal(stacked["k"][:, 0], values[:, 0])  # the other expert: unchanged
    # Weights laid out so that [clients · experts] is no view: synced in place all the same.
    strided = {"k": values.transpose(0, 1).contiguous().transpose(0, 1)}
    assert not strided["k"].is_contiguous()
    stacked_weighted_gossip(strided, ["k"], ("StructureExpert", "DriftExpert"), pairs)
    assert torch.equal(strided["k"], stacked["k"])


def test_a_stacked_weighted_sync_rounds_each_weight_once_to_the_dtype():
    """Many pairs on seeded weights, bit for bit: each pair's weight w rounded once from the
    float to float32, then w·a + (1 − w)·b in float32, pair by pair."""
    names = ("StructureExpert", "DriftExpert", "MemoryConsolidationExpert")
    g = torch.Generator().manual_seed(5)
    values = {"k": torch.randn(8, 3, 4, 5, generator=g), "b": torch.randn(8, 3, 4, generator=g)}
    weights = torch.rand(4, generator=g, dtype=torch.float64).tolist()
    pairs = [(c, 7 - c, names[c % 3], w) for c, w in enumerate(weights)]
    stacked = {key: t.clone() for key, t in values.items()}
    assert stacked_weighted_gossip(stacked, ["k", "b"], names, pairs) == [p[:3] for p in pairs]
    for key, t in values.items():
        expected = t.clone()
        for a, b, name, weight in pairs:
            e, w = names.index(name), torch.tensor(weight, dtype=torch.float64).float()
            expected[a, e] = expected[b, e] = w * t[a, e] + (1.0 - w) * t[b, e]
        assert torch.equal(stacked[key], expected)


@pytest.mark.parametrize("sampled", [None, 4])
def test_both_executions_gossip_by_insight_alike(sampled):
    request = dict(preset="stage6", num_clients=6, rounds=3, gossip_peers="insight")
    if sampled is not None:
        request["clients_per_round"] = sampled
    reference = list(Simulation(resolve_config(request, execution="reference")).rounds())
    batched = list(Simulation(resolve_config(request, execution="batched")).rounds())
    assert_same_results(reference, batched)
    assert all(r.gossip_pairs for r in batched)
    plain = list(Simulation(resolve_config({**request, "gossip_peers": "random"})).rounds())
    assert [r.gossip_pairs for r in plain] != [r.gossip_pairs for r in batched]


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_run_gossiping_by_insight_resumes_exactly(execution):
    config = resolve_config(
        preset="stage6", num_clients=5, rounds=4, gossip_peers="insight", execution=execution
    )
    full, rest = full_and_resumed(config, 1)
    assert rest == full[1:]


@pytest.mark.parametrize(
    "overrides",
    [{"preset": "stage2"}, {"preset": "stage6", "expert_routing": False}, {"preset": "stage4"}],
)
def test_insight_peers_need_gossip_routing_and_insights(overrides):
    with pytest.raises(ValidationError, match="gossip_peers"):
        resolve_config({**overrides, "gossip_peers": "insight"})
