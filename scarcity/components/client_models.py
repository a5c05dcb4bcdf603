"""The model each client uses, per client and stacked: what personal evaluation scores.

A strategy's `client_model` says which model a client uses: the global one (scored by
`Server.evaluate_clients`), or one of its own — its local model (`local`), its personal model
(`ditto`), a fine-tuned copy of the global model (`fedavg_ft`), the cluster model it chose
(`ifca`). `ClientModels` is every client's model of its own, in either form:

- per client, `ModuleModels`: one module per client, each applied to its rows
  (`personal.head_outputs`, `personal.scores`);
- stacked, `StackedModels`: the backbone's parameters stacked [M, ...] and the row each client
  uses (`index` [N]; None: client c uses row c), run as the ensemble's heads are
  (`scarcity.batched.ensemble`: Linear in one product, another backbone through its stacked
  call).

Both answer `scores(task, x, y, owner)`, each client's accuracy (classification) or mean loss
(regression) on its own rows of a batch (`owner` the client of each row), NaN for a client
without rows, as `Server.evaluate_clients` answers for the global model; and
`shared_scores(task, x, y)`, every client's loss and accuracy on the same rows (the test set).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from scarcity.batched.ensemble import held_out_scores
from scarcity.components.personal import head_outputs, scores
from scarcity.core.training import Task

if TYPE_CHECKING:
    from scarcity.batched.models import StackedModel

__all__ = ["ClientModels", "ModuleModels", "StackedModels", "by_owner", "task_score"]


class ClientModels(Protocol):
    """Every client's model of its own, in one of the two forms."""

    @property
    def num_clients(self) -> int: ...

    def scores(self, task: Task, x: Tensor, y: Tensor, owner: Tensor) -> Tensor:
        """Each client's accuracy (classification) or mean loss (regression) on its rows
        (`owner` [rows] its client id), float64 [N]; NaN for a client without rows."""
        ...

    def shared_scores(self, task: Task, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Each client's mean loss and accuracy (NaN for regression) on all of `x`, `y`,
        float64 [N] each."""
        ...


def by_owner(x: Tensor, y: Tensor, owner: Tensor, clients: int) -> list[tuple[Tensor, Tensor]]:
    """The rows of each of `clients` clients (`owner` [rows] the client of each), in order."""
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=clients).tolist()
    return list(zip(x[order].split(counts), y[order].split(counts), strict=True))


def task_score(task: Task, loss: Tensor, accuracy: Tensor) -> Tensor:
    """The score personal evaluation reports: accuracy for classification, else the loss."""
    return accuracy if task == "classification" else loss


@dataclass(frozen=True)
class ModuleModels:
    """One module per client (the per-client form); several clients may share one."""

    modules: Sequence[nn.Module]

    @property
    def num_clients(self) -> int:
        return len(self.modules)

    def scores(self, task: Task, x: Tensor, y: Tensor, owner: Tensor) -> Tensor:
        own = by_owner(x, y, owner, self.num_clients)
        pairs = [
            scores(task, head_outputs(model, xc), yc) if len(yc) else (math.nan, math.nan)
            for model, (xc, yc) in zip(self.modules, own, strict=True)
        ]
        loss, accuracy = (torch.tensor(v, dtype=torch.float64) for v in zip(*pairs, strict=True))
        return task_score(task, loss, accuracy)

    def shared_scores(self, task: Task, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        pairs = [scores(task, head_outputs(model, x), y) for model in self.modules]
        loss, accuracy = (torch.tensor(v, dtype=torch.float64) for v in zip(*pairs, strict=True))
        return loss, accuracy


@dataclass(frozen=True)
class StackedModels:
    """Models stacked [M, ...] per backbone parameter (the stacked form); client c uses row
    `index[c]` (None: row c). `model`: the backbone's stacked call (None: Linear)."""

    params: Mapping[str, Tensor]
    model: StackedModel | None = None
    index: Tensor | None = None

    @property
    def num_clients(self) -> int:
        if self.index is not None:
            return len(self.index)
        return len(next(iter(self.params.values())))

    def _heads(self, index: Tensor | None) -> dict[str, Tensor]:
        """The rows `index` (None: all) as one head per client ([rows, 1, ...])."""
        return {
            key: (t if index is None else t[index]).unsqueeze(1) for key, t in self.params.items()
        }

    def scores(self, task: Task, x: Tensor, y: Tensor, owner: Tensor) -> Tensor:
        if len(y) == 0:
            return torch.full((self.num_clients,), math.nan, dtype=torch.float64)
        own = by_owner(x, y, owner, self.num_clients)
        loss, accuracy = held_out_scores(task, self._heads(self.index), None, None, own, self.model)
        return task_score(task, loss, accuracy)

    def shared_scores(self, task: Task, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        # Each distinct model once (IFCA's clusters are few), then each client's row of them.
        loss, accuracy = held_out_scores(task, self._heads(None), None, (x, y), None, self.model)
        if self.index is None:
            return loss, accuracy
        return loss[self.index], accuracy[self.index]
