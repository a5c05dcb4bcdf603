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
    `held_out[p]`: participant p's labelled (x, y) rows.
    """
    out = torch.full((len(held_out),), math.nan, dtype=torch.float64)
    for p, (x, y) in enumerate(held_out):
        if len(y) < 2:
            continue
        latent = x.double() @ weight[p].double().T + bias[p].double()
        features = torch.cat([latent, torch.ones(len(y), 1, dtype=torch.float64)], dim=1)
        if task == "classification":
            targets = torch.nn.functional.one_hot(y.long(), classes).double()
        else:
            targets = y.double().reshape(len(y), -1)
        half = (len(y) + 1) // 2
        fit_x, fit_y = features[:half], targets[:half]
        gram = fit_x.T @ fit_x + RIDGE * half * torch.eye(features.shape[1], dtype=torch.float64)
        coefficients = torch.linalg.solve(gram, fit_x.T @ fit_y)
        predicted = features[half:] @ coefficients
        if task == "classification":
            out[p] = (predicted.argmax(dim=1) == y[half:]).double().mean()
        else:
            out[p] = ((predicted - targets[half:]) ** 2).mean()
    return out


def probe_metrics(task: Task, scores: Tensor) -> dict[str, float]:
    """The round's mean over the participants with enough held-out rows."""
    scored = scores[~scores.isnan()]
    if len(scored) == 0:
        return {}
    name = "probe_accuracy" if task == "classification" else "probe_loss"
    return {name: float(scored.mean())}
