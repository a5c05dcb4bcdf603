"""Personal evaluation: the stacked scores and representations equal each client's own."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scarcity.components.personal import (
    client_representation,
    client_scores,
    stacked_representation,
    stacked_scores,
)

P, K, D, OUT, L = 3, 2, 4, 3, 2
NAMES = ("StructureExpert", "DriftExpert")


def _linear(g: torch.Generator, d_in: int, d_out: int) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(d_out, d_in, generator=g))
        layer.bias.copy_(torch.randn(d_out, generator=g))
    return layer


@pytest.mark.parametrize("selected", [None, torch.tensor([1, 0, 1])])
def test_stacked_scores_and_representations_equal_each_clients_own(selected):
    g = torch.Generator().manual_seed(5)
    heads = [[_linear(g, D, OUT) for _ in range(K)] for _ in range(P)]
    encoders = [[_linear(g, D, L) for _ in range(K)] for _ in range(P)]
    own = [
        (torch.randn(n, D, generator=g), torch.randint(0, OUT, (n,), generator=g))
        for n in (4, 6, 0)
    ]
    stacked_heads = {
        "weight": torch.stack([torch.stack([h.weight.detach() for h in row]) for row in heads]),
        "bias": torch.stack([torch.stack([h.bias.detach() for h in row]) for row in heads]),
    }
    loss, accuracy = stacked_scores("classification", stacked_heads, selected, None, own)
    enc_w = torch.stack([torch.stack([e.weight.detach() for e in row]) for row in encoders])
    enc_b = torch.stack([torch.stack([e.bias.detach() for e in row]) for row in encoders])
    weight, bias = stacked_representation(enc_w, enc_b, selected)
    for c in range(P):
        pick = "all" if selected is None else NAMES[int(selected[c])]
        expected = client_scores("classification", heads[c], NAMES, pick, own[c])
        for got, want in zip((loss[c].item(), accuracy[c].item()), expected, strict=True):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-6)
        w, b = client_representation(encoders[c], NAMES, pick)
        assert torch.allclose(weight[c], w, atol=1e-6) and torch.allclose(bias[c], b, atol=1e-6)
