"""Batched SGD of any backbone by autograd over stacked parameters (mlp, cnn, ...).

Each client holds J models of one architecture (its shared model and/or expert heads); their
parameters are stacked client-major, [N·J, ...] per `named_parameters` name. The backbone's
own `nn.Module` is called with one row's parameters through `torch.func.functional_call`,
and `vmap` runs it over the rows, so the model is defined once for both executions. The loss
of all rows is one sum: its gradient with respect to the stacked parameters is every row's
own gradient, taken by ordinary autograd, so a strategy's extra term (FedProx's proximal term,
SCAFFOLD's correction: `HeadRegularizer.term`) is written once, as a differentiable function.
`AutogradStep` is the step `scarcity.components.training.fit_stacked` takes for these
backbones; its losses and statistics match `linear.ClosedFormStep`, the closed-form fast path
for Linear (and so `scarcity.core.training.fit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from scarcity.backbones import Backbone
from scarcity.batched.linear import HeadRegularizer, gather_rows, per_sample_loss
from scarcity.batched.padding import batch_mask, masked_std_mean, real_rows
from scarcity.core.training import Task

if TYPE_CHECKING:
    from scarcity.components.training import HeadStats


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


class AutogradStep:
    """The stacked trainer's step for any backbone: autograd over stacked parameters
    (`fit_stacked`); arguments as `linear.ClosedFormStep`, the parameters a dict [N·J, ...]."""

    always_measures_grads = True

    def __init__(
        self,
        task: Task,
        model: StackedModel,
        params: dict[str, Tensor],
        x: Tensor,
        y: Tensor,
        group: int,
        sizes: Tensor | None = None,
        regularizer: HeadRegularizer | None = None,
    ) -> None:
        self.task, self.model, self.params, self.x, self.y = task, model, params, x, y
        self.group, self.regularizer = group, regularizer
        clients, n = x.shape[:2]
        self.rows = clients * group
        self.numel = sum(p[0].numel() for p in params.values())
        self.row_sizes = None if sizes is None else sizes.repeat_interleave(group)
        self.full_weight = torch.full((self.rows, n), 1.0 / n)
        if self.row_sizes is not None:
            self.full_weight = real_rows(self.row_sizes, n) / self.row_sizes.unsqueeze(1)
        self.targets = _client_targets(y, group)

    def _full_losses(self) -> Tensor:
        with torch.no_grad():
            prediction = self.model.on_clients(self.params, self.x, self.group)
            return per_sample_loss(self.task, prediction, self.targets)

    def initial_loss(self) -> Tensor:
        return (self._full_losses() * self.full_weight).sum(dim=1)

    def step(
        self,
        idx: Tensor | None,
        batch: int,
        batch_size: int,
        lr: Tensor,
        grad_sum: Tensor | None,
        epoch_loss: Tensor,
    ) -> int | Tensor:
        n = self.x.shape[1]
        params, row_sizes = self.params, self.row_sizes
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        if idx is None:
            prediction = self.model.on_clients(leaves, self.x, self.group)
            target, weight = self.targets, self.full_weight
            share: Tensor | float = 1.0
            alive = None
        else:
            xb = gather_rows(self.x, idx, self.group)
            target = gather_rows(self.y, idx, self.group)
            prediction = self.model.rows(leaves, xb)
            if row_sizes is None:
                weight = torch.full(idx.shape, 1.0 / idx.shape[1])
                share, alive = idx.shape[1] / n, None
            else:
                # A row whose client has no samples left in this batch sits it out.
                real = batch_mask(idx, row_sizes)
                count = real.sum(dim=1)
                weight = real / count.clamp(min=1).unsqueeze(1)
                share, alive = count / row_sizes, row_sizes > batch * batch_size
        loss = (per_sample_loss(self.task, prediction, target) * weight).sum(dim=1)
        objective = loss.sum()
        if self.regularizer is not None:
            objective = objective + self.regularizer.term(leaves)
        grads = torch.autograd.grad(objective, list(leaves.values()))
        step_lr = lr if alive is None else lr * alive
        with torch.no_grad():
            if grad_sum is not None:
                magnitude = sum(g.abs().flatten(1).sum(dim=1) for g in grads) / self.numel
                grad_sum += magnitude if alive is None else magnitude * alive
            for p, g in zip(params.values(), grads, strict=True):
                p.sub_(step_lr.view(-1, *([1] * (p.dim() - 1))) * g)
        epoch_loss += loss.detach() * share
        return 1 if alive is None else alive

    def final_std_mean(self) -> tuple[Tensor, Tensor]:
        losses = self._full_losses()
        if self.row_sizes is None:
            return torch.std_mean(losses, dim=1, correction=0)
        return masked_std_mean(losses, real_rows(self.row_sizes, self.x.shape[1]))


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
    """SGD of every row's model on its client's data, `params` updated in place:
    `fit_stacked` with the autograd step (arguments as `linear.fit_heads`)."""
    from scarcity.components.training import fit_stacked  # it imports this module

    form = AutogradStep(task, model, params, x, y, group, sizes, regularizer)
    return fit_stacked(form, lr, epochs, batch_size, perms, on_epoch, details)
