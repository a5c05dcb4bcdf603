"""Linear-probe evaluation of a label-free representation (stage 8 with `label_free`).

Self-supervised work scores a representation by how well a linear model on top of it, fitted
on labelled data the encoder never saw, predicts (the linear evaluation protocol of e.g.
Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML). Here each participant's representation is the latent of the
expert its router picked this round (every expert's latents side by side without routing),
and a ridge regression on its held-out labelled rows' latents (plus a bias) fits one-hot
classes or the regression targets in closed form: accuracy (`probe_accuracy`) or mean
squared error (`probe_loss`). Closed form and float64, so both executions agree.

How the rows are used (`folds`): from engine_version 7, k-fold cross-validation
(`PROBE_FOLDS` contiguous folds, fewer when a participant holds fewer rows): each row is
scored by the probe fitted on the other folds, so every row is both fitted on and scored
(a client's own held-out rows are often a dozen). Runs of an earlier engine fit on the first
half and score the second, as they always did.

Beside it, from engine_version 7, the same probe of an untrained encoder
(`probe_accuracy_untrained` / `probe_loss_untrained`): for each participant an encoder of
the representation's width drawn as the experts' encoders are initialised (uniform ±1/√d,
`make_linear`), from a stream of the probe's own (the run's seed, `UNTRAINED_STREAM`, the
round), so no other draw moves. The gap between the two is what training the representation
added over a random projection of the same width.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from scarcity.core.training import Task

#: Ridge penalty per fitted row (λ = RIDGE · rows): keeps the solve well posed on few rows.
RIDGE = 1e-3
#: Cross-validation folds of the probe (engine_version ≥ `CROSS_VALIDATED`).
PROBE_FOLDS = 5
#: The first engine_version whose probe is cross-validated and reported beside an untrained one.
CROSS_VALIDATED = 7
#: Second seed word of the untrained encoders' stream.
UNTRAINED_STREAM = 0x9B0E


def untrained_encoders(like: Tensor, seed: int, round_index: int) -> tuple[Tensor, Tensor]:
    """Encoders shaped like `like` [P, z, d], drawn as `make_linear` draws an expert's
    (weight, then bias, uniform ±1/√d), one participant after another: weight, bias."""
    word = np.random.SeedSequence([seed, UNTRAINED_STREAM, round_index]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(word))
    participants, z, d = like.shape
    bound = 1.0 / math.sqrt(d)
    weights, biases = [], []
    for _ in range(participants):
        weights.append(torch.rand(z, d, generator=generator) * (2 * bound) - bound)
        biases.append(torch.rand(z, generator=generator) * (2 * bound) - bound)
    return torch.stack(weights), torch.stack(biases)


def probe_scores(
    task: Task,
    classes: int,
    weight: Tensor,
    bias: Tensor,
    held_out: Sequence[tuple[Tensor, Tensor]],
    folds: int | None = None,
) -> Tensor:
    """Each participant's probe score on its held-out rows, float64 [P]: accuracy for
    classification, MSE for regression; NaN with fewer than two rows. `folds`: k-fold
    cross-validation with at most that many folds (None: fit on the first half, score the
    second).

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
        out[index] = _group_scores(task, classes, weight[index], bias[index], x, y, size, folds)
    return out


def _group_scores(
    task: Task,
    classes: int,
    weight: Tensor,
    bias: Tensor,
    x: Tensor,
    y: Tensor,
    size: int,
    folds: int | None,
) -> Tensor:
    """`probe_scores` of G participants holding `size` rows each: x [G, m, d], y [G, m, ...]."""
    latent = torch.bmm(x, weight.double().transpose(1, 2)) + bias.double().unsqueeze(1)
    features = torch.cat([latent, latent.new_ones(*latent.shape[:2], 1)], dim=2)
    if task == "classification":
        targets = torch.nn.functional.one_hot(y.long(), classes).double()
    else:
        targets = y.double().reshape(len(y), size, -1)
    if folds is None:  # engine_version < 7: the first half fits, the second is scored
        half = (size + 1) // 2
        scored = torch.arange(half, size)
        predicted = _ridge(features, targets, torch.arange(half), scored)
    else:  # each contiguous fold scored by the probe fitted on the others
        k = min(folds, size)
        bounds = [size * f // k for f in range(k + 1)]
        parts = []
        for f in range(k):
            rows = torch.arange(size)
            held = (rows >= bounds[f]) & (rows < bounds[f + 1])
            parts.append(_ridge(features, targets, rows[~held], rows[held]))
        predicted, scored = torch.cat(parts, dim=1), torch.arange(size)
    if task == "classification":
        return (predicted.argmax(dim=2) == y[:, scored]).double().mean(dim=1)
    return ((predicted - targets[:, scored]) ** 2).mean(dim=(1, 2))


def _ridge(features: Tensor, targets: Tensor, fit: Tensor, scored: Tensor) -> Tensor:
    """The ridge probe fitted on the rows `fit`, its predictions of the rows `scored`."""
    fit_x, fit_y = features[:, fit], targets[:, fit]
    penalty = RIDGE * len(fit) * torch.eye(features.shape[2], dtype=torch.float64)
    gram = torch.bmm(fit_x.transpose(1, 2), fit_x) + penalty
    coefficients = torch.linalg.solve(gram, torch.bmm(fit_x.transpose(1, 2), fit_y))
    return torch.bmm(features[:, scored], coefficients)


def probe_metrics(task: Task, scores: Tensor, suffix: str = "") -> dict[str, float]:
    """The round's mean over the participants with enough held-out rows; `suffix`
    `"_untrained"` names the untrained encoders' figure."""
    scored = scores[~scores.isnan()]
    if len(scored) == 0:
        return {}
    name = "probe_accuracy" if task == "classification" else "probe_loss"
    return {name + suffix: float(scored.mean())}
