"""Expert routing for the whole pool at once: one expert index per client.

`BATCHED_STRATEGIES` mirrors `scarcity.core.router.ROUTER_STRATEGIES`; a strategy registered
only there still works, called once per client (with the same numpy stream and call count).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor

from scarcity.batched.padding import masked_var_mean
from scarcity.core.router import ROUTER_STRATEGIES

# (data [N, n, d], expert names, threshold, calls so far, rng, client sizes or None) → expert
# index per client [N]; with sizes the data is zero-padded after each client's rows. Calls is
# one count for all, or one per client [N] when client sampling left them unequal.
Calls = int | Tensor
BatchedStrategy = Callable[
    [Tensor, Sequence[str], float, Calls, np.random.Generator, Tensor | None], Tensor
]
BATCHED_STRATEGIES: dict[str, BatchedStrategy] = {}


def _register(name: str) -> Callable[[BatchedStrategy], BatchedStrategy]:
    def decorate(strategy: BatchedStrategy) -> BatchedStrategy:
        BATCHED_STRATEGIES[name] = strategy
        return strategy

    return decorate


@_register("variance")
def route_by_variance(
    x: Tensor,
    names: Sequence[str],
    threshold: float,
    calls: Calls,
    rng: np.random.Generator,
    sizes: Tensor | None,
) -> Tensor:
    """High variance (> threshold) → StructureExpert, otherwise → DriftExpert."""
    if sizes is None:
        variance = x.var(dim=(1, 2), correction=0).double()
    else:
        variance = masked_var_mean(x, sizes)[0]
    high = variance > threshold
    on_high = names.index("StructureExpert") if "StructureExpert" in names else 0
    on_low = names.index("DriftExpert") if "DriftExpert" in names else min(1, len(names) - 1)
    return torch.where(high, on_high, on_low)


@_register("random")
def route_randomly(
    x: Tensor,
    names: Sequence[str],
    threshold: float,
    calls: Calls,
    rng: np.random.Generator,
    sizes: Tensor | None,
) -> Tensor:
    """Uniformly random expert, one draw per client in client order (as the reference)."""
    return torch.tensor([int(rng.integers(len(names))) for _ in range(len(x))])


@_register("round_robin")
def route_round_robin(
    x: Tensor,
    names: Sequence[str],
    threshold: float,
    calls: Calls,
    rng: np.random.Generator,
    sizes: Tensor | None,
) -> Tensor:
    """Each expert in turn (by each client's own count of calls)."""
    if isinstance(calls, Tensor):
        return calls % len(names)
    return torch.full((len(x),), calls % len(names))


def route(
    strategy: str,
    x: Tensor,
    names: Sequence[str],
    threshold: float,
    calls: Calls,
    rng: np.random.Generator,
    sizes: Tensor | None = None,
) -> Tensor:
    """The expert each client trains this round; `sizes` [N] when `x` is padded (`padding`)."""
    if strategy in BATCHED_STRATEGIES:
        return BATCHED_STRATEGIES[strategy](x, names, threshold, calls, rng, sizes).long()
    per_client = ROUTER_STRATEGIES[strategy]
    counts = calls.tolist() if isinstance(calls, Tensor) else [calls] * len(x)
    data = list(x) if sizes is None else [xi[:n] for xi, n in zip(x, sizes.tolist(), strict=True)]
    return torch.tensor(
        [
            per_client(xi, list(names), SimpleNamespace(threshold=threshold, calls=c, rng=rng), rng)  # type: ignore[arg-type]
            for xi, c in zip(data, counts, strict=True)
        ]
    )
