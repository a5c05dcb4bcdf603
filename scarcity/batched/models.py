"""Batched SGD of any backbone by autograd over stacked parameters (mlp, cnn, ...).

Each client holds J models of one architecture (its shared model and/or expert heads); their
parameters are stacked client-major, [N·J, ...] per `named_parameters` name. The backbone's
own `nn.Module` is called with one row's parameters through `torch.func.functional_call`,
and `vmap` runs it over the rows, so the model is defined once for both executions. The loss
of all rows is one sum: its gradient with respect to the stacked parameters is every row's
own gradient, taken by ordinary autograd, so a strategy's extra term (FedProx's proximal term,
SCAFFOLD's correction: `HeadRegularizer.term`) is written once, as a differentiable function.
Batches, padding masks, losses and statistics follow `linear.fit_heads` (and so
`scarcity.core.training.fit`): the closed-form fast path for Linear, which this reproduces.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from scarcity.backbones import Backbone
from scarcity.batched.linear import HeadRegularizer, HeadStats, gather_rows, per_sample_loss
from scarcity.batched.padding import at_least_one, batch_mask, masked_std_mean, real_rows
from scarcity.core.training import Task


class StackedModel:
    """A backbone evaluated with stacked parameters: one row per model."""

    def __init__(self, backbone: Backbone) -> None:
        self.template = backbone.template()

        def one(params: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.template, params, (x,))

        #: params [R, ...], x [R, m, in] → [R, m, out] (every row its own samples).
        self.rows = vmap(one)
        #: params [N, J, ...], x [N, n, in] → [N, J, n, out] (a client's J models, its data).
        self.grouped = vmap(vmap(one, in_dims=(0, None)))

    def on_clients(self, params: dict[str, Tensor], x: Tensor, group: int) -> Tensor:
        """Every row on all of its client's data: [N·J, n, out]."""
        clients = x.shape[0]
        stacked = {k: v.view(clients, group, *v.shape[1:]) for k, v in params.items()}
        out = self.grouped(stacked, x)
        return out.reshape(clients * group, *out.shape[2:])


def _client_targets(y: Tensor, group: int) -> Tensor:
    """Each row's targets on all of its client's data: [N, n, ...] → [N·J, n, ...]."""
    return y.repeat_interleave(group, dim=0)


def fit_models(
    task: Task,
    model: StackedModel,
    params: dict[str, Tensor],
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
    """SGD of every row's model on its client's data, `params` updated in place.

    Arguments as `linear.fit_heads`, with the parameters a dict of stacked tensors [N·J, ...].
    """
    clients, n = x.shape[:2]
    rows = clients * group
    numel = sum(p[0].numel() for p in params.values())
    row_sizes = None if sizes is None else sizes.repeat_interleave(group)
    full_weight = torch.full((rows, n), 1.0 / n)
    if row_sizes is not None:
        full_weight = real_rows(row_sizes, n) / row_sizes.unsqueeze(1)
    targets = _client_targets(y, group)

    def full_losses() -> Tensor:
        with torch.no_grad():
            return per_sample_loss(task, model.on_clients(params, x, group), targets)

    initial = torch.zeros(rows)
    if details:
        initial = (full_losses() * full_weight).sum(dim=1)
    grad_sum = torch.zeros(rows)
    steps: int | Tensor = 0
    epoch_losses = []
    for epoch in range(epochs):
        epoch_loss = torch.zeros(rows)
        batches: list[Tensor | None] = (
            [None] if perms is None else list(perms[:, epoch].split(batch_size, dim=1))
        )
        for batch, idx in enumerate(batches):
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            if idx is None:
                prediction = model.on_clients(leaves, x, group)
                target, weight = targets, full_weight
                share: Tensor | float = 1.0
                alive = None
            else:
                xb, target = gather_rows(x, idx, group), gather_rows(y, idx, group)
                prediction = model.rows(leaves, xb)
                if row_sizes is None:
                    weight = torch.full(idx.shape, 1.0 / idx.shape[1])
                    share, alive = idx.shape[1] / n, None
                else:
                    # A row whose client has no samples left in this batch sits it out.
                    real = batch_mask(idx, row_sizes)
                    count = real.sum(dim=1)
                    weight = real / count.clamp(min=1).unsqueeze(1)
                    share, alive = count / row_sizes, row_sizes > batch * batch_size
            loss = (per_sample_loss(task, prediction, target) * weight).sum(dim=1)
            objective = loss.sum()
            if regularizer is not None:
                objective = objective + regularizer.term(leaves)
            grads = torch.autograd.grad(objective, list(leaves.values()))
            step_lr = lr if alive is None else lr * alive
            with torch.no_grad():
                magnitude = sum(g.abs().flatten(1).sum(dim=1) for g in grads) / numel
                grad_sum += magnitude if alive is None else magnitude * alive
                for p, g in zip(params.values(), grads, strict=True):
                    p.sub_(step_lr.view(-1, *([1] * (p.dim() - 1))) * g)
            steps = steps + (1 if alive is None else alive)
            epoch_loss += loss.detach() * share
        epoch_losses.append(epoch_loss)
        if on_epoch is not None:
            new_lr = on_epoch(epoch_loss)
            if new_lr is not None:
                lr = new_lr
    std, mean = torch.zeros(rows), torch.zeros(rows)
    if details:
        losses = full_losses()
        if row_sizes is None:
            std, mean = torch.std_mean(losses, dim=1, correction=0)
        else:
            std, mean = masked_std_mean(losses, real_rows(row_sizes, n))
    return HeadStats(
        initial_loss=initial,
        train_loss=torch.stack(epoch_losses).double().mean(dim=0),
        final_loss=mean,
        uncertainty=std,
        mean_grad=grad_sum / at_least_one(steps),
    )
