"""Expert routing for the whole pool at once: one expert index per client.

`BATCHED_STRATEGIES` mirrors `scarcity.core.router.ROUTER_STRATEGIES`; a strategy registered
only there still works, called once per client (with the same numpy stream and call count).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor

from scarcity.batched.padding import masked_var_mean
from scarcity.core.router import ROUTER_STRATEGIES, variance_preference

# (data [N, n, d], expert names, threshold, calls so far, rng, client sizes or None, usage
# [N, K]) → expert index per client [N]; with sizes the data is zero-padded after each client's
# rows. Calls is one count for all, or one per client [N] when client sampling left them
# unequal; usage counts how often each client trained each expert so far.
Calls = int | Tensor
BatchedStrategy = Callable[
    [Tensor, Sequence[str], float, Calls, np.random.Generator, Tensor | None, Tensor], Tensor
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
    usage: Tensor,
) -> Tensor:
    """High variance (> threshold) → StructureExpert, otherwise → DriftExpert."""
    high = _high_variance(x, threshold, sizes)
    on_high = names.index("StructureExpert") if "StructureExpert" in names else 0
    on_low = names.index("DriftExpert") if "DriftExpert" in names else min(1, len(names) - 1)
    return torch.where(high, on_high, on_low)


def _high_variance(x: Tensor, threshold: float, sizes: Tensor | None) -> Tensor:
    """Whether each client's data variance is above `threshold` [N] (the reference's test)."""
    if sizes is None:
        variance = x.var(dim=(1, 2), correction=0).double()
    else:
        variance = masked_var_mean(x, sizes)[0]
    return variance > threshold


@_register("balanced")
def route_balanced(
    x: Tensor,
    names: Sequence[str],
    threshold: float,
    calls: Calls,
    rng: np.random.Generator,
    sizes: Tensor | None,
    usage: Tensor,
) -> Tensor:
    """Each client's least-trained expert, ties in `variance_preference` order."""
    k = len(names)
    rank = {
        high: torch.tensor([variance_preference(high, names).index(n) for n in names])
        for high in (False, True)
    }
    high = _high_variance(x, threshold, sizes)
    ranks = torch.where(high.unsqueeze(1), rank[True], rank[False])  # [N, K]
    return (usage * k + ranks).argmin(dim=1)


@_register("random")
def route_randomly(
    x: Tensor,
    names: Sequence[str],
    threshold: float,
    calls: Calls,
    rng: np.random.Generator,
    sizes: Tensor | None,
    usage: Tensor,
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
    usage: Tensor,
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
    usage: Tensor | None = None,
) -> Tensor:
    """The expert each client trains this round; `sizes` [N] when `x` is padded (`padding`),
    `usage` [N, K] each client's trainings of each expert so far (None = none yet)."""
    if usage is None:
        usage = torch.zeros(len(x), len(names), dtype=torch.long)
    if strategy in BATCHED_STRATEGIES:
        return BATCHED_STRATEGIES[strategy](x, names, threshold, calls, rng, sizes, usage).long()
    per_client = ROUTER_STRATEGIES[strategy]
    counts = calls.tolist() if isinstance(calls, Tensor) else [calls] * len(x)
    data = list(x) if sizes is None else [xi[:n] for xi, n in zip(x, sizes.tolist(), strict=True)]
    routers = [
        SimpleNamespace(
            threshold=threshold,
            calls=c,
            rng=rng,
            usage=Counter(dict(zip(names, row, strict=True))),
        )
        for c, row in zip(counts, usage.tolist(), strict=True)
    ]
    return torch.tensor(
        [
            per_client(xi, list(names), router, rng)  # type: ignore[arg-type]
            for xi, router in zip(data, routers, strict=True)
        ]
    )
