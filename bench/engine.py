"""Engine benchmark: FedAvg (stage2) on digits, three implementations of the same arithmetic.

Logistic regression, Dirichlet α=0.5 label skew, E=1 local epoch, batch 16, lr 0.1, 144 samples
per client (the training set once at N=10), at N=10/R=20, N=100/R=20 and N=1000/R=5:
- *batched*: `Simulation` with `execution="batched"` (all clients in a few tensor ops);
- *reference*: `Simulation` with `execution="reference"` (one object per client);
- *hand loop*: the minimal hand-written batched loop below (bmm over a [N, d, k] weight tensor,
  padded and masked client batches): the near-limit reference for what the engine can reach.
Prints seconds, final test accuracy and the ratios. Targets (issue 5), at N=1000: batched ≤ 2×
the hand loop, ≥ 20× faster than the reference, same accuracy (±0.5 pp). A last row repeats one
size with unequal client sizes (`quantity_skew` 1: lognormal sizes, the largest up to 4× the
mean), where the batched path pads and masks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

SIZES = ((10, 20), (100, 20), (1000, 5))
QUICK_SIZES = ((10, 5), (100, 5), (300, 2))
SKEWED_SIZE, QUICK_SKEWED_SIZE = (1000, 5), (300, 2)
SKEW = 1.0


def bench_config(num_clients: int, rounds: int, preset: str = "stage2", **overrides: Any) -> Any:
    from scarcity import resolve_config

    return resolve_config(
        preset=preset,
        dataset="digits",
        partition="dirichlet",
        dirichlet_alpha=0.5,
        num_clients=num_clients,
        rounds=rounds,
        local_epochs=1,
        batch_size=16,
        learning_rate=0.1,
        samples_per_client=144,
        **overrides,
    )


def run_engine(
    num_clients: int, rounds: int, execution: str, quantity_skew: float = 0.0
) -> tuple[float, float]:
    """Seconds of one in-process simulation (data set already cached) and its final accuracy."""
    from scarcity import run_simulation

    config = bench_config(num_clients, rounds, execution=execution, quantity_skew=quantity_skew)
    started = time.perf_counter()
    results = run_simulation(config)
    return time.perf_counter() - started, results[-1].metrics["test_accuracy"]


def best_of(
    repeats: int, run: Callable[..., tuple[float, float]], *args: Any
) -> tuple[float, float]:
    """The fastest of `repeats` runs (same accuracy each time: runs are deterministic)."""
    return min(run(*args) for _ in range(repeats))


def hand_loop(
    num_clients: int, rounds: int, quantity_skew: float = 0.0, seed: int = 0
) -> tuple[float, float]:
    """FedAvg written by hand over stacked tensors; the same data, its own random draws."""
    from scarcity.core.data import make_federated_data

    config = bench_config(num_clients, rounds, quantity_skew=quantity_skew)
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
        "stage2 FedAvg, digits, Dirichlet 0.5, logistic regression, E=1, batch 16, lr 0.1, "
        "144 samples/client; 1 torch thread. The engine's stage2 also trains each client's two "
        "expert heads (3 models per client; the hand loop trains 1). Best of 3 runs, the "
        "reference 1."
    )
    sizes = [(n, r, 0.0) for n, r in (QUICK_SIZES if quick else SIZES)]
    sizes.append((*(QUICK_SKEWED_SIZE if quick else SKEWED_SIZE), SKEW))
    for num_clients, rounds, skew in sizes:
        hand = best_of(3, hand_loop, num_clients, rounds, skew)
        batched = best_of(3, run_engine, num_clients, rounds, "batched", skew)
        reference = run_engine(num_clients, rounds, "reference", skew)
        label = f" quantity_skew={skew:g}" if skew else ""
        print(
            f"N={num_clients:>5} R={rounds:>2}{label}: "
            f"hand loop {hand[0]:.3f} s (acc {hand[1]:.4f}); "
            f"batched {batched[0]:.3f} s (acc {batched[1]:.4f}); "
            f"reference {reference[0]:.3f} s (acc {reference[1]:.4f})"
        )
        print(
            f"{'':13}batched/hand {batched[0] / hand[0]:.2f}x (target <= 2x), "
            f"reference/batched {reference[0] / batched[0]:.1f}x (target >= 20x), "
            f"accuracy batched-reference {100 * (batched[1] - reference[1]):+.2f} pp, "
            f"batched-hand {100 * (batched[1] - hand[1]):+.2f} pp",
            flush=True,
        )
