"""The stacked replay buffers' former home; the rule lives in `scarcity.components.memory`."""

from scarcity.components.memory import ReplayBuffers

__all__ = ["ReplayBuffers"]
