"""Client terms: on the stacked trainer's rows, the terms' closed-form gradient equals what
autograd takes through each client's own model, and the expert heads' rows get none."""

from __future__ import annotations

import torch
from torch import nn

from scarcity.components.objective import LocalObjective

CLIENTS, GROUP, D, OUT = 3, 2, 4, 2


def test_stacked_terms_equal_each_clients_own():
    g = torch.Generator().manual_seed(6)
    anchor = {"weight": torch.randn(OUT, D, generator=g), "bias": torch.randn(OUT, generator=g)}
    correction = {
        "weight": torch.randn(CLIENTS, OUT, D, generator=g),
        "bias": torch.randn(CLIENTS, OUT, generator=g),
    }
    stacked = LocalObjective(0.3, anchor, correction)
    rows = stacked.on_shared_rows(CLIENTS, GROUP)
    assert rows is not None
    w = torch.randn(CLIENTS * GROUP, OUT, D, generator=g)
    b = torch.randn(CLIENTS * GROUP, OUT, generator=g)
    grad_w, grad_b = rows.grads(w, b)
    for c in range(CLIENTS):
        model = nn.Linear(D, OUT)
        with torch.no_grad():
            model.weight.copy_(w[c * GROUP])
            model.bias.copy_(b[c * GROUP])
        own = LocalObjective(0.3, anchor, {k: v[c] for k, v in correction.items()})
        regularizer = own.regularizer(model)
        assert regularizer is not None
        regularizer().backward()
        assert model.weight.grad is not None and model.bias.grad is not None
        assert torch.allclose(grad_w[c * GROUP], model.weight.grad, atol=1e-6)
        assert torch.allclose(grad_b[c * GROUP], model.bias.grad, atol=1e-6)
        heads = slice(c * GROUP + 1, (c + 1) * GROUP)  # the expert heads: no term
        assert not grad_w[heads].any() and not grad_b[heads].any()
    assert LocalObjective().on_shared_rows(CLIENTS, GROUP) is None
