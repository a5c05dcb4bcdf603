"""Accounting benchmark: what counting a round's bytes and DP-FedAvg's ε costs.

Both on `python -m bench strategies`' baseline runs (the shared Linear model alone, digits,
Dirichlet α=0.5, 144 samples per client, E=1, batch 16, lr 0.1), 1 torch thread, at N=1000:
1. *bytes*: FedAvg with accounting (`engine_version` 8: bytes_up/down and the totals) against
   without (`engine_version` 7, which counts nothing): seconds per round and their ratio.
2. *ε*: DP-FedAvg (z = 1, 100 of the 1,000 clients a round, so q = 0.1 and the accountant
   takes its subsampled path) with the accountant (engine_version 8, which also counts bytes)
   against without (7), the same way; and what the accountant costs once: importing Opacus
   (once per process) and one round's RDP at its orders (once per run and (z, q)).
Each pass builds both runs and times their rounds after the first (warm-up), the two versions
interleaved round by round (each first in half the passes) so that a change of machine load
and the order weigh on both alike; the figure per version is the median over every timed round
of every pass. Target: ratio ≤ 1.05. On
shared cores the ratio moves a few per cent either way between runs, so the accounting's own
work is also timed alone (3.): the strategy's `traffic` on 1,000 stacked models plus the
ledger, and a later round's ε, in microseconds, against the round they are part of.
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from typing import Any

import torch

from bench.strategies import baseline_config
from scarcity.accounting import BYTES_ENGINE_VERSION

SIZE, QUICK_SIZE = (1000, 6, 8), (200, 4, 3)  # clients, rounds per pass, passes
DP = {"strategy": "dp_fedavg", "dp_noise_multiplier": 1.0}
TARGET = 1.05
#: The engine_version that counts (bytes and ε) and the one before it, which does not.
WITH = BYTES_ENGINE_VERSION
WITHOUT = WITH - 1


def interleaved(num_clients: int, rounds: int, passes: int, **overrides: Any) -> dict[int, float]:
    """Median seconds per round of engine_version 7 and 8 on the same config."""
    from scarcity import Simulation

    seconds: dict[int, list[float]] = {WITHOUT: [], WITH: []}
    for i in range(passes):
        order = (
            (WITHOUT, WITH) if i % 2 == 0 else (WITH, WITHOUT)
        )  # each goes first in half the passes
        sims = {
            v: Simulation(baseline_config(num_clients, rounds, engine_version=v, **overrides))
            for v in order
        }
        for k in range(rounds):
            for version, sim in sims.items():
                took = sim.run_round().duration_seconds
                if k > 0:  # round 1 warms up (and computes the accountant's RDP once)
                    seconds[version].append(took)
    return {version: statistics.median(values) for version, values in seconds.items()}


def report(label: str, timed: dict[int, float]) -> None:
    ratio = timed[WITH] / timed[WITHOUT]
    print(
        f"  {label:<58} without {timed[WITHOUT]:.4f} s/round, with {timed[WITH]:.4f} s/round, "
        f"{ratio:.3f}x (target <= {TARGET}x)",
        flush=True,
    )


def one_time_costs(num_clients: int, participants: int) -> float:
    """Opacus' import in a fresh interpreter, and one round's RDP at q = P / N."""
    import subprocess

    code = "import time; t = time.perf_counter(); import opacus.accountants; "
    code += "print(time.perf_counter() - t)"
    imported = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    from scarcity.strategies import dp_fedavg

    dp_fedavg._rdp_per_round.cache_clear()
    started = time.perf_counter()
    dp_fedavg.epsilon(1.0, participants / num_clients, 1, 1e-5)
    first = time.perf_counter() - started
    repeats = 500
    later = (
        timeit.timeit(
            lambda: dp_fedavg.epsilon(1.0, participants / num_clients, 2, 1e-5), number=repeats
        )
        / repeats
    )
    print(
        f"  one-time: import opacus.accountants {imported:.2f} s (once per process); "
        f"one round's RDP at q={participants / num_clients:g} {1000 * first:.1f} ms (once per "
        f"run); ε of a later round {1000 * later:.3f} ms",
        flush=True,
    )
    return later


def own_work(num_clients: int) -> float:
    """Microseconds of a FedAvg round's byte counting at `num_clients` participants."""
    from scarcity import Simulation
    from scarcity.accounting import Ledger
    from scarcity.strategies import ClientUpdates, FitInstructions

    sim = Simulation(baseline_config(num_clients, 1))
    weights = sim.server.global_weights()
    updates = ClientUpdates(
        weights={k: v.expand(num_clients, *v.shape).clone() for k, v in weights.items()},
        sample_counts=torch.ones(num_clients),
        initial_loss=torch.zeros(num_clients, dtype=torch.float64),
        participants=torch.arange(num_clients),
        num_clients=num_clients,
    )
    ledger, instructions = Ledger(), FitInstructions()
    repeats = 2000
    took = timeit.timeit(
        lambda: ledger.record(sim.strategy.traffic(weights, instructions, updates)),
        number=repeats,
    )
    return 1e6 * took / repeats


def main(quick: bool = False) -> None:
    torch.set_num_threads(1)  # as the workers and tests run
    num_clients, rounds, passes = QUICK_SIZE if quick else SIZE
    participants = num_clients // 10
    interleaved(10, 2, 1)  # warm up: load the data set, first-call overheads
    interleaved(10, 2, 1, **DP)  # and import Opacus
    print(
        f"baseline preset, digits, N={num_clients}; 1 torch thread; median of {passes} passes "
        f"× {rounds - 1} rounds, versions interleaved"
    )
    fedavg = interleaved(num_clients, rounds, passes)
    report(f"fedavg: bytes ({WITH}) vs none ({WITHOUT})", fedavg)
    dp = interleaved(num_clients, rounds, passes, clients_per_round=participants, **DP)
    label = f"dp_fedavg z=1, {participants}/{num_clients} a round: ε + bytes"
    report(f"{label} ({WITH}) vs none ({WITHOUT})", dp)
    later = one_time_costs(num_clients, participants)
    counted = own_work(num_clients)
    print(
        f"  the work alone: counting {counted:.1f} µs a FedAvg round at {num_clients} "
        f"participants ({100 * counted * 1e-6 / fedavg[WITHOUT]:.3f} % of its round); a later "
        f"round's ε {100 * later / dp[WITHOUT]:.2f} % of a dp_fedavg round",
        flush=True,
    )


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
