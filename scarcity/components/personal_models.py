"""A client's model of its own trained from the global one, per client and stacked: Ditto's
personal model and FedAvg-FT's fine-tuned copy.

- Ditto (Li, Hu, Beirami & Smith 2021, "Ditto: Fair and Robust Federated Learning Through
  Personalization", ICML, Algorithm 1): each client keeps a personal model v_k, v_k = w⁰ (the
  run's initial model) at the start. Each round it takes part it runs local SGD on
  F_k(v) + λ/2·‖v − w^t‖² around the broadcast model w^t, each step
  v ← v − η·(∇F_k(v) + λ·(v − w^t)): `local_epochs` epochs of `batch_size` mini-batches of its
  rows of the round at η = `learning_rate` (the proximal term is `LocalObjective`'s, as
  FedProx's).
- FedAvg-FT (Wang et al. 2019, "Federated Evaluation of On-device Personalization"): a copy of
  the global model trains `finetune_epochs` epochs of plain mini-batch SGD on each client's rows
  of the round at `learning_rate`, to be scored and discarded.

Both take their mini-batch shuffles from a generator of their own for the round
(`round_generator`: the run's seed, the stream, the round), client by client in ascending id
order and epoch by epoch, as `fit` draws them: they leave every other draw of the run as it was
(Ditto's and FedAvg-FT's global models are FedAvg's exactly) and both forms take the same
shuffles (the stacked form draws them up front, `scarcity.batched.draws.draw_epochs`).

Per client: `PersonalModel` (one module, `train_model`, the per-client trainer `fit`) and
`finetuned`. Stacked: `StackedPersonalModels` ([N, ...] per backbone parameter, `train_stacked`,
the stacked trainer `fit_stacked` with the backbone's step) and `finetuned_stacked`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import torch
from torch import Tensor, nn

from scarcity.batched.draws import draw_epochs
from scarcity.batched.linear import ClosedFormStep
from scarcity.batched.models import AutogradStep
from scarcity.components.objective import LocalObjective
from scarcity.components.training import StackedStep, fit, fit_stacked, rows
from scarcity.core.training import Task, mean_loss

if TYPE_CHECKING:
    from scarcity.batched.models import StackedModel
    from scarcity.components.data import StackedData

__all__ = [
    "DITTO_STREAM",
    "FINETUNE_STREAM",
    "PersonalModel",
    "StackedPersonalModels",
    "finetuned",
    "finetuned_stacked",
    "round_generator",
    "train_model",
    "train_stacked",
]

#: Second seed words of the shuffle streams (`round_generator`).
DITTO_STREAM = 0xD1770
FINETUNE_STREAM = 0xF17E


def round_generator(seed: int, stream: int, round_index: int) -> torch.Generator:
    """A generator of its own for one stream's draws in one round, a fixed function of the
    run's seed (numpy's `SeedSequence` mixes the three words)."""
    word = np.random.SeedSequence([seed, stream, round_index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(word))


# -- per client ---------------------------------------------------------------------------


def train_model(
    model: nn.Module,
    task: Task,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    objective: LocalObjective | None = None,
) -> None:
    """Plain SGD of one model on one client's rows (`fit`), `objective`'s terms added."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    regularizer = None if objective is None else objective.regularizer(model)
    fit(
        lambda idx: mean_loss(task, model(rows(x, idx)), rows(y, idx)),
        model.parameters(),
        optimizer,
        len(x),
        epochs,
        batch_size,
        generator,
        regularizer=regularizer,
    )


class PersonalModel:
    """One client's Ditto model v (its `model`, the backbone's module)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def start(self, weights: Mapping[str, Tensor]) -> None:
        """v = `weights` (the run's initial model)."""
        self.model.load_state_dict(dict(weights))

    def train(
        self,
        task: Task,
        x: Tensor,
        y: Tensor,
        anchor: Mapping[str, Tensor],
        mu: float,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        generator: torch.Generator,
    ) -> None:
        """Local SGD on F(v) + μ/2·‖v − anchor‖² over this round's rows `x`, `y`."""
        train_model(
            self.model,
            task,
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            generator=generator,
            objective=LocalObjective(mu, dict(anchor)),
        )

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.model.load_state_dict(dict(state))


def finetuned(
    template: nn.Module,
    weights: Mapping[str, Tensor],
    task: Task,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> nn.Module:
    """A copy of `weights` (in a copy of `template`) fine-tuned on one client's rows."""
    model = copy.deepcopy(template)
    model.load_state_dict(dict(weights))
    train_model(model, task, x, y, epochs=epochs, batch_size=batch_size, lr=lr, generator=generator)
    return model


# -- stacked ------------------------------------------------------------------------------


def train_stacked(
    task: Task,
    params: dict[str, Tensor],
    data: StackedData,
    round_index: int,
    model: StackedModel | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    objective: LocalObjective | None = None,
) -> None:
    """`train_model` of one model per client of `data`, its parameters `params` [C, ...]
    updated in place: the clients' shuffles drawn in their order, then one `fit_stacked`."""
    x, y = data.round(round_index)
    clients = len(x)
    perms = draw_epochs(generator, data.sizes.tolist(), epochs, batch_size)
    regularizer = None if objective is None else objective.on_shared_rows(clients, 1)
    form: StackedStep
    if model is None:  # Linear: the closed-form step
        form = ClosedFormStep(
            task, params["weight"], params["bias"], x, y, 1, data.ragged_sizes, regularizer
        )
    else:
        form = AutogradStep(task, model, params, x, y, 1, data.ragged_sizes, regularizer)
    rates = torch.full((clients,), lr, dtype=torch.float64).float()
    fit_stacked(form, rates, epochs, batch_size, perms, details=False)


def _copies(weights: Mapping[str, Tensor], clients: int) -> dict[str, Tensor]:
    """`clients` copies of one model, stacked [clients, ...]."""
    return {k: v.unsqueeze(0).repeat(clients, *([1] * v.dim())) for k, v in weights.items()}


class StackedPersonalModels:
    """Every client's Ditto model v, [N, ...] per backbone parameter (`named_parameters`)."""

    def __init__(self, params: dict[str, Tensor]) -> None:
        self.params = params

    @classmethod
    def of(cls, weights: Mapping[str, Tensor], clients: int) -> StackedPersonalModels:
        """`clients` models, each `weights` (the run's initial model)."""
        return cls(_copies(weights, clients))

    def start(self, weights: Mapping[str, Tensor]) -> None:
        for key, t in self.params.items():
            t.copy_(weights[key].expand_as(t))

    def train(
        self,
        task: Task,
        clients: Tensor | None,
        data: StackedData,
        round_index: int,
        anchor: Mapping[str, Tensor],
        mu: float,
        model: StackedModel | None,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        generator: torch.Generator,
    ) -> None:
        """`PersonalModel.train` of `clients` (None: all; `data` holds their rows alone)."""
        part = self.params if clients is None else self.take(clients).params
        params = {key: t.contiguous() for key, t in part.items()}
        train_stacked(
            task,
            params,
            data,
            round_index,
            model,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            generator=generator,
            objective=LocalObjective(mu, dict(anchor)),
        )
        for key, t in params.items():
            if clients is None:
                self.params[key].copy_(t)
            else:
                self.params[key][clients] = t

    def take(self, clients: Tensor) -> Self:
        return type(self)({key: t[clients].clone() for key, t in self.params.items()})

    def put(self, clients: Tensor, part: Self) -> None:
        for key, t in part.params.items():
            self.params[key][clients] = t

    def state_dict(self) -> dict[str, Any]:
        return {key: t.clone() for key, t in self.params.items()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.params = {key: t.clone() for key, t in state.items()}


def finetuned_stacked(
    weights: Mapping[str, Tensor],
    task: Task,
    data: StackedData,
    round_index: int,
    model: StackedModel | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """`finetuned` of every client of `data`: the copies [C, ...]."""
    params = _copies(weights, data.num_clients)
    train_stacked(
        task,
        params,
        data,
        round_index,
        model,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        generator=generator,
    )
    return params
