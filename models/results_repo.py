"""What a run produced, as stored: each round's metrics, meta-parameters and insights, its log
lines, what each client holds and each attempt's provenance; the reads, the stored form of the
engine's round results (`round_rows`, written fenced by `lease.save_rounds`), and the writes
that are not fenced rounds (lifecycle log lines, the clients' data and provenance, each written
once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from models.attempt import Attempt
from models.checkpoint import Checkpoint
from models.client_data import ClientData
from models.client_insight import ClientInsight
from models.meta_params import UNCERTAINTY_GROUPS, MetaParams
from models.round_metrics import RoundMetrics
from models.simulation import Simulation
from models.simulation_log import SimulationLog
from models.upsert import insert_for

if TYPE_CHECKING:  # only read here: models/ does not import the engine
    from scarcity.results import RoundResult


@dataclass(frozen=True)
class RoundRows:
    """Finished rounds as rows, one list per table, their JSON in the names the API serves
    (those of `RoundResult.to_dict()`)."""

    metrics: list[dict[str, Any]]
    insights: list[dict[str, Any]]
    meta_params: list[dict[str, Any]]
    logs: list[dict[str, Any]]


def round_rows(simulation_id: uuid.UUID, results: Sequence[RoundResult]) -> RoundRows:
    """The rows that store the engine's `results` of one run: its metrics with what the round
    did (expert usage, gossip, participants, duration), each client's insight, the
    meta-learner's parameters with its two client lists (rounds that have them) and the round's
    log lines."""
    return RoundRows(
        metrics=[
            {
                "simulation_id": simulation_id,
                "round": result.round,
                "metrics": dict(result.metrics),
                "expert_usage": dict(result.expert_usage),
                "gossip_pairs": [pair.to_dict() for pair in result.gossip_pairs],
                "participants": None if result.participants is None else list(result.participants),
                "duration_seconds": result.duration_seconds,
            }
            for result in results
        ],
        insights=[
            {
                "simulation_id": simulation_id,
                "round": result.round,
                "client_id": insight.client_id,
                "insight": insight.to_dict(),
            }
            for result in results
            for insight in result.insights
        ],
        meta_params=[
            {
                "simulation_id": simulation_id,
                "round": result.round,
                # The meta-learner's client lists are kept beside the parameters it broadcast.
                "params": {
                    **result.meta_params,
                    **{
                        key: list(result.uncertainty_groups.get(key, ()))
                        for key in UNCERTAINTY_GROUPS
                    },
                },
            }
            for result in results
            if result.meta_params
        ],
        logs=[
            {
                "simulation_id": simulation_id,
                "round": result.round,
                "seq": seq,
                "level": "INFO",
                "message": message,
            }
            for result in results
            for seq, message in enumerate(result.logs)
        ],
    )


def add_log(session: Session, simulation_id: uuid.UUID, message: str, level: str = "INFO") -> None:
    """A lifecycle line (round 0), numbered after the ones already there."""
    seq = session.scalar(
        select(func.coalesce(func.max(SimulationLog.seq) + 1, 0)).where(
            SimulationLog.simulation_id == simulation_id, SimulationLog.round == 0
        )
    )
    session.add(
        SimulationLog(simulation_id=simulation_id, round=0, seq=seq, level=level, message=message)
    )
    session.flush()


def _rounds_query(
    table: Any, simulation_id: uuid.UUID, from_round: int | None, to_round: int | None
) -> Select[Any]:
    query = select(table).where(table.simulation_id == simulation_id)
    if from_round is not None:
        query = query.where(table.round >= from_round)
    if to_round is not None:
        query = query.where(table.round <= to_round)
    return query.order_by(table.round)


def round_metrics(
    session: Session, simulation_id: uuid.UUID, from_round: int | None, to_round: int | None
) -> list[RoundMetrics]:
    return list(session.scalars(_rounds_query(RoundMetrics, simulation_id, from_round, to_round)))


def metrics_of(
    session: Session, simulation_ids: Sequence[uuid.UUID]
) -> list[tuple[uuid.UUID, int, dict[str, float]]]:
    """(simulation, round, metrics) of every stored round of several runs, in one query."""
    rows = session.execute(
        select(RoundMetrics.simulation_id, RoundMetrics.round, RoundMetrics.metrics)
        .where(RoundMetrics.simulation_id.in_(simulation_ids))
        .order_by(RoundMetrics.round)
    )
    return [(row.simulation_id, row.round, row.metrics) for row in rows]


def final_metrics(
    session: Session, simulations: Sequence[Simulation]
) -> dict[uuid.UUID, dict[str, float]]:
    """Metrics of each simulation's last stored round, in one query (for list pages)."""
    last = {s.id: s.rounds_completed for s in simulations if s.rounds_completed > 0}
    if not last:
        return {}
    rows = session.execute(
        select(RoundMetrics.simulation_id, RoundMetrics.round, RoundMetrics.metrics).where(
            RoundMetrics.simulation_id.in_(last), RoundMetrics.round.in_(set(last.values()))
        )
    )
    return {sim_id: metrics for sim_id, number, metrics in rows if last[sim_id] == number}


def meta_params(
    session: Session, simulation_id: uuid.UUID, from_round: int | None, to_round: int | None
) -> list[MetaParams]:
    return list(session.scalars(_rounds_query(MetaParams, simulation_id, from_round, to_round)))


def insights(
    session: Session,
    simulation_id: uuid.UUID,
    *,
    round: int | None = None,
    client_id: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[ClientInsight]:
    query = select(ClientInsight).where(ClientInsight.simulation_id == simulation_id)
    if round is not None:
        query = query.where(ClientInsight.round == round)
    if client_id is not None:
        query = query.where(ClientInsight.client_id == client_id)
    query = query.order_by(ClientInsight.round, ClientInsight.client_id).offset(offset)
    return list(session.scalars(query.limit(limit) if limit else query))


def logs(session: Session, simulation_id: uuid.UUID, after_id: int = 0) -> list[SimulationLog]:
    """Lines in the order they were written (id), optionally only those after `after_id`."""
    return list(
        session.scalars(
            select(SimulationLog)
            .where(SimulationLog.simulation_id == simulation_id, SimulationLog.id > after_id)
            .order_by(SimulationLog.id)
        )
    )


def client_data(session: Session, simulation_id: uuid.UUID) -> list[ClientData]:
    query = select(ClientData).where(ClientData.simulation_id == simulation_id)
    return list(session.scalars(query.order_by(ClientData.client_id)))


def rounds_trained(session: Session, simulation_id: uuid.UUID, num_clients: int) -> list[int]:
    """How many of the stored rounds each client trained in: a round's `participants`, or every
    client when it names none (everyone took part)."""
    counts = [0] * num_clients
    query = select(RoundMetrics.participants).where(RoundMetrics.simulation_id == simulation_id)
    for participants in session.scalars(query):
        for client_id in range(num_clients) if participants is None else participants:
            counts[client_id] += 1
    return counts


def save_client_data(
    session: Session, simulation_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> None:
    """Write the clients' data once: a concurrent first writer's rows stand. In chunks, as
    SQLite caps the parameters of one statement."""
    for start in range(0, len(rows), 2000):
        chunk = [{"simulation_id": simulation_id, **row} for row in rows[start : start + 2000]]
        statement = insert_for(session)(ClientData).values(chunk)
        session.execute(
            statement.on_conflict_do_nothing(index_elements=["simulation_id", "client_id"])
        )


def attempts(session: Session, simulation_id: uuid.UUID) -> list[Attempt]:
    query = select(Attempt).where(Attempt.simulation_id == simulation_id)
    return list(session.scalars(query.order_by(Attempt.attempt)))


def checkpoint(session: Session, simulation_id: uuid.UUID) -> tuple[int, bytes] | None:
    """The engine checkpoint of a running simulation (the round it was taken after, its bytes),
    or None (none taken yet, or the run ended: its checkpoint is deleted then)."""
    saved = session.execute(
        select(Checkpoint.round, Checkpoint.state).where(Checkpoint.simulation_id == simulation_id)
    ).one_or_none()
    return None if saved is None else (saved.round, saved.state)
