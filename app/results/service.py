"""Results: what the `/simulations/{id}/…` read routes do (metrics, insights, meta-params, logs,
attempts, the clients' data), one function each; every one answers 404 for a run that is not
the owner's before it reads anything."""

from __future__ import annotations

import csv
import io
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from fastapi import Response
from sqlalchemy.orm import Session

from app.errors import Conflict, Unprocessable
from app.negotiation import table
from app.schemas import (
    InsightPublic,
    InsightsPublic,
    LogLine,
    LogsPublic,
    MetaParamsPublic,
    MetaParamsRow,
    ModelArchitecturePublic,
)
from app.simulations.service import get_simulation
from models import results_repo
from models.base import as_utc
from models.settings import Settings
from scarcity import artifacts
from scarcity.config import SimulationConfig
from scarcity.core.data import describe_clients
from scarcity.errors import ConfigError
from scarcity.simulation import SimulationError


def check_round_range(from_round: int | None, to_round: int | None) -> None:
    if from_round is not None and to_round is not None and from_round > to_round:
        raise Unprocessable(
            [
                {
                    "field": "from_round",
                    "message": f"from_round ({from_round}) is after to_round ({to_round})",
                }
            ]
        )


def metrics_rows(
    session: Session,
    simulation_id: uuid.UUID,
    *,
    from_round: int | None,
    to_round: int | None,
    names: list[str] | None,
) -> list[dict[str, Any]]:
    """The stored rounds in range, each with the metrics named (all when `names` is None)."""
    check_round_range(from_round, to_round)
    rows = results_repo.round_metrics(session, simulation_id, from_round, to_round)
    return [
        {
            "round": row.round,
            "metrics": {k: v for k, v in row.metrics.items() if names is None or k in names},
            "expert_usage": row.expert_usage,
            "gossip_pairs": row.gossip_pairs,
            "participants": row.participants,
        }
        for row in rows
    ]


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """One line per round: `round` then every metric name seen, sorted; blanks where absent.
    When a listed round was sampled, a last `participants` column: its clients' ids separated
    by spaces (blank where every client took part)."""
    names = sorted({name for row in rows for name in row["metrics"]})
    sampled = any(row.get("participants") is not None for row in rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["round", *names, *(["participants"] if sampled else [])])
    for row in rows:
        line = [row["round"], *(row["metrics"].get(n, "") for n in names)]
        if sampled:
            line.append(" ".join(map(str, row.get("participants") or [])))
        writer.writerow(line)
    return out.getvalue()


def metrics(
    session: Session,
    simulation_id: uuid.UUID,
    owner: str,
    *,
    from_round: int | None,
    to_round: int | None,
    names: str | None,
    format: str | None,
    accept: str | None,
) -> Any:
    """The run's rounds as JSON (`MetricsPublic`) or CSV, as negotiated; `names` a comma list."""
    get_simulation(session, simulation_id, owner)
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    rows = metrics_rows(
        session, simulation_id, from_round=from_round, to_round=to_round, names=wanted
    )
    body = {"simulation_id": simulation_id, "rounds": rows}
    return table(body, lambda: metrics_csv(rows), format=format, accept=accept)


def insights(
    session: Session,
    simulation_id: uuid.UUID,
    owner: str,
    *,
    round: int | None,
    client_id: int | None,
    limit: int,
    offset: int,
) -> InsightsPublic:
    get_simulation(session, simulation_id, owner)
    rows = results_repo.insights(
        session, simulation_id, round=round, client_id=client_id, limit=limit, offset=offset
    )
    return InsightsPublic(
        simulation_id=simulation_id,
        insights=[
            InsightPublic(round=r.round, client_id=r.client_id, insight=r.insight) for r in rows
        ],
    )


def meta_params(
    session: Session,
    simulation_id: uuid.UUID,
    owner: str,
    *,
    from_round: int | None,
    to_round: int | None,
) -> MetaParamsPublic:
    get_simulation(session, simulation_id, owner)
    check_round_range(from_round, to_round)
    rows = results_repo.meta_params(session, simulation_id, from_round, to_round)
    return MetaParamsPublic(
        simulation_id=simulation_id,
        rounds=[MetaParamsRow(round=r.round, **r.params) for r in rows],
    )


def logs(session: Session, simulation_id: uuid.UUID, owner: str, after_id: int) -> LogsPublic:
    get_simulation(session, simulation_id, owner)
    rows = results_repo.logs(session, simulation_id, after_id)
    return LogsPublic(
        simulation_id=simulation_id,
        lines=[LogLine(id=r.id, round=r.round, level=r.level, message=r.message) for r in rows],
    )


def attempts(session: Session, simulation_id: uuid.UUID, owner: str) -> dict[str, Any]:
    """Provenance: who ran each attempt, on what software and machine (oldest first)."""
    get_simulation(session, simulation_id, owner)
    return {
        "simulation_id": simulation_id,
        "attempts": [
            {
                "attempt": row.attempt,
                "worker": row.worker,
                "started_at": as_utc(row.started_at),  # SQLite hands it back naive
                "environment": row.environment,
            }
            for row in results_repo.attempts(session, simulation_id)
        ],
    }


#: Synthetic rows the API makes itself to describe a run the worker has not started yet;
#: beyond, the worker writes the description when it builds the data anyway.
MAX_DESCRIBED_ROWS = 1_000_000


def client_data(session: Session, simulation_id: uuid.UUID, owner: str) -> list[dict[str, Any]]:
    """Each client's data: the rows the worker wrote when the run started, or, before then,
    made from the run's config and stored (a pure function of it, so a queued run shows the
    data it will train on)."""
    simulation = get_simulation(session, simulation_id, owner)
    rows = results_repo.client_data(session, simulation_id)
    if not rows:
        config = SimulationConfig.model_validate(simulation.config)
        synthetic_rows = config.num_clients * config.samples_per_client
        if config.dataset == "synthetic" and synthetic_rows > MAX_DESCRIBED_ROWS:
            raise Conflict(
                f"simulation {simulation_id}: its {synthetic_rows:,} synthetic rows are "
                "described when a worker starts it; ask again once it is running"
            )
        results_repo.save_client_data(
            session, simulation_id, [c.to_dict() for c in describe_clients(config)]
        )
        rows = results_repo.client_data(session, simulation_id)
    trained = results_repo.rounds_trained(session, simulation_id, len(rows))
    return [row.to_dict() | {"rounds_trained": n} for row, n in zip(rows, trained, strict=True)]


def client_data_csv(clients: list[dict[str, Any]]) -> str:
    """One line per client: its rows, whether it is an attacker (`true` / `false`, empty when
    not recorded), the rounds it trained in, then one column per class (or per target's mean,
    std)."""
    first = clients[0] if clients else {}
    labels = len(first.get("label_counts") or [])
    targets = len(first.get("target_mean") or [])
    header = ["client_id", "train_samples", "test_samples", "malicious", "rounds_trained"]
    header += [f"label_{k}" for k in range(labels)]
    header += [f"target_{j}_{stat}" for j in range(targets) for stat in ("mean", "std")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for c in clients:
        moments = [
            value for j in range(targets) for value in (c["target_mean"][j], c["target_std"][j])
        ]
        writer.writerow(
            [
                c["client_id"],
                c["train_samples"],
                c["test_samples"],
                {True: "true", False: "false", None: ""}[c["malicious"]],
                c["rounds_trained"],
                *(c["label_counts"] or []),
                *moments,
            ]
        )
    return out.getvalue()


def clients(
    session: Session,
    simulation_id: uuid.UUID,
    owner: str,
    *,
    format: str | None,
    accept: str | None,
) -> Any:
    """The clients' data as JSON (`ClientsPublic`) or CSV, as negotiated."""
    rows = client_data(session, simulation_id, owner)
    body = {"simulation_id": simulation_id, "clients": rows}
    return table(body, lambda: client_data_csv(rows), format=format, accept=accept)


# -- trained models ---------------------------------------------------------------------------
#: Recomputations run one at a time in an API process: each is CPU-bound, and torch's thread
#: count, which the numbers depend on, is the whole process's.
_REPLAY_LOCK = threading.Lock()


@dataclass(frozen=True)
class _ModelSource:
    """What recomputing a round's model needs, read in one transaction."""

    config: SimulationConfig
    stored_metrics: dict[str, float]
    #: A running run's checkpoint when it was taken at or before the round (else None).
    checkpoint: bytes | None
    #: The first round to recompute (after the checkpoint's) and the stored rounds' seconds.
    first_round: int
    seconds: float
    #: The torch thread count the run's last attempt computed with.
    threads: int


def _model_source(
    session: Session, simulation_id: uuid.UUID, owner: str, round: int, client_id: int | None
) -> _ModelSource:
    """The owner's run and round, or why it has no such model: 404 (not the owner's), 422 (a
    round or client the run never has), 409 (not run yet, or no model of that kind)."""
    simulation = get_simulation(session, simulation_id, owner)
    config = SimulationConfig.model_validate(simulation.config)
    if round > config.rounds:
        message = f"round {round}: the run has {config.rounds} rounds"
        raise Unprocessable([{"field": "round", "message": message}])
    if client_id is not None and client_id >= config.num_clients:
        message = f"client_id {client_id}: the run has {config.num_clients} clients (0…)"
        raise Unprocessable([{"field": "client_id", "message": message}])
    try:
        artifacts.check_request(config, client_id)
    except artifacts.NoModel as error:
        raise Conflict(f"simulation {simulation_id}: {error}") from None
    if round > simulation.rounds_completed:
        raise Conflict(
            f"simulation {simulation_id}: round {round} has not run "
            f"({simulation.status}, {simulation.rounds_completed} rounds stored)"
        )
    stored = results_repo.round_metrics(session, simulation_id, round, round)
    if not stored:  # a progress without its rows: never written by the worker, but say so
        raise Conflict(f"simulation {simulation_id}: round {round} is not stored")
    saved = results_repo.checkpoint(session, simulation_id)
    checkpoint = saved[1] if saved is not None and saved[0] <= round else None
    first = saved[0] + 1 if checkpoint is not None and saved is not None else 1
    durations = results_repo.round_metrics(session, simulation_id, first, round)
    attempts = results_repo.attempts(session, simulation_id)
    threads = int(attempts[-1].environment.get("torch_threads", 1)) if attempts else 1
    return _ModelSource(
        config=config,
        stored_metrics=dict(stored[0].metrics),
        checkpoint=checkpoint,
        first_round=first,
        seconds=sum(row.duration_seconds for row in durations),
        threads=max(1, threads),
    )


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def model_architecture(
    session: Session, simulation_id: uuid.UUID, owner: str, *, round: int, client_id: int | None
) -> ModelArchitecturePublic:
    """What `model` would send for the same query, without computing it."""
    source = _model_source(session, simulation_id, owner, round, client_id)
    described = artifacts.architecture(source.config, client_id)
    return ModelArchitecturePublic(simulation_id=simulation_id, round=round, **described)


def model(
    session: Session,
    simulation_id: uuid.UUID,
    owner: str,
    settings: Settings,
    *,
    round: int,
    client_id: int | None,
    format: artifacts.Format,
) -> Response:
    """The global model (or a client's experts) after `round`, as a file: recomputed from the
    run's seed, or from its checkpoint while it runs, and checked against the stored round's
    metrics (`scarcity.artifacts`; docs/design.md, "Trained models")."""
    source = _model_source(session, simulation_id, owner, round, client_id)
    if source.first_round <= round and source.seconds > settings.model_replay_seconds:
        raise Conflict(
            f"simulation {simulation_id}: round {round}'s model is recomputed from round "
            f"{source.first_round}, which took {source.seconds:.1f} s when the run computed "
            f"it, above {settings.model_replay_seconds:g} s (SCARCITY_MODEL_REPLAY_SECONDS)"
        )
    session.rollback()  # no transaction stays open while the rounds are recomputed
    try:
        with _REPLAY_LOCK, _torch_threads(source.threads):
            simulation, result = artifacts.replay(source.config, round, source.checkpoint)
    except (SimulationError, ConfigError, OSError, ValueError) as error:
        raise Conflict(f"simulation {simulation_id}: recomputing it failed: {error}") from None
    if result is not None:
        differ = artifacts.mismatches(source.stored_metrics, result.metrics)
        if differ:
            raise Conflict(
                f"simulation {simulation_id}: recomputing round {round} did not reproduce its "
                f"stored metrics ({'; '.join(differ[:3])}): it was computed by another engine "
                "or on a CPU that rounds otherwise"
            )
    if client_id is None:
        tensors = artifacts.global_model(simulation)
    else:
        tensors = artifacts.client_experts(simulation, client_id)
    described = {
        "simulation_id": str(simulation_id),
        "round": round,
        **artifacts.architecture(source.config, client_id),
    }
    who = "global" if client_id is None else f"client-{client_id}"
    filename = f"{simulation_id}-round-{round}-{who}{artifacts.SUFFIXES[format]}"
    return Response(
        artifacts.encode(tensors, format, described),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
