"""Experience replay (`replay_size`): the reservoir is Vitter's Algorithm R on the replay
stream, the stacked buffers equal the per-client ones, both executions agree and resume
exactly, and replay lowers the forgetting of a class-incremental task sequence."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from scarcity import Simulation, resolve_config, run_simulation
from scarcity.batched.padding import pad_clients
from scarcity.components.replay import RowReservoir, RowReservoirs, reservoir_generator
from tests.scarcity.conftest import full_and_resumed

sys.path.insert(0, str(Path(__file__).parent.parent))
from test_batched import assert_same_results  # noqa: E402

CAPACITY, D = 5, 3


def algorithm_r(rows: list, seen: int, kept: list, uniforms: list[float], capacity: int) -> int:
    """Vitter's Algorithm R written out: the t-th row fills slot t − 1 while there is room,
    afterwards replaces slot ⌊u·t⌋ when that is a slot. Returns the rows seen after `rows`."""
    for row, u in zip(rows, uniforms, strict=True):
        seen += 1
        if seen <= capacity:
            kept.append(row)
        else:
            j = int(u * seen)
            if j < capacity:
                kept[j] = row
    return seen


def test_the_per_client_reservoir_is_algorithm_r_on_literal_rows():
    reservoir = RowReservoir(3)
    x = torch.arange(8.0).unsqueeze(1)
    y = torch.arange(8)
    g = torch.Generator().manual_seed(3)
    reservoir.offer(x[:2], y[:2], g)  # room for both
    assert reservoir.x is not None and reservoir.x.squeeze(1).tolist() == [0.0, 1.0]
    reservoir.offer(x[2:], y[2:], g)
    uniforms = torch.rand(8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    kept: list[int] = []
    seen = algorithm_r(list(range(8)), 0, kept, uniforms.tolist(), 3)
    assert reservoir.seen == seen == 8
    assert reservoir.y is not None and reservoir.y.tolist() == kept
    assert reservoir.x.squeeze(1).tolist() == [float(v) for v in kept]


@pytest.mark.parametrize("order", [[2, 0, 1], None])  # None: the clients' own order
@pytest.mark.parametrize("sizes", [[6, 6, 6], [6, 1, 4]])
def test_stacked_reservoirs_equal_the_per_client_ones(sizes: list[int], order: list[int] | None):
    g = torch.Generator().manual_seed(1)
    per_client = [RowReservoir(CAPACITY) for _ in sizes]
    stacked: RowReservoirs | None = None
    counts = torch.tensor(sizes)
    for call in range(4):  # more rows than the capacity holds
        xs = [torch.randn(n, D, generator=g) for n in sizes]
        ys = [torch.randint(0, 4, (n,), generator=g) for n in sizes]
        x, y = pad_clients(xs), pad_clients(ys)
        if stacked is None:
            stacked = RowReservoirs.empty(len(sizes), CAPACITY, x, y)
        # the union the round trains on, before the round's rows are offered
        ux, uy, total = stacked.union(x, y, counts)
        for c, reservoir in enumerate(per_client):
            rx, ry = reservoir.training_rows(xs[c], ys[c])
            assert int(total[c]) == len(rx)
            assert torch.equal(ux[c, : len(rx)], rx) and torch.equal(uy[c, : len(ry)], ry)
            assert not ux[c, len(rx) :].any()  # padding stays zero
        stacked.offer(x, y, counts, order, reservoir_generator(7, call))
        reference = reservoir_generator(7, call)
        for c in order or range(len(sizes)):  # the draws in the order given
            per_client[c].offer(xs[c], ys[c], reference)
    assert stacked is not None
    for c, reservoir in enumerate(per_client):
        filled = min(reservoir.seen, CAPACITY)
        assert int(stacked.seen[c]) == reservoir.seen
        assert reservoir.x is not None and reservoir.y is not None
        assert torch.equal(stacked.x[c, :filled], reservoir.x)
        assert torch.equal(stacked.y[c, :filled], reservoir.y)
    part = stacked.take(torch.tensor([1]))
    restored = RowReservoirs.empty(len(sizes), CAPACITY, x, y)
    restored.load_state_dict(stacked.state_dict())
    restored.put(torch.tensor([1]), part)
    assert torch.equal(restored.x, stacked.x) and torch.equal(restored.seen, stacked.seen)


TASKS = dict(
    preset="baseline",
    dataset="digits",
    num_clients=4,
    rounds=4,
    scenario="tasks",
    num_tasks=2,
    learning_rate=0.1,
    partition="iid",
)


def test_the_buffers_after_a_task_sequence_are_reservoir_sampling_of_the_rows_seen():
    fields = dict(TASKS, clients_per_round=3, replay_size=30)
    reference = Simulation(resolve_config(fields, execution="reference"))
    batched = Simulation(resolve_config(fields))
    kept: dict[int, list] = {c: [] for c in range(4)}
    seen = dict.fromkeys(range(4), 0)
    for round_index in range(1, 5):
        reference.run_round()
        batched.run_round()
        generator = reservoir_generator(reference.config.seed, round_index)
        for client in reference.population.active:  # in the order the participants trained
            rows = list(zip(client.x, client.y, strict=True))
            uniforms = torch.rand(len(rows), generator=generator, dtype=torch.float64)
            c = client.client_id
            seen[c] = algorithm_r(rows, seen[c], kept[c], uniforms.tolist(), 30)
    pool = batched.pool
    assert pool is not None and pool.replay is not None
    for client in reference.clients:
        c = client.client_id
        assert seen[c] > 30  # every buffer full, and replaced rows since
        expected_x = torch.stack([x for x, _ in kept[c]])
        expected_y = torch.stack([y for _, y in kept[c]])
        assert client.replay is not None and client.replay.seen == seen[c]
        assert torch.equal(client.replay.x, expected_x)
        assert torch.equal(client.replay.y, expected_y)
        assert torch.equal(pool.replay.x[c], expected_x)
        assert torch.equal(pool.replay.y[c], expected_y)
    # the classes of both tasks are in the buffers at the end
    assert len(set(torch.cat([pool.replay.y[c] for c in range(4)]).tolist())) > 5


CASES = {
    "fedavg_full_batch": dict(preset="stage2", replay_size=7, samples_per_client=12, rounds=3),
    "experts_skewed_minibatch_sampled": dict(
        preset="stage8",
        label_free=False,
        extended_experts=True,
        replay_size=9,
        batch_size=5,
        quantity_skew=1.0,
        num_clients=6,
        clients_per_round=4,
        rounds=4,
        drift=0.1,
    ),
    "routing_digits_minibatch": dict(
        preset="stage4",
        dataset="digits",
        partition="dirichlet",
        replay_size=20,
        batch_size=16,
        samples_per_client=30,
        num_clients=5,
        rounds=3,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_executions_agree_with_replay(case: str):
    reference = run_simulation(resolve_config(CASES[case], execution="reference"))
    batched = run_simulation(resolve_config(CASES[case]))
    assert_same_results(reference, batched)
    without = run_simulation(resolve_config(CASES[case], replay_size=0))
    assert without[-1].metrics["loss"] != batched[-1].metrics["loss"]  # replay trained


@pytest.mark.parametrize("execution", ["batched", "reference"])
def test_a_resumed_run_with_replay_continues_exactly(execution: str):
    config = resolve_config(CASES["experts_skewed_minibatch_sampled"], execution=execution)
    full, rest = full_and_resumed(config, 2)
    assert rest == full[2:]


def test_replay_is_off_by_default_and_refused_without_supervised_training():
    assert resolve_config().replay_size == 0
    pool = Simulation(resolve_config(preset="stage2")).pool
    assert pool is not None and pool.replay is None and "replay" not in pool.state_dict()
    with pytest.raises(ValidationError, match="replay_size"):
        resolve_config(preset="stage8", label_free=True, replay_size=10)


def test_replay_lowers_forgetting_on_a_class_incremental_sequence():
    """Measured over 3 seeds (each client holds ~180 rows of a task): with 200 replayed rows
    forgetting falls from ~0.9 to ~0.1. Smaller buffers (20, 50) did not lower it beyond the
    seeds' spread: the buffer weighs its share of the union in each epoch."""

    def forgetting(replay_size: int) -> list[float]:
        return [
            run_simulation(resolve_config(TASKS, seed=seed, replay_size=replay_size))[-1].metrics[
                "forgetting"
            ]
            for seed in range(3)
        ]

    without, with_replay = forgetting(0), forgetting(200)
    assert max(with_replay) < min(without)
