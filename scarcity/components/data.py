"""Client data, per client and stacked: each client's rows of a round, under the drift rule.

Per client, `FederatedData.client_data(c, r)` (`scarcity.core.data`) is client c's rows in round
r: its base rows shifted by drift·(r − 1), and synthetic targets by the hidden map's share. The
stacked form, `StackedData`, holds every client's base rows zero-padded to the largest client
[N, n, ...] (`scarcity.batched.padding`), their sample counts, and the same drift rule; padding
stays zero, so that it adds nothing to sums and moments. Clients of unequal size
(`quantity_skew`) have `ragged_sizes` and a `real_rows` mask; with equal sizes both are None and
no mask is built.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scarcity.batched.padding import pad_clients, real_rows
from scarcity.core.data import FederatedData


class StackedData:
    """Every client's base rows [N, n, ...], padded to the largest, and the drift rule."""

    def __init__(
        self, x: Tensor, y: Tensor, sizes: Tensor, drift: float, target_shift: Tensor | None
    ) -> None:
        self.base_x, self.base_y, self.drift, self.target_shift = x, y, drift, target_shift
        #: Every client's sample count [N].
        self.sizes = sizes
        #: Rows per client in the data tensors: the largest client's sample count.
        self.num_clients, self.max_samples = x.shape[:2]
        #: The sample counts when they differ (data padded, masks on), None when all are equal.
        self.ragged_sizes = sizes if bool((sizes != sizes[0]).any()) else None
        #: [N, n, 1]: 1 on real rows, 0 on padding (None without padding).
        self.real_rows = (
            None
            if self.ragged_sizes is None
            else real_rows(self.ragged_sizes, self.max_samples).unsqueeze(2).float()
        )

    @classmethod
    def of(cls, data: FederatedData) -> StackedData:
        x, y = pad_clients(data.client_x), pad_clients(data.client_y)
        return cls(x, y, torch.tensor(data.sizes), data.drift, data.target_shift)

    def offset(self, round_index: int) -> float:
        """How far the features moved by round `round_index` (rounds start at 1)."""
        return self.drift * (round_index - 1)

    def round(self, round_index: int) -> tuple[Tensor, Tensor]:
        """Every client's rows in round `round_index`: `client_data` of each, padded."""
        offset = self.offset(round_index)
        if offset == 0:
            return self.base_x, self.base_y
        shift = offset if self.real_rows is None else offset * self.real_rows
        y = self.base_y
        if self.target_shift is not None:
            y = y + shift * self.target_shift
        return self.base_x + shift, y

    def take(self, clients: Tensor) -> StackedData:
        """The rows of `clients` alone, padded to the largest of them."""
        sizes = self.sizes[clients]
        n = int(sizes.max())
        x, y = self.base_x[clients, :n], self.base_y[clients, :n]
        return StackedData(x, y, sizes, self.drift, self.target_shift)
