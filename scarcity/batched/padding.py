"""Clients of unequal data size in one tensor: padded to the largest client, with masks.

Padded rows are zeros and stay zeros (drift shifts only real rows), so sums and moments over
the sample axis need no mask and means divide by each client's own size; losses and their
gradients weigh padded rows 0; variances, min and max reduce the real rows only. Mini-batches
shuffle a client's real rows and leave its padding last (`padded_randperm`), so batch k holds
exactly the rows the per-client reference puts in its batch k; a client that has run out of
rows sits the batch out (its models neither compute nor step). With equal sizes nothing is
padded: callers get `sizes` None and keep their unmasked fast path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


def pad_clients(tensors: Sequence[Tensor]) -> Tensor:
    """Stack per-client tensors [n_i, ...] into [N, max n_i, ...], zeros after each n_i."""
    sizes = [t.shape[0] for t in tensors]  # not len(): a Python-level call per tensor
    longest = max(sizes)
    if all(size == longest for size in sizes):
        return torch.stack(list(tensors))
    rows = torch.cat(list(tensors))  # every real row in order, placed in one masked copy
    out = rows.new_zeros(len(sizes), longest, *rows.shape[1:])
    out[real_rows(torch.tensor(sizes), longest)] = rows
    return out


class PaddedRows(Sequence[tuple[Tensor, Tensor]]):
    """Per-client (x, y) rows held padded: `x` [N, n, ...], `y` [N, n, ...] (zeros after each
    client's `sizes` [N] rows, n the largest), read as the sequence of each client's real rows.
    Batched consumers take the padded tensors as they are, without padding them again."""

    def __init__(self, x: Tensor, y: Tensor, sizes: Tensor) -> None:
        self.x, self.y, self.sizes = x, y, sizes
        self._counts: list[int] = sizes.tolist()

    @classmethod
    def of(cls, pairs: Sequence[tuple[Tensor, Tensor]]) -> PaddedRows:
        sizes = torch.tensor([len(y) for _, y in pairs], dtype=torch.long)
        return cls(pad_clients([x for x, _ in pairs]), pad_clients([y for _, y in pairs]), sizes)

    def __len__(self) -> int:
        return len(self._counts)

    def __getitem__(self, client: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        size = self._counts[client]
        return self.x[client, :size], self.y[client, :size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return (self[c] for c in range(len(self)))

    def take(self, clients: Tensor) -> PaddedRows:
        """The rows of `clients` [P], padded to the longest of them (as `pad_clients` of their
        rows would be)."""
        sizes = self.sizes[clients]
        width = int(sizes.max()) if len(sizes) else 0
        x, y = self.x[clients, :width].contiguous(), self.y[clients, :width].contiguous()
        return type(self)(x, y, sizes)


def real_rows(sizes: Tensor, length: int) -> Tensor:
    """[N, length] bool: which positions of each client's padded rows hold data."""
    return torch.arange(length) < sizes.unsqueeze(1)


def padded_randperm(size: int, length: int, generator: torch.Generator) -> Tensor:
    """`torch.randperm(size)` (the reference's draw) followed by the padding `size..length-1`."""
    perm = torch.randperm(size, generator=generator)
    if size == length:
        return perm
    return torch.cat([perm, torch.arange(size, length)])


def batch_mask(idx: Tensor, sizes: Tensor) -> Tensor:
    """[R, m] bool: which of the positions `idx` [R, m] are real rows of a client of `sizes` [R]."""
    return idx < sizes.unsqueeze(1)


def at_least_one(steps: int | Tensor) -> int | Tensor:
    """Step counts as divisors of gradient sums: one for all rows, or per row when clients ran
    out of rows after different numbers of batches (a row that never stepped sums zero)."""
    return steps.clamp(min=1) if isinstance(steps, Tensor) else max(steps, 1)


def real_values(x: Tensor, sizes: Tensor) -> tuple[Tensor, Tensor]:
    """The real rows of `x` [N, n, ...] as [Σ sizes, m] (padding dropped) and each row's client."""
    values = x[real_rows(sizes, x.shape[1])].flatten(1)
    return values, torch.arange(len(sizes)).repeat_interleave(sizes)


def masked_var_mean(x: Tensor, sizes: Tensor) -> tuple[Tensor, Tensor]:
    """Population variance and mean over each client's real values of `x` [N, n, ...], float64
    [N]. Reduces the real rows only: a client's padding may be several times its data."""
    values, owner = real_values(x, sizes)
    count = sizes.double() * values.shape[1]
    total = torch.zeros(len(sizes), dtype=torch.float64)
    mean = total.index_add_(0, owner, values.sum(dim=1, dtype=torch.float64)) / count
    centred = values - mean.float()[owner].unsqueeze(1)
    squares = centred.square().sum(dim=1, dtype=torch.float64)
    return torch.zeros_like(mean).index_add_(0, owner, squares) / count, mean


def masked_min_max(x: Tensor, sizes: Tensor) -> tuple[Tensor, Tensor]:
    """Smallest and largest real value of each client's `x` [N, n, ...], [N]."""
    values, owner = real_values(x, sizes)
    low = torch.full((len(sizes),), math.inf).scatter_reduce_(0, owner, values.amin(dim=1), "amin")
    high = torch.full((len(sizes),), -math.inf)
    return low, high.scatter_reduce_(0, owner, values.amax(dim=1), "amax")


def masked_std_mean(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Population std and mean over axis 1 of `values` [N, n, ...] where `mask` [N, n] holds."""
    trailing = [1] * (values.dim() - 2)
    keep = mask.view(*mask.shape, *trailing)
    count = mask.sum(dim=1).to(values.dtype).view(-1, *trailing)
    mean = (values * keep).sum(dim=1) / count
    centred = (values - mean.unsqueeze(1)) * keep
    return ((centred**2).sum(dim=1) / count).sqrt(), mean
