"""What a run produced, as stored: each round's metrics, meta-parameters and insights, its log
lines, what each client holds and each attempt's provenance; the reads, and the writes that
are not fenced rounds (lifecycle log lines, the clients' data and provenance, each written once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from models.attempt import Attempt
from models.client_data import ClientData
from models.client_insight import ClientInsight
from models.meta_params import MetaParams
from models.round_metrics import RoundMetrics
from models.simulation import Simulation
from models.simulation_log import SimulationLog
from models.upsert import insert_for


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
