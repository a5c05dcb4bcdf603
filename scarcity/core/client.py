"""A federated participant (seed stages 1–8): private data, a shared model, an expert portfolio.

One round on a client (`train_round`):
1. every expert's `start_round` hook;
2. the shared model (the configured backbone) trains on the private data when FedAvg is on
   (stage 2);
3. the experts train supervised: all of them, or only the router's pick (stage 4);
4. with structure discovery (stage 8) every expert also trains its autoencoder;
5. every expert summarises the data (one observation per round, which DriftExpert compares).
`generate_insight()` turns the round into a JSON-able insight; `sync_with` is the gossip step.
As the strategy's `client_model` asks, a client also keeps Ditto's personal model (`personal`)
or its IFCA cluster estimate (`cluster`), `scarcity.components.personal_models` / `clusters`.
With `replay_size` it keeps a reservoir of past training rows (`replay`,
`scarcity.components.replay`) that steps 2 and 3 train on beside the round's rows.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scarcity import messages
from scarcity.backbones import make_backbone
from scarcity.components.clusters import ClusterChoice, candidate_losses
from scarcity.components.drift_detection import reinit_generator
from scarcity.components.insights import ROUND_KEYS, ClientRound, client_insight
from scarcity.components.personal_models import PersonalModel
from scarcity.components.replay import RowReservoir
from scarcity.components.structure_discovery import self_supervised_report
from scarcity.components.training import train_supervised
from scarcity.config import SimulationConfig
from scarcity.core.aggregate import pairwise_average
from scarcity.core.experts import (
    EXPERT_TYPES,
    DriftExpert,
    Expert,
    MemoryConsolidationExpert,
    MetaAdaptationExpert,
    portfolio,
)
from scarcity.core.router import Router
from scarcity.core.training import LocalObjective, Task, ssl_rate
from scarcity.results import Insight
from scarcity.strategies.base import ClientModel


def build_experts(config: SimulationConfig, task: Task, generator: torch.Generator) -> list[Expert]:
    """The portfolio a client holds: 2 experts, or 4 with `extended_experts`."""
    names = portfolio(config)
    if not names:
        return []
    common: dict[str, Any] = dict(
        input_dim=config.input_dim,
        output_dim=config.output_dim,
        latent_dim=config.latent_dim,
        learning_rate=config.learning_rate,
        ssl_learning_rate=config.ssl_learning_rate,
        task=task,
        generator=generator,
        backbone=make_backbone(config),
    )
    experts: list[Expert] = []
    for expert_id, name in enumerate(names):
        cls = EXPERT_TYPES[name]
        extra: dict[str, Any] = {}
        if cls is MemoryConsolidationExpert:
            extra = {"memory_capacity": config.memory_capacity}
        elif cls is DriftExpert:
            extra = {"drift_detector": config.drift_detector}
        elif cls is MetaAdaptationExpert:
            extra = {
                "lr_decrease_factor": config.lr_decrease_factor,
                "lr_increase_factor": config.lr_increase_factor,
                "lr_improvement_threshold": config.lr_improvement_threshold,
            }
        experts.append(cls(expert_id, **common, **extra))
    return experts


class Client:
    """Holds private data, trains locally and shares insights, weights or expert averages."""

    def __init__(
        self,
        client_id: int = 0,
        config: SimulationConfig | None = None,
        x: Tensor | None = None,
        y: Tensor | None = None,
        task: Task = "regression",
        generator: torch.Generator | None = None,
        rng: np.random.Generator | None = None,
        client_model: ClientModel = "global",
    ) -> None:
        self.client_id = client_id
        self.config = config if config is not None else SimulationConfig()
        self.task: Task = task
        self.logger = logging.getLogger(f"{__name__}.{type(self).__name__}")
        self.generator = (
            generator if generator is not None else torch.Generator().manual_seed(client_id)
        )
        self.rng = rng if rng is not None else np.random.default_rng(client_id)
        cfg = self.config
        # The seed's standalone usage: fake standard-normal data.
        if x is None:
            x = torch.randn(cfg.samples_per_client, cfg.input_dim, generator=self.generator)
        if y is None:
            y = torch.randn(cfg.samples_per_client, cfg.output_dim, generator=self.generator)
        self.x: Tensor = x
        self.y: Tensor = y
        self.experts = build_experts(cfg, task, self.generator)
        self.router = Router(
            len(self.experts), cfg.router_strategy, cfg.variance_threshold, self.rng
        )
        backbone = make_backbone(cfg)
        self.model = backbone.make(self.generator)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.learning_rate)
        self.meta_params: dict[str, float] = {}
        self.last_round = ClientRound()
        #: Whether `drift_detector` alarmed in the last round.
        self.drift_alarm = False
        #: Ditto's personal model (started by `PersonalModel.start`), IFCA's estimate.
        self.personal = PersonalModel(backbone.template()) if client_model == "personal" else None
        self.cluster = ClusterChoice() if client_model == "cluster" else None
        #: Past training rows replayed in supervised training (`replay_size`; None: off).
        self.replay = RowReservoir(cfg.replay_size) if cfg.replay_size > 0 else None

    @property
    def expert_names(self) -> list[str]:
        return [e.name for e in self.experts]

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def set_data(self, x: Tensor, y: Tensor) -> None:
        """This round's private data (drift moves it between rounds)."""
        self.x, self.y = x, y

    # -- training --------------------------------------------------------------------------
    def training_rows(self) -> tuple[Tensor, Tensor]:
        """What supervised training passes over: the round's rows, then the replay buffer's."""
        if self.replay is None:
            return self.x, self.y
        return self.replay.training_rows(self.x, self.y)

    def local_train(self, objective: LocalObjective | None = None) -> dict[str, float]:
        """Train the shared model on the private data (FedAvg's client update); `objective`
        adds the strategy's terms (FedProx, SCAFFOLD) to the loss."""
        cfg = self.config
        regularizer = objective.regularizer(self.model) if objective is not None else None
        x, y = self.training_rows()
        return train_supervised(
            self.model,
            self.optimizer,
            self.task,
            x,
            y,
            cfg.local_epochs,
            cfg.batch_size,
            self.generator,
            regularizer=regularizer,
        )

    def route(self) -> list[Expert]:
        """The router's pick this round (routing on), else every expert."""
        if self.config.expert_routing:
            losses = None
            if self.router.strategy == "loss":  # each expert's loss on the rows, before training
                heads = [e.model for e in self.experts]
                losses = candidate_losses(self.task, heads, self.x, self.y)
            index = self.router.select_expert(self.x, self.expert_names, losses)
            return [self.experts[index]]
        return list(self.experts)

    def train_experts(self) -> tuple[str, dict[str, dict[str, float]]]:
        """Supervised training of every expert, or only the router's pick when routing;
        none with `label_free` (the pick is still made: its representation is probed)."""
        cfg = self.config
        chosen = self.route()
        selected = chosen[0].name if cfg.expert_routing else "all"
        if cfg.label_free:
            return selected, {}
        x, y = self.training_rows()
        metrics = {
            e.name: e.train(x, y, cfg.local_epochs, cfg.batch_size, self.generator) for e in chosen
        }
        return selected, metrics

    def structure_discovery(self) -> dict[str, dict[str, float]]:
        """Self-supervised (autoencoder) training of every expert on the unlabelled data."""
        cfg = self.config
        results = {
            e.name: e.train_self_supervised(self.x, cfg.ssl_epochs, cfg.batch_size, self.generator)
            for e in self.experts
        }
        self.logger.debug(messages.completed_structure_discovery(self.client_id))
        return results

    def train_round(self, objective: LocalObjective | None = None) -> ClientRound:
        """One full local round (see the module docstring); the result is kept for insights.

        `objective`: the strategy's terms for the shared model this round (None = plain loss).
        """
        cfg = self.config
        lr = self.meta_params.get("lr") if cfg.apply_meta_params else None
        if lr is not None:  # the meta-learner's rate replaces the configured one
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            for expert in self.experts:
                expert.set_learning_rate(lr)
                if cfg.label_free:  # the objective it trains is the self-supervised one
                    expert.set_ssl_learning_rate(ssl_rate(cfg, lr))
        for expert in self.experts:
            expert.start_round()
        shared = self.local_train(objective) if cfg.federated_averaging else None
        selected, supervised = self.train_experts()
        # The client's own figures come from supervised training alone (the self-supervised
        # report has a mean_grad of its own, which an expert's report shows instead).
        source = [shared] if shared is not None else list(supervised.values())
        metrics = dict(supervised)
        if cfg.structure_discovery:
            for name, ssl in self.structure_discovery().items():
                metrics[name] = {**metrics.get(name, {}), **ssl}
        if cfg.label_free:  # the self-supervised objective is the client's training
            source = [self._self_supervised_report(e, metrics[e.name]) for e in self.experts]
        summaries = {e.name: e.summarize(self.x) for e in self.experts}
        self.last_round = ClientRound(
            **{field: _avg(s[key] for s in source) for field, key in ROUND_KEYS.items()},
            selected_expert=selected,
            expert_metrics=metrics,
            summaries=summaries,
        )
        self.drift_alarm = self._detect_drift(selected, supervised)
        return self.last_round

    def _detect_drift(self, selected: str, supervised: dict[str, dict[str, float]]) -> bool:
        """`drift_detector`: feed the routed expert's training loss to DriftExpert's detector;
        on an alarm, re-initialise that expert's head and reset the router's counts
        (`scarcity.components.drift_detection`)."""
        drift = next((e for e in self.experts if isinstance(e, DriftExpert)), None)
        if drift is None or drift.detector is None:
            return False
        if not drift.detector.observe(supervised[selected]["train_loss"]):
            return False
        expert = self.experts[self.expert_names.index(selected)]
        seen = len(drift.detector.losses)
        generator = reinit_generator(self.config.seed, self.client_id, seen)
        expert.model.load_state_dict(make_backbone(self.config).make(generator).state_dict())
        self.router.load_state_dict({"calls": 0, "usage": {}})
        return True

    def _self_supervised_report(self, expert: Expert, ssl: dict[str, float]) -> dict[str, float]:
        """An expert's self-supervised training in the terms of a supervised one."""
        return self_supervised_report(ssl, expert.reconstruction_errors(self.x))

    def generate_insight(self) -> Insight:
        """The structured insight of the last round: learning metadata, no weights."""
        return client_insight(self.client_id, self.last_round)

    def receive_meta_params(self, params: dict[str, float]) -> None:
        """Store the meta-learner's broadcast (mean, std, lr, updates, priors)."""
        self.meta_params = dict(params)
        if {"mean", "std", "lr", "updates"} <= params.keys():
            self.logger.debug(messages.received_meta_params(self.client_id, params))

    # -- weights ---------------------------------------------------------------------------
    def get_model_weights(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def set_model_weights(self, weights: dict[str, Tensor]) -> None:
        self.model.load_state_dict(weights)

    def get_expert_weights(self, expert_idx: int) -> dict[str, Tensor]:
        return self.experts[expert_idx].get_weights()

    def set_expert_weights(self, expert_idx: int, weights: dict[str, Tensor]) -> None:
        self.experts[expert_idx].set_weights(weights)

    def sync_with(self, peer: Client, expert_idx: int) -> None:
        """P2P gossip: both clients end with the average of expert `expert_idx`'s weights."""
        averaged = pairwise_average(
            self.get_expert_weights(expert_idx), peer.get_expert_weights(expert_idx)
        )
        self.set_expert_weights(expert_idx, averaged)
        peer.set_expert_weights(expert_idx, averaged)
        self.logger.debug(
            messages.synced(self.client_id, self.experts[expert_idx].name, peer.client_id)
        )

    # -- checkpoint ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "experts": [e.state_dict() for e in self.experts],
            "router": self.router.state_dict(),
            "model": self.get_model_weights(),
            "optimizer": self.optimizer.state_dict(),
            "meta_params": dict(self.meta_params),
        }
        # Only with the strategy that keeps them: a stored run's layout is unchanged.
        if self.personal is not None:
            state["personal"] = self.personal.state_dict()
        if self.cluster is not None:
            state["cluster"] = self.cluster.state_dict()
        if self.replay is not None:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for expert, expert_state in zip(self.experts, state["experts"], strict=True):
            expert.load_state_dict(expert_state)
        self.router.load_state_dict(state["router"])
        self.set_model_weights(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.meta_params = dict(state["meta_params"])
        if self.personal is not None:
            self.personal.load_state_dict(state["personal"])
        if self.cluster is not None:
            self.cluster.load_state_dict(state["cluster"])
        if self.replay is not None:
            self.replay.load_state_dict(state["replay"])


def _avg(values: Any) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0
