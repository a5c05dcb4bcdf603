"""Checkpoint serialisation: nested state with tensors → compact bytes, and back.

`torch.save` stores every tensor as its own zip entry (~200 bytes of overhead each, and a
simulation state holds hundreds of tiny tensors), so tensors are packed into one flat buffer
per dtype with a skeleton that records where each came from. Loading uses
`torch.load(weights_only=True)`: a checkpoint blob cannot execute code.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import Tensor

_REF = "__tensor__"


def dumps(state: Any) -> bytes:
    """Serialise nested dicts/lists/tuples of tensors and plain values."""
    tensors: list[Tensor] = []

    def strip(obj: Any) -> Any:
        if isinstance(obj, Tensor):
            tensors.append(obj.detach())
            return {_REF: len(tensors) - 1}
        if isinstance(obj, dict):
            return {key: strip(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [strip(value) for value in obj]
        if isinstance(obj, tuple):
            return tuple(strip(value) for value in obj)
        return obj

    skeleton = strip(state)
    flat: dict[str, list[Tensor]] = {}
    layout = []
    for tensor in tensors:
        group = flat.setdefault(str(tensor.dtype).removeprefix("torch."), [])
        layout.append((str(tensor.dtype).removeprefix("torch."), len(group), list(tensor.shape)))
        group.append(tensor.reshape(-1))
    buffers = {dtype: torch.cat(group) for dtype, group in flat.items()}
    sizes = {dtype: [t.numel() for t in group] for dtype, group in flat.items()}
    buffer = io.BytesIO()
    torch.save({"skeleton": skeleton, "layout": layout, "buffers": buffers, "sizes": sizes}, buffer)
    return buffer.getvalue()


def loads(blob: bytes) -> Any:
    """Inverse of `dumps` (tensors come back as independent, contiguous copies)."""
    packed = torch.load(io.BytesIO(blob), weights_only=True)
    pieces = {
        dtype: torch.split(packed["buffers"][dtype], sizes)
        for dtype, sizes in packed["sizes"].items()
    }
    tensors = [pieces[dtype][i].reshape(shape).clone() for dtype, i, shape in packed["layout"]]

    def fill(obj: Any) -> Any:
        if isinstance(obj, dict):
            if set(obj) == {_REF}:
                return tensors[obj[_REF]]
            return {key: fill(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [fill(value) for value in obj]
        if isinstance(obj, tuple):
            return tuple(fill(value) for value in obj)
        return obj

    return fill(packed["skeleton"])
