"""Client data: the stacked rows of a round equal each client's `client_data`, padding zero."""

from __future__ import annotations

import pytest
import torch

from scarcity.components.data import StackedData
from scarcity.core.data import FederatedData


def _data(sizes: list[int], target_shift: torch.Tensor | None) -> FederatedData:
    g = torch.Generator().manual_seed(5)
    xs = tuple(torch.randn(n, 3, generator=g) for n in sizes)
    ys = tuple(torch.randn(n, 1, generator=g) for n in sizes)
    empty = torch.zeros(0, 3)
    return FederatedData(
        "regression", xs, ys, empty, torch.zeros(0, 1), drift=0.5, target_shift=target_shift
    )


@pytest.mark.parametrize("sizes", [[4, 4, 4], [2, 5, 3]])
@pytest.mark.parametrize("target_shift", [None, torch.tensor([2.0])])
def test_each_rounds_stacked_rows_are_each_clients_own(sizes, target_shift):
    data = _data(sizes, target_shift)
    stacked = StackedData.of(data)
    assert (stacked.ragged_sizes is None) == (len(set(sizes)) == 1)
    for round_index in (1, 2, 3):
        x, y = stacked.round(round_index)
        for c, n in enumerate(sizes):
            own_x, own_y = data.client_data(c, round_index)
            assert torch.equal(x[c, :n], own_x) and torch.equal(y[c, :n], own_y)
            assert not x[c, n:].any() and not y[c, n:].any()  # padding stays zero


def test_a_sample_of_clients_is_padded_to_its_own_largest():
    stacked = StackedData.of(_data([2, 5, 3], None)).take(torch.tensor([0, 2]))
    assert stacked.max_samples == 3 and stacked.sizes.tolist() == [2, 3]
    equal = StackedData.of(_data([2, 5, 3], None)).take(torch.tensor([1]))
    assert equal.ragged_sizes is None and equal.real_rows is None
