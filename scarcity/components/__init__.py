"""Client components: each behaviour of an SF-HFE client, per client and stacked, side by side.

A client's round is a composition of components (local training, structure discovery,
memory replay, learning-rate adaptation, routing, data summaries and drift, insight assembly,
personal evaluation). Each component's module holds two forms of the same rule:

- the per-client form, what one `scarcity.core.Client` (or one of its experts) holds and
  runs: plain floats and one model, the readable definition;
- the stacked form, what `scarcity.batched.ClientPool` holds for every client at once:
  tensors with a leading client axis `[N, …]`.

The contract both forms keep (the stacked one names the clients it works on):

- create: the constructor makes the state of one client, or of N (`num_clients`);
- train: one method that takes this round's rows (or this epoch's losses) and updates the
  state, in the reference's order of random draws (`scarcity.batched.draws`);
- report: `summary()` returns what the component shows in an insight — floats per client,
  or float64 `[N]` tensors under the same keys;
- `state_dict()` / `load_state_dict()`: what a checkpoint keeps, in the layout stored runs
  already have (a component never changes a stored layout; it translates an old one on load);
- stacked only: `take(clients)` / `put(clients, part)`, the state of a round's sampled
  participants as a component of its own and its write-back.

The modules: `data` (each client's rows of a round, padded, and the drift rule), `training`
(local SGD: one per-client trainer, one stacked trainer, and a round's supervised training),
`structure_discovery` (autoencoders, and a round's self-supervised training), `memory`
(replay), `adaptation` (learning rates), `routing`, `summaries` (data statistics and drift,
every expert's summary), `drift_detection` (DriftExpert's detector on the training-loss
stream), `insights` (assembly), `personal` (evaluation), and `objective`, the
strategy's client terms both trainers add to the loss. `scarcity.core.Client` composes the
per-client forms, `ClientPool` the stacked ones: a stacked component's round reads the clients
it runs on through `StackedClients`, and `ClientPool`'s `COMPONENTS` table samples
(`take_part` / `put_part`) and checkpoints (`components_state`) them.

What a new per-client figure costs (the recount; files touched, tests aside):

- a new top-level figure of the insight computed from what a round already measures (the
  round's means of the training report: loss, initial and final loss, uncertainty, mean
  |gradient|): 1 file, `scarcity/results.py` — one `Insight` field whose `figure` metadata
  holds its description and its computation, one expression for both forms. `CLIENT_FIGURES`
  lists those fields; `Insight.to_dict()`, both executions' insight assembly
  (`insights.client_insight`, `insights.build_insights`) and the API's insight schema
  (`app/schemas.py`'s `ClientInsightPublic`) are derived from it;
- a new top-level figure from a new training statistic (as `mean_grad` was): 3 files —
  `components/training.py` (the statistic, both forms: a `HeadStats` field computed in
  `fit_stacked` and a key of `train_supervised`'s report; `SUPERVISED_KEYS` and the round's
  means, `insights.ROUND_KEYS`, follow), `components/structure_discovery.py` (its value in a
  label-free round, `self_supervised_report` and its stacked form) and `scarcity/results.py`
  (the `Insight` field). Where it is measured inside the SGD step, each backbone's stacked step
  too (`batched/linear.py`, `batched/models.py`);
- a new training statistic of a model, shown in each expert's metrics only: 2 files,
  `components/training.py` and `components/structure_discovery.py` (as above);
- a new summary key of a component (drift, replay, rates, data statistics): its module alone
  — both forms report through `summary()` / `observe()` into the insight's expert summaries.

A new client term: 3 files — `components/objective.py` (the term, its closed-form gradient,
how it reaches the stacked rows), `scarcity/strategies/base.py` (the `FitInstructions` field
that carries it) and the strategy's module (the parameter that sets it).

Every module has its test beside it (tests/scarcity/components/test_<module>.py): the stacked
form equals the per-client form on literal inputs (1e-6), and a run of each execution agrees
(1e-5, tests/scarcity/test_batched.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Self

from torch import Tensor

if TYPE_CHECKING:
    from scarcity.batched.models import StackedModel
    from scarcity.batched.weights import WeightKeys
    from scarcity.components.adaptation import LearningRateAdaptation
    from scarcity.components.data import StackedData
    from scarcity.components.memory import ReplayBuffers
    from scarcity.components.structure_discovery import StackedAutoencoders
    from scarcity.components.summaries import DataSummaries
    from scarcity.config import SimulationConfig
    from scarcity.core.training import Task


class StackedComponent(Protocol):
    """The part of the contract `ClientPool` relies on to sample, checkpoint and report."""

    def take(self, clients: Tensor) -> Self:
        """The state of `clients` alone (copies), a component of len(clients) clients."""
        ...

    def put(self, clients: Tensor, part: Self) -> None:
        """Write back what `take(clients)` returned, after its round."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


class StackedClients(Protocol):
    """What a stacked component's round reads of the clients it runs on (`ClientPool`, or
    the part of it a round's participants are): setup, data, weights, the other components."""

    config: SimulationConfig
    task: Task
    #: The expert portfolio, and the memory and meta-adaptation experts' index (None: absent).
    names: tuple[str, ...]
    memory: int | None
    meta: int | None
    data: StackedData
    #: Every stacked weight [N, ...] (`scarcity.batched.weights`) and which is which.
    w: dict[str, Tensor]
    keys: WeightKeys
    #: The backbone's stacked form (None: linear heads, the closed-form step).
    stacked_model: StackedModel | None
    #: Whether the per-client details (initial and final loss, uncertainty) are measured.
    details: bool
    #: The autoencoders' Adam rate this round.
    ssl_lr: float
    autoencoders: StackedAutoencoders
    buffers: ReplayBuffers
    summaries: DataSummaries
    adaptation: LearningRateAdaptation


def select_rows(state: Any, clients: Tensor) -> Any:
    """Every tensor of a nested state (dicts, lists) with only the rows `clients`."""
    if isinstance(state, Tensor):
        return state[clients]
    if isinstance(state, dict):
        return {key: select_rows(value, clients) for key, value in state.items()}
    return [select_rows(value, clients) for value in state]


def components_state(owner: object, table: Mapping[str, str | None]) -> dict[str, Any]:
    """The checkpoint state of `owner`'s components (attribute → where the state goes; None:
    its keys at the top, as stored runs have them)."""
    state: dict[str, Any] = {}
    for name, key in table.items():
        part = getattr(owner, name).state_dict()
        if key is None:
            state.update(part)
        else:
            state[key] = part
    return state


def load_components(owner: object, table: Mapping[str, str | None], state: Any) -> None:
    """Restore what `components_state` wrote."""
    for name, key in table.items():
        getattr(owner, name).load_state_dict(state if key is None else state[key])


def take_part(owner: Any, clients: Tensor, components: Iterable[str]) -> Any:
    """`owner` (a `StackedClients`) for `clients` alone: a shallow copy whose stacked weights
    `w` and `components` hold those clients' rows (copies); config and generators shared."""
    part = copy.copy(owner)
    part.w = select_rows(owner.w, clients)
    for name in components:
        setattr(part, name, getattr(owner, name).take(clients))
    return part


def put_part(owner: Any, clients: Tensor, part: Any, components: Iterable[str]) -> None:
    """Write back what `take_part(owner, clients, …)` handed out, after its round."""
    for key, t in part.w.items():
        owner.w[key][clients] = t
    for name in components:
        getattr(owner, name).put(clients, getattr(part, name))
