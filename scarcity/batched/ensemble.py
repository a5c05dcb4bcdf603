"""The ensemble's predictions for the whole pool at once (`scarcity.core.ensemble`'s rule).

Each participant's heads are its experts' rows of the pool's weights; `head_outputs` applies
M heads to their own rows in one product (Linear) or through the backbone's stacked call, the
counterpart of the reference's `head_outputs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from scarcity.batched.linear import per_sample_loss
from scarcity.batched.models import StackedModel
from scarcity.batched.padding import PaddedRows, real_rows
from scarcity.core.training import Task

#: Clients evaluated on a shared test set at once (bounds the [clients, rows, out] products).
CHUNK = 1024
#: Rows of held-out data a non-linear backbone runs on at once (its activations' bound).
ROWS_PER_CHUNK = 32_768


def head_outputs(
    head: Mapping[str, Tensor], x: Tensor, model: StackedModel | None = None
) -> Tensor:
    """M heads on `x`: [M, n, d] each its own rows, or [n, d] shared by all → [M, n, out].
    Linear (`model` None): `weight` [M, out, d], `bias` [M, out]; another backbone: its
    parameters stacked [M, ...], run by `model`."""
    if model is not None:
        with torch.no_grad():
            rows = len(next(iter(head.values())))
            return model.rows(dict(head), x if x.dim() == 3 else x.expand(rows, *x.shape))
    w, b = head["weight"], head["bias"]
    if x.dim() == 2:
        return torch.einsum("nd,mod->mno", x, w) + b.unsqueeze(1)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def pool_predictions(
    heads: Mapping[str, Tensor],
    selected: Tensor | None,
    x: Tensor,
    model: StackedModel | None = None,
) -> Tensor:
    """Every participant's ensemble: heads [P, K, ...] (its experts), the routed expert per
    participant (`selected` [P]) or the mean over all K (None) → [P, n, out]."""
    p, k = next(iter(heads.values())).shape[:2]
    if selected is not None:  # row client·K + pick of the [P·K, ...] views (index_select
        # copies them faster than indexing the two leading axes)
        picked = torch.arange(p).mul_(k).add_(selected)
        routed = {key: t.flatten(0, 1).index_select(0, picked) for key, t in heads.items()}
        return head_outputs(routed, x, model)
    flat = {key: t.reshape(p * k, *t.shape[2:]) for key, t in heads.items()}
    if x.dim() == 3:
        x = x.repeat_interleave(k, dim=0)
    out = head_outputs(flat, x, model)
    return out.view(p, k, *out.shape[1:]).mean(dim=1)


def held_out_scores(
    task: Task,
    heads: Mapping[str, Tensor],
    selected: Tensor | None,
    shared: tuple[Tensor, Tensor] | None,
    own: Sequence[tuple[Tensor, Tensor]] | None,
    model: StackedModel | None = None,
) -> tuple[Tensor, Tensor]:
    """Each participant's ensemble loss and accuracy (NaN for regression), float64 [P]: on the
    `shared` test set, or on its `own` held-out rows (one pair per participant, or them padded:
    `PaddedRows`; NaN for one with none)."""
    p = len(next(iter(heads.values())))
    if own is None:
        assert shared is not None
        x, y = shared
        # Clients in chunks: [P, n, out] predictions of many clients on one set add up, and a
        # non-linear head's activations ([P·K, n, ...]) more so: at most ROWS_PER_CHUNK
        # head-rows of data at a time.
        chunk = CHUNK
        if model is not None:
            heads_each = 1 if selected is not None else next(iter(heads.values())).shape[1]
            chunk = max(1, min(CHUNK, ROWS_PER_CHUNK // (heads_each * len(x))))
        parts = [
            _scores(
                task,
                pool_predictions(
                    {key: t[start : start + chunk] for key, t in heads.items()},
                    None if selected is None else selected[start : start + chunk],
                    x,
                    model,
                ),
                y.expand(min(chunk, p - start), *y.shape),
                None,
            )
            for start in range(0, p, chunk)
        ]
        return torch.cat([a for a, _ in parts]), torch.cat([b for _, b in parts])
    rows = own if isinstance(own, PaddedRows) else PaddedRows.of(own)
    return _scores(task, pool_predictions(heads, selected, rows.x, model), rows.y, rows.sizes)


def _scores(
    task: Task, prediction: Tensor, y: Tensor, sizes: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Mean loss and accuracy over each participant's rows of `prediction` [P, n, out] and
    `y` [P, n(, out)], the real ones only when `sizes` says how many."""
    p, n = prediction.shape[:2]
    loss = per_sample_loss(task, prediction, y).double()
    correct = (prediction.argmax(dim=-1) == y).double() if task == "classification" else None
    weight = (
        torch.full((p, n), 1.0 / n, dtype=torch.float64)
        if sizes is None
        else real_rows(sizes, n).double() / sizes.double().unsqueeze(1)
    )
    accuracy = (
        torch.full((p,), torch.nan, dtype=torch.float64)
        if correct is None
        else (correct * weight).sum(dim=1)
    )
    return (loss * weight).sum(dim=1), accuracy
