"""Local training (seed stage 2), per client and stacked: mini-batch SGD on this round's rows.

One trainer per form:

- per client, `fit` / `train_supervised`: one model, autograd, a torch optimizer (SGD for
  the heads, Adam for an autoencoder); `Client.local_train`, `Expert.train` and
  `Expert.train_self_supervised` run it. Loops run over mini-batches, never over samples;
- stacked, `fit_stacked`: J models per client for every client at once, rows client-major
  [N·J, ...]. It owns what every backbone shares — epochs, shuffled mini-batches, the rate
  adaptation between epochs, step counts and the per-row statistics (loss before and after,
  uncertainty, mean |gradient|, as `train_supervised` reports them) — and asks a
  `StackedStep` for the gradient step itself. Linear heads take the closed-form step
  (`scarcity.batched.linear.ClosedFormStep`: one product each way, ~10× faster than autograd
  over 1,000 stacked heads); every other backbone takes autograd over its stacked parameters
  (`scarcity.batched.models.AutogradStep`, `torch.func`). `train_heads` is a round's
  stacked call: every client's shared model and expert heads as the rows of one call.

A new per-row statistic is one more field of `HeadStats` and key of `train_supervised`'s
dict, both here (`SUPERVISED_KEYS` are `HeadStats`' fields), and, where it is measured during
the steps, each backbone's `StackedStep`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from scarcity.batched.linear import ClosedFormStep
from scarcity.batched.models import AutogradStep, StackedModel
from scarcity.batched.padding import at_least_one
from scarcity.components.adaptation import LearningRateAdaptation
from scarcity.components.memory import store_memory_rows
from scarcity.core.training import LocalObjective, Task, mean_loss, per_sample_loss

if TYPE_CHECKING:
    from scarcity.batched.draws import RoundDraws
    from scarcity.components import StackedClients

__all__ = [
    "FitStats",
    "HeadStats",
    "LocalObjective",
    "StackedStep",
    "fit",
    "fit_stacked",
    "train_heads",
    "train_heads_round",
    "train_supervised",
]


@dataclass(frozen=True)
class FitStats:
    """What one local training call did: batch-mean loss per epoch and mean |gradient|."""

    epoch_losses: tuple[float, ...]
    mean_grad: float

    @property
    def mean_loss(self) -> float:
        return sum(self.epoch_losses) / len(self.epoch_losses)


def fit(
    batch_loss: Callable[[Tensor | None], Tensor],
    parameters: Iterable[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    num_samples: int,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    on_epoch: Callable[[float], None] | None = None,
    regularizer: Callable[[], Tensor] | None = None,
) -> FitStats:
    """Mini-batch training: `epochs` shuffled passes; `batch_size` 0 (or ≥ n) = full batch.

    `batch_loss(idx)` returns the mean loss of the samples `idx` (`None` = all samples).
    `on_epoch(loss)` runs after each epoch with that epoch's sample-weighted mean loss.
    `regularizer()` is added to every step's objective (a strategy's proximal or correction
    term); the recorded losses stay the data loss.
    """
    params = [p for p in parameters if p.requires_grad]
    numel = sum(p.numel() for p in params)
    full_batch = batch_size <= 0 or batch_size >= num_samples
    grad_sum = torch.zeros(())
    steps = 0
    epoch_losses: list[float] = []
    for _ in range(epochs):
        if full_batch:
            batches: list[Tensor | None] = [None]
        else:
            batches = list(torch.randperm(num_samples, generator=generator).split(batch_size))
        epoch_loss = torch.zeros(())
        for idx in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(idx)
            objective = loss if regularizer is None else loss + regularizer()
            objective.backward()
            with torch.no_grad():
                grad_sum += sum(
                    (p.grad.abs().sum() for p in params if p.grad is not None),
                    start=torch.zeros(()),
                ) / max(numel, 1)
                size = num_samples if idx is None else idx.numel()
                epoch_loss += loss.detach() * (size / num_samples)
            optimizer.step()
            steps += 1
        epoch_losses.append(float(epoch_loss))
        if on_epoch is not None:
            on_epoch(epoch_losses[-1])
    return FitStats(tuple(epoch_losses), float(grad_sum) / max(steps, 1))


def rows(t: Tensor, idx: Tensor | None) -> Tensor:
    """The samples `idx` of `t` (`None` = all of them), as `fit` hands them to `batch_loss`."""
    return t if idx is None else t[idx]


def train_supervised(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Task,
    x: Tensor,
    y: Tensor,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    *,
    before_fit: Callable[[], None] | None = None,
    on_epoch: Callable[[float], None] | None = None,
    regularizer: Callable[[], Tensor] | None = None,
) -> dict[str, float]:
    """Supervised local training of one model: loss before and after, uncertainty, mean |grad|.

    `before_fit` runs after the initial loss is taken (an expert's own preparation).
    """
    with torch.no_grad():
        initial = float(mean_loss(task, model(x), y))
    if before_fit is not None:
        before_fit()
    stats = fit(
        lambda idx: mean_loss(task, model(rows(x, idx)), rows(y, idx)),
        model.parameters(),
        optimizer,
        len(x),
        epochs,
        batch_size,
        generator,
        on_epoch=on_epoch,
        regularizer=regularizer,
    )
    with torch.no_grad():
        losses = per_sample_loss(task, model(x), y)
    return {
        "initial_loss": initial,
        "train_loss": stats.mean_loss,
        "final_loss": float(losses.mean()),
        "uncertainty": float(losses.std(correction=0)),
        "mean_grad": stats.mean_grad,
    }


@dataclass(frozen=True)
class HeadStats:
    """Per-row statistics of one training call, as `Expert.train` / `Client.local_train`."""

    initial_loss: Tensor
    train_loss: Tensor
    final_loss: Tensor
    uncertainty: Tensor
    mean_grad: Tensor


#: What a training call reports per model, in this order: `HeadStats`' fields, the keys of
#: `train_supervised`'s dict.
SUPERVISED_KEYS = tuple(f.name for f in fields(HeadStats))


class StackedStep(Protocol):
    """How one backbone's stacked models take a step (parameters updated in place)."""

    #: Models (rows) trained, N·J.
    rows: int
    #: Whether mean |gradient| is summed even when details are off (as the form always did).
    always_measures_grads: bool

    def initial_loss(self) -> Tensor:
        """Each row's mean loss on all of its client's rows before training [rows] (called
        before the first step, or right after it where the form sets
        `full_step_keeps_initial` and that step was full-batch)."""
        ...

    def step(
        self,
        idx: Tensor | None,
        batch: int,
        batch_size: int,
        lr: Tensor,
        grad_sum: Tensor | None,
        epoch_loss: Tensor,
    ) -> int | Tensor:
        """One SGD step on the samples `idx` [rows, m] (None: all), batch `batch` of the
        epoch: adds each row's sample-weighted loss to `epoch_loss` and its mean |gradient|
        to `grad_sum` (None: not measured); returns the steps taken (1, or [rows] 0/1 when
        rows whose client is out of samples sat the batch out)."""
        ...

    def final_std_mean(self) -> tuple[Tensor, Tensor]:
        """Spread and mean of each row's per-sample losses after training [rows] each."""
        ...


def fit_stacked(
    form: StackedStep,
    lr: Tensor,
    epochs: int,
    batch_size: int,
    perms: Tensor | None,
    on_epoch: Callable[[Tensor], Tensor | None] | None = None,
    details: bool = True,
) -> HeadStats:
    """SGD of every row's model on its client's data, in place (`fit` for all rows at once).

    `lr` [rows] the rates, `perms` [rows, epochs, n] the shuffles (None = full batch).
    `on_epoch(loss)` gets each epoch's sample-weighted loss [rows] and may return new rates.
    With `details` off only `train_loss` is measured (the other statistics are zeros): they
    feed insights only, and skipping them saves two full passes.
    """
    rows = form.rows
    # A form whose full-batch step keeps its loss (`full_step_keeps_initial`) gives the
    # initial loss after its first step: no forward pass of its own.
    after_first = perms is None and epochs > 0 and getattr(form, "full_step_keeps_initial", False)
    initial = form.initial_loss() if details and not after_first else torch.zeros(rows)
    grad_sum = torch.zeros(rows)
    sums = grad_sum if details or form.always_measures_grads else None
    steps: int | Tensor = 0
    epoch_losses = []
    for epoch in range(epochs):
        epoch_loss = torch.zeros(rows)
        batches: list[Tensor | None] = (
            [None] if perms is None else list(perms[:, epoch].split(batch_size, dim=1))
        )
        for batch, idx in enumerate(batches):
            steps = steps + form.step(idx, batch, batch_size, lr, sums, epoch_loss)
        epoch_losses.append(epoch_loss)
        if details and after_first and epoch == 0:
            initial = form.initial_loss()
        if on_epoch is not None:
            new_lr = on_epoch(epoch_loss)
            if new_lr is not None:
                lr = new_lr
    std, mean = form.final_std_mean() if details else (torch.zeros(rows), torch.zeros(rows))
    return HeadStats(
        initial_loss=initial,
        train_loss=torch.stack(epoch_losses).double().mean(dim=0),
        final_loss=mean,
        uncertainty=std,
        mean_grad=grad_sum / at_least_one(steps),
    )


def train_heads(
    task: Task,
    w: dict[str, Tensor],
    shared_keys: Mapping[str, str] | None,
    head_keys: Mapping[str, str],
    num_experts: int,
    x: Tensor,
    y: Tensor,
    chosen: Tensor | None,
    shared_perms: Tensor | None,
    expert_perms: Tensor | None,
    *,
    objective: LocalObjective | None,
    model: StackedModel | None,
    adaptation: LearningRateAdaptation,
    meta: int | None,
    epochs: int,
    batch_size: int,
    details: bool,
    sizes: Tensor | None,
) -> tuple[dict[str, Tensor] | None, dict[str, Tensor]]:
    """`Client.local_train` and `Expert.train` of every client in one `fit_stacked` call:
    J models per client, the shared one first (`shared_keys`: FedAvg on), then the expert
    heads (all `num_experts`, or each client's routed one, `chosen` [N]); `w` (the pool's
    stacked weights) updated in place.

    `shared_perms` [N, epochs, n] / `expert_perms` [N, K, epochs, n]: the shuffles (None: full
    batches); `meta`: the meta-adaptation expert's index (its rate adapts between epochs);
    `model`: the backbone's stacked form (None: Linear, the closed-form step). Returns the
    shared model's statistics [N] (None without FedAvg) and the heads' [N, J] per key."""
    n_clients = len(x)
    everyone = torch.arange(n_clients)
    fa = shared_keys is not None
    if chosen is not None:
        experts = chosen.unsqueeze(1)  # [N, 1]
        heads = {n: w[key][everyone, chosen].unsqueeze(1) for n, key in head_keys.items()}
    else:
        experts = torch.arange(num_experts).expand(n_clients, num_experts)
        heads = {name: w[key] for name, key in head_keys.items()}
    # The shared model alone (FedAvg without experts) trains in place: no copy out and back.
    in_place = shared_keys is not None and experts.shape[1] == 0
    if shared_keys is not None:
        experts = torch.cat([torch.full((n_clients, 1), -1), experts], dim=1)
    group = experts.shape[1]
    if shared_keys is not None and in_place:
        params = {name: w[shared_keys[name]] for name in heads}
    elif shared_keys is not None:  # torch.cat copies: the rows train on their own tensors
        params = {
            name: torch.cat([w[shared_keys[name]].unsqueeze(1), t], dim=1).flatten(0, 1)
            for name, t in heads.items()
        }
    elif chosen is not None:  # gathering the routed heads copies them already
        params = {name: t.flatten(0, 1) for name, t in heads.items()}
    else:
        params = {name: t.flatten(0, 1).clone() for name, t in heads.items()}
    perms = None
    if expert_perms is not None or shared_perms is not None:
        parts = [] if shared_perms is None else [shared_perms.unsqueeze(1)]
        if expert_perms is not None:  # none without experts (the baseline)
            parts.append(expert_perms)
        sup = torch.cat(parts, dim=1)
        perms = sup.reshape(n_clients * group, *sup.shape[2:])
    row_expert = experts.reshape(-1)
    is_meta = meta_clients = None  # without the meta-adaptation expert: one rate for all
    if meta is not None:
        is_meta = row_expert == meta
        meta_clients = everyone.repeat_interleave(group)[is_meta]

    base = adaptation.base_lr  # the configured rate, or the meta-learner's

    def learning_rates() -> Tensor:
        lr = torch.full((len(row_expert),), base, dtype=torch.float64)
        if is_meta is not None:
            lr[is_meta] = base * adaptation.scale[meta_clients]
        return lr.float()

    def on_epoch(loss: Tensor) -> Tensor | None:
        if is_meta is None or meta_clients is None or len(meta_clients) == 0:
            return None
        adaptation.adapt("supervised", loss[is_meta], meta_clients)
        return learning_rates()

    regularizer = None
    if objective is not None and fa:  # the strategy's terms act on the shared model alone
        regularizer = objective.on_shared_rows(n_clients, group)
    form: StackedStep
    if model is None:  # Linear: the closed-form fast path
        weight, bias = params["weight"], params["bias"]
        form = ClosedFormStep(task, weight, bias, x, y, group, sizes, regularizer)
    else:
        form = AutogradStep(task, model, params, x, y, group, sizes, regularizer)
    stats = fit_stacked(form, learning_rates(), epochs, batch_size, perms, on_epoch, details)
    first = 1 if fa else 0
    for name, t in params.items():
        if in_place:
            break
        t = t.view(n_clients, group, *t.shape[1:])
        if shared_keys is not None:
            w[shared_keys[name]].copy_(t[:, 0])
        if chosen is not None:
            w[head_keys[name]][everyone, chosen] = t[:, first]
        else:
            w[head_keys[name]].copy_(t[:, first:])
    table = {key: getattr(stats, key).double().view(n_clients, group) for key in SUPERVISED_KEYS}
    shared = {key: t[:, 0] for key, t in table.items()} if fa else None
    return shared, {key: t[:, first:] for key, t in table.items()}


def train_heads_round(
    clients: StackedClients,
    x: Tensor,
    y: Tensor,
    chosen: Tensor | None,
    draws: RoundDraws,
    objective: LocalObjective | None,
    sizes: Tensor | None = None,
    replayed: bool = False,
) -> tuple[dict[str, Tensor] | None, dict[str, Tensor]]:
    """A round's supervised training of `clients`, `Client.local_train` and `Expert.train`
    of each (`train_heads`) on this round's rows `x`, `y`; the memory expert stores its share
    of rows first (the reference's draw order). `replayed`: `x`, `y` are the round's rows
    with the replay buffer's (`scarcity.components.replay`), `sizes` their ragged counts."""
    cfg, keys = clients.config, clients.keys
    if not replayed:
        sizes = clients.data.ragged_sizes
    if clients.memory is not None:
        everyone = torch.arange(len(x))
        trains_memory = everyone if chosen is None else everyone[chosen == clients.memory]
        store_memory_rows(clients, x, draws.supervised_store, trains_memory, sizes)
    return train_heads(
        clients.task,
        clients.w,
        keys.shared if cfg.federated_averaging else None,
        keys.head,
        len(clients.names),
        x,
        y,
        chosen,
        draws.shared,
        draws.supervised,
        objective=objective,
        model=clients.stacked_model,
        adaptation=clients.adaptation,
        meta=clients.meta,
        epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        details=clients.details,
        sizes=sizes,
    )
