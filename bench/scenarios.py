"""Scenarios over time: what a changing data stream costs a round, against static data.

FedAvg (the `baseline` preset) of NIID-Bench's simple CNN on Fashion-MNIST's 60,000 training rows
dealt iid to 100 clients (E=1, batch 32, the data set's default learning rate, one torch thread),
run with every scenario that moves the data, in one process, the runs taking turns round by
round, and the median seconds of a round (round 1, with its first-call overheads, left out)
printed beside `static`'s on the same data:

- drift, label swaps and rotations, over 3 time blocks (each client re-stacked when its concept
  changes, the next block's concept scored every round);
- tasks, class-incremental (5 tasks of 2 classes: a task's round trains a fifth of the rows, so it
  is cheaper than static's) and rotated (every row, every task), 5 tasks of 2 rounds: every
  second round starts a task (its rows rotated and re-stacked) and ends one (every task seen
  scored), so the cost of a task change weighs on 2 rounds (a run with longer tasks spreads it
  thinner).

The target is ≤ 1.2× static for the ones that train on as many rows as static does.
`--quick`: digits, 20 clients, the linear model.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from scarcity import Simulation, resolve_config

VARIANTS: dict[str, dict[str, Any]] = {
    "static": {},
    "drift label_swap": {"scenario": "drift", "drift_blocks": 3, "drift_kind": "label_swap"},
    "drift rotation": {"scenario": "drift", "drift_blocks": 3, "drift_kind": "rotation"},
    "tasks class_split": {"scenario": "tasks", "num_tasks": 5, "task_kind": "class_split"},
    "tasks rotated": {"scenario": "tasks", "num_tasks": 5, "task_kind": "rotated"},
}
#: The variants that train on every row each round, as static does (the 1.2× target).
SAME_WORK = ("drift label_swap", "drift rotation", "tasks rotated")


def base_config(quick: bool) -> dict[str, Any]:
    if quick:
        return {"preset": "baseline", "dataset": "digits", "num_clients": 20, "rounds": 6}
    return {
        "preset": "baseline",
        "dataset": "fashion_mnist",
        "model": "simple_cnn",
        "num_clients": 100,
        "partition": "iid",
        "local_epochs": 1,
        "batch_size": 32,
        "rounds": 10,
    }


def seconds_per_round(base: dict[str, Any]) -> dict[str, float]:
    """Every variant's median round, the variants taking turns round by round (so a change in
    the machine's load falls on all of them alike)."""
    sims = {name: Simulation(resolve_config(base | extra)) for name, extra in VARIANTS.items()}
    durations: dict[str, list[float]] = {name: [] for name in sims}
    for _ in range(base["rounds"]):
        for name, sim in sims.items():
            durations[name].append(sim.run_round().duration_seconds)
    return {name: statistics.median(times[1:]) for name, times in durations.items()}


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)
    base = base_config(quick)
    print(
        f"{base['dataset']}, {base['num_clients']} clients, {base['rounds']} rounds "
        "(median s/round, round 1 left out; the variants take turns)"
    )
    seconds = seconds_per_round(base)
    static = seconds["static"]
    for name, value in seconds.items():
        if name == "static":
            print(f"{name:<20} {value:8.3f} s/round")
            continue
        target = "  (target ≤ 1.2×)" if name in SAME_WORK else "  (trains a fifth of the rows)"
        print(f"{name:<20} {value:8.3f} s/round  {value / static:5.2f}× static{target}")


if __name__ == "__main__":
    main()
