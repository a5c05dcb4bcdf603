"""The Hierarchical Federated Ensemble predicts: each client's experts, as its router chose.

A client's prediction on held-out rows is the output of the expert its router picked this
round (`expert_routing`), or the mean of all its experts' outputs when every expert trained.
Every round the round's participants predict their held-out data — their own rows with
`client_test_fraction` > 0, else the global test set — and the round reports the mean over
them of each client's loss (`ensemble_loss`) and accuracy (`ensemble_accuracy`, labelled data).

`head_outputs` is the one place a head (any backbone's module) is applied to data; the batched
execution has its counterpart in `scarcity.batched.ensemble`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from scarcity.core.training import Task, per_sample_loss


def head_outputs(head: nn.Module, x: Tensor) -> Tensor:
    """One expert head's outputs on `x` [n, d] → [n, out] (logits or regression values)."""
    with torch.no_grad():
        return head(x)


def client_prediction(
    heads: Sequence[nn.Module], names: Sequence[str], selected: str, x: Tensor
) -> Tensor:
    """A client's ensemble on `x`: the routed expert's outputs, or all experts' mean ("all")."""
    if selected != "all":
        return head_outputs(heads[list(names).index(selected)], x)
    return torch.stack([head_outputs(h, x) for h in heads]).mean(dim=0)


def scores(task: Task, prediction: Tensor, y: Tensor) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for regression) of one client's predictions; NaN, NaN for a
    client with no held-out row."""
    if len(y) == 0:
        return math.nan, math.nan
    loss = float(per_sample_loss(task, prediction, y).double().mean())
    if task != "classification":
        return loss, math.nan
    return loss, float((prediction.argmax(dim=1) == y).double().mean())


def ensemble_metrics(task: Task, loss: Tensor, accuracy: Tensor) -> dict[str, float]:
    """The round's means over the participants with held-out rows (float64 [P] each)."""
    has_rows = ~loss.isnan()
    out = {"ensemble_loss": float(loss[has_rows].mean())}
    if task == "classification":
        out["ensemble_accuracy"] = float(accuracy[has_rows].mean())
    return out
