"""Fashion-MNIST benchmark: the engine's batched FedAvg of a CNN against two hand-written loops.

FedAvg (the `baseline` preset: the shared model alone) of NIID-Bench's simple CNN on
Fashion-MNIST's 60,000 training rows split among N=100 clients by Dirichlet α=0.5 at natural
sizes (187 to 1,458 rows a client), E=1, batch 32, the data set's default learning rate, every
client every round, the global model scored on the 10,000 test rows after each round; one
torch thread. Three implementations of that round:

- *engine*: `Simulation` with `execution="batched"`;
- *per-client loop*: how a Flower client trains, written out: for each client a copy of the
  global model, a shuffled mini-batch SGD loop (`torch.optim.SGD`, no DataLoader), then the
  sample-weighted average of the clients' weights;
- *vmap loop*: all clients at once with `torch.func`: the parameters stacked [N, ...], one
  `vmap(grad(loss))` call per mini-batch over the clients that still have rows in it, the
  clients padded to the largest and the padding weighted 0.

All three read the same client rows (`make_federated_data`, not timed). Each variant runs in a
fresh process (its peak RSS its own: `VmHWM`, which unlike `ru_maxrss` does not carry the
peak of the process it was forked from; `ru_maxrss` where there is no /proc); the first round
(first-call overheads) is not timed. The variants take turns, repeated, and the medians are
printed with the ratios engine/loop (target ≤ 1.0) and engine/vmap (target ≤ 1.3).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("engine", "loop", "vmap")
CLIENTS = 100


def bench_config(rounds: int, **overrides: Any) -> Any:
    from scarcity import resolve_config

    return resolve_config(
        {
            "preset": "baseline",
            "dataset": "fashion_mnist",
            "model": "simple_cnn",
            "num_clients": CLIENTS,
            "partition": "dirichlet",
            "dirichlet_alpha": 0.5,
            "local_epochs": 1,
            "batch_size": 32,
            "rounds": rounds,
            "execution": "batched",
            **overrides,
        }
    )


class SimpleCNN(nn.Module):
    """NIID-Bench's `SimpleCNNMNIST` (model.py), as its code writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def _engine(rounds: int) -> tuple[list[float], float]:
    from scarcity import Simulation

    sim = Simulation(bench_config(rounds))
    seconds, accuracy = [], 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        result = sim.run_round()
        seconds.append(time.perf_counter() - started)
        accuracy = result.metrics["test_accuracy"]
    return seconds, accuracy


def _loop(rounds: int) -> tuple[list[float], float]:
    import copy

    from scarcity.core.data import make_federated_data

    config = bench_config(rounds)
    data = make_federated_data(config)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = SimpleCNN()
    total = sum(len(y) for y in data.client_y)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        average = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
        for x, y in zip(data.client_x, data.client_y, strict=True):
            local = copy.deepcopy(model)
            optimizer = torch.optim.SGD(local.parameters(), lr=config.learning_rate)
            for _ in range(config.local_epochs):
                for idx in torch.randperm(len(y), generator=generator).split(config.batch_size):
                    optimizer.zero_grad()
                    F.cross_entropy(local(x[idx]), y[idx]).backward()
                    optimizer.step()
            for k, v in local.state_dict().items():
                average[k] += v * (len(y) / total)
        model.load_state_dict(average)
        accuracy = _accuracy(model, data.test_x, data.test_y)
        seconds.append(time.perf_counter() - started)
    return seconds, accuracy


def _vmap(rounds: int) -> tuple[list[float], float]:
    from torch.func import functional_call, grad, vmap

    from scarcity.core.data import make_federated_data

    config = bench_config(rounds)
    data = make_federated_data(config)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = SimpleCNN()
    template = SimpleCNN().to("meta")
    sizes = torch.tensor([len(y) for y in data.client_y])
    n, longest = len(sizes), int(sizes.max())
    x = torch.zeros(n, longest, data.test_x.shape[1])  # padded to the largest client
    y = torch.zeros(n, longest, dtype=torch.long)
    for i, (xi, yi) in enumerate(zip(data.client_x, data.client_y, strict=True)):
        x[i, : len(yi)], y[i, : len(yi)] = xi, yi
    share = (sizes / sizes.sum()).float()

    def loss(params: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor):
        out = functional_call(template, params, (xb,))
        return (F.cross_entropy(out, yb, reduction="none") * wb).sum()

    client_grads = vmap(grad(loss))
    batch, seconds = config.batch_size, []
    for _ in range(rounds):
        started = time.perf_counter()
        params = {k: v.detach().expand(n, *v.shape).clone() for k, v in model.named_parameters()}
        for _ in range(config.local_epochs):
            # Each client's rows in a random order, its padding last.
            keys = torch.rand(n, longest, generator=generator)
            keys += (torch.arange(longest) >= sizes[:, None]).float() * 2
            order = keys.argsort(dim=1)
            for start in range(0, longest, batch):
                live = (sizes > start).nonzero().squeeze(1)
                idx = order[live, start : start + batch]
                real = (idx < sizes[live, None]).float()
                weight = real / real.sum(dim=1, keepdim=True)
                rows = live[:, None]
                part = {k: v[live] for k, v in params.items()}
                grads = client_grads(part, x[rows, idx], y[rows, idx], weight)
                for k, v in params.items():
                    v[live] -= config.learning_rate * grads[k]
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(torch.einsum("n,n...->...", share, params[k]))
        accuracy = _accuracy(model, data.test_x, data.test_y)
        seconds.append(time.perf_counter() - started)
    return seconds, accuracy


RUNNERS = {"engine": _engine, "loop": _loop, "vmap": _vmap}


def _peak_mib() -> float:
    import resource

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        peak_kib = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
    except (OSError, IndexError):
        pass
    return peak_kib / 1024


def _child(variant: str, rounds: int) -> None:
    """One variant in this (fresh) process: its figures as one JSON line."""
    torch.set_num_threads(1)
    seconds, accuracy = RUNNERS[variant](rounds)
    timed = seconds[1:] or seconds
    print(
        json.dumps(
            {
                "per_round": sum(timed) / len(timed),
                "rss_mib": _peak_mib(),
                "accuracy": accuracy,
            }
        )
    )


def measure(variant: str, rounds: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    code = f"from bench.fmnist import _child; _child({variant!r}, {rounds})"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(quick: bool = False) -> None:
    rounds, repeats = (2, 1) if quick else (3, 3)
    config = bench_config(rounds)
    print(
        f"FedAvg, fashion_mnist, simple_cnn, N={CLIENTS}, Dirichlet 0.5, E=1, batch 32, "
        f"lr {config.learning_rate:g}, 1 torch thread; {rounds} rounds, the first not timed; "
        f"each variant in a fresh process, taking turns, median of {repeats}"
    )
    figures: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(repeats):
        for variant in VARIANTS:
            figures[variant].append(measure(variant, rounds))
    median = {
        v: {k: statistics.median(f[k] for f in runs) for k in runs[0]}
        for v, runs in figures.items()
    }
    names = {"engine": "engine (batched)", "loop": "per-client loop", "vmap": "vmap loop"}
    for variant in VARIANTS:
        f = median[variant]
        spread = ", ".join(f"{r['per_round']:.2f}" for r in figures[variant])
        print(
            f"{names[variant]:<17} {f['per_round']:.2f} s/round ({spread}), peak RSS "
            f"{f['rss_mib']:.0f} MiB, test accuracy after {rounds} rounds {f['accuracy']:.4f}",
            flush=True,
        )
    engine = median["engine"]
    for reference, target in (("loop", 1.0), ("vmap", 1.3)):
        ratio = engine["per_round"] / median[reference]["per_round"]
        memory = engine["rss_mib"] / median[reference]["rss_mib"]
        print(
            f"engine/{names[reference]}: {ratio:.2f}x time (target <= {target:g}x), "
            f"{memory:.2f}x peak RSS"
        )
