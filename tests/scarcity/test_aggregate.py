"""The aggregation math on tiny literal tensors."""

import pytest
import torch

from scarcity.core.aggregate import ema, fedavg, pairwise_average, reptile_step


def test_fedavg_weights_by_sample_count():
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([4.0, 8.0]), "b": torch.tensor([3.0])}
    out = fedavg([a, b], [1, 2])
    assert torch.allclose(out["w"], torch.tensor([3.0, 6.0]))
    assert torch.allclose(out["b"], torch.tensor([2.0]))
    assert torch.equal(a["w"], torch.tensor([1.0, 2.0]))  # inputs untouched


def test_fedavg_equal_counts_is_plain_mean():
    out = fedavg([{"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}], [5, 5])
    assert out["w"].item() == pytest.approx(2.0)


def test_fedavg_rejects_mismatched_counts():
    with pytest.raises(ValueError):
        fedavg([{"w": torch.tensor([1.0])}], [1, 2])


def test_pairwise_average_is_midpoint():
    out = pairwise_average({"w": torch.tensor([[0.0, 2.0]])}, {"w": torch.tensor([[2.0, 4.0]])})
    assert torch.equal(out["w"], torch.tensor([[1.0, 3.0]]))


def test_ema_step():
    assert ema(0.0, 1.0, 0.1) == pytest.approx(0.1)
    assert ema(1.0, 2.0, 0.5) == pytest.approx(1.5)


def test_reptile_step_moves_toward_mean_of_clients():
    theta = {"w": torch.tensor([0.0, 0.0])}
    clients = [{"w": torch.tensor([2.0, 0.0])}, {"w": torch.tensor([0.0, 4.0])}]
    assert torch.allclose(reptile_step(theta, clients, 0.5)["w"], torch.tensor([0.5, 1.0]))
    assert torch.allclose(reptile_step(theta, clients, 1.0)["w"], torch.tensor([1.0, 2.0]))
