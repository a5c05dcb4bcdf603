"""Batched linear heads: many independent `nn.Linear` models trained by SGD in a few tensor ops.

Each client holds J heads (its shared model and/or expert heads) trained on its own data; the
rows of the weight tensors are client-major ([N·J, out, in], [N·J, out], `nn.Linear`'s
layout). Full-batch products use one [n, in] × [in, J·out] product per client; mini-batches
gather each row's samples with one `index_select`. Gradients are written out instead of
taken by autograd: logistic and linear regression need one product each way.
`fit_heads` mirrors `scarcity.core.training.fit` (same batches, losses and statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scarcity.core.training import Task


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
    task: Task, prediction: Tensor, target: Tensor, sample_dim: int
) -> tuple[Tensor, Tensor]:
    """Sample-mean loss (the sample axis reduced) and its gradient w.r.t. the prediction."""
    n = prediction.shape[sample_dim]
    if task == "classification":
        top = prediction.amax(dim=-1, keepdim=True)
        exp = (prediction - top).exp()
        norm = exp.sum(dim=-1, keepdim=True)
        index = target.unsqueeze(-1)
        picked = prediction.gather(-1, index)
        loss = (norm.log() + top - picked).squeeze(-1).mean(dim=sample_dim)
        grad = exp.div_(norm)
        grad.scatter_add_(-1, index, torch.full(index.shape, -1.0))
        return loss, grad.div_(n)
    diff = prediction - target
    out = prediction.shape[-1]
    return (diff**2).mean(dim=-1).mean(dim=sample_dim), diff * (2.0 / (n * out))


@dataclass(frozen=True)
class HeadStats:
    """Per-row statistics of one training call, as `Expert.train` / `Client.local_train`."""

    initial_loss: Tensor
    train_loss: Tensor
    final_loss: Tensor
    uncertainty: Tensor
    mean_grad: Tensor


def gather_rows(t: Tensor, idx: Tensor, group: int) -> Tensor:
    """Samples `idx` [N·J, m] of each row's client data `t` [N, n, ...] → [N·J, m, ...]."""
    clients, n = t.shape[:2]
    owner = torch.arange(clients).repeat_interleave(group) * n
    flat = (idx + owner.unsqueeze(1)).view(-1)
    picked = t.reshape(clients * n, *t.shape[2:]).index_select(0, flat)
    return picked.view(len(idx), idx.shape[1], *t.shape[2:])


def _full_forward(w: Tensor, b: Tensor, x: Tensor, group: int) -> Tensor:
    """Every head on all of its client's data: [N, n, J, out]."""
    clients, n = x.shape[:2]
    out = w.shape[1]
    wide = w.view(clients, group * out, -1)
    logits = torch.baddbmm(b.view(clients, 1, group * out), x, wide.transpose(1, 2))
    return logits.view(clients, n, group, out)


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
) -> HeadStats:
    """SGD of every head on its client's data, in place.

    `w` [N·J, out, in] and `b` [N·J, out] hold J heads per client, `x` [N, n, in] and `y`
    the clients' data, `lr` [N·J] the rates, `perms` [N·J, epochs, n] the shuffles
    (None = full batch). `on_epoch(loss)` gets each epoch's sample-weighted loss [N·J]
    and may return new rates. With `details` off only `train_loss` is measured (the other
    statistics are zeros): they feed insights only, and skipping them saves two full passes.
    """
    clients, n = x.shape[:2]
    rows, out = w.shape[:2]
    numel = w[0].numel() + b[0].numel()
    target = y.unsqueeze(2)  # broadcast over the J heads
    if task == "classification":
        target = target.expand(clients, n, group)
    initial = torch.zeros(rows)
    if details:
        initial = loss_and_grad(task, _full_forward(w, b, x, group), target, 1)[0].reshape(rows)
    grad_sum = torch.zeros(rows)
    steps = 0
    epoch_losses = []
    for epoch in range(epochs):
        epoch_loss = torch.zeros(rows)
        if perms is None:
            loss, grad = loss_and_grad(task, _full_forward(w, b, x, group), target, 1)
            loss = loss.reshape(rows)
            grad = grad.view(clients, n, group * out)
            grad_w = torch.bmm(grad.transpose(1, 2), x).view(rows, out, -1)
            grad_b = grad.sum(dim=1).view(rows, out)
            _step(w, b, grad_w, grad_b, lr, grad_sum if details else None, numel)
            epoch_loss += loss
            steps += 1
        else:
            for idx in perms[:, epoch].split(batch_size, dim=1):
                xb, yb = gather_rows(x, idx, group), gather_rows(y, idx, group)
                prediction = torch.baddbmm(b.unsqueeze(1), xb, w.transpose(1, 2))
                loss, grad = loss_and_grad(task, prediction, yb, 1)
                grad_w = torch.bmm(grad.transpose(1, 2), xb)
                _step(w, b, grad_w, grad.sum(dim=1), lr, grad_sum if details else None, numel)
                epoch_loss += loss * (idx.shape[1] / n)
                steps += 1
        epoch_losses.append(epoch_loss)
        if on_epoch is not None:
            new_lr = on_epoch(epoch_loss)
            if new_lr is not None:
                lr = new_lr
    std, mean = torch.zeros(rows), torch.zeros(rows)
    if details:
        losses = per_sample_loss(task, _full_forward(w, b, x, group), target)  # [N, n, J]
        std, mean = torch.std_mean(losses, dim=1, correction=0)
    return HeadStats(
        initial_loss=initial,
        train_loss=torch.stack(epoch_losses).double().mean(dim=0),
        final_loss=mean.reshape(rows),
        uncertainty=std.reshape(rows),
        mean_grad=grad_sum / max(steps, 1),
    )


def _step(
    w: Tensor,
    b: Tensor,
    grad_w: Tensor,
    grad_b: Tensor,
    lr: Tensor,
    grad_sum: Tensor | None,
    numel: int,
) -> None:
    """One SGD step in place, and the mean |gradient| of each row into `grad_sum`."""
    if grad_sum is not None:
        grad_sum += (grad_w.abs().sum(dim=(1, 2)) + grad_b.abs().sum(dim=1)) / numel
    w -= lr[:, None, None] * grad_w
    b -= lr[:, None] * grad_b
