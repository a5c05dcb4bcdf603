"""Engine benchmark: FedAvg (stage2) on digits, three implementations of the same arithmetic.

Logistic regression, E=1 local epoch, batch 16, lr 0.1, on the peers' workload: digits' 1,438
training rows split at natural sizes (each row held by one client) by Dirichlet α=0.5 at
N=10/R=20 and N=100/R=20, and IID at N=1000/R=5 (1 or 2 rows a client: a Dirichlet split of
1,438 rows among 1,000 clients leaves some with none, and every client here holds a row):
- *batched*: `Simulation` with `execution="batched"` (all clients in a few tensor ops);
- *reference*: `Simulation` with `execution="reference"` (one object per client);
- *hand loop*: the minimal hand-written batched loop below (bmm over a [N, d, k] weight tensor,
  padded and masked client batches): the near-limit reference for what the engine can reach.
Prints seconds, final test accuracy and the ratios. Targets: the batched `baseline` preset
(the shared model alone, like the hand loop, but also measuring every round's loss and test
metrics) ≤ 1.5× the hand loop at N=10, 100 and 1000; at N=100 and N=1000 stage2 (which also
trains each client's two expert heads) ≥ 20× faster than the reference, with the same accuracy
(±0.5 pp). The runs take turns (hand, baseline, stage2, three times each) so that the
machine's load falls on all alike. A last row repeats
N=1000 on the data of earlier releases (`resample_to_size`: 144 standardised rows a client,
with lognormal `quantity_skew` 1: the largest up to 4× the mean).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

#: (clients, rounds, partition)
SIZES = ((10, 20, "dirichlet"), (100, 20, "dirichlet"), (1000, 5, "iid"))
QUICK_SIZES = ((10, 5, "dirichlet"), (100, 5, "dirichlet"), (300, 2, "iid"))
RESAMPLED_SIZE, QUICK_RESAMPLED_SIZE = (1000, 5), (300, 2)
SKEW = 1.0
#: The data of earlier releases: every client resized to 144 standardised rows.
RESAMPLED: dict[str, Any] = {
    "resample_to_size": True,
    "samples_per_client": 144,
    "feature_scaling": "standard",
}


def bench_config(
    num_clients: int,
    rounds: int,
    preset: str = "stage2",
    partition: str = "dirichlet",
    **overrides: Any,
) -> Any:
    from scarcity import resolve_config

    return resolve_config(
        {
            "preset": preset,
            "dataset": "digits",
            "partition": partition,
            "dirichlet_alpha": 0.5,
            "num_clients": num_clients,
            "rounds": rounds,
            "local_epochs": 1,
            "batch_size": 16,
            "learning_rate": 0.1,
            **overrides,
        }
    )


def run_engine(
    num_clients: int, rounds: int, execution: str, **overrides: Any
) -> tuple[float, float]:
    """Seconds of one in-process simulation (data set already cached) and its final accuracy."""
    from scarcity import run_simulation

    config = bench_config(num_clients, rounds, execution=execution, **overrides)
    started = time.perf_counter()
    results = run_simulation(config)
    return time.perf_counter() - started, results[-1].metrics["test_accuracy"]


def best_of_turns(
    repeats: int, *runs: Callable[[], tuple[float, float]]
) -> list[tuple[float, float]]:
    """The fastest of `repeats` runs of each, the runs taking turns (same accuracy each time:
    runs are deterministic)."""
    results: list[list[tuple[float, float]]] = [[] for _ in runs]
    for _ in range(repeats):
        for out, run in zip(results, runs, strict=True):
            out.append(run())
    return [min(out) for out in results]


def hand_loop(
    num_clients: int, rounds: int, seed: int = 0, **overrides: Any
) -> tuple[float, float]:
    """FedAvg written by hand over stacked tensors; the same data, its own random draws."""
    from scarcity.core.data import make_federated_data

    config = bench_config(num_clients, rounds, **overrides)
    data = make_federated_data(config)  # not timed, as in the engine (cached data set)
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([len(x) for x in data.client_x])
    n_max, d, k = int(sizes.max()), config.input_dim, config.output_dim
    x = torch.zeros(num_clients, n_max, d)  # padded to the largest client
    y = torch.zeros(num_clients, n_max, dtype=torch.long)
    for i, (xi, yi) in enumerate(zip(data.client_x, data.client_y, strict=True)):
        x[i, : len(xi)], y[i, : len(yi)] = xi, yi
    bound = 1 / d**0.5
    w = torch.rand(d, k, generator=gen) * 2 * bound - bound
    b = torch.rand(k, generator=gen) * 2 * bound - bound
    bs, lr = config.batch_size, config.learning_rate
    rows = torch.arange(num_clients)[:, None]
    for _ in range(rounds):
        cw = w.expand(num_clients, d, k).clone()  # [N, d, k]
        cb = b.expand(num_clients, k).clone()
        for _ in range(config.local_epochs):
            # Valid positions first in a random order, padding last: one permutation per client.
            keys = torch.rand(num_clients, n_max, generator=gen)
            keys += (torch.arange(n_max) >= sizes[:, None]).float() * 2
            order = keys.argsort(dim=1)
            for start in range(0, n_max, bs):
                idx = order[:, start : start + bs]
                mask = (idx < sizes[:, None]).float()  # [N, B]
                count = mask.sum(1).clamp(min=1)
                xb, yb = x[rows, idx], y[rows, idx]
                logits = torch.baddbmm(cb[:, None], xb, cw)
                grad = (logits.softmax(-1) - F.one_hot(yb, k)) * (mask / count[:, None])[..., None]
                cw -= lr * torch.bmm(xb.transpose(1, 2), grad)
                cb -= lr * grad.sum(1)
        share = (sizes / sizes.sum()).float()
        w = torch.einsum("n,ndk->dk", share, cw)
        b = share @ cb
    accuracy = float(((data.test_x @ w + b).argmax(1) == data.test_y).float().mean())
    return time.perf_counter() - started, accuracy


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)  # as the workers and tests run
    hand_loop(10, 1)  # warm up: load the data set, first-call overheads
    run_engine(10, 1, "reference")
    print(
        "stage2 FedAvg, digits (1,438 training rows at natural sizes), logistic regression, E=1, "
        "batch 16, lr 0.1; 1 torch thread. The engine's stage2 also trains each client's two "
        "expert heads (3 models per client; the hand loop trains 1). Best of 3 runs taking "
        "turns, the reference 1."
    )
    runs: list[tuple[int, int, str, dict[str, Any]]] = [
        (n, r, p, {"partition": p}) for n, r, p in (QUICK_SIZES if quick else SIZES)
    ]
    n, r = QUICK_RESAMPLED_SIZE if quick else RESAMPLED_SIZE
    runs.append((n, r, f"resampled, quantity_skew={SKEW:g}", {**RESAMPLED, "quantity_skew": SKEW}))
    for num_clients, rounds, label, overrides in runs:
        hand, baseline, batched = best_of_turns(
            3,
            partial(hand_loop, num_clients, rounds, 0, **overrides),
            partial(run_engine, num_clients, rounds, "batched", preset="baseline", **overrides),
            partial(run_engine, num_clients, rounds, "batched", **overrides),
        )
        reference = run_engine(num_clients, rounds, "reference", **overrides)
        print(
            f"N={num_clients:>5} R={rounds:>2} {label}: "
            f"hand loop {hand[0]:.3f} s (acc {hand[1]:.4f}); "
            f"baseline {baseline[0]:.3f} s (acc {baseline[1]:.4f}); "
            f"stage2 batched {batched[0]:.3f} s (acc {batched[1]:.4f}); "
            f"stage2 reference {reference[0]:.3f} s (acc {reference[1]:.4f})"
        )
        print(
            f"{'':13}baseline/hand {baseline[0] / hand[0]:.2f}x (like for like, target <= 1.5x), "
            f"stage2/hand {batched[0] / hand[0]:.2f}x (3 models a client), "
            f"reference/batched {reference[0] / batched[0]:.1f}x (target >= 20x), "
            f"accuracy batched-reference {100 * (batched[1] - reference[1]):+.2f} pp, "
            f"baseline-hand {100 * (baseline[1] - hand[1]):+.2f} pp",
            flush=True,
        )
