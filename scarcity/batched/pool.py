"""Every client of a simulation as tensors with a leading client dimension (the batched path).

`ClientPool` holds what N `Client` objects hold and runs `Client.train_round` for all clients
at once, as a composition of the stacked client components (`scarcity.components`): padded
data and drift, stacked weights (`weights`), supervised training, structure discovery, replay,
rate adaptation, data summaries, routing, insights and personal evaluation, and, as the
strategy's `client_model` asks, Ditto's personal models (`personal_models`) or IFCA's cluster
estimates (`clusters`); with `replay_size`, every client's reservoir of past training rows
(`replay`). Random draws are taken in the reference's order (`draws`), so for the
same config both paths compute the same numbers up to float rounding. Row layout: [N, K, ...]
for experts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scarcity.accounting import insight_bytes
from scarcity.backbones import make_backbone
from scarcity.batched.draws import draw_config_round
from scarcity.batched.models import StackedModel
from scarcity.batched.weights import WeightKeys, initial_weights
from scarcity.components import components_state, load_components, put_part, take_part
from scarcity.components.adaptation import LearningRateAdaptation
from scarcity.components.client_models import StackedModels
from scarcity.components.clusters import (
    StackedClusterChoices,
    choose,
    stacked_candidate_losses,
)
from scarcity.components.data import StackedData
from scarcity.components.drift_detection import StackedDetectors, reinit_generator
from scarcity.components.insights import PoolRound, build_insights, check_finite, statistics
from scarcity.components.memory import ReplayBuffers
from scarcity.components.personal import participant_representations, participant_scores
from scarcity.components.personal_models import (
    DITTO_STREAM,
    FINETUNE_STREAM,
    StackedPersonalModels,
    finetuned_stacked,
    round_generator,
)
from scarcity.components.replay import RowReservoirs, reservoir_generator
from scarcity.components.routing import ExpertLosses, StackedRouter
from scarcity.components.structure_discovery import StackedAutoencoders, train_autoencoders_round
from scarcity.components.summaries import DataSummaries, expert_summaries
from scarcity.components.training import train_heads_round
from scarcity.config import SimulationConfig
from scarcity.core.data import FederatedData
from scarcity.core.experts import expert_index, portfolio
from scarcity.core.gossip import (
    GossipScheduler,
    WeightedPair,
    stacked_gossip_round,
    stacked_weighted_gossip,
)
from scarcity.core.training import LocalObjective, ssl_rate
from scarcity.population import FitResult
from scarcity.results import Insight
from scarcity.strategies.base import ClientModel, FitInstructions


class ClientPool:
    """All N clients and their batched round: a `ClientPopulation`, and the `StackedClients`
    its components' rounds read."""

    sequential = False
    #: Where `Simulation.checkpoint` keeps this population's state.
    checkpoint_key = "pool"
    #: The stacked components (`scarcity.components`'s contract) → where the checkpoint keeps
    #: each one's state (None: its keys at the top, as always stored).
    COMPONENTS: dict[str, str | None] = {
        "autoencoders": None,
        "buffers": "memory",
        "summaries": "previous_mean",
        "adaptation": "lr",
        "router": "router",
    }

    def __init__(
        self,
        config: SimulationConfig,
        data: FederatedData,
        generator: torch.Generator,
        rng: np.random.Generator,
        *,
        measure_initial_loss: bool = False,
        client_model: ClientModel = "global",
    ) -> None:
        cfg = self.config = config
        self.task, self.generator, self.rng = data.task, generator, rng
        self.names = portfolio(cfg)
        self.memory = expert_index(self.names, "MemoryConsolidationExpert")
        self.meta = expert_index(self.names, "MetaAdaptationExpert")
        self.data = StackedData.of(data)
        self.backbone = make_backbone(cfg)
        keys = self.keys = WeightKeys.of(self.backbone)
        self.shared_keys, self.head_keys, self.expert_keys = keys.shared, keys.head, keys.expert
        self.stacked_model = None if self.backbone.closed_form else StackedModel(self.backbone)
        n, k, d, latent = self.data.num_clients, len(self.names), cfg.input_dim, cfg.latent_dim
        self.w = initial_weights(self.backbone, keys, n, k, d, latent, generator)
        if cfg.router_strategy == "loss" and k:  # `ReferencePopulation`: client 0's heads
            for key in keys.head.values():
                self.w[key][:] = self.w[key][0].clone()
        self.autoencoders = StackedAutoencoders(self.w)
        self.buffers = ReplayBuffers(n, cfg.memory_capacity, d, latent)
        self.summaries = DataSummaries(n)
        self.adaptation = LearningRateAdaptation.of(n, cfg)
        self.router = StackedRouter(n, self.names, cfg.router_strategy, cfg.variance_threshold, rng)
        #: `loss` routing's measures, kept to skip the heads unchanged since (not checkpointed).
        self.expert_losses = ExpertLosses()
        self.meta_params: dict[str, float] = {}
        #: The autoencoders' Adam rate: `ssl_learning_rate`, or its share of the broadcast.
        self.ssl_lr = cfg.ssl_learning_rate
        #: Whether the per-client details (initial/final loss, uncertainty) are measured: only
        #: insights (insight exchange, meta-learning) and q-FedAvg's initial loss read them.
        self.details = cfg.insight_exchange or cfg.meta_learning or measure_initial_loss
        self.last: PoolRound | None = None
        #: The last round's participants when they were a sample (None = every client).
        self.active: Tensor | None = None
        #: What the strategy's `client_model` has the clients keep, checkpointed beside the
        #: other components (only then: a stored run's layout is unchanged).
        self.components = dict(self.COMPONENTS)
        self.personal: StackedPersonalModels | None = None
        self.clusters: StackedClusterChoices | None = None
        if client_model == "personal":
            zeros = {name: torch.zeros_like(self.w[key]) for name, key in self.shared_keys.items()}
            self.personal = StackedPersonalModels(zeros)
            self.components["personal"] = "personal"
        elif client_model == "cluster":
            self.clusters = StackedClusterChoices.of(n)
            self.components["clusters"] = "clusters"
        #: `drift_detector`: every client's detector (checkpointed only then) and the
        #: participants it alarmed in the last round.
        self.detectors: StackedDetectors | None = None
        self.alarmed: list[int] = []
        if cfg.drift_detector != "none":
            self.detectors = StackedDetectors(n, cfg.drift_detector)
            self.components["detectors"] = "drift_losses"
        #: The components a round's participants take with them (`take_part`).
        self.round_components: tuple[str, ...] = tuple(self.COMPONENTS)
        self.replay: RowReservoirs | None = None
        if cfg.replay_size > 0:
            base = self.data
            self.replay = RowReservoirs.empty(n, cfg.replay_size, base.base_x, base.base_y)
            self.components["replay"] = "replay"
            self.round_components = (*self.round_components, "replay")

    @property
    def ragged_sizes(self) -> Tensor | None:
        return self.data.ragged_sizes

    @property
    def real_rows(self) -> Tensor | None:
        return self.data.real_rows

    @property
    def adam(self) -> dict[str, Tensor]:
        """The autoencoders' Adam moments, `m.enc_w` … [N, K, ...]."""
        return self.autoencoders.adam

    def train_round(self, round_index: int, objective: LocalObjective | None = None) -> PoolRound:
        """`Client.train_round` for every client, kept for insights; `objective`: the
        strategy's terms for the shared models, corrections stacked [N, ...]."""
        cfg = self.config
        x, y = self.data.round(round_index)
        self.adaptation.start_round()
        meta_lr = self.meta_params.get("lr") if cfg.apply_meta_params else None
        if meta_lr is not None:  # `Client.train_round`: the broadcast rate replaces the base
            self.adaptation.base_lr = meta_lr
            self.ssl_lr = ssl_rate(cfg, meta_lr) if cfg.label_free else self.ssl_lr
        chosen = None
        if cfg.expert_routing:
            losses = None
            if cfg.router_strategy == "loss":  # `Client.route`: each head's loss, before training
                heads = {name: self.w[key] for name, key in self.head_keys.items()}
                losses = self.expert_losses.measure(
                    self.task, heads, x, y, self.ragged_sizes, self.stacked_model
                )
            chosen = self.router.select(x, self.ragged_sizes, losses)
        k = len(self.names)
        sizes = self.data.sizes
        if self.replay is None:
            train_x, train_y, train_sizes = x, y, None
        else:  # supervised training passes over the round's rows and the buffer's
            train_x, train_y, train_sizes = self.replay.union(x, y, sizes)
        draws = draw_config_round(self.generator, cfg, sizes, chosen, k, self.memory, train_sizes)
        shared = ssl = replay = report = None
        supervised: dict[str, Tensor] = {}
        if not cfg.label_free:
            ragged = None
            if train_sizes is not None and bool((train_sizes != train_sizes[0]).any()):
                ragged = train_sizes
            shared, supervised = train_heads_round(
                self, train_x, train_y, chosen, draws, objective, ragged, self.replay is not None
            )
        if cfg.structure_discovery:
            ssl, replay, report = train_autoencoders_round(self, x, draws)
        observed = expert_summaries(self, self.data.offset(round_index))
        if self.replay is not None:  # the round's rows are offered after its training
            self.replay.offer(x, y, sizes, None, reservoir_generator(cfg.seed, round_index))
        self.last = PoolRound.of(shared, supervised, report, chosen, ssl, replay, observed)
        return self.last

    # -- the population interface ----------------------------------------------------------
    def set_data(self, data: FederatedData) -> None:
        """From now on the clients hold `data`'s rows (a scenario's new segment)."""
        self.data = StackedData.of(data)

    def broadcast(self, weights: Mapping[str, Tensor], participants: Tensor) -> None:
        """The participants' shared models start the round from the global `weights`."""
        rows = slice(None) if len(participants) == self.data.num_clients else participants
        for name, key in self.shared_keys.items():
            self.w[key][rows] = weights[name]

    def fit(
        self,
        round_index: int,
        instructions: FitInstructions,
        global_weights: Mapping[str, Tensor] | None,
        participants: Tensor,
    ) -> FitResult:
        """One batched local round of the participants; the others stay untouched."""
        objective = LocalObjective.of(instructions, global_weights)
        everyone = len(participants) == self.data.num_clients
        self.active = None if everyone else participants
        if everyone:  # the stacked tensors themselves, no copies
            last = self.train_round(round_index, objective)
        else:
            part = take_part(self, participants, ("data", *self.round_components))
            last = self.last = part.train_round(round_index, objective)
            put_part(self, participants, part, self.round_components)
        if self.detectors is not None:
            self._detect_drift(participants, last)
        if instructions.personal_mu is not None:
            assert global_weights is not None
            self._train_personal(round_index, participants, global_weights, instructions)
        weights = None
        if global_weights is not None:
            weights = {name: self.w[key][self._rows()] for name, key in self.shared_keys.items()}
        return FitResult(
            participants=participants,
            mean_loss=float(last.loss.mean()),
            weights=weights,
            sample_counts=self.sample_counts()[participants],
            initial_loss=last.initial_loss,
        )

    def _detect_drift(self, participants: Tensor, last: PoolRound) -> None:
        """`Client._detect_drift` for every participant: the routed expert's training loss
        to each detector; each alarmed client's trained head is drawn afresh (from the same
        generator as the reference's) and its router's counts reset."""
        assert self.detectors is not None and last.selected is not None
        ids = participants.tolist()
        self.alarmed = self.detectors.observe(ids, last.supervised["train_loss"][:, 0])
        for c in self.alarmed:
            expert = int(last.selected[ids.index(c)])
            generator = reinit_generator(self.config.seed, c, self.detectors.seen(c))
            fresh = self.backbone.draw(generator)
            for name, key in self.head_keys.items():
                self.w[key][c, expert] = fresh[name]
            self.router.usage[c] = 0

    def sync_pairs(self, pairs: Sequence[WeightedPair]) -> list[tuple[int, int, str]]:
        return stacked_weighted_gossip(self.w, self.expert_keys, self.names, pairs)

    def drift_alarms(self) -> list[int]:
        return list(self.alarmed)

    def _train_personal(
        self,
        round_index: int,
        participants: Tensor,
        anchor: Mapping[str, Tensor],
        instructions: FitInstructions,
    ) -> None:
        """Ditto: the participants' personal models train around the broadcast `anchor`."""
        assert self.personal is not None and instructions.personal_mu is not None
        cfg = self.config
        everyone = len(participants) == self.data.num_clients
        self.personal.train(
            self.task,
            None if everyone else participants,
            self.data if everyone else self.data.take(participants),
            round_index,
            anchor,
            instructions.personal_mu,
            self.stacked_model,
            epochs=cfg.local_epochs,
            batch_size=cfg.batch_size,
            lr=cfg.learning_rate,
            generator=round_generator(cfg.seed, DITTO_STREAM, round_index),
        )

    # -- the model each client uses (`scarcity.components.client_models`) ------------------
    def start_personal(self, weights: Mapping[str, Tensor]) -> None:
        assert self.personal is not None
        self.personal.start(weights)

    def own_models(self) -> StackedModels:
        own = {name: self.w[key] for name, key in self.shared_keys.items()}
        return StackedModels(own, self.stacked_model)

    def personal_models(self) -> StackedModels:
        assert self.personal is not None
        return StackedModels(self.personal.params, self.stacked_model)

    def finetuned_models(
        self, weights: Mapping[str, Tensor], round_index: int, epochs: int
    ) -> StackedModels:
        cfg = self.config
        params = finetuned_stacked(
            weights,
            self.task,
            self.data,
            round_index,
            self.stacked_model,
            epochs=epochs,
            batch_size=cfg.batch_size,
            lr=cfg.learning_rate,
            generator=round_generator(cfg.seed, FINETUNE_STREAM, round_index),
        )
        return StackedModels(params, self.stacked_model)

    def _candidate_losses(
        self, round_index: int, candidates: Mapping[str, Tensor], clients: Tensor
    ) -> Tensor:
        """Each of `clients`' loss of every candidate on its rows of the round [C, k]."""
        everyone = len(clients) == self.data.num_clients
        data = self.data if everyone else self.data.take(clients)
        x, y = data.round(round_index)
        return stacked_candidate_losses(
            self.task, candidates, x, y, data.ragged_sizes, self.stacked_model
        )

    def choose(
        self, round_index: int, candidates: Mapping[str, Tensor], participants: Tensor
    ) -> Tensor:
        assert self.clusters is not None
        losses = self._candidate_losses(round_index, candidates, participants)
        chosen = self.clusters.choose(losses, participants)
        for name, key in self.shared_keys.items():
            self.w[key][participants] = candidates[name][chosen]
        return chosen

    def cluster_choices(self, round_index: int, candidates: Mapping[str, Tensor]) -> Tensor:
        assert self.clusters is not None
        kept = self.clusters.cluster.clone()
        unset = (kept < 0).nonzero().squeeze(1)
        if len(unset):  # never took part: the cluster it would choose now (not kept)
            losses = self._candidate_losses(round_index, candidates, unset)
            kept[unset] = choose(losses)
        return kept

    def chosen_models(self, candidates: Mapping[str, Tensor], choices: Tensor) -> StackedModels:
        return StackedModels(candidates, self.stacked_model, choices)

    def _rows(self) -> Tensor | slice:
        """The last round's participants' rows of the stacked tensors."""
        return slice(None) if self.active is None else self.active

    # -- results --------------------------------------------------------------------------
    @property
    def last_round(self) -> PoolRound:
        assert self.last is not None
        return self.last

    def client_lines(self) -> list[tuple[int, float, str]]:
        ids = range(self.data.num_clients) if self.active is None else self.active.tolist()
        return self.last_round.lines(self.names, ids)

    def expert_usage(self) -> dict[str, int]:
        return self.last_round.usage(self.names)

    def statistics(self) -> dict[str, float]:
        return statistics(self.last_round, self.memory is not None) if self.names else {}

    def check_finite(self, fail: Callable[[str], None]) -> None:
        check_finite(self.last_round, fail)

    def ensemble_scores(
        self, shared: tuple[Tensor, Tensor] | None, own: Sequence[tuple[Tensor, Tensor]] | None
    ) -> tuple[Tensor, Tensor]:
        return participant_scores(self, self._rows(), self.last_round.selected, shared, own)

    def encoders(self) -> tuple[Tensor, Tensor]:
        return participant_representations(self, self._rows(), self.last_round.selected)

    def insights(self) -> list[Insight]:
        ids = None if self.active is None else self.active.tolist()
        return build_insights(self.last_round, self.names, self.memory, ids)

    def insight_bytes(self, insights: Sequence[Insight]) -> int:
        """Σ `insight_bytes` of the round's insights, measuring one per selected expert: the
        insights of a round carry the same figures and summaries, and the metrics of what the
        client trained (every expert, or the one it selected), so those that selected the same
        expert are as long."""
        if not insights:
            return 0
        selected = self.last_round.selected
        if selected is None:
            return len(insights) * insight_bytes(insights[0])
        counts = torch.bincount(selected, minlength=len(self.names))
        first = torch.full((len(self.names),), len(selected), dtype=torch.long)
        first.scatter_reduce_(0, selected, torch.arange(len(selected)), "amin")
        return sum(
            count * insight_bytes(insights[i])
            for count, i in zip(counts.tolist(), first.tolist(), strict=True)
            if count
        )

    # -- shared model, meta-parameters, gossip, checkpoint ---------------------------------
    def sample_counts(self) -> Tensor:
        """Every client's training samples, FedAvg's weights [N]."""
        return self.data.sizes.float()

    def receive_meta_params(self, params: dict[str, float]) -> None:
        self.meta_params = dict(params)

    def expert_weights(self, client: int, expert: int) -> dict[str, Tensor]:
        """One expert's weights in `Expert.get_weights` form (keys `part.param`)."""
        return {name: self.w[key][client, expert].clone() for key, name in self.expert_keys.items()}

    def stacked_expert_weights(self, expert: int, clients: Tensor) -> dict[str, Tensor]:
        """Expert `expert`'s weights of `clients`, [C, ...] each (`Expert.get_weights` keys)."""
        keys = self.expert_keys.items()  # a copy: index_select gathers faster than indexing
        return {name: self.w[key][:, expert].index_select(0, clients) for key, name in keys}

    def every_expert_weights(self, clients: Tensor) -> list[dict[str, Tensor]]:
        """`stacked_expert_weights` of every expert, in order, as views [C, ...] (strided):
        of the weights themselves when `clients` are everyone, else of one copy per key."""
        everyone = len(clients) == self.data.num_clients  # the ascending participants
        out: list[dict[str, Tensor]] = [{} for _ in self.names]
        for key, name in self.expert_keys.items():
            t = self.w[key] if everyone else self.w[key].index_select(0, clients)
            for e in range(len(self.names)):
                out[e][name] = t[:, e]
        return out

    def set_stacked_expert_weights(
        self, expert: int, clients: Tensor, weights: Mapping[str, Tensor]
    ) -> None:
        """Expert `expert` of every one of `clients` set to `weights` (one value each)."""
        for key, name in self.expert_keys.items():
            self.w[key][clients, expert] = weights[name]

    def gossip(
        self, scheduler: GossipScheduler, rng: np.random.Generator
    ) -> list[tuple[int, int, str]]:
        among = None if self.active is None else self.active.tolist()
        return stacked_gossip_round(self.w, self.expert_keys, self.names, scheduler, rng, among)

    def expert_bytes(self, name: str) -> int:
        expert = self.names.index(name)
        return sum(
            self.w[key][0, expert].numel() * self.w[key].element_size() for key in self.expert_keys
        )

    def state_dict(self) -> dict[str, Any]:
        weights = {key: t.clone() for key, t in self.w.items()}
        state = {"weights": weights, **components_state(self, self.components)}
        return {**state, "meta_params": dict(self.meta_params)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w = {key: t.clone() for key, t in state["weights"].items()}
        load_components(self, self.components, state)
        self.meta_params = dict(state["meta_params"])
