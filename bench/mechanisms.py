"""SF-HFE with every mechanism on, at 1,000 clients, against FedAvg on the same backbone.

Synthetic data (the seed's generator), 1,000 clients of 50 rows, one torch thread, every client
every round, on two backbones: the linear one (where a round's arithmetic is small, so what
SF-HFE does per client in Python shows) and the MLP (64 hidden units, where the arithmetic
counts). For each backbone three runs take turns round by round in one process (so the
machine's load falls on all alike), round 1 (first-call overheads) left out, median seconds
per round printed with their ratio (target ≤ 2×):

- FedAvg: the `baseline` preset, the shared model alone;
- SF-HFE with every mechanism: stage 7 (insights, routing, meta-learning, gossip, the four
  experts) with Reptile's meta-initialisation (`meta_init`), drift detection acted on
  (`drift_detector: page_hinkley`), a replay buffer of 20 rows per client (`replay_size`),
  routing by loss (`router_strategy: loss`) and gossip paired by insight (`gossip_peers:
  insight`);
- the same stage 7 without the new mechanisms, to tell the mechanisms' own cost from the
  portfolio's.

Beside the times, each run's arithmetic: the floating-point operations of one round's matrix
products (round 2, after the first round's set-up) as torch's own FLOP counter
(`torch.utils.flop_counter`, which counts matrix products and convolutions, not element-wise
work) counts them, and their ratio to FedAvg's. Where the arithmetic is most of a round's time
(the MLP) that ratio is the floor under the time ratio: no implementation that computes the
same results does less of it (the linear backbone's round is mostly per-client bookkeeping).
SF-HFE with every mechanism trains on the replayed rows too, measures each client's losses after
training (the insights' uncertainty), scores the heads that changed for loss routing and
evaluates the experts' ensemble; FedAvg only trains and evaluates one model.

`--quick`: 200 clients, 4 rounds, the linear backbone only.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from scarcity import Simulation, resolve_config

MECHANISMS: dict[str, Any] = {
    "meta_init": True,
    "drift_detector": "page_hinkley",
    "replay_size": 20,
    "router_strategy": "loss",
    "gossip_peers": "insight",
}


def configs(quick: bool, model: str = "linear") -> dict[str, dict[str, Any]]:
    base = {
        "num_clients": 200 if quick else 1000,
        "samples_per_client": 50,
        "rounds": 4 if quick else 8,
        "seed": 0,
        "model": model,
    }
    return {
        "FedAvg (baseline)": {"preset": "baseline", **base},
        "SF-HFE, every mechanism": {"preset": "stage7", **base, **MECHANISMS},
        "SF-HFE, stage 7 as it was": {"preset": "stage7", **base},
    }


def round_flops(config: dict[str, Any]) -> int:
    """Floating-point operations of a run's second round (torch's FLOP counter)."""
    sim = Simulation(resolve_config(config))
    sim.run_round()
    with FlopCounterMode(display=False) as counter:
        sim.run_round()
    return counter.get_total_flops()


def measure(quick: bool, model: str) -> None:
    runs = {name: Simulation(resolve_config(c)) for name, c in configs(quick, model).items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    rounds = next(iter(runs.values())).config.rounds
    for _ in range(rounds):
        for name, sim in runs.items():
            times[name].append(sim.run_round().duration_seconds)
    medians = {name: statistics.median(t[1:]) for name, t in times.items()}
    fedavg, sfhfe, plain = medians.values()
    clients = next(iter(runs.values())).config.num_clients
    print(f"{model}: {clients} clients, {rounds} rounds (median s/round, round 1 left out; turns)")
    for name, value in medians.items():
        print(f"  {name:<26} {value:8.3f} s/round")
    print(f"  SF-HFE / FedAvg: {sfhfe / fedavg:.2f}× (target ≤ 2×)")
    print(f"  the mechanisms' own cost: {sfhfe / plain:.2f}× stage 7 without them")
    flops = {name: round_flops(c) for name, c in configs(quick, model).items()}
    floor = flops["SF-HFE, every mechanism"] / flops["FedAvg (baseline)"]
    print("  arithmetic of a round (torch's FLOP counter, round 2):")
    for name, value in flops.items():
        print(f"    {name:<26} {value / 1e6:8.1f} MFLOP")
    print(f"  SF-HFE's arithmetic / FedAvg's: {floor:.2f}×")
    print(f"  time ratio / arithmetic ratio: {sfhfe / fedavg / floor:.2f}×", flush=True)


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)
    for model in ("linear",) if quick else ("linear", "mlp"):
        measure(quick, model)


if __name__ == "__main__":
    main()
