"""Running a simulation: one round at a time, immutable results, exact checkpoints.

A round (`Simulation.run_round`):
1. FedAvg on: the server broadcasts the global model;
2. every client trains locally on this round's data (`Client.train_round`);
3. FedAvg on: the server averages the client models (or takes a Reptile step with
   `meta_reptile`) and evaluates the global model on the held-out test set;
4. every client's insight is aggregated (data statistics, drift, uncertainty, reconstruction,
   replay); with `insight_exchange` the server keeps them in `memory`;
5. `meta_learning`: the meta-learner updates and broadcasts its meta-parameters (+ structural
   priors with `structure_discovery`);
6. `gossip`: random disjoint pairs average one expert each.

All randomness of a run comes from one `torch.Generator` and one `numpy.random.Generator`
seeded from `config.seed` (the data from a separate numpy stream), never from global RNG state,
so runs in one process do not disturb each other.

Two executions compute the same round (`config.execution`): `batched` (default) holds all
clients as tensors with a leading client axis (`scarcity.batched.ClientPool`) and trains them
in a few tensor ops; `reference` runs one `Client` object per client (`scarcity.core`), the
readable definition. They take the same random draws in the same order and agree on every
metric up to float rounding (tests/scarcity/test_batched.py). Float results also depend on torch's
intra-op thread count (`torch.set_num_threads`); the CLI and the service's workers use 1 by
default, which is also the fastest for these tiny tensors. `checkpoint()` captures every model,
optimiser, buffer, meta-learner, gossip and RNG state; `Simulation.restore` continues exactly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from scarcity import checkpoint as checkpoint_format
from scarcity.batched import ClientPool
from scarcity.config import SimulationConfig, resolve_config
from scarcity.core.client import Client
from scarcity.core.data import FederatedData, make_federated_data
from scarcity.core.gossip import GossipScheduler, gossip_round
from scarcity.core.meta_learner import MetaLearner
from scarcity.core.server import Server
from scarcity.results import GossipPair, RoundResult

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
SIM_STREAM = 0x51A  # second seed word of the simulation's numpy stream
#: Per-client and per-pair log lines are written only up to this many clients.
MAX_DETAIL_CLIENTS = 10


class SimulationError(RuntimeError):
    """The run cannot go on (e.g. training diverged to a non-finite loss)."""


class Simulation:
    """One SF-HFE run: `run_round()` / `rounds()` yield a `RoundResult` per finished round."""

    def __init__(self, config: SimulationConfig | Mapping[str, Any]) -> None:
        self.config = config if isinstance(config, SimulationConfig) else resolve_config(config)
        cfg = self.config
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.rng = np.random.default_rng([cfg.seed, SIM_STREAM])
        self.data: FederatedData = make_federated_data(cfg)
        #: The batched client state (`execution="batched"`), else None.
        self.pool: ClientPool | None = None
        #: One object per client (`execution="reference"`), else empty.
        self.clients: list[Client] = []
        if cfg.execution == "batched":
            self.pool = ClientPool(cfg, self.data, self.generator, self.rng)
        else:
            self.clients = self._make_clients()
        self.server = Server(
            cfg.num_clients, cfg.input_dim, cfg.output_dim, self.data.task, generator=self.generator
        )
        self.meta_learner = MetaLearner(alpha=cfg.meta_ema_alpha, base_lr=cfg.learning_rate)
        self.gossip = GossipScheduler(cfg.num_clients)
        self.rounds_completed = 0

    def _make_clients(self) -> list[Client]:
        cfg = self.config
        return [
            Client(
                i,
                cfg,
                self.data.client_x[i],
                self.data.client_y[i],
                self.data.task,
                generator=self.generator,
                rng=self.rng,
            )
            for i in range(cfg.num_clients)
        ]

    # -- running --------------------------------------------------------------------------
    def rounds(self) -> Iterator[RoundResult]:
        """The remaining rounds, one result each."""
        while self.rounds_completed < self.config.rounds:
            yield self.run_round()

    def run_round(self) -> RoundResult:
        """Run the next round and return its result."""
        cfg = self.config
        if self.rounds_completed >= cfg.rounds:
            raise SimulationError(f"all {cfg.rounds} rounds are done")
        k = self.rounds_completed + 1
        started = time.perf_counter()
        pool = self.pool
        if cfg.federated_averaging:
            if pool is not None:
                pool.set_model_weights(self.server.global_weights())
            else:
                self.server.broadcast_model(self.clients)
        if pool is not None:
            pool.train_round(k)
            metrics: dict[str, float] = {"loss": pool.mean_loss()}
        else:
            for client in self.clients:
                client.set_data(*self.data.client_data(client.client_id, k))
                client.train_round()
            metrics = {"loss": _mean([c.last_round.loss for c in self.clients])}
        if cfg.federated_averaging:
            if pool is not None:
                if cfg.meta_reptile:
                    self.server.reptile_update_stacked(pool.model_weights(), cfg.reptile_step_size)
                else:
                    self.server.aggregate_stacked(pool.model_weights(), pool.sample_counts())
            else:
                weights = [c.get_model_weights() for c in self.clients]
                if cfg.meta_reptile:
                    self.server.reptile_update(weights, cfg.reptile_step_size)
                else:
                    self.server.aggregate_models(weights, [c.num_samples for c in self.clients])
            metrics.update(self.server.evaluate(*self.data.test_set(k)))

        if pool is not None:  # per-client dicts only when a consumer needs them
            needed = cfg.insight_exchange or cfg.meta_learning
            insights = pool.insights() if needed else []
            stats = pool.statistics()
        else:
            insights = [c.generate_insight() for c in self.clients]
            stats = self.server.aggregate_insights(insights)
        metrics.update({key: stats[key] for key in ("data_mean", "data_std", "drift")})
        for key in ("replay_error", "recon_loss"):
            if key in stats:
                metrics[key] = stats[key]
        if cfg.insight_exchange:
            for insight in insights:
                self.server.receive_insight(insight)
            metrics["avg_uncertainty"] = stats["avg_uncertainty"]

        meta_params: dict[str, float] = {}
        if cfg.meta_learning:
            self.meta_learner.aggregate(insights)
            self.meta_learner.update_global_params(insights)
            if cfg.structure_discovery:
                self.meta_learner.compute_structural_priors(insights)
            meta_params = self.meta_learner.broadcast_params()
            if pool is not None:
                pool.receive_meta_params(meta_params)
            for client in self.clients:
                client.receive_meta_params(meta_params)

        pairs: list[GossipPair] = []
        if cfg.gossip:
            synced = (
                pool.gossip(self.gossip, self.rng)
                if pool is not None
                else gossip_round(self.clients, self.gossip, self.rng)
            )
            pairs = [GossipPair(a, b, name) for a, b, name in synced]

        usage: dict[str, int] = {}
        if cfg.expert_routing:
            if pool is not None:
                usage = pool.expert_usage()
            else:
                counts = Counter(c.last_round.selected_expert for c in self.clients)
                usage = {name: counts[name] for name in self.clients[0].expert_names}

        if pool is not None:  # the insights are built from the pool's tensors: check those
            _check_finite(k, metrics, meta_params)
            pool.check_finite(lambda path: _raise_diverged(k, path))
        else:
            _check_finite(k, metrics, meta_params, insights)
        self.rounds_completed = k
        lines = self._log_lines(k, metrics, meta_params, pairs)
        for line in lines:  # round summary and meta-parameters at INFO, per-client detail DEBUG
            level = logging.INFO if line.startswith(("Round ", "Meta-")) else logging.DEBUG
            logger.log(level, line)
        return RoundResult(
            round=k,
            metrics=metrics,
            insights=tuple(insights) if cfg.insight_exchange else (),
            meta_params=meta_params,
            expert_usage=usage,
            gossip_pairs=tuple(pairs),
            logs=tuple(lines),
            duration_seconds=time.perf_counter() - started,
        )

    def _log_lines(
        self, k: int, metrics: dict[str, float], meta: dict[str, float], pairs: list[GossipPair]
    ) -> list[str]:
        """Human-readable lines of round k; per-client detail only for small runs."""
        lines = [
            f"Round {k}/{self.config.rounds}: "
            + ", ".join(f"{name}={value:.4f}" for name, value in metrics.items())
        ]
        if self.config.num_clients <= MAX_DETAIL_CLIENTS:
            lines += [
                f"Client {client_id}: loss={loss:.4f}, expert={expert}"
                for client_id, loss, expert in self._client_lines()
            ]
            lines += [
                f"Gossip: Client {p.client_a} <-> Client {p.client_b} ({p.expert})" for p in pairs
            ]
        else:
            lines.append(
                f"{self.config.num_clients} clients trained, {len(pairs)} gossip pairs "
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

    def _client_lines(self) -> list[tuple[int, float, str]]:
        if self.pool is not None:
            return self.pool.client_lines()
        return [
            (c.client_id, c.last_round.loss, c.last_round.selected_expert) for c in self.clients
        ]

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint(self) -> bytes:
        """Every model, optimiser, buffer, meta-learner, gossip and RNG state after the last round.

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
            "clients": [c.state_dict() for c in self.clients],
            "pool": self.pool.state_dict() if self.pool is not None else None,
            "server": self.server.state_dict(),
            "meta_learner": self.meta_learner.state_dict(),
            "gossip": self.gossip.state_dict(),
        }
        return checkpoint_format.dumps(state)

    @classmethod
    def restore(cls, config: SimulationConfig | Mapping[str, Any], blob: bytes) -> Simulation:
        """A simulation that continues exactly where the one that wrote `blob` stopped.

        Checkpoints written before `execution` existed came from the per-client reference and
        continue on it; fields added later (`quantity_skew`) take their defaults.
        """
        state = checkpoint_format.loads(blob)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint: unsupported format {state.get('format')!r}")
        resolved = config if isinstance(config, SimulationConfig) else resolve_config(config)
        saved = state["config"]
        if "execution" not in saved:
            saved = {**saved, "execution": "reference"}
            resolved = resolved.model_copy(update={"execution": "reference"})
        # Any other field added since then behaves as its default did (e.g. quantity_skew 0).
        defaults = SimulationConfig().model_dump(mode="json")
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
        sim = cls(resolved)
        if saved != sim.config.model_dump(mode="json"):
            raise ValueError("checkpoint: it was written by a simulation with another config")
        sim.rounds_completed = state["rounds_completed"]
        sim.generator.set_state(state["torch_rng"])
        sim.rng.bit_generator.state = json.loads(state["numpy_rng"])
        for client, client_state in zip(sim.clients, state["clients"], strict=True):
            client.load_state_dict(client_state)
        if sim.pool is not None:
            sim.pool.load_state_dict(state["pool"])
        sim.server.load_state_dict(state["server"])
        sim.meta_learner.load_state_dict(state["meta_learner"])
        sim.gossip.load_state_dict(state["gossip"])
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


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _raise_diverged(k: int, path: str, value: Any = "not finite") -> None:
    raise SimulationError(f"round {k}: {path} is {value}; training diverged (lower learning_rate)")


def _check_finite(k: int, *payloads: Any) -> None:
    """Refuse to report NaN/inf (they are not JSON): training diverged."""

    def walk(value: Any, path: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            _raise_diverged(k, path, value)
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, path)

    for payload in payloads:
        walk(payload, "")
