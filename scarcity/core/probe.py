"""Linear-probe evaluation of a label-free representation (stage 8 with `label_free`).

Self-supervised work scores a representation by how well a linear model on top of it, fitted
on labelled data the encoder never saw, predicts (the linear evaluation protocol of e.g.
Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML). Here each participant's representation is the latent of the
expert its router picked this round (every expert's latents side by side without routing),
and its held-out labelled rows are split in two: a ridge regression on the first half's
latents (plus a bias) fits one-hot classes or the regression targets in closed form, and the
second half is scored: accuracy (`probe_accuracy`) or mean squared error (`probe_loss`).
Closed form and float64, so both executions agree and no random draw is taken.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

from scarcity.core.training import Task

#: Ridge penalty per fitted row (λ = RIDGE · rows): keeps the solve well posed on few rows.
RIDGE = 1e-3


def probe_scores(
    task: Task,
    classes: int,
    weight: Tensor,
    bias: Tensor,
    held_out: Sequence[tuple[Tensor, Tensor]],
) -> Tensor:
    """Each participant's probe score on its held-out rows, float64 [P]: accuracy for
    classification, MSE for regression; NaN with fewer than two rows.

    `weight` [P, z, d] and `bias` [P, z]: each participant's encoder (its representation);
    `held_out[p]`: participant p's labelled (x, y) rows. Participants holding as many rows
    are solved together (one batched solve for a shared test set, or synthetic blocks).
    """
    out = torch.full((len(held_out),), math.nan, dtype=torch.float64)
    by_size: dict[int, list[int]] = defaultdict(list)
    for p, (_, y) in enumerate(held_out):
        if len(y) >= 2:
            by_size[len(y)].append(p)
    for size, group in by_size.items():
        first = held_out[group[0]]
        shared = all(held_out[p] is first for p in group)
        x = first[0].double().expand(len(group), -1, -1) if shared else None
        if x is None:
            x = torch.stack([held_out[p][0] for p in group]).double()
        y = torch.stack([held_out[p][1] for p in group])  # [G, m] or [G, m, out]
        index = torch.tensor(group)
        out[index] = _group_scores(task, classes, weight[index], bias[index], x, y, size)
    return out


def _group_scores(
    task: Task, classes: int, weight: Tensor, bias: Tensor, x: Tensor, y: Tensor, size: int
) -> Tensor:
    """`probe_scores` of G participants holding `size` rows each: x [G, m, d], y [G, m, ...]."""
    latent = torch.bmm(x, weight.double().transpose(1, 2)) + bias.double().unsqueeze(1)
    features = torch.cat([latent, latent.new_ones(*latent.shape[:2], 1)], dim=2)
    if task == "classification":
        targets = torch.nn.functional.one_hot(y.long(), classes).double()
    else:
        targets = y.double().reshape(len(y), size, -1)
    half = (size + 1) // 2
    fit_x, fit_y = features[:, :half], targets[:, :half]
    penalty = RIDGE * half * torch.eye(features.shape[2], dtype=torch.float64)
    gram = torch.bmm(fit_x.transpose(1, 2), fit_x) + penalty
    coefficients = torch.linalg.solve(gram, torch.bmm(fit_x.transpose(1, 2), fit_y))
    predicted = torch.bmm(features[:, half:], coefficients)
    if task == "classification":
        return (predicted.argmax(dim=2) == y[:, half:]).double().mean(dim=1)
    return ((predicted - targets[:, half:]) ** 2).mean(dim=(1, 2))


def probe_metrics(task: Task, scores: Tensor) -> dict[str, float]:
    """The round's mean over the participants with enough held-out rows."""
    scored = scores[~scores.isnan()]
    if len(scored) == 0:
        return {}
    name = "probe_accuracy" if task == "classification" else "probe_loss"
    return {name: float(scored.mean())}
