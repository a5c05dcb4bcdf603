"""Ablation benchmark: does each SF-HFE mechanism change what is evaluated?

Digits, 20 clients, Dirichlet α ∈ {0.1, 0.5}, each client holding out 20 % of its rows
(`client_test_fraction`), mini-batches of 32, lr 0.1, 30 rounds, seeds 0, 1, 2. Runs:

- stage 8 as new requests have it (label-free: the experts train only their self-supervised
  objectives, a linear probe of each client's representation on its own held-out rows is
  scored, `probe_accuracy`), and the same run with one mechanism switched off in turn:
  `insight_exchange` (with `meta_learning` and `apply_meta_params`: the meta-learner only
  hears the insights the clients send), `expert_routing`, `meta_learning`,
  `apply_meta_params` (the meta-learner still broadcasts, the clients ignore it), `gossip`,
  `extended_experts`, `label_free` (stage 8 with labels: the experts' supervised heads, scored
  as an ensemble, `ensemble_accuracy`) and `structure_discovery` (which needs `label_free`
  off too, so it is compared with the `label_free`-off run);
- stages 4–7 (insights, not weights: no shared model, the clients' experts scored as
  ensembles on their own rows, `ensemble_accuracy`);
- the FL baselines: preset `baseline`, the shared model alone, FedAvg and FedProx
  (`test_accuracy` on the test set, `personal_accuracy_mean` on the clients' own rows), and
  the personalised ones against FedAvg: local training, FedAvg-FT, Ditto and IFCA, each with
  its defaults (`personal_accuracy_mean` scores the model each client uses; `test_accuracy`
  of local and IFCA is the mean over the clients of their own model's, their cluster's).

Printed per run and α, as mean ± sample std over the seeds of the final round: the shared
model's `test_accuracy` (baselines only), the personalised accuracy (every figure measured on
each client's own held-out rows: `personal_accuracy_mean` of the shared model, the
`ensemble_accuracy` of the experts, or the `probe_accuracy` of the label-free
representation, fitted on half of those rows and scored on the other half; which one is
named) and the experts' `recon_loss` (stage 8). Each run is compared with a reference run
(column `vs`: the full stage 8, or as named): Δ of the means, marked * when
|Δ| > std(run) + std(reference), i.e. beyond the seeds' spread; "=" when every seed gave
exactly the reference's number (the mechanism changes nothing evaluated). `--quick`:
3 rounds, α = 0.5.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from scarcity import resolve_config, run_simulation

SEEDS = (0, 1, 2)
ALPHAS = (0.1, 0.5)
NUM_CLIENTS = 20
ROUNDS = 30
BASE: dict[str, Any] = {
    "dataset": "digits",
    "partition": "dirichlet",
    "num_clients": NUM_CLIENTS,
    "client_test_fraction": 0.2,
    "batch_size": 32,
    "learning_rate": 0.1,
    "ssl_epochs": 5,
}
#: Where each run's personalised (own held-out rows) accuracy comes from, first found.
PERSONAL = ("probe_accuracy", "ensemble_accuracy", "personal_accuracy_mean")
SHORT = {
    "probe_accuracy": "probe",
    "ensemble_accuracy": "ensemble",
    "personal_accuracy_mean": "shared",
}
FULL = "stage8 (full)"
#: The personalised baselines, compared with FedAvg.
PERSONALISED = ("local", "fedavg_ft", "ditto", "ifca")


@dataclass(frozen=True)
class Run:
    name: str
    overrides: dict[str, Any]
    reference: str | None = FULL
    results: list[dict[str, float]] = field(default_factory=list, compare=False)


def runs() -> list[Run]:
    """The runs in printing order: stage 8, each toggle off, stages 4–7, the baselines."""
    stage8 = {"preset": "stage8"}
    return [
        Run(FULL, stage8, reference=None),
        Run(
            "no insight_exchange (+meta)",
            {
                **stage8,
                "insight_exchange": False,
                "meta_learning": False,
                "apply_meta_params": False,
            },
        ),
        Run("no expert_routing", {**stage8, "expert_routing": False}),
        Run("no meta_learning", {**stage8, "meta_learning": False}),
        Run("no apply_meta_params", {**stage8, "apply_meta_params": False}),
        Run("no gossip", {**stage8, "gossip": False}),
        Run("no extended_experts", {**stage8, "extended_experts": False}),
        Run("no label_free", {**stage8, "label_free": False}),
        Run(
            "no structure_discovery",
            {**stage8, "label_free": False, "structure_discovery": False},
            reference="no label_free",
        ),
        *(Run(f"stage{n}", {"preset": f"stage{n}"}) for n in (4, 5, 6, 7)),
        Run("baseline fedavg", {"preset": "baseline", "strategy": "fedavg"}),
        Run(
            "baseline fedprox",
            {"preset": "baseline", "strategy": "fedprox"},
            reference="baseline fedavg",
        ),
        *(
            Run(f"baseline {name}", {"preset": "baseline", "strategy": name}, "baseline fedavg")
            for name in PERSONALISED
        ),
    ]


def final_metrics(
    rounds: int, seed: int, alpha: float, overrides: dict[str, Any]
) -> dict[str, float]:
    config = resolve_config(BASE, rounds=rounds, seed=seed, dirichlet_alpha=alpha, **overrides)
    return dict(run_simulation(config)[-1].metrics)


def personal_metric(results: list[dict[str, float]]) -> str:
    return next(m for m in PERSONAL if m in results[0])


def cell(run: Run, reference: Run | None, metric: str, ref_metric: str | None = None) -> str:
    """`mean ± std` of the run's metric, with Δ to the reference's (its `ref_metric`)."""
    values = [r[metric] for r in run.results if metric in r]
    if len(values) < len(run.results):
        return "—"
    mean, std = statistics.fmean(values), statistics.stdev(values)
    text = f"{mean:.3f} ± {std:.3f}" if metric != "recon_loss" else f"{mean:.4f} ± {std:.4f}"
    if reference is None:
        return text
    ref_metric = ref_metric or metric
    ref_values = [r[ref_metric] for r in reference.results if ref_metric in r]
    if len(ref_values) < len(reference.results):
        return text
    if values == ref_values:
        return f"{text} ="
    ref_mean, ref_std = statistics.fmean(ref_values), statistics.stdev(ref_values)
    delta = mean - ref_mean
    mark = "*" if abs(delta) > std + ref_std else ""
    digits = 4 if metric == "recon_loss" else 3
    return f"{text} Δ{delta:+.{digits}f}{mark}"


def table(alpha: float, done: list[Run]) -> list[str]:
    by_name = {run.name: run for run in done}
    header = (
        f"{'α = ' + str(alpha):<30}{'vs':<16}{'test_accuracy':<28}{'personalised (own rows)':<36}"
        f"{'recon_loss':<28}"
    )
    lines = [header]
    for run in done:
        reference = by_name.get(run.reference) if run.reference else None
        personal = personal_metric(run.results)
        ref_personal = personal_metric(reference.results) if reference else None
        lines.append(
            f"{run.name:<30}{run.reference or '':<16}"
            f"{cell(run, reference, 'test_accuracy'):<28}"
            f"{SHORT[personal] + ' ' + cell(run, reference, personal, ref_personal):<36}"
            f"{cell(run, reference, 'recon_loss'):<28}"
        )
    return lines


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)  # as the workers and tests run
    rounds = 3 if quick else ROUNDS
    alphas = ALPHAS[1:] if quick else ALPHAS
    print(
        f"digits, {NUM_CLIENTS} clients, Dirichlet α ∈ {alphas}, client_test_fraction 0.2, "
        f"batch 32, lr 0.1, {rounds} rounds; final round, mean ± std over seeds {SEEDS}; "
        "Δ to the run in `vs`, * = |Δ| beyond std(run) + std(vs), = : every seed identical; "
        "personalised: probe = label-free probe_accuracy, ensemble = ensemble_accuracy, "
        "shared = personal_accuracy_mean",
        flush=True,
    )
    started = time.perf_counter()
    for alpha in alphas:
        done = []
        for run in runs():
            run.results.extend(final_metrics(rounds, s, alpha, run.overrides) for s in SEEDS)
            done.append(run)
        print("\n".join(table(alpha, done)), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)
