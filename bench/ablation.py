"""Scenario ablation: where each SF-HFE mechanism and each FL baseline helps, and what it sends.

Digits, 20 clients, each holding out 20 % of its rows (`client_test_fraction`), mini-batches of
32, lr 0.1, 40 rounds, seeds 0, 1, 2, one torch thread. Five scenarios, each judged by its own
metric (final round unless said):

- `static`: Dirichlet α = 0.1 label skew; the accuracy on each client's own held-out rows of the
  model it uses (`personal_accuracy_mean`; SF-HFE: its experts' `ensemble_accuracy`; label-free
  stage 8: `probe_accuracy`);
- `few_labels`: the same split with 10 % of each client's training rows labelled
  (`labelled_fraction` 0.1, about 6 rows a client on average); the same accuracy;
- `drift`: iid split, `label_swap` concepts over 4 blocks (half the clients a block late);
  `next_block_accuracy` (train at t, test on t + 1) averaged over the rounds that report it, and
  `drift_accuracy_drop` averaged over the three drifts, and the detector's alarms
  (`drift_alarms` summed over the rounds);
- `tasks`: iid split, 5 class-incremental tasks of two classes (`class_split`, 8 rounds each);
  `avg_task_accuracy` and `forgetting`;
- `arrivals`: the Dirichlet 0.1 split, 20 % of the clients never train and adapt the global
  model on their own rows after each round; `unseen_accuracy_k0`, `_k1`, `_k5`.

Every scenario also prints the bytes the run moved (`bytes_up_total + bytes_down_total`,
engine_version 8), in MB.

Methods per scenario: the `baseline` preset (the shared Linear model alone) with `local`,
`fedavg`, `fedavg_ft`, `ditto` and `ifca` at their defaults; SF-HFE as a labelled configuration
(preset `stage7`: four experts, scored as an ensemble on the clients' own rows; under `arrivals`
with `federated_averaging`, which the scenario needs) with the new mechanisms that suit the
scenario switched on (static and few labels: `router_strategy: loss` and `gossip_peers:
insight`; drift: `drift_detector: page_hinkley` and loss routing, IFCA's cluster pick among a
client's experts; tasks: `replay_size` 20; arrivals: `meta_init`), and that SF-HFE with each of
them (and, on static, the older ones) switched off in turn; where the scenario's mechanism runs
without experts (replay, meta_init), FedAvg with it too, so that SF-HFE's part and the
mechanism's part can be told apart; on static and few labels also the label-free stage 8 (the
`stage8` preset, scored by a linear probe of its representation), which reads every training
row where the others read the labelled ones.

Printed per run as mean ± sample std over the seeds, with Δ of the means against the run in
`vs` (the baselines and SF-HFE against FedAvg, each switch against the full SF-HFE), marked *
when |Δ| > std(run) + std(vs), i.e. beyond the seeds' spread, and "=" when every seed gave
exactly the reference's number (the mechanism changes nothing evaluated). `--quick`: 1 seed,
5 rounds (no spread, so no mark).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from scarcity import RoundResult, resolve_config, run_simulation

SEEDS = (0, 1, 2)
NUM_CLIENTS = 20
ROUNDS = 40
QUICK_ROUNDS = 5
BASE: dict[str, Any] = {
    "dataset": "digits",
    "num_clients": NUM_CLIENTS,
    "client_test_fraction": 0.2,
    "batch_size": 32,
    "learning_rate": 0.1,
    "ssl_epochs": 5,
}
SKEWED = {"partition": "dirichlet", "dirichlet_alpha": 0.1}
#: class_split needs every client to hold every task's classes, label_swap every swapped pair.
IID = {"partition": "iid"}
#: Where a run's accuracy on the clients' own rows comes from, first found, and its short name.
PERSONAL = {
    "probe_accuracy": "probe",
    "ensemble_accuracy": "ensemble",
    "personal_accuracy_mean": "shared",
}
FEDAVG = "fedavg"
SFHFE = "SF-HFE"
BASELINES = ("local", "fedavg_ft", "ditto", "ifca")
#: The labelled SF-HFE every scenario starts from: four experts, their ensemble scored.
STAGE7 = {"preset": "stage7"}
#: What a switch turns off, by name (a mechanism that another needs goes with it).
STATIC_SWITCHES: dict[str, dict[str, Any]] = {
    "no loss routing (balanced)": {"router_strategy": "balanced"},
    "no insight gossip (random)": {"gossip_peers": "random"},
    "no gossip": {"gossip": False, "gossip_peers": "random"},
    "no extended_experts": {"extended_experts": False},
    "no meta_learning": {"meta_learning": False, "apply_meta_params": False},
}
LABEL_FREE = "label-free stage 8 (probe)"

Summary = Callable[[list[RoundResult]], float | None]


def final(metric: str) -> Summary:
    def summary(results: list[RoundResult]) -> float | None:
        return results[-1].metrics.get(metric)

    return summary


def mean_over_rounds(metric: str) -> Summary:
    def summary(results: list[RoundResult]) -> float | None:
        values = [r.metrics[metric] for r in results if metric in r.metrics]
        return statistics.fmean(values) if values else None

    return summary


def total(metric: str) -> Summary:
    def summary(results: list[RoundResult]) -> float | None:
        values = [r.metrics[metric] for r in results if metric in r.metrics]
        return sum(values) if values else None

    return summary


def personal(results: list[RoundResult]) -> float | None:
    last = results[-1].metrics
    return next((last[m] for m in PERSONAL if m in last), None)


def megabytes(results: list[RoundResult]) -> float | None:
    last = results[-1].metrics
    if "bytes_up_total" not in last:
        return None
    return (last["bytes_up_total"] + last["bytes_down_total"]) / 1e6


@dataclass(frozen=True)
class Column:
    label: str
    summary: Summary


OWN_ROWS = Column("own rows", personal)
BYTES = Column("MB sent", megabytes)


@dataclass(frozen=True)
class Scenario:
    name: str
    data: dict[str, Any]
    columns: tuple[Column, ...]
    #: SF-HFE's settings here, beyond stage 7's.
    sfhfe: dict[str, Any]
    #: Each mechanism switched off in turn: name → the settings that undo it.
    switches: dict[str, dict[str, Any]]
    label_free: bool = False
    #: The scenario's mechanism on FedAvg's shared model, where it runs without experts.
    fedavg_with: dict[str, dict[str, Any]] = field(default_factory=dict)


SCENARIOS = (
    Scenario(
        "static (Dirichlet 0.1)",
        SKEWED,
        (OWN_ROWS,),
        {"router_strategy": "loss", "gossip_peers": "insight"},
        STATIC_SWITCHES,
        label_free=True,
    ),
    Scenario(
        "few_labels (10 % labelled)",
        {**SKEWED, "scenario": "few_labels", "labelled_fraction": 0.1},
        (OWN_ROWS,),
        {"router_strategy": "loss", "gossip_peers": "insight"},
        {k: STATIC_SWITCHES[k] for k in list(STATIC_SWITCHES)[:2]},
        label_free=True,
    ),
    Scenario(
        "drift (label_swap, 4 blocks)",
        {**IID, "scenario": "drift", "drift_blocks": 4, "drift_kind": "label_swap"},
        (
            Column("next_block_acc (mean)", mean_over_rounds("next_block_accuracy")),
            Column("drift_drop (mean)", mean_over_rounds("drift_accuracy_drop")),
            Column("alarms", total("drift_alarms")),
        ),
        # loss routing is IFCA's cluster pick: FedDrift's case for clustering by concept
        {"drift_detector": "page_hinkley", "router_strategy": "loss"},
        {
            "no drift_detector": {"drift_detector": "none"},
            "no loss routing (balanced)": {"router_strategy": "balanced"},
        },
    ),
    Scenario(
        "tasks (class_split, 5 tasks)",
        {**IID, "scenario": "tasks", "num_tasks": 5, "task_kind": "class_split"},
        (
            Column("avg_task_accuracy", final("avg_task_accuracy")),
            Column("forgetting", final("forgetting")),
        ),
        {"replay_size": 20},
        {"no replay": {"replay_size": 0}},
        fedavg_with={"fedavg + replay": {"replay_size": 20}},
    ),
    Scenario(
        "arrivals (20 % unseen)",
        {**SKEWED, "scenario": "arrivals"},
        (
            Column("unseen_k0", final("unseen_accuracy_k0")),
            Column("unseen_k1", final("unseen_accuracy_k1")),
            Column("unseen_k5", final("unseen_accuracy_k5")),
        ),
        # arrivals scores the shared model a newcomer receives: the hybrid.
        {"federated_averaging": True, "meta_init": True},
        {"no meta_init": {"meta_init": False}},
        fedavg_with={"fedavg + meta_init": {"meta_init": True}},
    ),
)


@dataclass(frozen=True)
class Run:
    name: str
    overrides: dict[str, Any]
    reference: str | None
    results: list[dict[str, float]] = field(default_factory=list, compare=False)


def runs(scenario: Scenario) -> list[Run]:
    """The runs of a scenario in printing order: FedAvg, the other baselines, SF-HFE, its
    switches, the label-free stage 8."""
    sfhfe = {**STAGE7, **scenario.sfhfe}
    out = [
        Run(FEDAVG, {"preset": "baseline", "strategy": "fedavg"}, None),
        *(Run(name, {"preset": "baseline", "strategy": name}, FEDAVG) for name in BASELINES),
        *(
            Run(name, {"preset": "baseline", "strategy": "fedavg", **on}, FEDAVG)
            for name, on in scenario.fedavg_with.items()
        ),
        Run(SFHFE, sfhfe, FEDAVG),
        *(Run(name, {**sfhfe, **off}, SFHFE) for name, off in scenario.switches.items()),
    ]
    if scenario.label_free:
        out.append(Run(LABEL_FREE, {"preset": "stage8"}, SFHFE))
    return out


def config(scenario: Scenario, run: Run, rounds: int, seed: int) -> Any:
    return resolve_config(BASE, **scenario.data, **run.overrides, rounds=rounds, seed=seed)


def summarise(scenario: Scenario, results: list[RoundResult]) -> dict[str, float]:
    out = {}
    for column in (*scenario.columns, BYTES):
        value = column.summary(results)
        if value is not None:
            out[column.label] = value
    last = results[-1].metrics
    source = next((m for m in PERSONAL if m in last), None)
    if source is not None:
        out[PERSONAL[source]] = 1.0  # which accuracy `own rows` is, for the label
    return out


def cell(run: Run, reference: Run | None, label: str) -> str:
    """`mean ± std` of the run's column, with Δ to the reference's."""
    values = [r[label] for r in run.results if label in r]
    if not values or len(values) < len(run.results):
        return "—"
    digits = {BYTES.label: 2, "alarms": 1}.get(label, 3)
    spread = len(values) > 1
    mean = statistics.fmean(values)
    if label == BYTES.label:
        return f"{mean:.{digits}f}"  # what a round moves follows from the config alone
    std = statistics.stdev(values) if spread else 0.0
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if spread else f"{mean:.{digits}f}"
    if label == OWN_ROWS.label:
        text = f"{next(s for s in PERSONAL.values() if s in run.results[0])} {text}"
    if reference is None:
        return text
    ref_values = [r[label] for r in reference.results if label in r]
    if len(ref_values) < len(reference.results) or not ref_values:
        return text
    if values == ref_values:
        return f"{text} ="
    ref_mean = statistics.fmean(ref_values)
    ref_std = statistics.stdev(ref_values) if spread else 0.0
    delta = mean - ref_mean
    mark = "*" if spread and abs(delta) > std + ref_std else ""
    return f"{text} Δ{delta:+.{digits}f}{mark}"


def table(scenario: Scenario, done: Sequence[Run]) -> list[str]:
    by_name = {run.name: run for run in done}
    labels = [c.label for c in (*scenario.columns, BYTES)]
    widths = [38 if label == OWN_ROWS.label else 30 for label in labels[:-1]] + [14]
    header = f"{scenario.name:<32}{'vs':<10}" + "".join(
        f"{label:<{w}}" for label, w in zip(labels, widths, strict=True)
    )
    lines = [header]
    for run in done:
        reference = by_name.get(run.reference) if run.reference else None
        lines.append(
            f"{run.name:<32}{run.reference or '':<10}"
            + "".join(
                f"{cell(run, reference, label):<{w}}"
                for label, w in zip(labels, widths, strict=True)
            )
        )
    return lines


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)  # as the workers and tests run
    rounds = QUICK_ROUNDS if quick else ROUNDS
    seeds = SEEDS[:1] if quick else SEEDS
    print(
        f"digits, {NUM_CLIENTS} clients, client_test_fraction 0.2, batch 32, lr 0.1, "
        f"{rounds} rounds, seeds {seeds}; mean ± std over the seeds; Δ to the run in `vs`, "
        "* = |Δ| beyond std(run) + std(vs), = : every seed identical; own rows: shared = "
        "personal_accuracy_mean, ensemble = ensemble_accuracy, probe = probe_accuracy; "
        "MB sent = bytes_up_total + bytes_down_total",
        flush=True,
    )
    started = time.perf_counter()
    for scenario in SCENARIOS:
        begun = time.perf_counter()
        done = []
        for run in runs(scenario):
            for seed in seeds:
                results = run_simulation(config(scenario, run, rounds, seed))
                run.results.append(summarise(scenario, results))
            done.append(run)
        print("\n".join(table(scenario, done)), flush=True)
        print(f"({time.perf_counter() - begun:.0f} s)\n", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)
