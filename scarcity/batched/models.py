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

Two things keep a step to the work it needs, neither changing a number. Only the rows whose
client has samples left in the mini-batch compute (as in `ClosedFormStep`): with clients of
unequal size the largest client's last batches would otherwise run every row on padding.
And the rows run in chunks whose activations stay within `CHUNK_VALUES` (vmapped, the
convolution maps of NIID-Bench's CNN for 100 clients × 32 images spill out of the caches:
chunks of about 25 clients made its step 1.6× faster). A row's outputs and gradients do not
depend on which other rows share its call as long as the call holds at least two rows (a
single row takes another convolution kernel): chunks hold two or more, and a lone live row
computes beside one that sits out (`tests/scarcity/test_backbones.py` checks both bit for
bit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from scarcity.backbones import Backbone
from scarcity.batched.linear import ClosedFormStep, HeadRegularizer, gather_rows, per_sample_loss
from scarcity.batched.padding import batch_mask, masked_std_mean, real_rows
from scarcity.core.training import Task

if TYPE_CHECKING:
    from scarcity.components.training import HeadStats


#: Activation values (rows × samples × every layer's outputs per sample) a stacked call
#: computes at once: 32 MiB of float32.
CHUNK_VALUES = 1 << 23


class StackedModel:
    """A backbone evaluated with stacked parameters: one row per model."""

    def __init__(self, backbone: Backbone) -> None:
        self.template = backbone.template()

        def one(params: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.template, params, (x,))

        self.rows: Callable[[dict[str, Tensor], Tensor], Tensor]
        self.grouped: Callable[[dict[str, Tensor], Tensor], Tensor]
        if backbone.stacking == "loop":
            self.rows, self.grouped = _looped(one), _looped(_looped(one, per_row_x=False))
        else:
            #: params [R, ...], x [R, m, in] → [R, m, out] (every row its own samples).
            self.rows = vmap(one)
            #: params [N, J, ...], x [N, n, in] → [N, J, n, out] (a client's J models, its
            #: data).
            self.grouped = vmap(vmap(one, in_dims=(0, None)))
        #: Values every layer outputs for one sample (the activations' size).
        self.values_per_sample = _values_per_sample(self.template, backbone.input_dim)

    def on_clients(self, params: dict[str, Tensor], x: Tensor, group: int) -> Tensor:
        """Every row on all of its client's data: [N·J, n, out]."""
        clients = x.shape[0]
        stacked = {k: v.view(clients, group, *v.shape[1:]) for k, v in params.items()}
        out = self.grouped(stacked, x)
        return out.reshape(clients * group, *out.shape[2:])

    def chunk(self, samples: int) -> int:
        """Models run at once on `samples` samples each: their activations within
        `CHUNK_VALUES`, and at least two."""
        return max(2, CHUNK_VALUES // max(1, samples * self.values_per_sample))


def _looped(
    one: Callable[[dict[str, Tensor], Tensor], Tensor], per_row_x: bool = True
) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    """`vmap(one)` as a loop over the leading axis of the parameters (and of `x`, unless
    `per_row_x` is false: then every row takes all of `x`). `unbind` and `stack` carry the
    gradients of all rows at once."""

    def rows(params: dict[str, Tensor], x: Tensor) -> Tensor:
        names = list(params)
        per_row = zip(*(params[name].unbind(0) for name in names), strict=True)
        inputs = x.unbind(0) if per_row_x else [x] * len(params[names[0]])
        return torch.stack(
            [
                one(dict(zip(names, values, strict=True)), xi)
                for values, xi in zip(per_row, inputs, strict=True)
            ]
        )

    return rows


def _values_per_sample(module: nn.Module, input_dim: int) -> int:
    """The outputs of every layer of `module` for one sample (one forward of zeros; only
    their sizes are read)."""
    total = 0

    def count(_module: nn.Module, _inputs: object, output: Tensor) -> None:
        nonlocal total
        total += output.numel()

    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            module(torch.zeros(1, input_dim))
    finally:
        for hook in hooks:
            hook.remove()
    return max(total, 1)


def split_rows(rows: int, chunk: int) -> list[slice]:
    """`range(rows)` in near-equal consecutive slices of about `chunk` rows each, at least two
    each: never a slice of one row out of several."""
    parts = max(1, min(-(-rows // chunk), rows // 2))
    bounds = [rows * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


def _client_targets(y: Tensor, group: int) -> Tensor:
    """Each row's targets on all of its client's data: [N, n, ...] → [N·J, n, ...]."""
    return y.repeat_interleave(group, dim=0)


class AutogradStep:
    """The stacked trainer's step for any backbone: autograd over stacked parameters
    (`fit_stacked`); arguments as `linear.ClosedFormStep`, the parameters a dict [N·J, ...]."""

    always_measures_grads = True
    #: A full-batch first step keeps its loss, the models' loss before training, as
    #: `initial_loss` (`fit_stacked` then asks for it after that step, saving a forward pass).
    full_step_keeps_initial = True

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
        self.steps = 0
        #: The first step's loss when that step was full-batch (None otherwise).
        self.first_full_loss: Tensor | None = None

    def _full_losses(self) -> Tensor:
        """Every row's per-sample losses on all of its client's data [N·J, n], no gradient."""
        with torch.no_grad():
            return torch.cat(
                [
                    per_sample_loss(
                        self.task,
                        self.model.on_clients(params, self.x[clients], self.group),
                        self.targets[rows],
                    )
                    for clients, rows, params in self._client_chunks()
                ]
            )

    def _client_chunks(self) -> list[tuple[slice, slice, dict[str, Tensor]]]:
        """The clients in chunks for the full-batch calls: (clients, their rows, their
        parameters, views of the stacked ones)."""
        clients, n = self.x.shape[:2]
        out = []
        for part in split_rows(clients, self.model.chunk(n * self.group)):
            rows = slice(part.start * self.group, part.stop * self.group)
            out.append((part, rows, {k: v[rows] for k, v in self.params.items()}))
        return out

    def initial_loss(self) -> Tensor:
        if self.first_full_loss is not None:  # the same forward pass, already taken
            return self.first_full_loss
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
        first, self.steps = self.steps == 0, self.steps + 1
        if idx is None:
            # `initial_loss`'s own chunks and sums: the first step's loss is that value.
            kept: list[Tensor] = []
            for clients, block, params in self._client_chunks():
                leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
                prediction = self.model.on_clients(leaves, self.x[clients], self.group)
                losses = per_sample_loss(self.task, prediction, self.targets[block])
                loss = (losses * self.full_weight[block]).sum(dim=1)
                kept.append(loss.detach())
                self._descend(block, leaves, loss, lr[block], grad_sum, None)
                epoch_loss[block] += loss.detach()
            if first:
                self.first_full_loss = torch.cat(kept)
            return 1
        row_sizes = self.row_sizes
        alive = None if row_sizes is None else row_sizes > batch * batch_size
        if alive is None or bool(alive.all()):
            chunks: list[Tensor | slice] = list(
                split_rows(self.rows, self.model.chunk(idx.shape[1]))
            )
        else:
            # Only rows whose client has samples left compute; a lone one beside a row that
            # sits it out (its step and loss masked to zero), so no call holds a single row.
            live = alive.nonzero().squeeze(1)
            if len(live) == 1 and self.rows > 1:
                live = torch.cat([live, (live + 1) % self.rows]).sort().values
            chunk = self.model.chunk(idx.shape[1])
            chunks = [live[part] for part in split_rows(len(live), chunk)]
        n = self.x.shape[1]
        for rows in chunks:
            leaves = {k: v[rows].detach().requires_grad_() for k, v in self.params.items()}
            picked = rows if isinstance(rows, Tensor) else torch.arange(self.rows)[rows]
            part = idx[rows]
            xb = gather_rows(self.x, part, self.group, picked)
            target = gather_rows(self.y, part, self.group, picked)
            prediction = self.model.rows(leaves, xb)
            if row_sizes is None:
                weight = torch.full(part.shape, 1.0 / part.shape[1])
                share: Tensor | float = part.shape[1] / n
                live_rows = None
            else:
                # A row whose client has no samples left in this batch sits it out.
                sizes = row_sizes[rows]
                real = batch_mask(part, sizes)
                count = real.sum(dim=1)
                weight = real / count.clamp(min=1).unsqueeze(1)
                share, live_rows = count / sizes, sizes > batch * batch_size
            loss = (per_sample_loss(self.task, prediction, target) * weight).sum(dim=1)
            self._descend(rows, leaves, loss, lr[rows], grad_sum, live_rows)
            epoch_loss[rows] += loss.detach() * share
        return 1 if alive is None else alive

    def _descend(
        self,
        rows: Tensor | slice,
        leaves: dict[str, Tensor],
        loss: Tensor,
        lr: Tensor,
        grad_sum: Tensor | None,
        alive: Tensor | None,
    ) -> None:
        """One SGD step of the models `rows` (their parameters `leaves`, their losses `loss`):
        the strategy's term added, rows not `alive` (None = all are) stepping by zero."""
        objective = loss.sum()
        if self.regularizer is not None:
            objective = objective + self.regularizer.term(leaves, rows)
        grads = torch.autograd.grad(objective, list(leaves.values()))
        step_lr = lr if alive is None else lr * alive
        with torch.no_grad():
            if grad_sum is not None:
                magnitude = sum(g.abs().flatten(1).sum(dim=1) for g in grads) / self.numel
                grad_sum[rows] += magnitude if alive is None else magnitude * alive
            for p, g in zip(self.params.values(), grads, strict=True):
                p[rows] -= step_lr.view(-1, *([1] * (p.dim() - 1))) * g

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


def mean_losses(
    task: Task,
    params: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    group: int,
    sizes: Tensor | None,
    model: StackedModel | None,
) -> Tensor:
    """The mean loss of each of a client's `group` models (`params` [C·group, ...], client
    major) on its rows `x` [C, n, ...], `y` (zero-padded, `sizes` [C], when they differ) →
    [C, group], without training: the stacked step's initial loss (Linear's closed form
    when `model` is None)."""
    clients = x.shape[0]
    form: ClosedFormStep | AutogradStep
    if model is None:
        form = ClosedFormStep(task, params["weight"], params["bias"], x, y, group, sizes)
    else:
        form = AutogradStep(task, model, params, x, y, group, sizes)
    with torch.no_grad():
        return form.initial_loss().view(clients, group)
