"""Ablation benchmark: does each SF-HFE mechanism change what is evaluated?

The full stage 8 round on digits (10 clients, Dirichlet α=0.5, each client holding out 20 %
of its rows, mini-batches of 32, lr 0.1, 10 rounds) against the same run with one mechanism
switched off (`insight_exchange`, `expert_routing`, `meta_learning`, `apply_meta_params` (the
meta-learner still broadcasts, the clients ignore it), `gossip`,
`extended_experts`, `structure_discovery`), each over seeds 0, 1, 2. Printed per run: the
final round's shared-model `test_accuracy`, `personal_accuracy_mean` (the shared model on each
client's own rows), `ensemble_accuracy` (each client's experts on its own rows) and
`recon_loss`, as mean ± sample std over the seeds, and for each metric whether switching the
mechanism off moved the mean beyond the seeds' spread: |Δmean| > std(full) + std(off). A
mechanism that changes nothing evaluated shows Δ = 0 exactly. `--quick`: 4 rounds.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from scarcity import resolve_config, run_simulation

SEEDS = (0, 1, 2)
TOGGLES = (
    "insight_exchange",
    "expert_routing",
    "meta_learning",
    "apply_meta_params",
    "gossip",
    "extended_experts",
    "structure_discovery",
)
METRICS = ("test_accuracy", "personal_accuracy_mean", "ensemble_accuracy", "recon_loss")
BASE: dict[str, Any] = {
    "preset": "stage8",
    "dataset": "digits",
    "partition": "dirichlet",
    "dirichlet_alpha": 0.5,
    "num_clients": 10,
    "client_test_fraction": 0.2,
    "batch_size": 32,
    "learning_rate": 0.1,
    "ssl_epochs": 5,
}


def final_metrics(rounds: int, seed: int, **overrides: Any) -> dict[str, float]:
    config = resolve_config(BASE, rounds=rounds, seed=seed, **overrides)
    return dict(run_simulation(config)[-1].metrics)


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values)


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)  # as the workers and tests run
    rounds = 4 if quick else 10
    print(
        f"stage8, digits, 10 clients, Dirichlet 0.5, client_test_fraction 0.2, batch 32, "
        f"lr 0.1, {rounds} rounds; final round, mean ± std over seeds {SEEDS}; "
        "* = |Δ| beyond std(full) + std(off)"
    )
    runs = {"full": [final_metrics(rounds, s) for s in SEEDS]}
    for toggle in TOGGLES:
        runs[f"no {toggle}"] = [final_metrics(rounds, s, **{toggle: False}) for s in SEEDS]
    full = {m: spread([r[m] for r in runs["full"]]) for m in METRICS}
    print(f"{'run':<24}" + "".join(f"{m:>34}" for m in METRICS))
    for name, results in runs.items():
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in results if metric in r]
            if len(values) < len(SEEDS):
                cells.append(f"{'-':>34}")
                continue
            mean, std = spread(values)
            delta = mean - full[metric][0]
            mark = "*" if abs(delta) > std + full[metric][1] else " "
            cell = f"{mean:.4f} ± {std:.4f}" + ("" if name == "full" else f" Δ{delta:+.4f}{mark}")
            cells.append(f"{cell:>34}")
        print(f"{name:<24}" + "".join(cells), flush=True)
