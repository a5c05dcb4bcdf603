"""The per-client reference execution of a population: one `Client` object per client.

Readable and slow: each participant trains in turn, exactly as the seed's loop over clients.
`scarcity.batched.ClientPool` computes the same round for all clients at once. The model each
client uses (`scarcity.components.client_models`) is one module per client here.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from scarcity.accounting import insight_bytes, tensor_bytes
from scarcity.backbones import make_backbone
from scarcity.components.client_models import ModuleModels
from scarcity.components.clusters import candidate_losses, choose
from scarcity.components.personal import client_representation, client_scores
from scarcity.components.personal_models import (
    DITTO_STREAM,
    FINETUNE_STREAM,
    finetuned,
    round_generator,
)
from scarcity.components.replay import reservoir_generator
from scarcity.config import SimulationConfig
from scarcity.core.client import Client
from scarcity.core.data import FederatedData
from scarcity.core.gossip import GossipScheduler, WeightedPair, gossip_round, weighted_gossip
from scarcity.core.server import insight_statistics
from scarcity.core.training import LocalObjective
from scarcity.population import FitResult
from scarcity.results import Insight, non_finite
from scarcity.strategies.base import ClientModel, FitInstructions


class ReferencePopulation:
    """Every client as its own `Client`; the round's participants train one after another."""

    sequential = True
    #: Where `Simulation.checkpoint` keeps this population's state (the seed's layout).
    checkpoint_key = "clients"

    def __init__(
        self,
        config: SimulationConfig,
        data: FederatedData,
        generator: torch.Generator,
        rng: np.random.Generator,
        client_model: ClientModel = "global",
    ) -> None:
        self.config = config
        self.data = data
        self.clients = [
            Client(
                i,
                config,
                data.client_x[i],
                data.client_y[i],
                data.task,
                generator=generator,
                rng=rng,
                client_model=client_model,
            )
            for i in range(config.num_clients)
        ]
        if config.router_strategy == "loss" and self.clients[0].experts:
            # IFCA's clients start from the same candidates: every client's heads are client
            # 0's (drawn as before, so no other draw moves), which makes an expert index mean
            # one candidate across clients from round 1 on.
            for client in self.clients[1:]:
                for expert, first in zip(client.experts, self.clients[0].experts, strict=True):
                    expert.model.load_state_dict(first.model.state_dict())
        #: The backbone's module without values, for models built from given weights.
        self.template = make_backbone(config).template()
        self.active: list[Client] = self.clients
        self._insights: list[Insight] | None = None

    def set_data(self, data: FederatedData) -> None:
        """From now on the clients hold `data`'s rows (a scenario's new segment)."""
        self.data = data

    def broadcast(self, weights: Mapping[str, Tensor], participants: Tensor) -> None:
        shared = dict(weights)
        for i in participants.tolist():
            self.clients[i].set_model_weights(shared)

    def fit(
        self,
        round_index: int,
        instructions: FitInstructions,
        global_weights: Mapping[str, Tensor] | None,
        participants: Tensor,
    ) -> FitResult:
        self.active = [self.clients[i] for i in participants.tolist()]
        self._insights = None
        for row, client in enumerate(self.active):
            client.set_data(*self.data.client_data(client.client_id, round_index))
            client.train_round(LocalObjective.of(instructions, global_weights, row))
        if self.config.replay_size > 0:  # the round's rows are offered after its training
            generator = reservoir_generator(self.config.seed, round_index)
            for client in self.active:
                assert client.replay is not None
                client.replay.offer(client.x, client.y, generator)
        if instructions.personal_mu is not None:  # Ditto: each personal model, in turn
            assert global_weights is not None
            cfg = self.config
            generator = round_generator(cfg.seed, DITTO_STREAM, round_index)
            for client in self.active:
                assert client.personal is not None
                client.personal.train(
                    client.task,
                    client.x,
                    client.y,
                    global_weights,
                    instructions.personal_mu,
                    epochs=cfg.local_epochs,
                    batch_size=cfg.batch_size,
                    lr=cfg.learning_rate,
                    generator=generator,
                )
        losses = [c.last_round.loss for c in self.active]
        weights = None
        if global_weights is not None:
            models = [c.get_model_weights() for c in self.active]
            weights = {key: torch.stack([m[key] for m in models]) for key in global_weights}
        return FitResult(
            participants=participants,
            mean_loss=sum(losses) / len(losses) if losses else 0.0,
            weights=weights,
            sample_counts=torch.tensor([float(c.num_samples) for c in self.active]),
            initial_loss=torch.tensor(
                [c.last_round.initial_loss for c in self.active], dtype=torch.float64
            ),
        )

    # -- the model each client uses (`scarcity.components.client_models`) ------------------
    def start_personal(self, weights: Mapping[str, Tensor]) -> None:
        for client in self.clients:
            assert client.personal is not None
            client.personal.start(weights)

    def own_models(self) -> ModuleModels:
        return ModuleModels([c.model for c in self.clients])

    def personal_models(self) -> ModuleModels:
        return ModuleModels([c.personal.model for c in self.clients if c.personal is not None])

    def finetuned_models(
        self, weights: Mapping[str, Tensor], round_index: int, epochs: int
    ) -> ModuleModels:
        cfg = self.config
        generator = round_generator(cfg.seed, FINETUNE_STREAM, round_index)
        return ModuleModels(
            [
                finetuned(
                    self.template,
                    weights,
                    self.data.task,
                    *self.data.client_data(c.client_id, round_index),
                    epochs=epochs,
                    batch_size=cfg.batch_size,
                    lr=cfg.learning_rate,
                    generator=generator,
                )
                for c in self.clients
            ]
        )

    def _modules(self, candidates: Mapping[str, Tensor]) -> list[nn.Module]:
        """Each candidate [k, ...] as a module of the backbone."""
        k = len(next(iter(candidates.values())))
        modules = []
        for j in range(k):
            module = copy.deepcopy(self.template)
            module.load_state_dict({key: t[j] for key, t in candidates.items()})
            modules.append(module)
        return modules

    def choose(
        self, round_index: int, candidates: Mapping[str, Tensor], participants: Tensor
    ) -> Tensor:
        modules = self._modules(candidates)
        chosen = []
        for i in participants.tolist():
            client = self.clients[i]
            assert client.cluster is not None
            x, y = self.data.client_data(i, round_index)
            j = client.cluster.choose(candidate_losses(client.task, modules, x, y))
            client.set_model_weights({key: t[j] for key, t in candidates.items()})
            chosen.append(j)
        return torch.tensor(chosen, dtype=torch.long)

    def cluster_choices(self, round_index: int, candidates: Mapping[str, Tensor]) -> Tensor:
        modules = self._modules(candidates)
        kept = []
        for client in self.clients:
            assert client.cluster is not None
            j = client.cluster.cluster
            if j < 0:  # never took part: the cluster it would choose now (not kept)
                x, y = self.data.client_data(client.client_id, round_index)
                j = int(choose(candidate_losses(client.task, modules, x, y)))
            kept.append(j)
        return torch.tensor(kept, dtype=torch.long)

    def chosen_models(self, candidates: Mapping[str, Tensor], choices: Tensor) -> ModuleModels:
        modules = self._modules(candidates)
        return ModuleModels([modules[j] for j in choices.tolist()])

    def insights(self) -> list[Insight]:
        if self._insights is None:  # built once a round: statistics and checks read them too
            self._insights = [c.generate_insight() for c in self.active]
        return self._insights

    def insight_bytes(self, insights: Sequence[Insight]) -> int:
        return sum(insight_bytes(i) for i in insights)

    def ensemble_scores(
        self,
        shared: tuple[Tensor, Tensor] | None,
        own: Sequence[tuple[Tensor, Tensor]] | None,
    ) -> tuple[Tensor, Tensor]:
        """Each participant's ensemble loss and accuracy (`scarcity.core.ensemble`), float64
        [P]: on the `shared` test set, or on its `own` held-out rows (one pair each)."""
        sets = own if own is not None else [shared] * len(self.active)
        pairs = [
            client_scores(
                client.task,
                [e.model for e in client.experts],
                client.expert_names,
                client.last_round.selected_expert,
                held,
            )
            for client, held in zip(self.active, sets, strict=True)
            if held is not None
        ]
        loss, accuracy = zip(*pairs, strict=True)
        return torch.tensor(loss, dtype=torch.float64), torch.tensor(accuracy, dtype=torch.float64)

    def encoders(self) -> tuple[Tensor, Tensor]:
        """Each participant's representation, as its router chose: the picked expert's
        encoder, else every expert's stacked, weight [P, z, d] and bias [P, z]."""
        pairs = [
            client_representation(
                [e.encoder for e in c.experts], c.expert_names, c.last_round.selected_expert
            )
            for c in self.active
        ]
        return torch.stack([w for w, _ in pairs]), torch.stack([b for _, b in pairs])

    def statistics(self) -> dict[str, float]:
        if not self.clients[0].experts:  # the baseline: no expert summaries to aggregate
            return {}
        return insight_statistics(self.insights())

    def receive_meta_params(self, params: dict[str, float]) -> None:
        for client in self.clients:
            client.receive_meta_params(params)

    def stacked_expert_weights(self, expert: int, clients: Tensor) -> dict[str, Tensor]:
        """Expert `expert`'s weights of `clients`, [C, ...] each (`Expert.get_weights` keys)."""
        weights = [self.clients[c].get_expert_weights(expert) for c in clients.tolist()]
        return {key: torch.stack([w[key] for w in weights]) for key in weights[0]}

    def every_expert_weights(self, clients: Tensor) -> list[dict[str, Tensor]]:
        """`stacked_expert_weights` of every expert, in order."""
        experts = len(self.clients[0].experts)
        return [self.stacked_expert_weights(e, clients) for e in range(experts)]

    def set_stacked_expert_weights(
        self, expert: int, clients: Tensor, weights: Mapping[str, Tensor]
    ) -> None:
        """Expert `expert` of every one of `clients` set to `weights` (one value each)."""
        for c in clients.tolist():
            self.clients[c].set_expert_weights(expert, {k: t.clone() for k, t in weights.items()})

    def gossip(
        self, scheduler: GossipScheduler, rng: np.random.Generator
    ) -> list[tuple[int, int, str]]:
        among = [c.client_id for c in self.active]
        return gossip_round(self.clients, scheduler, rng, among)

    def sync_pairs(self, pairs: Sequence[WeightedPair]) -> list[tuple[int, int, str]]:
        return weighted_gossip(self.clients, pairs)

    def drift_alarms(self) -> list[int]:
        return [c.client_id for c in self.active if c.drift_alarm]

    def expert_bytes(self, name: str) -> int:
        client = self.clients[0]
        return tensor_bytes(client.get_expert_weights(client.expert_names.index(name)))

    def expert_usage(self) -> dict[str, int]:
        counts = Counter(c.last_round.selected_expert for c in self.active)
        return {name: counts[name] for name in self.clients[0].expert_names}

    def client_lines(self) -> list[tuple[int, float, str]]:
        return [(c.client_id, c.last_round.loss, c.last_round.selected_expert) for c in self.active]

    def check_finite(self, fail: Callable[[str], None]) -> None:
        found = non_finite(list(self.insights()))
        if found is not None:
            fail(found[0])

    def state_dict(self) -> list[dict[str, Any]]:
        return [c.state_dict() for c in self.clients]

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        for client, client_state in zip(self.clients, state, strict=True):
            client.load_state_dict(client_state)
