"""`router_strategy: loss`: each client trains the expert with the lowest loss on its rows (IFCA's
cluster estimate), stacked == per client on literal heads, both executions alike, and on planted
client groups the experts specialise by group."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scarcity import Simulation, resolve_config
from scarcity.backbones import make_backbone
from scarcity.batched.models import StackedModel
from scarcity.components.clusters import candidate_losses
from scarcity.components.routing import ExpertLosses, Router, stacked_expert_losses
from tests.scarcity.conftest import full_and_resumed
from tests.scarcity.test_batched import assert_same_results


def test_the_router_picks_the_lowest_loss_first_on_ties():
    router = Router(3, "loss")
    names = ["a", "b", "c"]
    assert router.select_expert(torch.zeros(2, 2), names, torch.tensor([0.5, 0.2, 0.9])) == 1
    assert router.select_expert(torch.zeros(2, 2), names, torch.tensor([0.3, 0.7, 0.3])) == 0
    assert dict(router.usage) == {"b": 1, "a": 1}
    with pytest.raises(ValueError, match="loss"):
        router.select_expert(torch.zeros(2, 2), names)


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_stacked_expert_losses_are_each_clients_candidate_losses(model):
    config = resolve_config(preset="stage4", dataset="iris", model=model)
    backbone = make_backbone(config)
    generator = torch.Generator().manual_seed(3)
    heads = [[backbone.make(generator) for _ in range(2)] for _ in range(3)]  # 3 clients, K = 2
    sizes = torch.tensor([5, 3, 4])
    x = torch.randn(3, 5, 4, generator=generator)
    y = torch.randint(0, 3, (3, 5), generator=generator)
    for c, n in enumerate(sizes.tolist()):  # zero padding after each client's rows
        x[c, n:], y[c, n:] = 0.0, 0
    stacked = {
        name: torch.stack(
            [torch.stack([dict(h.named_parameters())[name].detach() for h in row]) for row in heads]
        )
        for name, _ in heads[0][0].named_parameters()
    }
    form = None if backbone.closed_form else StackedModel(backbone)
    losses = stacked_expert_losses("classification", stacked, x, y, sizes, form)
    for c, n in enumerate(sizes.tolist()):
        expected = candidate_losses("classification", heads[c], x[c, :n], y[c, :n])
        assert torch.allclose(losses[c], expected, atol=1e-6)


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset": "digits", "model": "mlp", "hidden_sizes": [16]},
        {"dataset": "digits", "model": "cnn", "cnn_channels": 4},
        {"model": "simple_cnn", "input_dim": 784, "output_dim": 10},
    ],
)
def test_expert_losses_measure_again_only_what_changed_bit_for_bit(fields, monkeypatch):
    """Round after round, a head whose weights and client rows are unchanged keeps its
    measure; whatever changed (a head, a client's rows, one head alone) is measured again,
    and every measure is bit for bit a fresh `stacked_expert_losses`."""
    from scarcity.components import routing

    backbone = make_backbone(resolve_config(fields))
    model = StackedModel(backbone)
    g = torch.Generator().manual_seed(6)
    clients, k, n = 5, 3, 6
    heads = {s.name: torch.randn(clients, k, *s.shape, generator=g) * 0.3 for s in backbone.specs()}
    sizes = torch.tensor([6, 2, 5, 6, 3])
    x = torch.rand(clients, n, backbone.input_dim, generator=g)
    y = torch.randint(backbone.output_dim, (clients, n), generator=g)
    for c, size in enumerate(sizes.tolist()):
        x[c, size:], y[c, size:] = 0.0, 0
    measured = []
    fresh = routing.stacked_expert_losses
    monkeypatch.setattr(
        routing,
        "stacked_expert_losses",
        lambda task, h, *a: measured.append(next(iter(h.values())).shape[:2]) or fresh(task, h, *a),
    )
    memo = ExpertLosses()

    def check(rows: int) -> None:
        measured.clear()
        losses = memo.measure("classification", heads, x, y, sizes, model)
        assert torch.equal(losses, fresh("classification", heads, x, y, sizes, model))
        assert sum(shape[0] * shape[1] for shape in measured) == rows

    check(clients * k)  # the first measure: every head
    check(0)  # nothing changed
    first = {key: t[1, 2].clone() for key, t in heads.items()}, x[2].clone()
    for t in heads.values():
        t[1, 2] += 0.1
        t[3, 0] -= 0.2
    check(2)
    next(iter(heads.values()))[4, 1] *= -1.0
    check(2)  # a lone changed head is measured beside another, never alone in its call
    x[2, :2] += 0.5
    check(k)  # a client's rows changed: each of its heads
    check(0)
    for key, t in heads.items():  # back to the first measure's bits: changed since the last
        t[1, 2] = first[0][key]
    x[2] = first[1]
    check(1 + k)
    sizes[0], x[0, 4:], y[0, 4:] = 4, 0.0, 0
    check(k)  # a client's size (and padding) changed
    check(0)
    monkeypatch.setattr(ExpertLosses, "KEPT_VALUES", x.numel())  # too large to keep a copy of
    check(0)  # (the last copy still holds)
    check(clients * k)
    check(clients * k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.long])
def test_rows_differ_in_any_bit_whatever_the_row_width(dtype):
    """`ExpertLosses`' test (rows read as wider words, and their answers too) is a plain
    comparison of every value's bits, -0.0 against 0.0 included, at every row width."""
    from scarcity.components.routing import _rows_differ

    g = torch.Generator().manual_seed(3)
    for width in range(1, 18):
        a = (torch.randn(6, width, generator=g) * 4).to(dtype)
        b = a.clone()
        b[1, width - 1] += 1
        if dtype.is_floating_point:
            a[4, 0], b[4, 0] = 0.0, -0.0  # equal values, different bits
        expected = torch.tensor([False, True, False, False, dtype.is_floating_point, False])
        assert torch.equal(_rows_differ(a, b, 6), expected), width
        assert not _rows_differ(a, a.clone(), 6).any()


@pytest.mark.parametrize("overrides", [{}, {"quantity_skew": 0.5, "clients_per_round": 4}])
def test_both_executions_route_by_loss_alike(overrides):
    request = dict(preset="stage6", num_clients=6, rounds=3, router_strategy="loss", **overrides)
    reference = Simulation(resolve_config(request, execution="reference"))
    batched = Simulation(resolve_config(request, execution="batched"))
    assert_same_results(list(reference.rounds()), list(batched.rounds()))
    pool = batched.pool
    assert pool is not None
    for c, client in enumerate(reference.clients):
        assert pool.router.usage[c].tolist() == [client.router.usage[n] for n in pool.names]


def test_every_clients_experts_start_from_the_same_heads_under_loss_routing():
    for execution in ("reference", "batched"):
        config = resolve_config(
            preset="stage4", num_clients=3, router_strategy="loss", execution=execution
        )
        sim = Simulation(config)
        if sim.pool is not None:
            head = sim.pool.w[sim.pool.head_keys["weight"]]
            assert torch.equal(head[1], head[0]) and torch.equal(head[2], head[0])
            assert not torch.equal(head[0, 0], head[0, 1])  # the experts still differ
        else:
            first, other = sim.clients[0].experts, sim.clients[2].experts
            assert torch.equal(first[1].model.weight, other[1].model.weight)


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_run_routed_by_loss_resumes_exactly(execution):
    config = resolve_config(
        preset="stage6", num_clients=4, rounds=3, router_strategy="loss", execution=execution
    )
    full, rest = full_and_resumed(config, 1)
    assert rest == full[1:]


def test_loss_routing_needs_labels():
    with pytest.raises(ValidationError, match="router_strategy"):
        resolve_config(preset="stage8", router_strategy="loss")


def _groups_recovered(seed: int) -> bool:
    """Synthetic clients whose targets follow one of two planted linear concepts (even clients
    one, odd the other): after 30 rounds of stage 6 with loss routing and gossip by insight,
    does every client of a group train the same expert, and the groups different ones?"""
    config = resolve_config(
        preset="stage6",
        num_clients=8,
        rounds=30,
        router_strategy="loss",
        gossip_peers="insight",
        seed=seed,
    )
    sim = Simulation(config)
    generator = torch.Generator().manual_seed(100 + seed)
    concepts = [
        torch.randn(config.input_dim, config.output_dim, generator=generator) for _ in range(2)
    ]
    ys = tuple(x @ concepts[c % 2] for c, x in enumerate(sim.data.client_x))
    sim.data = sim.base_data = dataclasses.replace(sim.data, client_y=ys)
    sim.population.set_data(sim.data)
    for _ in sim.rounds():
        pass
    chosen = np.array([expert for _, _, expert in sim.population.client_lines()])
    even, odd = set(chosen[0::2]), set(chosen[1::2])
    return len(even) == 1 and len(odd) == 1 and even != odd


def test_routing_by_loss_recovers_planted_client_groups_in_most_seeds():
    """Measured: 8 of seeds 0–9 (with random gossip instead 6 of 10; with loss routing but
    each client's own initial heads, 2 of 6)."""
    recovered = sum(_groups_recovered(seed) for seed in range(10))
    assert recovered >= 7
