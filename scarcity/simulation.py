"""Running a simulation: one round at a time, immutable results, exact checkpoints.

A round (`Simulation.run_round`) is one sequence of steps, whichever execution holds the clients:
1. this round's participants are drawn (`clients_per_round` / `fraction_fit`; all by default);
   a scenario may keep some of them away (`Scenario.available`: offline, or never joining);
2. FedAvg on: the strategy says what the participants add to their local objective
   (`Strategy.configure_fit`) and the server broadcasts the global model to them;
3. every participant trains locally on this round's data (`ClientPopulation.fit`); the others
   keep their state untouched;
4. FedAvg on: honest clients clip their update (client-side DP), attackers tamper with theirs
   (`malicious_fraction`), the strategy aggregates the participants' models into the new
   global model (`Strategy.aggregate`), which is evaluated on the held-out test set, and each
   client's own held-out rows score the model it uses (`score_clients`);
5. every participant's insight is aggregated (data statistics, drift, uncertainty,
   reconstruction, replay); with `insight_exchange` the server keeps them in `memory`;
6. `meta_learning`: the meta-learner updates and broadcasts its meta-parameters (+ structural
   priors with `structure_discovery`);
7. `gossip`: random disjoint pairs of clients average one expert each (`gossip_peers:
   insight`: pairs the server makes from the insights, weighted averages; `core.gossip`);
8. `ensemble_evaluation`: every participant's experts, as its router chose, predict held-out
   rows (its own with `client_test_fraction`, else the test set): `ensemble_loss`,
   `ensemble_accuracy` (`scarcity.core.ensemble`); with `label_free` (no label was read) a
   linear probe of their representation on the same rows instead: `probe_accuracy` /
   `probe_loss` (`scarcity.core.probe`);
9. from `engine_version` 8: the bytes steps 2–7 moved, up and down, and the run's totals
   (`scarcity.accounting`).

A personalised strategy (`Strategy.client_model`) changes what step 2 sends and what the scores
read: `local` broadcasts the initial model to every client once, before round 1, and nothing
after (each client's shared model is its own; the server's stays the initial one); `ifca` sends
each participant the cluster model it chose (`Strategy.candidates`, chosen by the clients);
`ditto` has the participants also train their personal models; `fedavg_ft` fine-tunes a copy of
the global model on every client's rows before they are scored. Personal metrics score the
model each client uses; for `local` and `ifca`, which have no one global model, `test_loss` and
`test_accuracy` are the mean over all clients of their own model's (their cluster's) on the test
set.

All randomness of a run comes from one `torch.Generator` and one `numpy.random.Generator`
seeded from `config.seed` (the data, the attackers and DP noise from separate streams), never
from global RNG state, so runs in one process do not disturb each other.

Two executions hold the clients (`config.execution`, see `scarcity.population`): `batched`
(default) holds all clients as tensors with a leading client axis (`scarcity.batched.ClientPool`)
and trains them in a few tensor ops; `reference` runs one `Client` object per client
(`scarcity.core.population`), the readable definition. They take the same random draws in the
same order and agree on every metric up to float rounding (tests/scarcity/test_batched.py).
Float results also depend on torch's intra-op thread count (`torch.set_num_threads`); the CLI
and the service's workers use 1 by default, which is also the fastest for these tiny tensors.
`checkpoint()` captures every model, optimiser, buffer, strategy, meta-learner, gossip and RNG
state; `Simulation.restore` continues exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scarcity import checkpoint as checkpoint_format
from scarcity import messages
from scarcity.accounting import (
    BYTES_ENGINE_VERSION,
    SCALAR_BYTES,
    Ledger,
    Traffic,
    gossip_traffic,
    scalar_bytes,
)
from scarcity.attacks import Adversary, flip_labels
from scarcity.backbones import make_backbone
from scarcity.batched import ClientPool
from scarcity.components.client_models import ClientModels
from scarcity.config import SimulationConfig, resolve_config, stored_config
from scarcity.core.data import (
    FederatedData,
    make_federated_data,
    pool_client_rows,
    scenario_rows,
    with_rows,
)
from scarcity.core.ensemble import ensemble_metrics
from scarcity.core.experts import portfolio
from scarcity.core.gossip import GossipScheduler, insight_pairs
from scarcity.core.meta_init import MetaInitialisation
from scarcity.core.meta_learner import MetaLearner
from scarcity.core.population import ReferencePopulation
from scarcity.core.probe import (
    CROSS_VALIDATED,
    PROBE_FOLDS,
    probe_metrics,
    probe_scores,
    untrained_encoders,
)
from scarcity.core.server import Server
from scarcity.long_lived import LongLivedInsights
from scarcity.messages import MAX_DETAIL_CLIENTS
from scarcity.population import ClientPopulation, FitResult
from scarcity.results import (
    UNCERTAINTY_GROUPS,
    GossipPair,
    Insight,
    RoundResult,
    non_finite,
)
from scarcity.sampling import draw_participants
from scarcity.scenarios import EvalSets, Scenario, Score, make_scenario, scenario_class
from scarcity.scenarios.drift import DetectionScore, Drift
from scarcity.strategies import ClientUpdates, FitInstructions, make_strategy
from scarcity.strategies.functions import clip_updates

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
SIM_STREAM = 0x51A  # second seed word of the simulation's numpy stream
CLUSTER_STREAM = 0xC1A5  # second seed word of the extra server models' draw (IFCA's clusters)
#: A loss or meta-parameter beyond this (in absolute value) means training diverged: real losses
#: stay many orders of magnitude below it, a diverging run passes it a round or two after leaving
#: its range (README, "Divergence"). Runs of an engine_version below 5 fail on NaN/inf only.
DIVERGENCE_BOUND = 1e12


class SimulationError(RuntimeError):
    """The run cannot go on (e.g. training diverged to a non-finite loss)."""


class Simulation:
    """One SF-HFE run: `run_round()` / `rounds()` yield a `RoundResult` per finished round."""

    def __init__(self, config: SimulationConfig | Mapping[str, Any]) -> None:
        self.config = config if isinstance(config, SimulationConfig) else resolve_config(config)
        cfg = self.config
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.rng = np.random.default_rng([cfg.seed, SIM_STREAM])
        self.adversary = Adversary(cfg)
        data = make_federated_data(cfg)
        #: The clients' data as the partition gave it (before any attacker flips labels).
        self.client_data: FederatedData = data
        if cfg.attack == "label_flip" and self.adversary.active:
            data = flip_labels(data, self.adversary.attackers, cfg.output_dim)
        self.data: FederatedData = data
        #: The clients' rows before a scenario moves them (`scenario`): what `rows` start from.
        self.base_data = data
        self.scenario: Scenario | None = None
        if scenario_class(cfg.scenario).consulted:
            self.scenario = make_scenario(cfg, scenario_rows(data), cfg.output_dim)
        #: The scenario's segment whose rows the clients hold (None: none taken yet).
        self._segment: object = None
        #: `drift_detector` on a drift scenario: its alarms scored against the true changes.
        self.detection: DetectionScore | None = None
        if isinstance(self.scenario, Drift) and cfg.drift_detector != "none":
            self.detection = DetectionScore(self.scenario)
        self.strategy = make_strategy(cfg)
        kind = self.strategy.client_model
        self.population: ClientPopulation
        if cfg.execution == "batched":
            self.population = ClientPool(
                cfg,
                self.data,
                self.generator,
                self.rng,
                measure_initial_loss=self.strategy.uses_initial_loss,
                client_model=kind,
            )
        else:
            self.population = ReferencePopulation(
                cfg, self.data, self.generator, self.rng, client_model=kind
            )
        self.server = Server(
            cfg.num_clients,
            cfg.input_dim,
            cfg.output_dim,
            self.data.task,
            generator=self.generator,
            backbone=make_backbone(cfg),
        )
        self.meta_learner = MetaLearner(alpha=cfg.meta_ema_alpha, base_lr=cfg.learning_rate)
        self.gossip = GossipScheduler(cfg.num_clients)
        self.ledger = Ledger()
        self.rounds_completed = 0
        #: Keeps the server's insight memory out of the garbage collector's full scans.
        self.long_lived = LongLivedInsights()
        #: The last round whose aggregate is applied (what `score_clients` scores), and the
        #: models the clients use then (built once: a fine-tuned copy trains).
        self._scored_round = 0
        self._client_models: ClientModels | None = None
        if cfg.federated_averaging:
            self._start_clients()
        #: Reptile's meta-initialisation of the experts (`meta_init`; None: off).
        self.meta_init: MetaInitialisation | None = None
        if cfg.meta_init:
            self.meta_init = MetaInitialisation(
                portfolio(cfg),
                self.population,
                cfg.num_clients,
                cfg.meta_step_size,
                self.server.global_weights() if cfg.federated_averaging else None,
            )

    def _start_clients(self) -> None:
        """What a personalised strategy's clients and server hold before round 1: `local`'s
        common initial model, Ditto's personal models v⁰ = w⁰, IFCA's cluster models (the
        first the initial model, the others drawn from a stream of their own)."""
        kind, initial = self.strategy.client_model, self.server.global_weights()
        if kind == "own":
            self.population.broadcast(initial, torch.arange(self.config.num_clients))
        elif kind == "personal":
            self.population.start_personal(initial)
        if self.strategy.num_models > 1:
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.config.seed, CLUSTER_STREAM]).generate_state(1)[0])
            )
            backbone = make_backbone(self.config)
            models = [initial] + [
                dict(backbone.make(generator).state_dict())
                for _ in range(self.strategy.num_models - 1)
            ]
            self.strategy.start({key: torch.stack([m[key] for m in models]) for key in initial})
        elif kind == "cluster":
            self.strategy.start({key: t.unsqueeze(0) for key, t in initial.items()})

    @property
    def pool(self) -> ClientPool | None:
        """The batched client state (`execution="batched"`), else None."""
        return self.population if isinstance(self.population, ClientPool) else None

    @property
    def clients(self) -> list[Any]:
        """One `Client` per client (`execution="reference"`), else empty."""
        population = self.population
        return population.clients if isinstance(population, ReferencePopulation) else []

    # -- running --------------------------------------------------------------------------
    def rounds(self) -> Iterator[RoundResult]:
        """The remaining rounds, one result each."""
        try:
            while self.rounds_completed < self.config.rounds:
                yield self.run_round()
        finally:  # also when the caller stops early
            self.long_lived.release()

    def run_round(self) -> RoundResult:
        """Run the next round and return its result."""
        cfg = self.config
        if self.rounds_completed >= cfg.rounds:
            raise SimulationError(f"all {cfg.rounds} rounds are done")
        k = self.rounds_completed + 1
        started = time.perf_counter()
        population = self.population
        counting = cfg.engine_version >= BYTES_ENGINE_VERSION  # stored runs report no bytes
        traffic = Traffic()
        participants = draw_participants(cfg, self.rng)
        if self.scenario is not None:  # offline or never-joining clients do not train
            participants = self.scenario.available(k, participants)
        # the ids that trained, said wherever the round is reported; None when every client did
        sampled = tuple(participants.tolist()) if len(participants) < cfg.num_clients else None
        if self.scenario is not None and self.scenario.moves_data:
            self._hold_scenario_rows(k)
        global_weights = self.server.global_weights() if cfg.federated_averaging else None
        self._client_models = None
        instructions = FitInstructions()
        # What each participant received (IFCA: its cluster's model, stacked [P, ...]).
        received = global_weights
        choice = None
        if global_weights is not None:
            instructions = self.strategy.configure_fit(k, global_weights, participants)
            candidates = self.strategy.candidates()
            if candidates is not None:
                choice = population.choose(k, candidates, participants)
                received = {key: t[choice] for key, t in candidates.items()}
            elif self.strategy.client_model != "own":  # local: no broadcast after the start
                population.broadcast(global_weights, participants)
        if self.meta_init is not None:  # first-time participants start from θ
            if counting:
                traffic += self._meta_init_traffic(participants)
            self.meta_init.start(population, participants)
        fit = population.fit(k, instructions, global_weights, participants)
        if self.meta_init is not None:
            if cfg.drift_detector != "none":  # an alarmed expert restarts from θ, not afresh
                self.meta_init.restart(population, self._alarmed_experts())
            self.meta_init.update(population, participants, fit.weights)
        metrics: dict[str, float] = {"loss": fit.mean_loss}
        attackers = self.adversary.mask(participants) if self.adversary.active else None
        personal = None
        if global_weights is not None:
            assert received is not None
            updates = self._received_updates(fit, received, instructions, attackers, choice)
            if counting:
                traffic += self.strategy.traffic(global_weights, instructions, updates)
            self.server.set_global_weights(self.strategy.aggregate(k, global_weights, updates))
            self._scored_round, self._client_models = k, None
            metrics.update(self._test_metrics(k))
            personal = self._personal_scores(k)
            if personal is not None:
                metrics.update(personal_metrics(self.data.task, personal))
            metrics.update(self.strategy.round_metrics())
        alarmed: list[int] = []
        if cfg.drift_detector != "none":
            alarmed = population.drift_alarms()
            metrics["drift_alarms"] = float(len(alarmed))
        if sampled is not None:
            metrics["clients_sampled"] = float(len(sampled))
        if attackers is not None:
            metrics["attackers_sampled"] = float(attackers.sum())

        # Per-client dicts only when a consumer needs them.
        needed = cfg.insight_exchange or cfg.meta_learning
        insights = population.insights() if needed else []
        if counting and cfg.insight_exchange:  # personal scores counted below
            traffic += Traffic(up=population.insight_bytes(insights))
        if insights and personal is not None:
            insights = with_personal_scores(insights, self.data.task, personal)
            if counting and cfg.insight_exchange:  # one number for each that has a score
                scored = int((~personal[participants].isnan()).sum())
                traffic += Traffic(up=SCALAR_BYTES * scored)
        stats = population.statistics()
        for key in ("data_mean", "data_std", "drift", "replay_error", "recon_loss"):
            if key in stats:  # none without experts (the baseline preset)
                metrics[key] = stats[key]
        if cfg.insight_exchange:
            self.server.receive_insights(insights)
            self.long_lived.kept(len(insights))
            metrics["avg_uncertainty"] = stats["avg_uncertainty"]

        meta_params: dict[str, float] = {}
        uncertainty_groups: dict[str, tuple[int, ...]] = {}
        if cfg.meta_learning:
            groups = self.meta_learner.aggregate(insights)
            self.meta_learner.update_global_params(insights)
            if cfg.structure_discovery:
                self.meta_learner.compute_structural_priors(insights)
            meta_params = self.meta_learner.broadcast_params()
            population.receive_meta_params(meta_params)
            if counting:
                traffic += Traffic(down=len(participants) * scalar_bytes(meta_params))
            uncertainty_groups = {key: tuple(groups[key]) for key in UNCERTAINTY_GROUPS}

        pairs: list[GossipPair] = []
        if cfg.gossip:
            synced = (
                population.sync_pairs(insight_pairs(insights, k))  # the server pairs by insights
                if cfg.gossip_peers == "insight"
                else population.gossip(self.gossip, self.rng)
            )
            pairs = [GossipPair(a, b, name) for a, b, name in synced]
            if counting:
                sizes = {name: population.expert_bytes(name) for name in {p.expert for p in pairs}}
                traffic += gossip_traffic(sizes[p.expert] for p in pairs)

        if cfg.label_free:
            metrics.update(self._probe_metrics(k, participants))
        elif cfg.ensemble_evaluation and cfg.expert_ensemble:
            metrics.update(self._ensemble_metrics(k, participants))
        if self.scenario is not None:
            metrics.update(self.scenario.metrics(k, self._scorer(participants, personal)))
            if global_weights is not None:
                model = self.server.global_model
                if self.meta_init is not None:  # newcomers adapt from the meta-initialisation
                    model = self.meta_init.model(model)
                metrics.update(self.scenario.model_metrics(k, model))
        if self.detection is not None:
            metrics.update(self.detection.metrics(k, alarmed))
        if counting:
            metrics.update(self.ledger.record(traffic))
        usage = population.expert_usage() if cfg.expert_routing else {}
        _check_finite(k, metrics, meta_params, bounded=cfg.engine_version >= 5)
        population.check_finite(lambda path: _raise_diverged(k, path))
        self.rounds_completed = k
        if k == cfg.rounds:
            self.long_lived.release()
        lines = self._log_lines(k, metrics, meta_params, pairs)
        lines[1:1] = self._participation_lines(k, sampled)
        if alarmed:
            lines.insert(1, "Drift alarms (expert re-initialised): " + _ids(alarmed))
        for line in lines:  # round summary, meta-parameters, attackers at INFO, the rest DEBUG
            level = (
                logging.INFO
                if line.startswith(("Round ", "Meta-", "Byzantine "))
                else logging.DEBUG
            )
            logger.log(level, line)
        for name, line in self._seed_messages(participants, insights, meta_params, pairs):
            logging.getLogger(name).info(line)
            lines.append(line)
        return RoundResult(
            round=k,
            metrics=metrics,
            insights=tuple(insights) if cfg.insight_exchange else (),
            meta_params=meta_params,
            uncertainty_groups=uncertainty_groups,
            expert_usage=usage,
            gossip_pairs=tuple(pairs),
            logs=tuple(lines),
            duration_seconds=time.perf_counter() - started,
            participants=sampled,
        )

    def _hold_scenario_rows(self, k: int) -> None:
        """The clients hold the scenario's rows of round k (re-stacked when they change)."""
        assert self.scenario is not None
        segment = self.scenario.segment(k)
        if segment != self._segment:
            self.data = with_rows(self.base_data, self.scenario.rows(k))
            self.population.set_data(self.data)
            self._segment = segment

    def _scorer(self, participants: Tensor, personal: Tensor | None) -> Score:
        """A scenario's scorer (`scarcity.scenarios.Score`): the mean over the participants of
        the accuracy of the model each uses on its own rows of a scenario's held-out sets (with
        FedAvg the shared model, or the personalised one its strategy has it use:
        `score_clients`; else its experts' ensemble); None for regression or a run with no
        supervised model (label_free). `personal`: the round's scores of the clients' current
        held-out rows, reused when a scenario asks for them."""
        cfg = self.config
        rows = zip(self.data.client_test_x, self.data.client_test_y, strict=True)
        current = [(id(x), id(y)) for x, y in rows]

        def score(sets: EvalSets) -> float | None:
            if self.data.task != "classification":
                return None
            if personal is not None and [(id(x), id(y)) for x, y in sets] == current:
                scores = personal[participants]  # already scored this round
            elif cfg.federated_averaging:
                x, y, owner = pool_client_rows([x for x, _ in sets], [y for _, y in sets])
                scores = self.score_clients(x, y, owner)[participants]
            elif cfg.expert_ensemble and not cfg.label_free:
                own = [sets[i] for i in participants.tolist()]
                scores = self.population.ensemble_scores(None, own)[1]
            else:
                return None
            scores = scores[~scores.isnan()]
            return float(scores.mean()) if len(scores) else None

        return score

    def _alarmed_experts(self) -> list[tuple[int, str]]:
        """(client, the expert it trained) of the last round's drift alarms."""
        trained = {client: expert for client, _, expert in self.population.client_lines()}
        return [(client, trained[client]) for client in self.population.drift_alarms()]

    def _meta_init_traffic(self, participants: Tensor) -> Traffic:
        """`meta_init`: θ of every expert down to each participant taking part for the first
        time, and every participant's adapted experts up (the shared model's θ moves with the
        models FedAvg already sends)."""
        assert self.meta_init is not None
        experts = sum(self.population.expert_bytes(name) for name in self.meta_init.names)
        newcomers = int((~self.meta_init.trained[participants]).sum())
        return Traffic(up=len(participants) * experts, down=newcomers * experts)

    def _held_out(
        self, k: int, participants: Tensor
    ) -> tuple[tuple[Tensor, Tensor] | None, Sequence[tuple[Tensor, Tensor]] | None]:
        """The rows each participant's ensemble is scored on, as (shared, own): its own with
        `client_test_fraction`, else the global test set (shared); synthetic data's test set is
        one block per client, drawn from that client's distribution, so each gets its own."""
        data = self.data
        if data.client_test_y or data.test_rows_per_client:
            return None, data.held_out_rows(k).take(participants)
        return data.test_set(k), None

    def _ensemble_metrics(self, k: int, participants: Tensor) -> dict[str, float]:
        """The participants' ensembles, as the round left them, on their held-out rows
        (`scarcity.core.ensemble`)."""
        loss, accuracy = self.population.ensemble_scores(*self._held_out(k, participants))
        if bool(loss.isnan().all()):  # no participant holds a held-out row
            return {}
        return ensemble_metrics(self.data.task, loss, accuracy)

    def _probe_metrics(self, k: int, participants: Tensor) -> dict[str, float]:
        """`label_free`: a linear probe of each participant's representation on the held-out
        rows its ensemble would predict (`scarcity.core.probe`)."""
        shared, own = self._held_out(k, participants)
        if own is None:
            assert shared is not None
            own = [shared] * len(participants)
        weight, bias = self.population.encoders()
        cfg, task = self.config, self.data.task
        if cfg.engine_version < CROSS_VALIDATED:  # stored runs keep the half split
            return probe_metrics(task, probe_scores(task, cfg.output_dim, weight, bias, own))
        metrics = probe_metrics(
            task, probe_scores(task, cfg.output_dim, weight, bias, own, PROBE_FOLDS)
        )
        untrained = untrained_encoders(weight, cfg.seed, k)
        scores = probe_scores(task, cfg.output_dim, *untrained, own, PROBE_FOLDS)
        return metrics | probe_metrics(task, scores, "_untrained")

    def _personal_scores(self, k: int) -> torch.Tensor | None:
        """Every client's own held-out rows scored with the model it uses, per client (None
        without `client_test_fraction` or natural clients' own test rows)."""
        if not self.data.client_test_y:
            return None
        return self.score_clients(*self.data.pooled_client_tests(k))

    def score_clients(self, x: Tensor, y: Tensor, owner: Tensor) -> Tensor:
        """Each client's score of the model it would use: the global model, or its
        personalised one (`Strategy.client_model`: its own, personal, fine-tuned or cluster
        model), as the last round left them. `x`, `y`: stacked rows, `owner` [rows]: the
        client id of each. Accuracy per client (classification) or mean loss (regression),
        float64 [num_clients]; NaN for a client without rows."""
        if self.strategy.client_model == "global":
            return self.server.evaluate_clients(x, y, owner, self.config.num_clients)
        return self.client_models().scores(self.data.task, x, y, owner)

    def client_models(self) -> ClientModels:
        """The model each client uses, when its strategy personalises, as the last round left
        it (before round 1: the initial ones; `fedavg_ft`'s copies fine-tuned on the rows of
        round 1). Built once a round."""
        if self._client_models is None:
            self._client_models = self._build_client_models()
        return self._client_models

    def _build_client_models(self) -> ClientModels:
        population, kind = self.population, self.strategy.client_model
        k = max(self._scored_round, 1)
        if kind == "own":
            return population.own_models()
        if kind == "personal":
            return population.personal_models()
        if kind == "finetuned":
            epochs = self.strategy.finetune_epochs()
            return population.finetuned_models(self.server.global_weights(), k, epochs)
        candidates = self.strategy.candidates()
        if kind != "cluster" or candidates is None:
            raise ValueError(f"strategy {self.strategy.name}: no models of the clients' own")
        return population.chosen_models(candidates, population.cluster_choices(k, candidates))

    def _test_metrics(self, k: int) -> dict[str, float]:
        """`test_loss` (and `test_accuracy`) on the test set: the global model's, or, for a
        strategy without one model for all (`local`, `ifca`), the mean over all clients of the
        model each uses."""
        x, y = self.data.test_set(k)
        if self.strategy.client_model not in ("own", "cluster"):
            return self.server.evaluate(x, y)
        loss, accuracy = self.client_models().shared_scores(self.data.task, x, y)
        out = {"test_loss": float(loss.mean())}
        if self.data.task == "classification":
            out["test_accuracy"] = float(accuracy.mean())
        return out

    def _received_updates(
        self,
        fit: FitResult,
        global_weights: Mapping[str, torch.Tensor],
        instructions: FitInstructions,
        attackers: torch.Tensor | None,
        choice: torch.Tensor | None = None,
    ) -> ClientUpdates:
        """The participants' models as the server receives them: honest clients clipped when
        the strategy asks them to (client-side DP), attackers' rows [P] tampered with
        (relative to what each received: `global_weights`, or stacked [P, ...] when each
        chose its own, `choice`)."""
        assert fit.weights is not None
        weights = fit.weights
        if instructions.clip_norm is not None:
            weights = clip_updates(
                weights, global_weights, instructions.clip_norm, unclipped=attackers
            )
        if attackers is not None:
            weights = self.adversary.tamper(weights, global_weights, attackers)
        return ClientUpdates(
            weights=weights,
            sample_counts=fit.sample_counts,
            initial_loss=fit.initial_loss,
            participants=fit.participants,
            num_clients=self.config.num_clients,
            sequential=self.population.sequential,
            choice=choice,
        )

    def _participation_lines(self, k: int, sampled: tuple[int, ...] | None) -> list[str]:
        """Who took part (when sampled) and, in round 1, who the attackers are."""
        cfg = self.config
        lines = []
        if k == 1 and self.adversary.active:
            ids = self.adversary.attackers.tolist()
            shown = ", ".join(map(str, ids[:MAX_DETAIL_CLIENTS])) + (
                f" … ({len(ids)} in all)" if len(ids) > MAX_DETAIL_CLIENTS else ""
            )
            lines.append(
                f"Byzantine attackers ({cfg.attack}, scale {cfg.attack_scale:g}): clients {shown}"
            )
        if sampled is not None and len(sampled) <= MAX_DETAIL_CLIENTS:
            lines.append("Participants: " + ", ".join(map(str, sampled)))
        return lines

    def _seed_messages(
        self,
        participants: torch.Tensor,
        insights: list[Insight],
        meta: dict[str, float],
        pairs: list[GossipPair],
    ) -> list[tuple[str, str]]:
        """The seed's messages of this round, (logger, line), the same for both executions:
        the server's once, each participant's only in a small run (`scarcity.messages`)."""
        cfg = self.config
        out: list[tuple[str, str]] = []
        if cfg.structure_discovery and meta:
            out.append((messages.META_LEARNER, messages.PRIORS_UPDATED))
        if cfg.num_clients > MAX_DETAIL_CLIENTS:
            return out
        ids = participants.tolist()
        if cfg.structure_discovery:
            out += [(messages.CLIENT, messages.completed_structure_discovery(c)) for c in ids]
        if cfg.extended_experts:
            reported = insights or self.population.insights()
            by_client = {i.client_id: i.experts for i in reported}
            for c in ids:
                memory = by_client[c]["MemoryConsolidationExpert"].summary
                out.append((messages.MEMORY_EXPERT, messages.replayed(memory["avg_replay_error"])))
                adaptation = by_client[c]["MetaAdaptationExpert"].summary
                line = messages.adjusted(
                    int(adaptation["lr_adjustments"]), adaptation["current_lr"]
                )
                out.append((messages.ADAPTATION_EXPERT, line))
        if meta:
            out += [(messages.CLIENT, messages.received_meta_params(c, meta)) for c in ids]
        out += [(messages.CLIENT, messages.synced(p.client_a, p.expert, p.client_b)) for p in pairs]
        return out

    def _log_lines(
        self, k: int, metrics: dict[str, float], meta: dict[str, float], pairs: list[GossipPair]
    ) -> list[str]:
        """Human-readable lines of round k; per-client detail only for small runs."""
        lines = [
            f"Round {k}/{self.config.rounds}: "
            + ", ".join(f"{name}={value:.4f}" for name, value in metrics.items())
        ]
        lines += self.strategy.round_lines(self.config.num_clients <= MAX_DETAIL_CLIENTS)
        if self.config.num_clients <= MAX_DETAIL_CLIENTS:
            lines += [
                f"Client {client_id}: loss={loss:.4f}, expert={expert}"
                for client_id, loss, expert in self.population.client_lines()
            ]
            lines += [
                f"Gossip: Client {p.client_a} <-> Client {p.client_b} ({p.expert})" for p in pairs
            ]
        else:
            lines.append(
                f"{metrics.get('clients_sampled', self.config.num_clients):.0f} clients trained, "
                f"{len(pairs)} gossip pairs "
                "(per-client lines omitted)"
            )
        if meta:
            lines.append(
                "Meta-parameters: "
                + ", ".join(
                    f"{name}={value:.4f}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in meta.items()
                )
            )
        return lines

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint(self) -> bytes:
        """Every model, optimiser, buffer, meta-learner, gossip and RNG state after the last round,
        and the byte totals.

        Not included: the insights already returned in earlier `RoundResult`s (so a restored
        server's `memory` holds only insights from after the restore; `insights_received`
        counts them all).
        """
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "rounds_completed": self.rounds_completed,
            "torch_rng": self.generator.get_state(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "clients": [],
            "pool": None,
            self.population.checkpoint_key: self.population.state_dict(),
            "server": self.server.state_dict(),
            "strategy": self.strategy.state_dict(),
            "adversary": self.adversary.state_dict(),
            "meta_learner": self.meta_learner.state_dict(),
            "gossip": self.gossip.state_dict(),
            "scenario": {} if self.scenario is None else self.scenario.state_dict(),
        }
        if self.detection is not None:  # only then: a stored run's layout is unchanged
            state["drift_detection"] = self.detection.state_dict()
        if self.meta_init is not None:  # only when on: a stored run's layout is unchanged
            state["meta_init"] = self.meta_init.state_dict()
        if self.config.engine_version >= BYTES_ENGINE_VERSION:  # a stored run's layout stays
            state["accounting"] = self.ledger.state_dict()
        return checkpoint_format.dumps(state)

    @classmethod
    def restore(cls, config: SimulationConfig | Mapping[str, Any], blob: bytes) -> Simulation:
        """A simulation that continues exactly where the one that wrote `blob` stopped.

        Checkpoints written before `execution` existed came from the per-client reference and
        continue on it; fields added later (`quantity_skew`, `strategy`, …) take their defaults
        (`meta_reptile` becomes the `reptile` strategy), and a checkpoint from before
        strategies had state continues with a fresh one (FedAvg and Reptile hold none).
        """
        state = checkpoint_format.loads(blob)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint: unsupported format {state.get('format')!r}")
        resolved = config if isinstance(config, SimulationConfig) else resolve_config(config)
        saved = stored_config(state["config"])
        if "execution" not in saved:
            saved = {**saved, "execution": "reference"}
            resolved = resolved.model_copy(update={"execution": "reference"})
        # Any other field added since then behaves as its default did (e.g. quantity_skew 0).
        saved = SimulationConfig.model_validate(saved).model_dump(mode="json")
        sim = cls(resolved)
        if saved != sim.config.model_dump(mode="json"):
            raise ValueError("checkpoint: it was written by a simulation with another config")
        sim.rounds_completed = sim._scored_round = state["rounds_completed"]
        sim.generator.set_state(state["torch_rng"])
        sim.rng.bit_generator.state = json.loads(state["numpy_rng"])
        sim.population.load_state_dict(state[sim.population.checkpoint_key])
        sim.server.load_state_dict(state["server"])
        if "strategy" in state:
            sim.strategy.load_state_dict(state["strategy"])
        if "adversary" in state:
            sim.adversary.load_state_dict(state["adversary"])
        sim.meta_learner.load_state_dict(state["meta_learner"])
        sim.gossip.load_state_dict(state["gossip"])
        if sim.scenario is not None:
            sim.scenario.load_state_dict(state["scenario"])
        if sim.detection is not None:
            sim.detection.load_state_dict(state["drift_detection"])
        if sim.meta_init is not None:
            sim.meta_init.load_state_dict(state["meta_init"])
        sim.ledger.load_state_dict(state.get("accounting"))  # None: written before the totals
        return sim


def run_simulation(
    config: SimulationConfig | Mapping[str, Any],
    on_round: Callable[[RoundResult], object] | None = None,
    checkpoint: bytes | None = None,
) -> list[RoundResult]:
    """Run every remaining round (all, or those after `checkpoint`) and return their results.

    `on_round(result)` is called after each round; returning `False` stops the run early
    (an exception it raises propagates). For per-round checkpoints use `Simulation` directly.
    """
    sim = Simulation.restore(config, checkpoint) if checkpoint is not None else Simulation(config)
    results = []
    for result in sim.rounds():
        results.append(result)
        if on_round is not None and on_round(result) is False:
            break
    return results


def personal_metrics(task: str, scores: torch.Tensor) -> dict[str, float]:
    """Mean over the clients of their model's score on their own rows (the global model, or
    the one each uses), and the mean of the worst 10 % of clients (at least one): accuracy
    (lowest) or loss (highest), as LEAF reports the spread of per-client accuracy."""
    scores = scores[~scores.isnan()]
    worst = max(1, math.ceil(len(scores) / 10))
    name = "personal_accuracy" if task == "classification" else "personal_loss"
    ordered = scores.sort(descending=task != "classification").values
    return {
        f"{name}_mean": float(scores.mean()),
        f"{name}_worst10": float(ordered[:worst].mean()),
    }


def with_personal_scores(insights: list[Insight], task: str, scores: torch.Tensor) -> list[Insight]:
    """Each client's insight with its own score of the model it uses."""
    key = "personal_accuracy" if task == "classification" else "personal_loss"
    return [
        dataclasses.replace(i, personal={key: float(scores[i.client_id])})
        if not math.isnan(float(scores[i.client_id]))
        else i
        for i in insights
    ]


def _ids(clients: list[int]) -> str:
    """Client ids for a log line, at most `MAX_DETAIL_CLIENTS` of them."""
    shown = ", ".join(map(str, clients[:MAX_DETAIL_CLIENTS]))
    more = len(clients) > MAX_DETAIL_CLIENTS
    return "clients " + shown + (f" … ({len(clients)} in all)" if more else "")


def _raise_diverged(k: int, path: str, value: Any = "not finite") -> None:
    raise SimulationError(f"round {k}: {path} is {value}; training diverged (lower learning_rate)")


def _check_finite(
    k: int, metrics: Mapping[str, float], meta_params: Mapping[str, float], *, bounded: bool
) -> None:
    """Refuse to report NaN/inf (they are not JSON) and, when `bounded`, a loss (a metric
    named `*loss*`) or a meta-parameter beyond `DIVERGENCE_BOUND`: training diverged."""
    for payload in (metrics, meta_params):
        found = non_finite(payload)
        if found is not None:
            _raise_diverged(k, *found)
    if not bounded:
        return
    watched = [(name, value) for name, value in metrics.items() if "loss" in name]
    watched += [(f"meta-parameter {name}", value) for name, value in meta_params.items()]
    for name, value in watched:
        if isinstance(value, int | float) and abs(value) > DIVERGENCE_BOUND:
            _raise_diverged(k, name, f"{value:.3g} (above {DIVERGENCE_BOUND:.0e})")
