"""The per-client router's public home (`from scarcity.core.router import Router`); the rule
itself lives with its stacked form in `scarcity.components.routing`."""

from scarcity.components.routing import (
    ROUTER_STRATEGIES,
    Router,
    Strategy,
    register_strategy,
    variance_preference,
)

__all__ = ["ROUTER_STRATEGIES", "Router", "Strategy", "register_strategy", "variance_preference"]
