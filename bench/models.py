"""Models benchmark: what an MLP or a CNN costs against Linear, on the engine bench's workload.

FedAvg (stage2: the shared model plus two expert heads a client) on digits split IID among
N=1000 clients at natural sizes (1 or 2 rows a client), E=1, batch 16, lr 0.1, R=5, batched
execution, one thread; `mlp` is one hidden layer of 64, `cnn` 8 filters. Each model runs in a
fresh process (peak RSS its own). Printed: seconds per round, peak RSS and the ratios to Linear
measured in the same run; then the MLP at N=100 (Dirichlet 0.5) in both executions.
"""

from __future__ import annotations

from typing import Any

from bench.engine import bench_config
from bench.scale import measure_config

MODELS: dict[str, dict[str, Any]] = {
    "linear": {"model": "linear"},
    "mlp": {"model": "mlp", "hidden_sizes": [64]},
    "cnn": {"model": "cnn", "cnn_channels": 8},
}


def _request(clients: int, rounds: int, partition: str, **fields: Any) -> dict[str, Any]:
    return bench_config(clients, rounds, partition=partition, **fields).model_dump(mode="json")


def main(quick: bool = False) -> None:
    clients, rounds = (300, 2) if quick else (1000, 5)
    print(f"stage2 digits IID, N={clients}, R={rounds}, batched, 1 thread; fresh process each")
    figures = {
        name: measure_config(_request(clients, rounds, "iid", **fields))
        for name, fields in MODELS.items()
    }
    linear = figures["linear"]
    for name, f in figures.items():
        print(
            f"{name:<7} {f['per_round']:.3f} s/round ({f['per_round'] / linear['per_round']:.1f}x "
            f"linear), peak RSS {f['rss_mib']:.0f} MiB ({f['rss_mib'] / linear['rss_mib']:.2f}x)",
            flush=True,
        )
    small, small_rounds = (30, 2) if quick else (100, 3)
    mlp = MODELS["mlp"]
    per_round = {
        execution: measure_config(
            _request(small, small_rounds, "dirichlet", execution=execution, **mlp)
        )["per_round"]
        for execution in ("reference", "batched")
    }
    print(
        f"mlp N={small} dirichlet: reference {per_round['reference']:.3f} s/round, batched "
        f"{per_round['batched']:.3f} s/round ({per_round['reference'] / per_round['batched']:.0f}x)"
    )
