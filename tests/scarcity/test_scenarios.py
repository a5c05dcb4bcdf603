"""Scenarios over time (`scarcity.scenarios`): each row schedule equals a direct computation from
its definition on small literal data, the metrics equal their formulas, both executions agree and
a run resumed mid-scenario continues exactly."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from scarcity import Simulation, resolve_config
from scarcity.core.data import make_federated_data, scenario_rows
from scarcity.errors import ConfigError
from scarcity.plan import plan
from scarcity.scenarios import ClientRows, Drift, Tasks
from scarcity.scenarios.base import block_of, block_starts, rotate, swap_labels
from scarcity.scenarios.tasks import task_metrics


def literal_rows(clients: int = 4, rows: int = 8, features: int = 4) -> ClientRows:
    """Client c's row i is [c, i, 0, …], label i mod 4; eval rows shifted, labels reversed."""
    xs = tuple(
        torch.tensor([[c, i] + [0] * (features - 2) for i in range(rows)], dtype=torch.float32)
        for c in range(clients)
    )
    ys = tuple(torch.arange(rows) % 4 for _ in range(clients))
    return ClientRows(xs, ys, tuple(x + 100 for x in xs), tuple(3 - y for y in ys))


def drift_config(**overrides):
    fields = dict(preset="baseline", dataset="iris", num_clients=4, rounds=10, scenario="drift")
    return resolve_config(**(fields | overrides))


def test_blocks_cut_the_rounds_into_near_equal_consecutive_parts():
    assert block_starts(10, 4).tolist() == [1, 4, 7, 9]
    assert [block_of(r, 10, 4) for r in range(1, 11)] == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    assert [block_of(r, 8, 4) for r in range(1, 9)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_label_swap_rotation_and_shift_on_literal_rows():
    y = torch.tensor([0, 1, 2, 3, 4])
    assert swap_labels(y, 0, 5).tolist() == [0, 1, 2, 3, 4]
    assert swap_labels(y, 1, 5).tolist() == [1, 0, 2, 3, 4]
    assert swap_labels(y, 2, 5).tolist() == [0, 1, 3, 2, 4]
    assert swap_labels(y, 3, 5).tolist() == [4, 1, 2, 3, 0]  # classes 4 and 5 mod 5 = 0
    # tabular: each feature pair turned in its plane; (1, 0) by 90° is (0, 1), the odd last stays
    turned = rotate(torch.tensor([[1.0, 0.0, 2.0, 0.0, 7.0]]), 90.0)
    assert torch.allclose(turned, torch.tensor([[0.0, 1.0, 0.0, 2.0, 7.0]]), atol=1e-6)
    # a square image about its centre: 90° is a quarter turn of the pixel grid
    image = torch.arange(16, dtype=torch.float32).reshape(1, 16)
    quarter = torch.rot90(image.reshape(4, 4), k=1, dims=(0, 1)).reshape(1, 16)
    by_grid = rotate(image, 90.0)
    assert torch.allclose(by_grid, quarter, atol=1e-4) or torch.allclose(
        by_grid, torch.rot90(image.reshape(4, 4), k=-1, dims=(0, 1)).reshape(1, 16), atol=1e-4
    )


def test_sudden_drift_gives_each_client_its_blocks_concept():
    config = drift_config(drift_kind="label_swap")
    base = literal_rows()
    scenario = Drift(config, base, classes=4)
    assert set(scenario.lag.tolist()) <= {0, 1}
    for r in range(1, config.rounds + 1):
        b = block_of(r, config.rounds, 4)
        rows = scenario.rows(r)
        for c in range(4):
            concept = max(0, b - int(scenario.lag[c]))  # the definition, directly
            assert torch.equal(rows.train_x[c], base.train_x[c])
            assert torch.equal(rows.train_y[c], swap_labels(base.train_y[c], concept, 4))
            assert torch.equal(rows.eval_y[c], swap_labels(base.eval_y[c], concept, 4))


def test_the_late_clients_drift_a_block_later_than_the_others():
    config = drift_config(num_clients=40)
    scenario = Drift(config, literal_rows(clients=40), classes=4)
    late = scenario.lag.astype(bool)
    assert 0 < late.sum() < 40  # clients drift at different times
    assert [scenario.concept(c, 2) for c in range(40)] == [1 if x else 2 for x in late]


def test_gradual_drift_moves_a_growing_share_of_rows_over_the_block():
    config = drift_config(drift_kind="shift", drift_mode="gradual", rounds=8)  # blocks of 2
    base = literal_rows(rows=8)
    scenario = Drift(config, base, classes=4)
    for r in range(1, 9):
        b = block_of(r, 8, 4)
        rows = scenario.rows(r)
        for c in range(4):
            new, old = scenario.concept(c, b), scenario.concept(c, b - 1)
            share = 1.0 if new == old else (r - block_starts(8, 4)[b] + 1) / 2
            moved = set(scenario.order[c][: math.ceil(share * 8)].tolist())
            expected = [
                base.train_x[c][i] + (new if (i in moved or new == old) else old) for i in range(8)
            ]
            assert torch.equal(rows.train_x[c], torch.stack(expected)), (r, c)


def test_class_split_tasks_hold_each_tasks_classes_in_its_block():
    config = resolve_config(
        preset="baseline", dataset="iris", num_clients=4, rounds=6, scenario="tasks", num_tasks=2
    )
    assert config.task_kind == "class_split"
    base = literal_rows()
    scenario = Tasks(config, base, classes=4)
    for r in range(1, 7):
        classes = {0, 1} if r <= 3 else {2, 3}
        rows = scenario.rows(r)
        for c in range(4):
            keep = [i for i in range(8) if int(base.train_y[c][i]) in classes]
            assert torch.equal(rows.train_x[c], base.train_x[c][keep])
            assert set(rows.eval_y[c].tolist()) == classes


def test_permuted_tasks_reorder_the_features_and_task_zero_is_the_data():
    config = resolve_config(
        preset="baseline",
        dataset="iris",
        num_clients=2,
        rounds=4,
        scenario="tasks",
        num_tasks=2,
        task_kind="permuted",
    )
    base = literal_rows(clients=2)
    scenario = Tasks(config, base, classes=4)
    assert torch.equal(scenario.rows(1).train_x[0], base.train_x[0])
    order = scenario.orders[1]
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert torch.equal(scenario.rows(3).train_x[1], base.train_x[1][:, order])


def test_forgetting_backward_transfer_and_average_on_a_hand_made_matrix():
    finished = [[0.9], [0.6, 0.8]]  # a[0][0]; a[1][0], a[1][1]
    current = [0.5, 0.7, 0.9]  # a[2][·]
    out = task_metrics(finished, current)
    assert out["avg_task_accuracy"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    # forgetting: task 0 best 0.9 → 0.5, task 1 best 0.8 → 0.7
    assert out["forgetting"] == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    # backward transfer: a[2][j] − a[j][j]
    assert out["backward_transfer"] == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert task_metrics([], [0.4]) == {"avg_task_accuracy": pytest.approx(0.4)}


def test_next_block_accuracy_is_the_model_on_the_next_concepts_rows():
    config = resolve_config(
        preset="baseline",
        dataset="digits",
        num_clients=4,
        rounds=4,
        scenario="drift",
        drift_blocks=2,
        learning_rate=0.1,
        partition="iid",
    )
    sim = Simulation(config)
    base = scenario_rows(make_federated_data(config))
    scenario = sim.scenario
    assert isinstance(scenario, Drift)
    for r in range(1, 5):
        result = sim.run_round()
        if r > 2:  # the last block has no next one
            assert "next_block_accuracy" not in result.metrics
            continue
        accuracies = []
        for c in range(4):
            concept = scenario.concept(c, 1)
            y = swap_labels(base.eval_y[c], concept, 10)
            prediction = sim.server.global_model(base.eval_x[c]).argmax(dim=1)
            accuracies.append(float((prediction == y).double().mean()))
        assert result.metrics["next_block_accuracy"] == pytest.approx(
            sum(accuracies) / 4, abs=1e-12
        )


def test_a_task_sequence_reports_its_matrix_and_forgets():
    config = resolve_config(
        preset="baseline",
        dataset="digits",
        num_clients=4,
        rounds=4,
        scenario="tasks",
        num_tasks=2,
        learning_rate=0.1,
        partition="iid",
    )
    results = list(Simulation(config).rounds())
    assert "avg_task_accuracy" not in results[0].metrics  # reported at the tasks' ends
    assert "avg_task_accuracy" in results[1].metrics
    assert "forgetting" not in results[1].metrics  # no finished task before the first's end
    last = results[-1].metrics
    assert last["forgetting"] == pytest.approx(-last["backward_transfer"])  # one finished task
    assert last["forgetting"] > 0.2  # class-incremental: the first task's classes are forgotten


@pytest.mark.parametrize(
    "overrides",
    [
        {"scenario": "drift", "drift_mode": "gradual", "drift_kind": "rotation"},
        {"scenario": "tasks", "preset": "stage2", "clients_per_round": 3},
    ],
    ids=["gradual-rotation", "tasks-stage2-sampled"],
)
def test_both_executions_agree_and_a_resumed_run_continues_exactly(overrides):
    fields = (
        dict(
            preset="baseline",
            dataset="digits",
            num_clients=5,
            rounds=6,
            learning_rate=0.1,
            partition="iid",
            drift_blocks=3,
        )
        | overrides
    )
    if overrides["scenario"] == "tasks":
        fields.pop("drift_blocks")
        fields["num_tasks"] = 3
    batched = [r.metrics for r in Simulation(resolve_config(**fields)).rounds()]
    reference = [
        r.metrics for r in Simulation(resolve_config(**fields, execution="reference")).rounds()
    ]
    assert [sorted(m) for m in batched] == [sorted(m) for m in reference]
    for a, b in zip(batched, reference, strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    for stop in (2, 3):  # mid-block, and at a block's end
        sim = Simulation(resolve_config(**fields))
        for _ in range(stop):
            sim.run_round()
        resumed = Simulation.restore(resolve_config(**fields), sim.checkpoint())
        assert [r.metrics for r in resumed.rounds()] == batched[stop:]


def test_static_is_the_default_and_moves_nothing():
    config = resolve_config(preset="baseline", dataset="iris", num_clients=3, rounds=1)
    assert config.scenario == "static"
    assert config.drift_blocks is None and config.num_tasks is None
    assert Simulation(config).scenario is None


def test_bad_scenario_settings_are_errors_naming_the_field():
    with pytest.raises(ValidationError, match="drift_kind"):
        resolve_config(preset="baseline", scenario="drift", drift_kind="label_swap")  # synthetic
    assert resolve_config(preset="baseline", scenario="drift").drift_kind == "shift"
    with pytest.raises(ValidationError, match="drift_blocks"):
        drift_config(rounds=3, drift_blocks=4)
    with pytest.raises(ValidationError, match="num_tasks"):
        resolve_config(preset="baseline", dataset="iris", scenario="tasks", num_tasks=4)
    with pytest.raises(ValidationError, match="scenario"):
        resolve_config(preset="baseline", scenario="seasons")
    # a class-incremental sequence needs every client to hold every task's classes
    config = resolve_config(
        preset="baseline",
        dataset="digits",
        num_clients=10,
        rounds=5,
        partition="pathological",
        num_classes_per_partition=2,
        scenario="tasks",
    )
    with pytest.raises(ConfigError) as raised:
        plan(config)
    assert raised.value.field == "num_tasks"


def test_the_drop_after_a_drift_and_the_rounds_to_recover_on_literal_accuracies():
    config = drift_config(rounds=6, drift_blocks=3)  # blocks start at rounds 1, 3 and 5
    scenario = Drift(config, literal_rows(), classes=4)
    current = {1: 0.5, 2: 0.8, 3: 0.6, 4: 0.795, 5: 0.7, 6: 0.75}
    reported = {}
    for r in range(1, 7):
        calls = iter([current[r], 0.0])  # the current concept's rows, then the next block's
        reported[r] = scenario.metrics(r, lambda _sets, calls=calls: next(calls))
    assert "drift_accuracy_drop" not in reported[1] | reported[2]
    assert reported[3]["drift_accuracy_drop"] == pytest.approx(0.8 - 0.6)
    assert "drift_recovery_rounds" not in reported[3]
    assert reported[4]["drift_recovery_rounds"] == 2  # 0.795 is within 0.01 of 0.8
    assert reported[5]["drift_accuracy_drop"] == pytest.approx(0.795 - 0.7)
    assert "drift_recovery_rounds" not in reported[5] | reported[6]  # 0.75 < 0.795 − 0.01
    assert "next_block_accuracy" in reported[4] and "next_block_accuracy" not in reported[5]
