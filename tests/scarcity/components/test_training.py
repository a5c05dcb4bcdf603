"""Local training: the one stacked trainer equals the per-client trainer, for Linear heads
(the closed-form step) and for another backbone (the autograd step)."""

from __future__ import annotations

import pytest
import torch

from scarcity import resolve_config
from scarcity.backbones import make_backbone
from scarcity.batched.linear import ClosedFormStep
from scarcity.batched.models import AutogradStep, StackedModel
from scarcity.components.training import StackedStep, fit_stacked, train_supervised

N, ROWS, D, OUT, EPOCHS, LR = 2, 7, 4, 3, 2, 0.1


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("batch_size", [0, 3])
def test_stacked_trainer_equals_the_per_client_trainer(model: str, batch_size: int):
    config = resolve_config(input_dim=D, output_dim=OUT, model=model, hidden_sizes=[5])
    backbone = make_backbone(config)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, ROWS, D, generator=g)
    y = torch.randint(0, OUT, (N, ROWS), generator=g)
    models = [backbone.make(g) for _ in range(N)]
    params = {
        name: torch.stack([dict(m.named_parameters())[name].detach().clone() for m in models])
        for name, _ in models[0].named_parameters()
    }
    perms = None
    if batch_size:
        perms = torch.stack([_perms(c) for c in range(N)])
    form: StackedStep
    if model == "linear":
        form = ClosedFormStep("classification", params["weight"], params["bias"], x, y, 1)
    else:
        form = AutogradStep("classification", StackedModel(backbone), params, x, y, 1)
    stats = fit_stacked(form, torch.full((N,), LR), EPOCHS, batch_size, perms)
    for c, m in enumerate(models):
        optimizer = torch.optim.SGD(m.parameters(), lr=LR)
        own = train_supervised(
            m, optimizer, "classification", x[c], y[c], EPOCHS, batch_size, _generator(c)
        )
        for key, value in own.items():
            assert getattr(stats, key)[c].item() == pytest.approx(value, abs=1e-6), key
        for name, p in m.named_parameters():
            assert torch.allclose(params[name][c], p.detach(), atol=1e-6), name


def _generator(client: int) -> torch.Generator:
    return torch.Generator().manual_seed(client)


def _perms(client: int) -> torch.Tensor:
    generator = _generator(client)
    return torch.stack([torch.randperm(ROWS, generator=generator) for _ in range(EPOCHS)])
