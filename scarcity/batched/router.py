"""The stacked router's former home; the rule lives in `scarcity.components.routing`."""

from scarcity.components.routing import BATCHED_STRATEGIES, route

__all__ = ["BATCHED_STRATEGIES", "route"]
