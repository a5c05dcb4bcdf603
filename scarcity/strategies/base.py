"""What a federated strategy is: a client-side hook and a server-side aggregate.

Each round the engine asks the strategy what the participating clients are told to do
(`configure_fit` → `FitInstructions`: a proximal term, a gradient correction), lets the clients
train the shared model, then hands the strategy every participant's model stacked along a
leading client axis (`ClientUpdates`) and takes the new global model from `aggregate`.
Strategies hold their own state (server momentum, optimiser moments, control variates, noise
generator, cluster models) and checkpoint it with `state_dict` / `load_state_dict`.

A personalised strategy also says which model each client uses (`client_model`): the global
one, or a model of the client's own that the engine's clients hold (its local model, a
personal model, a fine-tuned copy) or the server model it chose among `candidates()` (IFCA).
Personal evaluation (`Simulation.score_clients`) scores that model.

A strategy module defines one `Strategy` subclass (or a small family of them), cites its paper in
its docstring, declares the config fields it reads in `params` (`scarcity.params.Param`: the
config is assembled from them) and their values for a request that leaves them unset in
`defaults`, and is listed in `scarcity.strategies.STRATEGIES`. The math lives in small pure
functions over stacked tensors (`scarcity.strategies.functions`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor

from scarcity.accounting import Traffic, tensor_bytes
from scarcity.params import Param, RunConfig

Weights = Mapping[str, Tensor]

#: Which model a client uses, the one personal evaluation scores (`Strategy.client_model`).
ClientModel = Literal["global", "own", "personal", "finetuned", "cluster"]


@dataclass(frozen=True)
class ClientUpdates:
    """What the P participating clients sent back in one round, stacked along axis 0."""

    #: Each client's shared model after local training, e.g. `weight` [P, out, in], `bias` [P, out].
    weights: dict[str, Tensor]
    #: Training samples of each participant [P] (float32): FedAvg's weights.
    sample_counts: Tensor
    #: Each participant's loss of the broadcast global model on its own training data, before
    #: training [P] (float64): q-FedAvg's F_k(w^t).
    initial_loss: Tensor
    #: The participants' client ids [P] (int64, ascending).
    participants: Tensor
    #: Clients in the whole population (N ≥ P).
    num_clients: int
    #: True for the per-client reference execution: weighted means are summed client by client,
    #: as the seed's loop did; False contracts over the client axis. Equal up to float rounding;
    #: the strategies built on FedAvg's mean honour it, so stored runs continue exactly.
    sequential: bool = False
    #: Which of `Strategy.candidates()` each participant chose and trained [P] (int64; IFCA's
    #: cluster estimate); None when every participant received the global model.
    choice: Tensor | None = None


@dataclass(frozen=True)
class FitInstructions:
    """What every participant adds to its local objective this round (the client-side hook).

    The local loss becomes f_i(w) + μ/2·‖w − w_global‖² + ⟨correction_i, w⟩, so each SGD step
    adds μ·(w − w_global) + correction_i to the data gradient (FedProx's proximal term,
    SCAFFOLD's c − c_i). The reported training loss stays the data loss f_i.
    """

    proximal_mu: float = 0.0
    #: Per-participant gradient correction, stacked like `ClientUpdates.weights` ([P, ...]).
    correction: dict[str, Tensor] | None = None
    #: Client-side clipping: each honest client clips its update w_i − w_global to this L2 norm
    #: before sending it (DP-FedAvg with client-side clipping); None = no clipping.
    clip_norm: float | None = None
    #: Ditto: each participant also trains its personal model v by local SGD on
    #: f_i(v) + λ/2·‖v − w_global‖² (this λ) around the broadcast model; None = no personal
    #: model trains.
    personal_mu: float | None = None


class Strategy(ABC):
    """One federated optimisation method; one instance per simulation."""

    #: The registry name (the config's `strategy` value).
    name: ClassVar[str]
    #: Short citation of the paper whose update rule this is.
    paper: ClassVar[str]
    #: One line for users (the strategies listing).
    summary: ClassVar[str]
    #: The config fields this strategy reads, declared here (a field several strategies read
    #: is declared once, by the first, and listed by each): the config is assembled from them.
    params: ClassVar[tuple[Param, ...]] = ()
    #: The value of each field it reads that a request leaving it unset (null) gets.
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Whether `aggregate` reads `ClientUpdates.initial_loss` (else the batched execution may
    #: skip measuring it and pass zeros).
    uses_initial_loss: ClassVar[bool] = False
    #: The model each client uses, which personal evaluation scores: "global" the server's
    #: global model; "own" a model only the client trains (its shared model, started from
    #: the common initial model and never broadcast to again); "personal" a personal model
    #: the clients keep beside the shared one (trained as `FitInstructions.personal_mu` says);
    #: "finetuned" a copy of the global model each client fine-tunes on its own training rows
    #: (`finetune_epochs`) before it is scored; "cluster" the server model among
    #: `candidates()` it chose when it last took part.
    client_model: ClassVar[ClientModel] = "global"

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    @classmethod
    def resolve(cls, config: RunConfig, participants: int) -> dict[str, Any]:
        """The values of this strategy's unset (None) config fields, for a run drawing
        `participants` clients a round; raises `ConfigError` naming the field when
        the config is one the strategy cannot run. The default: `defaults`."""
        return {
            name: value for name, value in cls.defaults.items() if getattr(config, name) is None
        }

    def configure_fit(
        self, round_index: int, global_weights: Weights, participants: Tensor
    ) -> FitInstructions:
        """What the participants (client ids [P]) are told to do in round `round_index`."""
        return FitInstructions()

    @abstractmethod
    def aggregate(
        self, round_index: int, global_weights: Weights, updates: ClientUpdates
    ) -> dict[str, Tensor]:
        """The new global model from the current one and the participants' models."""

    def traffic(
        self, global_weights: Weights, instructions: FitInstructions, updates: ClientUpdates
    ) -> Traffic:
        """The bytes this round of the strategy moves between the server and the participants
        (`scarcity.accounting`), asked before `aggregate`. The default: the global model down
        to each participant, each participant's model up, and its loss of the global model
        when the strategy reads it (`uses_initial_loss`: q-FedAvg's F_k). A strategy that moves
        something else (control variates, several models, nothing) says so here."""
        participants = int(updates.participants.shape[0])
        up = tensor_bytes(updates.weights)
        if self.uses_initial_loss:
            up += tensor_bytes([updates.initial_loss])
        return Traffic(up=up, down=participants * tensor_bytes(global_weights))

    def round_metrics(self) -> dict[str, float]:
        """Figures of the last aggregate worth reporting with the round (e.g. DP noise)."""
        return {}

    def round_lines(self, detail: bool) -> list[str]:
        """Lines of the last aggregate for the round's log (`detail`: per-client lines are
        wanted, a small run)."""
        return []

    @property
    def num_models(self) -> int:
        """How many models the server keeps: more than one are `candidates()`, which the
        engine draws at the start (`start`)."""
        return 1

    def start(self, models: Mapping[str, Tensor]) -> None:  # noqa: B027 (one model: no-op)
        """The `num_models` initial server models, stacked [num_models, ...]."""

    def candidates(self) -> dict[str, Tensor] | None:
        """The server models each participant chooses one from, by its loss on its own
        training rows, stacked [C, ...] (IFCA's clusters); None: the global model is
        broadcast."""
        return None

    def finetune_epochs(self) -> int:
        """`client_model` "finetuned": the local epochs of each client's fine-tuning."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        """Everything `aggregate` / `configure_fit` carry from round to round."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (stateless: no-op)
        """Continue exactly from `state_dict()`'s value."""
