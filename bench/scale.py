"""Scale benchmark: the full SF-HFE round (stage8 defaults) at 100, 1,000 and 10,000 clients.

Each size runs in a fresh subprocess so its peak RSS is its own (`VmHWM` on Linux, where
`ru_maxrss` would include the peak of the parent it was forked from; `ru_maxrss` elsewhere).
Printed: seconds to build the simulation, mean seconds per round over a few rounds, and peak
RSS, for the batched path and (where it finishes in reasonable time) the per-client reference.
Targets (issue 5): stage8 at 10,000 clients ≤ 2 s per round and ≤ 2 GiB peak RSS on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
#: (clients, execution, torch threads)
RUNS = [
    (100, "reference", 1),
    (100, "batched", 1),
    (1_000, "reference", 1),
    (1_000, "batched", 1),
    (10_000, "batched", 1),
    (10_000, "batched", 2),
]
QUICK_RUNS = [(100, "reference", 1), (100, "batched", 1), (1_000, "batched", 1)]

_MEASURE = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from scarcity import Simulation, resolve_config
config = resolve_config(json.loads(sys.argv[1]))
started = time.perf_counter()
sim = Simulation(config)
built = time.perf_counter() - started
durations = [sim.run_round().duration_seconds for _ in range(config.rounds)]
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:  # Linux keeps ru_maxrss across fork+exec (the parent's peak); VmHWM is this process's own
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    peak_kib = int(status.split()[0])
except (OSError, IndexError):
    pass
print(json.dumps({
    "build": built,
    "per_round": sum(durations) / len(durations),
    "rss_mib": peak_kib / 1024,
}))
"""


def measure_config(request: dict[str, Any], threads: int = 1) -> dict[str, float]:
    """Build and run one request in a fresh interpreter (so peak RSS is its own): seconds to
    build, mean seconds per round, peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(request), str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(clients: int, execution: str, threads: int, rounds: int = ROUNDS) -> dict[str, float]:
    """One stage8 size in a fresh interpreter."""
    request = {"preset": "stage8", "num_clients": clients, "rounds": rounds}
    return measure_config({**request, "execution": execution}, threads)


def main(quick: bool = False) -> None:
    print(
        f"stage8 defaults (4 experts, 50 samples x 10 features per client, 10 SSL epochs), "
        f"mean of {ROUNDS} rounds; each size in a fresh process"
    )
    per_round: dict[tuple[int, str], float] = {}
    for clients, execution, threads in QUICK_RUNS if quick else RUNS:
        rounds = 1 if execution == "reference" and clients >= 1_000 else ROUNDS
        figures = measure(clients, execution, threads, rounds)
        if threads == 1:
            per_round[clients, execution] = figures["per_round"]
        line = (
            f"N={clients:>6} {execution:<9} {threads} thread{'s' if threads > 1 else ' '}: "
            f"build {figures['build']:.2f} s, {figures['per_round']:.3f} s/round, "
            f"peak RSS {figures['rss_mib']:.0f} MiB"
        )
        if execution == "batched" and (clients, "reference") in per_round and threads == 1:
            speedup = per_round[clients, "reference"] / figures["per_round"]
            line += f" (reference/batched {speedup:.0f}x)"
        if clients == 10_000:
            line += " target <= 2 s/round, <= 2048 MiB"
        print(line, flush=True)
