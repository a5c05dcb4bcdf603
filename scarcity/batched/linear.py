"""Batched linear heads: many independent `nn.Linear` models trained by SGD in a few tensor ops.

Each client holds J heads (its shared model and/or expert heads) trained on its own data; the
rows of the weight tensors are client-major ([N·J, out, in], [N·J, out], `nn.Linear`'s
layout). Full-batch products use one [n, in] × [in, J·out] product per client; mini-batches
gather each row's samples with one `index_select`. Clients of unequal size are zero-padded and
their padded samples weighted 0 (`padding`). Gradients are written out instead of
taken by autograd: logistic and linear regression need one product each way.
`fit_heads` mirrors `scarcity.core.training.fit` (same batches, losses and statistics).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from scarcity.batched.padding import batch_mask, masked_std_mean, real_rows
from scarcity.components.objective import HeadRegularizer
from scarcity.core.training import Task

if TYPE_CHECKING:
    from scarcity.components.training import HeadStats


#: Heads that may sit a mini-batch out while all compute (`ClosedFormStep.step`): below it
#: picking out the live ones costs more ops than the finished ones' wasted arithmetic.
MASKED_ROWS = 32

_MINUS_ONE = torch.tensor(-1.0)


def per_sample_loss(task: Task, prediction: Tensor, target: Tensor) -> Tensor:
    """Loss of every sample, the last axis of `prediction` being the outputs.

    Classification: cross-entropy with integer labels `target` (shaped like `prediction`
    without its last axis); regression: mean squared error over the outputs.
    """
    if task == "classification":
        top = prediction.amax(dim=-1, keepdim=True)
        log_norm = (prediction - top).exp().sum(dim=-1, keepdim=True).log() + top
        return (log_norm - prediction.gather(-1, target.unsqueeze(-1))).squeeze(-1)
    return ((prediction - target) ** 2).mean(dim=-1)


def loss_and_grad(
    task: Task, prediction: Tensor, target: Tensor, sample_dim: int, weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Sample-mean loss (the sample axis reduced) and its gradient w.r.t. the prediction.

    `weight` (shaped like the per-sample loss, or broadcast to it) replaces the plain mean's
    1/n: each row's mask divided by its own sample count, so padded samples weigh nothing.
    """
    n = prediction.shape[sample_dim]
    if task == "classification":
        top = prediction.amax(dim=-1, keepdim=True)
        exp = (prediction - top).exp()
        norm = exp.sum(dim=-1, keepdim=True)
        index = target.unsqueeze(-1)
        picked = prediction.gather(-1, index)
        per_sample = (norm.log() + top - picked).squeeze(-1)
        grad = exp.div_(norm)
        grad.scatter_add_(-1, index, _MINUS_ONE.expand(index.shape))  # a view, no allocation
        if weight is None:
            return per_sample.mean(dim=sample_dim), grad.div_(n)
        return (per_sample * weight).sum(dim=sample_dim), grad.mul_(weight.unsqueeze(-1))
    diff = prediction - target
    out = prediction.shape[-1]
    if weight is None:
        return (diff**2).mean(dim=-1).mean(dim=sample_dim), diff * (2.0 / (n * out))
    loss = ((diff**2).mean(dim=-1) * weight).sum(dim=sample_dim)
    return loss, diff * (weight.unsqueeze(-1) * (2.0 / out))


def gather_rows(t: Tensor, idx: Tensor, group: int, rows: Tensor | None = None) -> Tensor:
    """Samples `idx` [R, m] of each row's client data `t` [N, n, ...] → [R, m, ...].

    Row r belongs to client r // group; `rows` [R] names the rows (None = all N·J in order).
    """
    return _gather(t, _flat_index(t, idx, group, rows), idx.shape)


def _flat_index(
    t: Tensor, idx: Tensor, group: int, rows: Tensor | None, first_rows: Tensor | None = None
) -> Tensor:
    """`gather_rows`' positions in `t` flattened to [N·n, ...]: one computation for x and y.
    `first_rows` [N·J, 1]: each row's client's first position, when the caller keeps it."""
    if first_rows is None:
        first_rows = _first_rows(t, group, rows)
    return (idx + first_rows).view(-1)


def _first_rows(t: Tensor, group: int, rows: Tensor | None) -> Tensor:
    """[R, 1]: where each row's client starts in `t` flattened to [N·n, ...]."""
    clients, n = t.shape[:2]
    if rows is None:
        return (torch.arange(clients).repeat_interleave(group) * n).unsqueeze(1)
    return (rows.div(group, rounding_mode="floor") * n).unsqueeze(1)


def _gather(t: Tensor, flat: Tensor, shape: torch.Size) -> Tensor:
    clients, n = t.shape[:2]
    picked = t.reshape(clients * n, *t.shape[2:]).index_select(0, flat)
    return picked.view(shape[0], shape[1], *t.shape[2:])


def _full_forward(w: Tensor, b: Tensor, x: Tensor, group: int) -> Tensor:
    """Every head on all of its client's data: [N, n, J, out]."""
    clients, n = x.shape[:2]
    out = w.shape[1]
    wide = w.view(clients, group * out, -1)
    logits = torch.baddbmm(b.view(clients, 1, group * out), x, wide.transpose(1, 2))
    return logits.view(clients, n, group, out)


class ClosedFormStep:
    """The stacked trainer's step for Linear heads: gradients written out (`fit_stacked`).

    `w` [N·J, out, in] and `b` [N·J, out] hold J heads per client, `x` [N, n, in] and `y`
    the clients' data. `sizes` [N]: each client's sample count when they differ (`x`, `y`
    zero-padded to n and the shuffles holding each client's real rows first, see `padding`):
    padded samples weigh 0 and the heads of a client out of rows sit a mini-batch out.
    `regularizer` adds a strategy's term to the gradients (the losses stay the data loss).
    """

    always_measures_grads = False

    def __init__(
        self,
        task: Task,
        w: Tensor,
        b: Tensor,
        x: Tensor,
        y: Tensor,
        group: int,
        sizes: Tensor | None = None,
        regularizer: HeadRegularizer | None = None,
    ) -> None:
        self.task, self.w, self.b, self.x, self.y, self.group = task, w, b, x, y, group
        self.regularizer = regularizer
        clients, n = x.shape[:2]
        self.rows, self.out = w.shape[:2]
        self.numel = w[0].numel() + b[0].numel()
        target = y.unsqueeze(2)  # broadcast over the J heads
        if task == "classification":
            target = target.expand(clients, n, group)
        self.target = target
        self.sizes = sizes
        self.row_sizes = None
        if sizes is not None:
            self.row_sizes = sizes.repeat_interleave(group)
            self.sorted_row_sizes = sorted(self.row_sizes.tolist())
        #: Where each row's client starts in the flattened data (every mini-batch gathers).
        self.first_rows = _first_rows(x, group, None)
        # Views every mini-batch reads, made once (w and b change in place: they stay current).
        self.x_flat = x.reshape(clients * n, *x.shape[2:])
        self.y_flat = y.reshape(clients * n, *y.shape[2:])
        self.b_col, self.w_t = b.unsqueeze(1), w.transpose(1, 2)
        self.size_col = None if self.row_sizes is None else self.row_sizes.unsqueeze(1)
        self._rates: tuple[Tensor, Tensor, Tensor] | None = None

    @cached_property
    def real(self) -> Tensor | None:
        """[N, n]: which positions hold a real row (None without padding); the full-batch
        passes read it, the mini-batches do not."""
        return None if self.sizes is None else real_rows(self.sizes, self.x.shape[1])

    @cached_property
    def full_weight(self) -> Tensor | None:
        """[N, n, 1]: each real row's share of its client's mean, for all J heads."""
        if self.sizes is None or self.real is None:
            return None
        return (self.real / self.sizes.unsqueeze(1)).unsqueeze(2)

    def _full_forward(self) -> Tensor:
        return _full_forward(self.w, self.b, self.x, self.group)

    def initial_loss(self) -> Tensor:
        forward = self._full_forward()
        return loss_and_grad(self.task, forward, self.target, 1, self.full_weight)[0].reshape(
            self.rows
        )

    def step(
        self,
        idx: Tensor | None,
        batch: int,
        batch_size: int,
        lr: Tensor,
        grad_sum: Tensor | None,
        epoch_loss: Tensor,
    ) -> int | Tensor:
        task, w, b, x, group = self.task, self.w, self.b, self.x, self.group
        clients, n = x.shape[:2]
        lr_w, lr_b = self._rate_views(lr)
        if idx is None:
            loss, grad = loss_and_grad(task, self._full_forward(), self.target, 1, self.full_weight)
            loss = loss.reshape(self.rows)
            grad = grad.view(clients, n, group * self.out)
            grad_w = torch.bmm(grad.transpose(1, 2), x).view(self.rows, self.out, -1)
            grad_b = grad.sum(dim=1).view(self.rows, self.out)
            if self.regularizer is not None:
                extra_w, extra_b = self.regularizer.grads(w, b)
                grad_w, grad_b = grad_w.add_(extra_w), grad_b.add_(extra_b)
            _step(w, b, grad_w, grad_b, lr_w, lr_b, grad_sum, self.numel)
            epoch_loss += loss
            return 1
        if self.row_sizes is not None:
            # Only heads whose client has samples left in this batch step. While few heads
            # have run out, all compute in place and those weigh nothing (no rows picked out:
            # fewer ops); else the live ones are picked out. Same arithmetic either way.
            start = batch * batch_size
            finished = bisect_right(self.sorted_row_sizes, start)
            if finished <= max(self.rows - finished, MASKED_ROWS):
                loss, count = self._step_all(idx, lr_w, lr_b, grad_sum, masked=finished > 0)
                epoch_loss += loss * (count / self.row_sizes)
                return 1 if finished == 0 else self.row_sizes > start
            alive = self.row_sizes > start
            live = alive.nonzero().squeeze(1)
            loss, count = self._step_live(idx[live], live, lr, grad_sum)
            epoch_loss.index_add_(0, live, loss * (count / self.row_sizes[live]))
            return alive
        xb, yb = self._batch(idx)
        prediction = torch.baddbmm(self.b_col, xb, self.w_t)
        loss, grad = loss_and_grad(task, prediction, yb, 1)
        grad_w, grad_b = torch.bmm(grad.transpose(1, 2), xb), grad.sum(dim=1)
        if self.regularizer is not None:
            extra_w, extra_b = self.regularizer.grads(w, b)
            grad_w, grad_b = grad_w.add_(extra_w), grad_b.add_(extra_b)
        _step(w, b, grad_w, grad_b, lr_w, lr_b, grad_sum, self.numel)
        epoch_loss += loss * (idx.shape[1] / n)
        return 1

    def _rate_views(self, lr: Tensor) -> tuple[Tensor, Tensor]:
        """`lr` shaped to scale the weights' and the biases' gradients (made once per rate)."""
        if self._rates is None or self._rates[0] is not lr:
            self._rates = (lr, lr[:, None, None], lr[:, None])
        return self._rates[1], self._rates[2]

    def _batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Every head's samples `idx` [N·J, m]: inputs [N·J, m, in] and targets."""
        flat = (idx + self.first_rows).view(-1)
        x, y = self.x_flat.index_select(0, flat), self.y_flat.index_select(0, flat)
        return x.view(*idx.shape, *x.shape[1:]), y.view(*idx.shape, *y.shape[1:])

    def _step_all(
        self, idx: Tensor, lr_w: Tensor, lr_b: Tensor, grad_sum: Tensor | None, masked: bool
    ) -> tuple[Tensor, Tensor]:
        """SGD step of every head, in place, on its samples `idx` [N·J, m] of zero-padded
        clients (each with at least one real sample here, unless `masked`: then heads without
        one get a zero gradient, so they stay put); returns their loss and sample count."""
        assert self.row_sizes is not None and self.size_col is not None
        w, b = self.w, self.b
        xb, yb = self._batch(idx)
        prediction = torch.baddbmm(self.b_col, xb, self.w_t)
        real = idx < self.size_col
        count = real.sum(dim=1)
        divisor = count.clamp(min=1) if masked else count  # 0/0 would be NaN
        loss, grad = loss_and_grad(self.task, prediction, yb, 1, real / divisor.unsqueeze(1))
        grad_w, grad_b = torch.bmm(grad.transpose(1, 2), xb), grad.sum(dim=1)
        if self.regularizer is not None:
            extra_w, extra_b = self.regularizer.grads(w, b)
            if masked:  # a strategy's term moves only the heads that step
                stepping = (count > 0).to(extra_w.dtype)
                extra_w, extra_b = extra_w * stepping[:, None, None], extra_b * stepping[:, None]
            grad_w, grad_b = grad_w.add_(extra_w), grad_b.add_(extra_b)
        _step(w, b, grad_w, grad_b, lr_w, lr_b, grad_sum, self.numel)
        return loss, count

    def _step_live(
        self, idx: Tensor, rows: Tensor, lr: Tensor, grad_sum: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """SGD step of the heads `rows` [R] alone, each with at least one real sample among
        `idx` [R, m]; returns their loss and sample count."""
        assert self.row_sizes is not None
        w, b, x, y = self.w, self.b, self.x, self.y
        flat = _flat_index(x, idx, self.group, rows)
        xb, yb = _gather(x, flat, idx.shape), _gather(y, flat, idx.shape)
        w_rows, b_rows = w[rows], b[rows]
        prediction = torch.baddbmm(b_rows.unsqueeze(1), xb, w_rows.transpose(1, 2))
        real = batch_mask(idx, self.row_sizes[rows])
        count = real.sum(dim=1)
        loss, grad = loss_and_grad(self.task, prediction, yb, 1, real / count.unsqueeze(1))
        grad_w, grad_b = torch.bmm(grad.transpose(1, 2), xb), grad.sum(dim=1)
        if self.regularizer is not None:
            extra_w, extra_b = self.regularizer.grads(w_rows, b_rows, rows)
            grad_w, grad_b = grad_w.add_(extra_w), grad_b.add_(extra_b)
        row_sum = None if grad_sum is None else torch.zeros(len(rows))
        lr_rows = lr[rows]
        _step(
            w_rows,
            b_rows,
            grad_w,
            grad_b,
            lr_rows[:, None, None],
            lr_rows[:, None],
            row_sum,
            self.numel,
        )
        w.index_copy_(0, rows, w_rows)
        b.index_copy_(0, rows, b_rows)
        if grad_sum is not None and row_sum is not None:
            grad_sum.index_add_(0, rows, row_sum)
        return loss, count

    def final_std_mean(self) -> tuple[Tensor, Tensor]:
        losses = per_sample_loss(self.task, self._full_forward(), self.target)  # [N, n, J]
        if self.real is None:
            std, mean = torch.std_mean(losses, dim=1, correction=0)
        else:
            std, mean = masked_std_mean(losses, self.real)
        return std.reshape(self.rows), mean.reshape(self.rows)


def fit_heads(
    task: Task,
    w: Tensor,
    b: Tensor,
    x: Tensor,
    y: Tensor,
    group: int,
    lr: Tensor,
    epochs: int,
    batch_size: int,
    perms: Tensor | None,
    on_epoch: Callable[[Tensor], Tensor | None] | None = None,
    details: bool = True,
    sizes: Tensor | None = None,
    regularizer: HeadRegularizer | None = None,
) -> HeadStats:
    """SGD of every head on its client's data, in place: `fit_stacked` with the closed-form
    step (`ClosedFormStep` says what `w`, `b`, `x`, `y`, `sizes` and `regularizer` hold)."""
    from scarcity.components.training import fit_stacked  # it imports this module

    form = ClosedFormStep(task, w, b, x, y, group, sizes, regularizer)
    return fit_stacked(form, lr, epochs, batch_size, perms, on_epoch, details)


def _step(
    w: Tensor,
    b: Tensor,
    grad_w: Tensor,
    grad_b: Tensor,
    lr_w: Tensor,
    lr_b: Tensor,
    grad_sum: Tensor | None,
    numel: int,
) -> None:
    """One SGD step in place (`lr_w` [R, 1, 1], `lr_b` [R, 1]: each row's rate), and the mean
    |gradient| of each row into `grad_sum`."""
    if grad_sum is not None:
        grad_sum += (grad_w.abs().sum(dim=(1, 2)) + grad_b.abs().sum(dim=1)) / numel
    w -= lr_w * grad_w
    b -= lr_b * grad_b
