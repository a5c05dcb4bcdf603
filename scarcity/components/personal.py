"""Personal evaluation, per client and stacked: each client's experts predict, as its router
chose, and its representation is what the linear probe reads.

A client's prediction on held-out rows is the output of the expert its router picked this
round (`expert_routing`), or the mean of all its experts' outputs when every expert trained.
Every round the round's participants predict their held-out data — their own rows with
`client_test_fraction` > 0, else the global test set — and the round reports the mean over
them of each client's loss (`ensemble_loss`) and accuracy (`ensemble_accuracy`, labelled data).

`head_outputs` is the one place a head (any backbone's module) is applied to data;
`client_scores` is one client's evaluation. The stacked form, `stacked_scores`, evaluates every
participant's heads in a few products (`scarcity.batched.ensemble`). With `label_free` a
client's representation is its router's pick's encoder, else every expert's stacked
(`client_representation`, `stacked_representation`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from scarcity.batched.ensemble import held_out_scores as stacked_scores
from scarcity.core.training import Task, per_sample_loss

if TYPE_CHECKING:
    from scarcity.components import StackedClients

__all__ = [
    "client_prediction",
    "client_representation",
    "client_scores",
    "ensemble_metrics",
    "participant_representations",
    "participant_scores",
    "head_outputs",
    "scores",
    "stacked_representation",
    "stacked_scores",
]


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


def client_scores(
    task: Task,
    heads: Sequence[nn.Module],
    names: Sequence[str],
    selected: str,
    held: tuple[Tensor, Tensor],
) -> tuple[float, float]:
    """One client's ensemble loss and accuracy on held-out rows `held` (x, y)."""
    return scores(task, client_prediction(heads, names, selected, held[0]), held[1])


def client_representation(
    encoders: Sequence[nn.Linear], names: Sequence[str], selected: str
) -> tuple[Tensor, Tensor]:
    """One client's representation: its pick's encoder, else every expert's stacked; weight
    [z, d], bias [z]."""
    picked = encoders if selected == "all" else [encoders[list(names).index(selected)]]
    weight = torch.cat([e.weight.detach() for e in picked])
    return weight, torch.cat([e.bias.detach() for e in picked])


def stacked_representation(
    enc_w: Tensor, enc_b: Tensor, selected: Tensor | None
) -> tuple[Tensor, Tensor]:
    """`client_representation` of every participant: encoders [P, K, L, d], [P, K, L], the
    pick [P] (None: all) → weight [P, z, d], bias [P, z]."""
    if selected is None:
        return enc_w.flatten(1, 2), enc_b.flatten(1, 2)
    everyone = torch.arange(len(selected))
    return enc_w[everyone, selected], enc_b[everyone, selected]


def participant_scores(
    clients: StackedClients,
    rows: Tensor | slice,
    selected: Tensor | None,
    shared: tuple[Tensor, Tensor] | None,
    own: Sequence[tuple[Tensor, Tensor]] | None,
) -> tuple[Tensor, Tensor]:
    """`stacked_scores` of the participants `rows` of `clients`, with their pick `selected`."""
    heads = {name: clients.w[key][rows] for name, key in clients.keys.head.items()}
    return stacked_scores(clients.task, heads, selected, shared, own, clients.stacked_model)


def participant_representations(
    clients: StackedClients, rows: Tensor | slice, selected: Tensor | None
) -> tuple[Tensor, Tensor]:
    """`stacked_representation` of the participants `rows` of `clients`."""
    return stacked_representation(clients.w["enc_w"][rows], clients.w["enc_b"][rows], selected)


def ensemble_metrics(task: Task, loss: Tensor, accuracy: Tensor) -> dict[str, float]:
    """The round's means over the participants with held-out rows (float64 [P] each)."""
    has_rows = ~loss.isnan()
    out = {"ensemble_loss": float(loss[has_rows].mean())}
    if task == "classification":
        out["ensemble_accuracy"] = float(accuracy[has_rows].mean())
    return out
