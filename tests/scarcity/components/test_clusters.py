"""IFCA's client side: the estimate is the argmin of each client's losses of the k models
(literal arrays, losses written out with NumPy), the stacked form equals each client's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scarcity.batched.models import StackedModel
from scarcity.batched.padding import pad_clients
from scarcity.components.clusters import (
    ClusterChoice,
    StackedClusterChoices,
    candidate_losses,
    choose,
    stacked_candidate_losses,
)


def test_the_estimate_is_the_lowest_loss_ties_to_the_lowest_index():
    losses = torch.tensor([[0.5, 0.2, 0.9], [0.1, 0.1, 0.3], [2.0, 1.0, 0.5]])
    assert choose(losses).tolist() == [1, 0, 2]
    one = ClusterChoice()
    assert one.cluster == -1  # before it first takes part
    assert one.choose(losses[2]) == 2 and one.state_dict() == {"cluster": 2}
    every = StackedClusterChoices.of(5)
    assert every.choose(losses, torch.tensor([4, 0, 2])).tolist() == [1, 0, 2]
    assert every.cluster.tolist() == [0, -1, 2, -1, 1]


def test_the_losses_are_each_models_mean_loss_on_the_clients_rows():
    """Two linear regression models, two clients of literal rows: F_i(θ_j) = mean((xθ_jᵀ − y)²)."""
    models = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # θ_1 reads feature 0, θ_2 feature 1
    xs = [np.array([[1.0, 5.0], [2.0, -3.0]]), np.array([[4.0, 1.0], [0.0, 2.0], [1.0, 1.0]])]
    ys = [np.array([[1.1], [1.9]]), np.array([[1.0], [2.2], [0.8]])]  # client 0: feature 0
    expected = np.array(
        [
            [np.mean((x @ models[j].T - y) ** 2) for j in range(2)]
            for x, y in zip(xs, ys, strict=True)
        ]
    )
    modules = []
    for weight in models:
        layer = nn.Linear(2, 1)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
            layer.bias.zero_()
        modules.append(layer)
    for c, (x, y) in enumerate(zip(xs, ys, strict=True)):
        got = candidate_losses(
            "regression", modules, torch.tensor(x).float(), torch.tensor(y).float()
        )
        np.testing.assert_allclose(got.numpy(), expected[c], rtol=1e-6)
    candidates = {
        "weight": torch.tensor(models, dtype=torch.float32),
        "bias": torch.zeros(2, 1),
    }
    x = pad_clients([torch.tensor(x).float() for x in xs])
    y = pad_clients([torch.tensor(y).float() for y in ys])
    stacked = stacked_candidate_losses("regression", candidates, x, y, torch.tensor([2, 3]), None)
    np.testing.assert_allclose(stacked.numpy(), expected, rtol=1e-6)
    assert choose(stacked).tolist() == list(expected.argmin(axis=1)) == [0, 1]


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_stacked_losses_equal_each_clients_own(model):
    from scarcity.backbones.linear import LinearBackbone
    from scarcity.backbones.mlp import MLPBackbone

    d, classes, k = 4, 3, 3
    g = torch.Generator().manual_seed(4)
    backbone = LinearBackbone(d, classes) if model == "linear" else MLPBackbone(d, classes, (5,))
    made = [dict(backbone.make(g).state_dict()) for _ in range(k)]
    candidates = {key: torch.stack([m[key] for m in made]) for key in made[0]}
    sizes = [3, 7, 5]
    xs = [torch.randn(n, d, generator=g) for n in sizes]
    ys = [torch.randint(0, classes, (n,), generator=g) for n in sizes]
    stacked_model = None if backbone.closed_form else StackedModel(backbone)
    stacked = stacked_candidate_losses(
        "classification", candidates, pad_clients(xs), pad_clients(ys), torch.tensor(sizes),
        stacked_model,
    )  # fmt: skip
    modules = []
    for m in made:
        module = backbone.template()
        module.load_state_dict(m)
        modules.append(module)
    for c in range(len(sizes)):
        own = candidate_losses("classification", modules, xs[c], ys[c])
        assert torch.allclose(stacked[c], own, atol=1e-6)
