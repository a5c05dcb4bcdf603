"""The simulations table as the API uses it: create (one, or a batch in one INSERT), read,
list, count, edit, cancel and delete. Callers own the transaction (`session_scope`); these flush.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from models import search
from models.base import utcnow
from models.checkpoint import Checkpoint
from models.client_insight import ClientInsight
from models.meta_params import MetaParams
from models.notify import notify
from models.pages import newest_first
from models.round_metrics import RoundMetrics
from models.simulation import Simulation, SimulationStatus
from models.simulation_log import SimulationLog

ACTIVE_STATUSES = (SimulationStatus.queued, SimulationStatus.running)


def new_simulation(
    *, owner: str, config: dict[str, Any], attrs: Mapping[str, Any] | None = None
) -> Simulation:
    """A queued simulation row, not yet added to any session; `attrs` sets more columns
    (`name`, `tags`, `notes`)."""
    attrs = attrs or {}
    return Simulation(
        id=uuid.uuid4(),
        owner=owner,
        preset=config["preset"],
        status=SimulationStatus.queued,
        config=config,
        rounds_total=config["rounds"],
        rounds_completed=0,
        created_at=utcnow(),
        attempt=0,
        cancel_requested=False,
        name=attrs.get("name"),
        tags=dict(attrs.get("tags") or {}),
        notes=attrs.get("notes"),
    )


def create_simulation(
    session: Session,
    *,
    owner: str,
    config: dict[str, Any],
    attrs: Mapping[str, Any] | None = None,
) -> Simulation:
    simulation = new_simulation(owner=owner, config=config, attrs=attrs)
    session.add(simulation)
    session.flush()
    return simulation


def admit(
    session: Session,
    submissions: Sequence[tuple[str, dict[str, Any], Mapping[str, Any]]],
    *,
    room: Mapping[str, int],
) -> list[Simulation | None]:
    """Insert, in order, each (owner, config, attrs) while its owner has `room` left (how many
    more active simulations the cap allows); None marks a submission refused for the cap. One
    multi-row INSERT for the whole batch."""
    room = dict(room)
    outcomes: list[Simulation | None] = []
    for owner, config, attrs in submissions:
        room[owner] -= 1
        fits = room[owner] >= 0
        outcomes.append(new_simulation(owner=owner, config=config, attrs=attrs) if fits else None)
    admitted = [row for row in outcomes if row is not None]
    if admitted:
        columns = [column.key for column in Simulation.__table__.columns]
        session.execute(
            insert(Simulation),  # ORM bulk INSERT: one multi-row statement
            [{key: getattr(row, key) for key in columns} for row in admitted],
        )
    return outcomes


def get_simulation(session: Session, simulation_id: uuid.UUID, owner: str) -> Simulation | None:
    """The simulation if `owner` may see it; another owner's id looks exactly like a missing one."""
    return session.scalar(
        select(Simulation).where(Simulation.id == simulation_id, Simulation.owner == owner)
    )


def get_simulations(
    session: Session, simulation_ids: Sequence[uuid.UUID], owner: str
) -> list[Simulation]:
    """Those of `simulation_ids` that `owner` may see, in no particular order."""
    return list(
        session.scalars(
            select(Simulation).where(Simulation.id.in_(simulation_ids), Simulation.owner == owner)
        )
    )


def list_simulations(
    session: Session,
    *,
    owner: str,
    status: str | None = None,
    preset: str | None = None,
    conditions: Sequence[search.Condition] = (),
    order: Sequence[search.SortKey] = (),
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    offset: int = 0,
) -> list[Simulation]:
    """Newest first, or by `order` then newest first; `conditions` AND-ed (models/search.py).

    Pages: `after` is the (created_at, id) of the last row of the previous page (newest-first
    order), `offset` the rows already shown (any other order).
    """
    query = select(Simulation).where(Simulation.owner == owner)
    if status:
        query = query.where(Simulation.status == status)
    if preset:
        query = query.where(Simulation.preset == preset)
    query = search.apply(query, conditions, order)
    if offset:
        query = query.offset(offset)
    return list(session.scalars(newest_first(query, Simulation, limit, after)))


def count_active(session: Session, owner: str, *, up_to: int | None = None) -> int:
    """Queued + running simulations of `owner`; counting stops at `up_to` (the cap being checked),
    so a long queue does not make every submission slower."""
    active = select(Simulation.id).where(
        Simulation.owner == owner, Simulation.status.in_(ACTIVE_STATUSES)
    )
    if up_to is not None:
        active = active.limit(up_to)
    return session.scalar(select(func.count()).select_from(active.subquery())) or 0


def count_by_status(session: Session) -> dict[str, int]:
    """How many simulations there are in each status (all owners: for the operator's metrics)."""
    rows = session.execute(
        select(Simulation.status, func.count()).group_by(Simulation.status)
    ).all()
    return {str(status): int(n) for status, n in rows}


def update_simulation(session: Session, simulation: Simulation, changes: Mapping[str, Any]) -> None:
    """Set the run's own columns (`name`, `tags`, `notes`); nothing the worker reads."""
    for column, value in changes.items():
        assert column in ("name", "tags", "notes"), column
        setattr(simulation, column, value)
    session.flush()


def request_cancel(session: Session, simulation: Simulation) -> None:
    """Queued → cancelled at once; running → flagged, the worker stops after its current round."""
    now = utcnow()
    if simulation.status in (SimulationStatus.queued, SimulationStatus.pending):
        simulation.status = SimulationStatus.cancelled
        simulation.finished_at = now
        notify(session, simulation.id, simulation.status)
    simulation.cancel_requested = True
    session.flush()


def delete_simulation(session: Session, simulation: Simulation) -> None:
    for table in (RoundMetrics, ClientInsight, MetaParams, SimulationLog, Checkpoint):
        session.execute(delete(table).where(table.simulation_id == simulation.id))
    session.delete(simulation)
    session.flush()
    notify(session, simulation.id, "deleted")  # its streams end
