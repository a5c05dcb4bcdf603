"""The seed's public API takes NumPy arrays: `Expert.train(x, y)`, `Router.select_expert(x)`.

Arrays become tensors here, once, at the edge; a tensor passes through untouched (same object,
same dtype), so the simulation's own calls compute exactly what they did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from scarcity.core.training import Task


def as_features(x: Any) -> Tensor:
    """Features [n, d] as float32 (a tensor as it is)."""
    if isinstance(x, Tensor):
        return x
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def as_targets(y: Any, task: Task) -> Tensor:
    """Targets as the loss reads them (a tensor as it is): class labels [n] as int64,
    regression targets [n, k] as float32 (a 1-D array is one target per row)."""
    if isinstance(y, Tensor):
        return y
    array = np.asarray(y)
    if task == "classification":
        return torch.as_tensor(array.reshape(-1).astype(np.int64))
    array = array.astype(np.float32)
    return torch.as_tensor(array.reshape(-1, 1) if array.ndim == 1 else array)
