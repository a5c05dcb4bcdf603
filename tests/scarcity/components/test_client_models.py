"""The model each client uses: per-client and stacked scores agree, on each client's own rows
(NaN without any) and on shared rows, with one model per client or a few shared ones."""

from __future__ import annotations

import math

import pytest
import torch

from scarcity.backbones.linear import LinearBackbone
from scarcity.backbones.mlp import MLPBackbone
from scarcity.batched.models import StackedModel
from scarcity.components.client_models import ModuleModels, StackedModels, by_owner

D, CLASSES = 4, 3


def _rows(g: torch.Generator, owner: list[int], task: str):
    x = torch.randn(len(owner), D, generator=g)
    if task == "classification":
        y = torch.randint(0, CLASSES, (len(owner),), generator=g)
    else:
        y = torch.randn(len(owner), CLASSES, generator=g)
    return x, y, torch.tensor(owner)


def test_rows_are_grouped_by_owner_in_order():
    x = torch.arange(5.0).unsqueeze(1)
    y = torch.arange(5)
    parts = by_owner(x, y, torch.tensor([2, 0, 2, 0, 1]), 4)
    assert [p[1].tolist() for p in parts] == [[1, 3], [4], [0, 2], []]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("shared", [False, True], ids=["own", "index"])
def test_stacked_scores_equal_each_clients_own(task, model, shared):
    g = torch.Generator().manual_seed(8)
    backbone = LinearBackbone(D, CLASSES) if model == "linear" else MLPBackbone(D, CLASSES, (5,))
    made = [dict(backbone.make(g).state_dict()) for _ in range(4)]
    params = {key: torch.stack([m[key] for m in made]) for key in made[0]}
    index = torch.tensor([1, 3, 1, 0]) if shared else None  # four clients
    modules = []
    for m in made:
        module = backbone.template()
        module.load_state_dict(m)
        modules.append(module)
    each = [modules[i] for i in index.tolist()] if index is not None else modules
    per_client = ModuleModels(each)
    stacked = StackedModels(params, None if backbone.closed_form else StackedModel(backbone), index)
    x, y, owner = _rows(g, [0, 2, 2, 0, 1, 2, 0], task)  # client 3 holds no row
    got, want = stacked.scores(task, x, y, owner), per_client.scores(task, x, y, owner)
    assert got.dtype == want.dtype == torch.float64 and got.shape == (4,)
    assert math.isnan(got[3]) and math.isnan(want[3])
    assert torch.allclose(got[:3], want[:3], atol=1e-6)
    # Client 1's single row: its model's score, as written out.
    with torch.no_grad():
        out = each[1](x[4:5])
    if task == "classification":
        assert got[1] == float(out.argmax(1) == y[4])
    else:
        assert math.isclose(float(got[1]), float(((out - y[4]) ** 2).mean()), rel_tol=1e-5)
    (sl, sa), (pl, pa) = stacked.shared_scores(task, x, y), per_client.shared_scores(task, x, y)
    assert torch.allclose(sl, pl, atol=1e-6)
    assert torch.allclose(sa, pa, atol=1e-6, equal_nan=True)
    if shared:  # clients 0 and 2 use one model
        assert sl[0] == sl[2]
    empty = stacked.scores(task, x[:0], y[:0], owner[:0])
    assert bool(empty.isnan().all())
