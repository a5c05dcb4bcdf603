"""The batched execution path: every client's state as tensors with a leading client axis.

`ClientPool` (pool.py) runs a whole round of all clients in a few tensor operations and is
what `Simulation` uses by default (`execution="batched"`); `scarcity.core` keeps the readable
per-client reference (`execution="reference"`). For the same config both give the same
metrics up to float rounding (tests/scarcity/test_batched.py).
"""

from scarcity.batched.pool import ClientPool

__all__ = ["ClientPool"]
