"""Data summaries and drift: the stacked form equals the per-client one."""

from __future__ import annotations

import pytest
import torch

from scarcity.batched.padding import pad_clients
from scarcity.components.summaries import DataSummaries, DriftMeter, structure_summary


def _compare(sizes: list[int]) -> None:
    g = torch.Generator().manual_seed(3)
    data = [torch.randn(n, 4, generator=g) * (i + 1) for i, n in enumerate(sizes)]
    ragged = torch.tensor(sizes) if len(set(sizes)) > 1 else None
    stacked = DataSummaries(len(sizes))
    meters = [DriftMeter() for _ in sizes]
    for offset in (0.0, 0.5, 1.0):  # three rounds of drift
        out = stacked.observe(pad_clients(data), ragged, offset)
        for c, x in enumerate(data):
            expected = {f"StructureExpert.{k}": v for k, v in structure_summary(x + offset).items()}
            expected.update(
                {f"DriftExpert.{k}": v for k, v in meters[c].observe(x + offset).items()}
            )
            for key, value in expected.items():
                assert out[key][c].item() == pytest.approx(value, abs=1e-6), key


def test_stacked_summaries_equal_the_per_client_ones():
    _compare([5, 5, 5])


def test_stacked_summaries_of_clients_of_unequal_size():
    _compare([3, 7, 5])


def test_sampled_clients_keep_their_own_drift_memory():
    x = pad_clients([torch.ones(2, 1), 2 * torch.ones(2, 1), 3 * torch.ones(2, 1)])
    stacked = DataSummaries(3)
    clients = torch.tensor([1])
    part = stacked.take(clients)
    part.observe(x[clients], None, 0.0)
    stacked.put(clients, part)
    restored = DataSummaries(3)
    restored.load_state_dict(stacked.state_dict())
    drift = restored.observe(x, None, 1.0)["DriftExpert.drift"]
    assert drift.tolist() == [0.0, 1.0, 0.0]
