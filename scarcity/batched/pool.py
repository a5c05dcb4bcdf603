"""Every client of a simulation as tensors with a leading client dimension (the batched path).

`ClientPool` holds what N `Client` objects hold and runs `Client.train_round` for all clients
at once, as a composition of the stacked client components (`scarcity.components`): the
stacked weights (`weights`), local training of the shared model and heads (`train_heads`),
structure discovery (`StackedAutoencoders`), replay buffers, learning-rate adaptation, data
summaries and drift, routing, insight assembly and personal evaluation. Random draws are
taken in the reference's order (`draws`), so for the same config both paths compute the same
numbers up to float rounding. Row layout: [N, K, ...] for experts.
Clients of unequal data size (`quantity_skew`) are zero-padded to the largest and their padded
rows masked out (`padding`); with equal sizes `ragged_sizes` is None and no mask is built.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scarcity.backbones import make_backbone
from scarcity.batched.draws import RoundDraws, draw_round
from scarcity.batched.models import StackedModel
from scarcity.batched.padding import (
    pad_clients,
    real_rows,
)
from scarcity.batched.weights import WeightKeys, initial_weights
from scarcity.components.adaptation import LearningRateAdaptation
from scarcity.components.insights import (
    ROUND_KEYS,
    PoolRound,
    build_insights,
    check_finite,
    statistics,
)
from scarcity.components.memory import ReplayBuffers
from scarcity.components.personal import stacked_representation, stacked_scores
from scarcity.components.routing import StackedRouter
from scarcity.components.structure_discovery import (
    StackedAutoencoders,
    stacked_self_supervised_report,
)
from scarcity.components.summaries import DataSummaries
from scarcity.components.training import train_heads
from scarcity.config import SimulationConfig
from scarcity.core.data import FederatedData
from scarcity.core.experts import BASE_PORTFOLIO, EXTENDED_PORTFOLIO
from scarcity.core.gossip import GossipScheduler, stacked_gossip_round
from scarcity.core.training import LocalObjective, ssl_rate
from scarcity.population import FitResult
from scarcity.results import Insight
from scarcity.strategies.base import FitInstructions


class ClientPool:
    """The state of all N clients and their batched round (a `ClientPopulation`)."""

    sequential = False
    #: Where `Simulation.checkpoint` keeps this population's state.
    checkpoint_key = "pool"
    #: The stacked components this pool holds (`scarcity.components`'s contract) → where the
    #: checkpoint keeps each one's state (None: its keys at the top, as always stored).
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
    ) -> None:
        cfg = self.config = config
        self.task = data.task
        self.generator, self.rng = generator, rng
        self.names: tuple[str, ...] = ()
        if cfg.expert_ensemble:
            self.names = EXTENDED_PORTFOLIO if cfg.extended_experts else BASE_PORTFOLIO
        self.memory = _index(self.names, "MemoryConsolidationExpert")
        self.meta = _index(self.names, "MetaAdaptationExpert")
        #: Every client's sample count [N].
        self.sizes = torch.tensor(data.sizes)
        #: The same when the counts differ (data padded, masks on), None when all are equal.
        self.ragged_sizes = self.sizes if len(set(data.sizes)) > 1 else None
        self.base_x = pad_clients(data.client_x)
        self.base_y = pad_clients(data.client_y)
        #: Rows per client in the data tensors: the largest client's sample count.
        self.num_clients, self.max_samples = self.base_x.shape[:2]
        #: [N, n, 1]: 1 on real rows, 0 on padding (None without padding).
        self.real_rows = (
            None
            if self.ragged_sizes is None
            else real_rows(self.ragged_sizes, self.max_samples).unsqueeze(2).float()
        )
        n_clients = self.num_clients
        self.backbone = make_backbone(cfg)
        keys = WeightKeys.of(self.backbone)
        self.shared_keys, self.head_keys, self.expert_keys = keys.shared, keys.head, keys.expert
        self.stacked_model = None if self.backbone.closed_form else StackedModel(self.backbone)
        k, d, latent = len(self.names), cfg.input_dim, cfg.latent_dim
        self.w = initial_weights(self.backbone, keys, n_clients, k, d, latent, generator)
        self.autoencoders = StackedAutoencoders(self.w)
        self.buffers = ReplayBuffers(n_clients, cfg.memory_capacity, cfg.input_dim, cfg.latent_dim)
        self.summaries = DataSummaries(n_clients)
        self.adaptation = LearningRateAdaptation(
            n_clients,
            cfg.learning_rate,
            cfg.lr_decrease_factor,
            cfg.lr_increase_factor,
            cfg.lr_improvement_threshold,
        )
        self.router = StackedRouter(
            n_clients, self.names, cfg.router_strategy, cfg.variance_threshold, rng
        )
        self.meta_params: dict[str, float] = {}
        #: The autoencoders' Adam rate: `ssl_learning_rate`, or its share of the broadcast.
        self.ssl_lr = cfg.ssl_learning_rate
        self.data = data
        self.last: PoolRound | None = None
        #: Whether per-client details (initial/final loss, uncertainty, mean |gradient|) are
        #: observable: they reach results only through insights (insight exchange, meta-learning)
        #: and a strategy that reads the initial loss (q-FedAvg).
        self.details = cfg.insight_exchange or cfg.meta_learning or measure_initial_loss
        #: The last round's participants when they were a sample (None = every client).
        self.active: Tensor | None = None

    @property
    def adam(self) -> dict[str, Tensor]:
        """The autoencoders' Adam moments, `m.enc_w` … [N, K, ...]."""
        return self.autoencoders.adam

    # -- data -----------------------------------------------------------------------------
    def round_data(self, round_index: int) -> tuple[Tensor, Tensor]:
        """Every client's data in round `round_index`, with the reference's drift rule."""
        offset = self.data.drift * (round_index - 1)
        if offset == 0:
            return self.base_x, self.base_y
        # Padding stays zero, so that it adds nothing to sums and moments.
        shift = offset if self.real_rows is None else offset * self.real_rows
        y = self.base_y
        if self.data.target_shift is not None:
            y = y + shift * self.data.target_shift
        return self.base_x + shift, y

    # -- the round ------------------------------------------------------------------------
    def train_round(self, round_index: int, objective: LocalObjective | None = None) -> PoolRound:
        """`Client.train_round` for every client; the result is kept for insights.

        `objective`: the strategy's terms for the shared models, corrections stacked [N, ...].
        """
        cfg = self.config
        x, y = self.round_data(round_index)
        n_clients, k = self.num_clients, len(self.names)
        self.adaptation.start_round()
        meta_lr = self.meta_params.get("lr") if cfg.apply_meta_params else None
        if meta_lr is not None:  # `Client.train_round`: the broadcast rate replaces the base
            self.adaptation.base_lr = meta_lr
            if cfg.label_free:
                self.ssl_lr = ssl_rate(cfg, meta_lr)
        chosen: Tensor | None = None
        if cfg.expert_routing:
            chosen = self.router.select(x, self.ragged_sizes)
            trained = chosen.unsqueeze(1).tolist()
        else:
            trained = [list(range(k))] * n_clients
        if cfg.label_free:  # no supervised training: the pick only names the representation
            trained = [[] for _ in range(n_clients)]
        draws = draw_round(
            self.generator,
            sizes=self.sizes.tolist(),
            batch_size=cfg.batch_size,
            trained=trained,
            num_experts=k,
            memory=self.memory,
            shared_epochs=cfg.local_epochs if cfg.federated_averaging else 0,
            epochs=cfg.local_epochs,
            ssl_epochs=cfg.ssl_epochs,
            structure_discovery=cfg.structure_discovery,
        )
        shared, supervised = (
            (None, {}) if cfg.label_free else self._train_heads(x, y, chosen, draws, objective)
        )
        ssl, replay = (
            self._train_autoencoders(x, draws) if cfg.structure_discovery else (None, None)
        )
        summaries = self._summarize(self.data.drift * (round_index - 1))
        if shared is not None:
            source = shared
        elif ssl is not None and cfg.label_free:
            source = stacked_self_supervised_report(self.w, x, self.ragged_sizes, ssl)
        else:
            source = {key: value.mean(dim=1) for key, value in supervised.items()}
        self.last = PoolRound(
            **{field: source[key] for field, key in ROUND_KEYS.items()},
            selected=chosen,
            supervised=supervised,
            ssl=ssl,
            replay_error=replay,
            summaries=summaries,
        )
        return self.last

    def _train_heads(
        self,
        x: Tensor,
        y: Tensor,
        chosen: Tensor | None,
        draws: RoundDraws,
        objective: LocalObjective | None = None,
    ) -> tuple[dict[str, Tensor] | None, dict[str, Tensor]]:
        """The shared model (FedAvg on) and the expert heads (all, or each client's routed
        one) trained in one batched call (`train_heads`); the memory expert stores first."""
        cfg = self.config
        if self.memory is not None:  # the memory expert's store draw (reference: per call)
            everyone = torch.arange(self.num_clients)
            trains_memory = everyone if chosen is None else everyone[chosen == self.memory]
            self._store(x, draws.supervised_store, trains_memory)
        return train_heads(
            self.task,
            self.w,
            self.shared_keys if cfg.federated_averaging else None,
            self.head_keys,
            len(self.names),
            x,
            y,
            chosen,
            draws.shared,
            draws.supervised,
            objective=objective,
            model=self.stacked_model,
            adaptation=self.adaptation,
            meta=self.meta,
            epochs=cfg.local_epochs,
            batch_size=cfg.batch_size,
            details=self.details,
            sizes=self.ragged_sizes,
        )

    def _train_autoencoders(
        self, x: Tensor, draws: RoundDraws
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """Self-supervised training of every expert's autoencoder (the memory expert stores
        its share of rows first)."""
        cfg = self.config
        stored = None
        if self.memory is not None:
            stored = self._store(x, draws.ssl_store, torch.arange(self.num_clients))
        return self.autoencoders.train(
            self.w,
            x,
            self.ragged_sizes,
            draws.ssl,
            epochs=cfg.ssl_epochs,
            batch_size=cfg.batch_size,
            lr=self.ssl_lr,
            memory=self.memory,
            buffers=self.buffers,
            stored=stored,
            fresh_replay=cfg.engine_version >= 2,
            adaptation=self.adaptation,
            meta=self.meta,
        )

    def _store(self, x: Tensor, perm: Tensor | None, clients: Tensor) -> Tensor | None:
        """The memory expert's store draw for `clients` (`ReplayBuffers.store`)."""
        assert self.memory is not None
        encoder = (self.w["enc_w"][clients, self.memory], self.w["enc_b"][clients, self.memory])
        return self.buffers.store(x, perm, clients, encoder, self.ragged_sizes)

    def _summarize(self, offset: float) -> dict[str, Tensor]:
        """Every expert's `summarize` for every client (one observation per round)."""
        if not self.names:
            return {}
        out = self.summaries.observe(self.base_x, self.ragged_sizes, offset)
        if self.memory is not None:
            memory = self.buffers.summary(self.replay_error())
            out.update({f"MemoryConsolidationExpert.{k}": v for k, v in memory.items()})
        if self.meta is not None:
            meta = self.adaptation.summary()
            out.update({f"MetaAdaptationExpert.{k}": v for k, v in meta.items()})
        return out

    def replay_error(self) -> Tensor:
        """Each client's latent replay error (0 with an empty buffer), float64 [N]."""
        assert self.memory is not None
        return self.buffers.replay_error(
            self.w["enc_w"][:, self.memory], self.w["enc_b"][:, self.memory]
        )

    # -- the population interface ----------------------------------------------------------
    def broadcast(self, weights: Mapping[str, Tensor], participants: Tensor) -> None:
        """The participants' shared models start the round from the global `weights`."""
        if len(participants) == self.num_clients:
            self.set_model_weights(dict(weights))
        else:
            for name, key in self.shared_keys.items():
                self.w[key][participants] = weights[name]

    def fit(
        self,
        round_index: int,
        instructions: FitInstructions,
        global_weights: Mapping[str, Tensor] | None,
        participants: Tensor,
    ) -> FitResult:
        """One batched local round of the participants; the others stay untouched."""
        objective = LocalObjective.of(instructions, global_weights)
        if len(participants) == self.num_clients:
            self.active = None
            self.train_round(round_index, objective)
            last = self.last
        else:
            self.active = participants
            part = self._take(participants)
            part.train_round(round_index, objective)
            self._put(participants, part)
            self.last = last = part.last
        assert last is not None
        everyone = self.active is None  # then the stacked tensors themselves, no copies
        weights = None
        if global_weights is not None:
            weights = {
                name: self.w[key] if everyone else self.w[key][participants]
                for name, key in self.shared_keys.items()
            }
        return FitResult(
            participants=participants,
            mean_loss=float(last.loss.mean()),
            weights=weights,
            sample_counts=self.sample_counts()[participants],
            initial_loss=last.initial_loss,
        )

    def _take(self, clients: Tensor) -> ClientPool:
        """A pool of `clients` alone: copies of their state, sharing config and generators."""
        part = copy.copy(self)
        sizes = self.sizes[clients]
        n = int(sizes.max())
        part.sizes = sizes
        part.ragged_sizes = sizes if bool((sizes != sizes[0]).any()) else None
        part.base_x, part.base_y = self.base_x[clients, :n], self.base_y[clients, :n]
        part.num_clients, part.max_samples = len(clients), n
        part.real_rows = (
            None
            if part.ragged_sizes is None
            else real_rows(part.ragged_sizes, n).unsqueeze(2).float()
        )
        part.w = {key: t[clients] for key, t in self.w.items()}
        for name in self.COMPONENTS:
            setattr(part, name, getattr(self, name).take(clients))
        part.last = None
        return part

    def _put(self, clients: Tensor, part: ClientPool) -> None:
        """Write back the state `_take(clients)` handed out, after its round."""
        for key, t in part.w.items():
            self.w[key][clients] = t
        for name in self.COMPONENTS:
            getattr(self, name).put(clients, getattr(part, name))

    def _client_ids(self) -> list[int]:
        assert self.last is not None
        if self.active is None:
            return list(range(self.num_clients))
        return self.active.tolist()

    # -- results --------------------------------------------------------------------------
    def client_lines(self) -> list[tuple[int, float, str]]:
        """(client id, loss, selected expert) of every client, for the round log."""
        assert self.last is not None
        selected = self.last.selected_names(self.names)
        return list(zip(self._client_ids(), self.last.loss.tolist(), selected, strict=True))

    def expert_usage(self) -> dict[str, int]:
        assert self.last is not None and self.last.selected is not None
        counts = torch.bincount(self.last.selected, minlength=len(self.names)).tolist()
        return dict(zip(self.names, counts, strict=True))

    def statistics(self) -> dict[str, float]:
        """`Server.aggregate_insights` of the last round, from the tensors."""
        assert self.last is not None
        if not self.names:  # the baseline: no expert summaries to aggregate
            return {}
        return statistics(self.last, self.memory is not None)

    def check_finite(self, fail: Callable[[str], None]) -> None:
        """Call `fail(path)` for the first quantity of the last round that is NaN or inf."""
        assert self.last is not None
        check_finite(self.last, fail)

    def ensemble_scores(
        self,
        shared: tuple[Tensor, Tensor] | None,
        own: Sequence[tuple[Tensor, Tensor]] | None,
    ) -> tuple[Tensor, Tensor]:
        """Each participant's ensemble loss and accuracy on held-out rows (`ensemble`)."""
        assert self.last is not None
        rows = slice(None) if self.active is None else self.active
        heads = {name: self.w[key][rows] for name, key in self.head_keys.items()}
        selected = self.last.selected
        return stacked_scores(self.task, heads, selected, shared, own, self.stacked_model)

    def encoders(self) -> tuple[Tensor, Tensor]:
        """`ReferencePopulation.encoders`: each participant's picked (or every) encoder."""
        assert self.last is not None
        rows = slice(None) if self.active is None else self.active
        enc_w, enc_b = self.w["enc_w"][rows], self.w["enc_b"][rows]
        return stacked_representation(enc_w, enc_b, self.last.selected)

    def insights(self) -> list[Insight]:
        """Every client's `Client.generate_insight()` of the last round."""
        assert self.last is not None
        ids = None if self.active is None else self.active.tolist()
        return build_insights(self.last, self.names, self.memory, ids)

    # -- shared model, meta-parameters, gossip --------------------------------------------
    def set_model_weights(self, weights: dict[str, Tensor]) -> None:
        """Every client starts from the global model."""
        for name, key in self.shared_keys.items():
            self.w[key][:] = weights[name]

    def sample_counts(self) -> Tensor:
        """Every client's training samples, FedAvg's weights [N]."""
        return self.sizes.float()

    def receive_meta_params(self, params: dict[str, float]) -> None:
        self.meta_params = dict(params)

    def expert_weights(self, client: int, expert: int) -> dict[str, Tensor]:
        """One expert's weights in `Expert.get_weights` form (keys `part.param`)."""
        return {name: self.w[key][client, expert].clone() for key, name in self.expert_keys.items()}

    def gossip(
        self, scheduler: GossipScheduler, rng: np.random.Generator
    ) -> list[tuple[int, int, str]]:
        """`gossip_round`: disjoint pairs of the last round's participants each average one
        random expert (same draws)."""
        among = None if self.active is None else self.active.tolist()
        return stacked_gossip_round(self.w, self.expert_keys, self.names, scheduler, rng, among)

    # -- checkpoint -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"weights": {key: t.clone() for key, t in self.w.items()}}
        for name, key in self.COMPONENTS.items():
            part = getattr(self, name).state_dict()
            if key is None:
                state.update(part)
            else:
                state[key] = part
        state["meta_params"] = dict(self.meta_params)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w = {key: t.clone() for key, t in state["weights"].items()}
        for name, key in self.COMPONENTS.items():
            getattr(self, name).load_state_dict(state if key is None else state[key])
        self.meta_params = dict(state["meta_params"])


def _index(names: tuple[str, ...], name: str) -> int | None:
    return names.index(name) if name in names else None
