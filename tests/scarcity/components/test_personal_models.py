"""Ditto's personal model and FedAvg-FT's fine-tuned copy: the update rule on literal arrays
(hand-computed with NumPy), and the stacked form equal to each client's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scarcity.batched.models import StackedModel
from scarcity.components.data import StackedData
from scarcity.components.personal_models import (
    PersonalModel,
    StackedPersonalModels,
    finetuned,
    finetuned_stacked,
    round_generator,
)
from scarcity.core.data import FederatedData

# One client, a linear regression model of 2 features and 1 output: F(v) = mean((x·Wᵀ + b − y)²).
X = np.array([[1.0, 2.0], [0.5, -1.0], [-1.5, 0.5], [2.0, 1.0]])
Y = np.array([[1.0], [0.0], [-1.0], [2.0]])
V0 = (np.array([[0.2, -0.4]]), np.array([0.1]))  # the personal model v = (W, b)
W_T = (np.array([[1.0, 0.5]]), np.array([-0.5]))  # the broadcast global model w^t
ETA, LAM = 0.05, 0.7


def _linear(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


def _weights(weight: np.ndarray, bias: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "weight": torch.tensor(weight, dtype=torch.float32),
        "bias": torch.tensor(bias, dtype=torch.float32),
    }


def _ditto_steps(steps: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """v ← v − η·(∇F(v) + λ·(v − w^t)), full batch, written out."""
    weight, bias = V0[0].copy(), V0[1].copy()
    n = len(X)
    for _ in range(steps):
        residual = X @ weight.T + bias - Y  # [n, 1]
        grad_w = 2.0 / n * residual.T @ X
        grad_b = 2.0 / n * residual.sum(axis=0)
        weight = weight - ETA * (grad_w + lam * (weight - W_T[0]))
        bias = bias - ETA * (grad_b + lam * (bias - W_T[1]))
    return weight, bias


def _data(xs: list[np.ndarray], ys: list[np.ndarray]) -> StackedData:
    data = FederatedData(
        task="regression",
        client_x=tuple(torch.tensor(x, dtype=torch.float32) for x in xs),
        client_y=tuple(torch.tensor(y, dtype=torch.float32) for y in ys),
        test_x=torch.zeros(1, 2),
        test_y=torch.zeros(1, 1),
    )
    return StackedData.of(data)


@pytest.mark.parametrize("lam", [LAM, 0.0])
def test_the_personal_update_is_dittos_rule_on_literal_arrays(lam):
    """Three full-batch steps of v ← v − η(∇F_k(v) + λ(v − w^t)), both forms (λ = 0: plain
    local SGD, the model pulled nowhere)."""
    expected_w, expected_b = _ditto_steps(3, lam)
    x, y = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    kwargs = {"epochs": 3, "batch_size": 0, "lr": ETA, "generator": torch.Generator()}

    personal = PersonalModel(_linear(*V0))
    personal.train("regression", x, y, _weights(*W_T), lam, **kwargs)
    got = personal.state_dict()
    np.testing.assert_allclose(got["weight"].numpy(), expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["bias"].numpy(), expected_b, rtol=1e-5, atol=1e-6)

    stacked = StackedPersonalModels.of(_weights(*V0), 1)
    stacked.train("regression", None, _data([X], [Y]), 1, _weights(*W_T), lam, None, **kwargs)
    np.testing.assert_allclose(stacked.params["weight"][0].numpy(), expected_w, atol=1e-6)
    np.testing.assert_allclose(stacked.params["bias"][0].numpy(), expected_b, atol=1e-6)
    # The pull matters: with λ the result differs from plain local SGD.
    if lam:
        plain_w, _ = _ditto_steps(3, 0.0)
        assert not np.allclose(expected_w, plain_w, atol=1e-4)


def test_fine_tuning_is_plain_sgd_from_the_global_model_which_it_leaves_alone():
    global_model = _weights(*W_T)
    before = {k: v.clone() for k, v in global_model.items()}
    x, y = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    copy = finetuned(
        nn.Linear(2, 1),
        global_model,
        "regression",
        x,
        y,
        epochs=2,
        batch_size=0,
        lr=ETA,
        generator=torch.Generator(),
    )
    weight, bias = W_T[0].copy(), W_T[1].copy()
    for _ in range(2):
        residual = X @ weight.T + bias - Y
        weight = weight - ETA * 2.0 / len(X) * residual.T @ X
        bias = bias - ETA * 2.0 / len(X) * residual.sum(axis=0)
    np.testing.assert_allclose(copy.weight.detach().numpy(), weight, atol=1e-6)
    np.testing.assert_allclose(copy.bias.detach().numpy(), bias, atol=1e-6)
    assert all(torch.equal(global_model[k], before[k]) for k in before)


def _clients(g: torch.Generator, sizes: tuple[int, ...], d: int, classes: int):
    xs = [torch.randn(n, d, generator=g).numpy() for n in sizes]
    ys = [torch.randint(0, classes, (n,), generator=g).numpy() for n in sizes]
    return xs, ys


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("batch_size", [0, 3])
def test_stacked_ditto_and_fine_tuning_equal_each_clients_own(model, batch_size):
    """Clients of unequal sizes, mini-batches from each form's own draws of one stream."""
    from scarcity.backbones.linear import LinearBackbone
    from scarcity.backbones.mlp import MLPBackbone

    d, classes, sizes = 4, 3, (5, 8, 2)
    g = torch.Generator().manual_seed(11)
    backbone = LinearBackbone(d, classes) if model == "linear" else MLPBackbone(d, classes, (6,))
    stacked_model = None if backbone.closed_form else StackedModel(backbone)
    xs, ys = _clients(g, sizes, d, classes)
    data = FederatedData(
        task="classification",
        client_x=tuple(torch.tensor(x) for x in xs),
        client_y=tuple(torch.tensor(y) for y in ys),
        test_x=torch.zeros(1, d),
        test_y=torch.zeros(1, dtype=torch.long),
    )
    stacked_data = StackedData.of(data)
    start = dict(backbone.make(g).state_dict())
    anchor = dict(backbone.make(g).state_dict())
    kwargs = {"epochs": 2, "batch_size": batch_size, "lr": 0.3}

    stacked = StackedPersonalModels.of(start, len(sizes))
    stacked.train(
        "classification",
        None,
        stacked_data,
        1,
        anchor,
        0.5,
        stacked_model,
        generator=round_generator(0, 1, 1),
        **kwargs,
    )
    tuned = finetuned_stacked(
        anchor,
        "classification",
        stacked_data,
        1,
        stacked_model,
        generator=round_generator(0, 2, 1),
        **kwargs,
    )
    ditto_gen, tune_gen = round_generator(0, 1, 1), round_generator(0, 2, 1)
    for c in range(len(sizes)):
        x, y = data.client_x[c], data.client_y[c]
        personal = PersonalModel(backbone.template())
        personal.start(start)
        personal.train("classification", x, y, anchor, 0.5, generator=ditto_gen, **kwargs)
        own = personal.state_dict()
        copy = finetuned(
            backbone.template(), anchor, "classification", x, y, generator=tune_gen, **kwargs
        )
        for key, value in own.items():
            assert torch.allclose(stacked.params[key][c], value, atol=1e-5), (c, key)
            assert torch.allclose(tuned[key][c], copy.state_dict()[key], atol=1e-5), (c, key)
            assert not torch.equal(value, start[key])  # it trained


def test_sampled_clients_train_alone_and_take_put_round_trip():
    g = torch.Generator().manual_seed(2)
    start = {"weight": torch.randn(1, 2, generator=g), "bias": torch.randn(1, generator=g)}
    models = StackedPersonalModels.of(start, 3)
    before = models.state_dict()
    part = models.take(torch.tensor([0, 2]))
    models.train(
        "regression",
        torch.tensor([2]),
        _data([X], [Y]),
        1,
        _weights(*W_T),
        LAM,
        None,
        epochs=1,
        batch_size=0,
        lr=ETA,
        generator=torch.Generator(),
    )
    assert torch.equal(models.params["weight"][:2], before["weight"][:2])  # not drawn: kept
    assert not torch.equal(models.params["weight"][2], before["weight"][2])
    models.put(torch.tensor([0, 2]), part)
    assert torch.equal(models.params["weight"], before["weight"])
    models.load_state_dict(before)
    assert torch.equal(models.state_dict()["bias"], before["bias"])
