"""The client population a round runs on: one interface, two executions.

`Simulation.run_round` talks to the clients only through `ClientPopulation`: broadcast the
global model to this round's participants, let them fit it (with the strategy's
`FitInstructions`), read back their models stacked along a leading client axis (`FitResult`),
then insights, statistics, meta-parameters, gossip and expert usage, and the model each client
uses when its strategy personalises (`scarcity.components.client_models`). `ReferencePopulation`
(`scarcity.core.population`) holds one `Client` object per client, the readable definition;
`ClientPool` (`scarcity.batched`) holds every client as tensors with a leading client axis.
Both take the same random draws in the same order, so they agree up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from torch import Tensor

from scarcity.components.client_models import ClientModels
from scarcity.core.gossip import GossipScheduler, WeightedPair
from scarcity.results import Insight
from scarcity.strategies.base import FitInstructions

if TYPE_CHECKING:
    from scarcity.core.data import FederatedData


@dataclass(frozen=True)
class FitResult:
    """What the participants' local round produced."""

    #: The participants' client ids [P] (int64, ascending).
    participants: Tensor
    #: Mean training loss over the participants (the round's `loss` metric).
    mean_loss: float
    #: Each participant's shared model after training, stacked [P, ...]; None without FedAvg.
    weights: dict[str, Tensor] | None
    #: Each participant's training samples [P] (float32).
    sample_counts: Tensor
    #: Each participant's loss of the broadcast model before training [P] (float64; zeros
    #: when nothing asked for it).
    initial_loss: Tensor


class ClientPopulation(Protocol):
    """Every client of a simulation, whichever execution holds them."""

    #: Whether weighted means over clients are summed client by client (the reference).
    sequential: bool
    #: Where `Simulation.checkpoint` keeps this population's state.
    checkpoint_key: str

    def set_data(self, data: FederatedData) -> None:
        """From now on the clients hold `data`'s rows (a scenario's new segment)."""

    def broadcast(self, weights: Mapping[str, Tensor], participants: Tensor) -> None:
        """The participants' shared models start the round from `weights`."""

    def fit(
        self,
        round_index: int,
        instructions: FitInstructions,
        global_weights: Mapping[str, Tensor] | None,
        participants: Tensor,
    ) -> FitResult:
        """One local round of every participant (the others keep their state untouched)."""
        ...

    def insights(self) -> list[Insight]:
        """Each participant's insight of the last round."""
        ...

    def insight_bytes(self, insights: Sequence[Insight]) -> int:
        """Σ `accounting.insight_bytes` of `insights()` (the list it returned)."""
        ...

    # The model each client uses, as the strategy's `client_model` asks.
    def start_personal(self, weights: Mapping[str, Tensor]) -> None:
        """Every client's personal model starts as `weights` (Ditto's v⁰ = w⁰)."""

    def own_models(self) -> ClientModels:
        """Every client's shared model as it holds it (`local`: its own model)."""
        ...

    def personal_models(self) -> ClientModels:
        """Every client's personal model (Ditto)."""
        ...

    def finetuned_models(
        self, weights: Mapping[str, Tensor], round_index: int, epochs: int
    ) -> ClientModels:
        """A copy of `weights` fine-tuned by every client on its rows of round `round_index`."""
        ...

    def choose(
        self, round_index: int, candidates: Mapping[str, Tensor], participants: Tensor
    ) -> Tensor:
        """IFCA: each participant estimates its cluster among the `candidates` [k, ...] (the
        lowest loss on its rows of the round), keeps the estimate and starts the round from
        that model; returns the estimates [P]."""
        ...

    def cluster_choices(self, round_index: int, candidates: Mapping[str, Tensor]) -> Tensor:
        """Every client's kept estimate [N]; one that never took part, the cluster it would
        choose now on its rows of round `round_index` (not kept)."""
        ...

    def chosen_models(self, candidates: Mapping[str, Tensor], choices: Tensor) -> ClientModels:
        """Every client's model: the candidate `choices` [N] names."""
        ...

    def ensemble_scores(
        self,
        shared: tuple[Tensor, Tensor] | None,
        own: Sequence[tuple[Tensor, Tensor]] | None,
    ) -> tuple[Tensor, Tensor]:
        """Each participant's ensemble loss and accuracy (NaN for regression), float64 [P]:
        on the `shared` test set, or on its `own` held-out rows (one pair per participant)."""
        ...

    def encoders(self) -> tuple[Tensor, Tensor]:
        """Each participant's representation for the linear probe (`label_free`): its
        router's pick's encoder, else every expert's stacked; weight [P, z, d], bias [P, z]."""
        ...

    def statistics(self) -> dict[str, float]:
        """Cross-participant means of the last round's insights (`Server.aggregate_insights`)."""
        ...

    def receive_meta_params(self, params: dict[str, float]) -> None: ...

    def stacked_expert_weights(self, expert: int, clients: Tensor) -> dict[str, Tensor]:
        """Expert `expert`'s weights of `clients`, [C, ...] each (`Expert.get_weights` keys):
        what `meta_init` reads."""
        ...

    def every_expert_weights(self, clients: Tensor) -> list[dict[str, Tensor]]:
        """`stacked_expert_weights` of every expert, in order."""
        ...

    def set_stacked_expert_weights(
        self, expert: int, clients: Tensor, weights: Mapping[str, Tensor]
    ) -> None:
        """Expert `expert` of every one of `clients` set to `weights` (`meta_init`'s start)."""

    def gossip(
        self, scheduler: GossipScheduler, rng: np.random.Generator
    ) -> list[tuple[int, int, str]]:
        """Disjoint pairs of the last round's participants each average one random expert:
        (a, b, expert name)."""
        ...

    def sync_pairs(self, pairs: Sequence[WeightedPair]) -> list[tuple[int, int, str]]:
        """Each server-made pair (a, b, expert, a's weight) ends with the weighted average of
        that expert: (a, b, expert name)."""
        ...

    def drift_alarms(self) -> list[int]:
        """The last round's participants whose `drift_detector` alarmed (ids, ascending)."""
        ...

    def expert_bytes(self, name: str) -> int:
        """Bytes of one client's weights of expert `name`, what a gossip pair exchanges
        (`scarcity.accounting`)."""
        ...

    def expert_usage(self) -> dict[str, int]:
        """How many participants trained each expert in the last round (routing on)."""
        ...

    def client_lines(self) -> list[tuple[int, float, str]]:
        """(client id, loss, selected expert) of every participant, for the round log."""
        ...

    def check_finite(self, fail: Callable[[str], None]) -> None:
        """Call `fail(path)` for the first quantity of the last round that is NaN or inf."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> None: ...
