"""Expert routing (seed stage 4): pick the expert a client trains this round.

Strategies live in `ROUTER_STRATEGIES`; a new one is one function decorated with
`@register_strategy("name")` taking `(data, expert_names, router, rng)` and returning an index
(`router.usage` counts what this client trained so far).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from scarcity.core.arrays import as_features

Strategy = Callable[[Tensor, Sequence[str], "Router", np.random.Generator], int]
ROUTER_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Add a routing strategy to the registry under `name`."""

    def decorate(strategy: Strategy) -> Strategy:
        ROUTER_STRATEGIES[name] = strategy
        return strategy

    return decorate


@register_strategy("variance")
def route_by_variance(
    data: Tensor, expert_names: Sequence[str], router: Router, rng: np.random.Generator
) -> int:
    """High variance (> threshold) → StructureExpert, otherwise → DriftExpert."""
    high = float(data.var(correction=0)) > router.threshold
    wanted = "StructureExpert" if high else "DriftExpert"
    if wanted in expert_names:
        return list(expert_names).index(wanted)
    return 0 if high else min(1, len(expert_names) - 1)


def variance_preference(high: bool, expert_names: Sequence[str]) -> list[str]:
    """`balanced` routing's order among experts trained equally often: MetaAdaptation first
    (it adapts its learning rate only from a second training on, comparing epoch losses),
    then the variance rule's pick, the other base expert, MemoryConsolidation."""
    picked, other = (
        ("StructureExpert", "DriftExpert") if high else ("DriftExpert", "StructureExpert")
    )
    order = ["MetaAdaptationExpert", picked, other, "MemoryConsolidationExpert"]
    return [n for n in order if n in expert_names] + [n for n in expert_names if n not in order]


@register_strategy("balanced")
def route_balanced(
    data: Tensor, expert_names: Sequence[str], router: Router, rng: np.random.Generator
) -> int:
    """The expert this client has trained least; ties in `variance_preference` order.

    Each expert keeps state only from its own training (replay buffer, lr history), so every
    one of them trains once in each run of len(experts) routed rounds; the data's variance
    orders them."""
    high = float(data.var(correction=0)) > router.threshold
    order = variance_preference(high, expert_names)
    fewest = min(router.usage[name] for name in expert_names)
    return list(expert_names).index(next(n for n in order if router.usage[n] == fewest))


@register_strategy("random")
def route_randomly(
    data: Tensor, expert_names: Sequence[str], router: Router, rng: np.random.Generator
) -> int:
    """Uniformly random expert."""
    return int(rng.integers(len(expert_names)))


@register_strategy("round_robin")
def route_round_robin(
    data: Tensor, expert_names: Sequence[str], router: Router, rng: np.random.Generator
) -> int:
    """Each expert in turn."""
    return router.calls % len(expert_names)


class Router:
    """Selects one expert per call with a registered strategy and counts its choices."""

    def __init__(
        self,
        num_experts: int = 2,
        strategy: str = "variance",
        threshold: float = 0.5,
        rng: np.random.Generator | None = None,
    ) -> None:
        if strategy not in ROUTER_STRATEGIES:
            raise ValueError(
                f"router_strategy: unknown strategy {strategy!r}, "
                f"choose one of {sorted(ROUTER_STRATEGIES)}"
            )
        self.num_experts = num_experts
        self.strategy = strategy
        self.threshold = threshold
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.calls = 0
        self.usage: Counter[str] = Counter()

    def select_expert(self, data: Any, expert_names: Sequence[str] | None = None) -> int:
        """Index of the expert to train on `data` (a NumPy array or a tensor)."""
        names = (
            list(expert_names) if expert_names else [f"expert_{i}" for i in range(self.num_experts)]
        )
        index = ROUTER_STRATEGIES[self.strategy](as_features(data), names, self, self.rng)
        self.calls += 1
        self.usage[names[index]] += 1
        return index

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "usage": dict(self.usage)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]
        self.usage = Counter(state["usage"])
