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

The modules: `training` (local SGD: one per-client trainer, one stacked trainer),
`structure_discovery` (autoencoders), `memory` (replay), `adaptation` (learning rates),
`routing`, `summaries` (data statistics and drift), `insights` (assembly), `personal`
(evaluation), and `objective`, the strategy's client terms both trainers add to the loss.
`scarcity.core.Client` composes the per-client forms, `ClientPool` the stacked ones (its
`COMPONENTS` table samples and checkpoints them).

What a new per-client figure costs: a new summary key of a component (drift, replay, rates,
data statistics) is its module alone — both forms report through `summary()` / `observe()`
into the insight's expert summaries; a new training statistic of a model is
`training` (its two trainers), each backbone's stacked step where it is measured during the
steps, and one `insights.SUPERVISED_KEYS` name. A new client term is `objective` (the term,
its closed-form gradient, how it reaches the stacked rows), the `FitInstructions` field that
carries it and the strategy parameter that sets it.

Every module has its test beside it (tests/scarcity/components/test_<module>.py): the stacked
form equals the per-client form on literal inputs (1e-6), and a run of each execution agrees
(1e-5, tests/scarcity/test_batched.py).
"""

from __future__ import annotations

from typing import Any, Protocol, Self

from torch import Tensor


class StackedComponent(Protocol):
    """The part of the contract `ClientPool` relies on to sample, checkpoint and report."""

    def take(self, clients: Tensor) -> Self:
        """The state of `clients` alone (copies), a component of len(clients) clients."""
        ...

    def put(self, clients: Tensor, part: Self) -> None:
        """Write back what `take(clients)` returned, after its round."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...


def select_rows(state: Any, clients: Tensor) -> Any:
    """Every tensor of a nested state (dicts, lists) with only the rows `clients`."""
    if isinstance(state, Tensor):
        return state[clients]
    if isinstance(state, dict):
        return {key: select_rows(value, clients) for key, value in state.items()}
    return [select_rows(value, clients) for value in state]
