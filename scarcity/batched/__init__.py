"""The batched execution path: every client's state as tensors with a leading client axis.

`ClientPool` (pool.py) runs a whole round of all clients in a few tensor operations and is
what `Simulation` uses by default (`execution="batched"`); `scarcity.core` keeps the readable
per-client reference (`execution="reference"`). For the same config both give the same
metrics up to float rounding (tests/scarcity/test_batched.py). The other modules here are the
stacked kernels the components (`scarcity.components`) build on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scarcity.batched.pool import ClientPool

__all__ = ["ClientPool"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the components import this package's kernels, and the pool
    # imports the components.
    if name == "ClientPool":
        from scarcity.batched.pool import ClientPool

        return ClientPool
    raise AttributeError(name)
