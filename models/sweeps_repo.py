"""Sweeps (models/sweep.py): a sweep and its pending runs in one INSERT, runs released into
free slots, the series its early stop compares, progress, cancel and delete."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.checkpoint import Checkpoint
from models.client_insight import ClientInsight
from models.meta_params import MetaParams
from models.notify import notify
from models.pages import newest_first
from models.round_metrics import RoundMetrics
from models.simulation import Simulation, SimulationStatus
from models.simulation_log import SimulationLog
from models.simulations_repo import ACTIVE_STATUSES, count_active, new_simulation
from models.sweep import Sweep


def create_sweep(
    session: Session,
    *,
    sweep_id: uuid.UUID,
    owner: str,
    name: str | None,
    request: dict[str, Any],
    varied: list[str],
    method: str,
    max_concurrent: int,
    runs: Sequence[tuple[dict[str, Any], Mapping[str, Any]]],
) -> Sweep:
    """The sweep and all its runs (config, attrs), every one `pending`, in one multi-row INSERT;
    `release_pending` then queues the first ones. Their created_at keep the plan's order."""
    sweep = Sweep(
        id=sweep_id,
        owner=owner,
        name=name,
        request=request,
        varied=varied,
        method=method,
        total=len(runs),
        max_concurrent=max_concurrent,
        created_at=utcnow(),
        cancel_requested=False,
    )
    session.add(sweep)
    session.flush()
    columns = [column.key for column in Simulation.__table__.columns]
    rows = []
    for index, (config, attrs) in enumerate(runs):
        row = new_simulation(owner=owner, config=config, attrs=attrs)
        row.sweep_id, row.status = sweep.id, SimulationStatus.pending
        row.created_at = sweep.created_at + timedelta(microseconds=index)
        rows.append({key: getattr(row, key) for key in columns})
    if rows:
        session.execute(insert(Simulation), rows)
    return sweep


def release_pending(
    session: Session, sweep_id: uuid.UUID, *, max_active_per_owner: int, lease_seconds: float
) -> list[uuid.UUID]:
    """Queue the sweep's next pending runs, in plan order, while it has fewer than
    `max_concurrent` active and its owner is under the cap; the ids to publish.

    The sweep row is locked (FOR UPDATE on PostgreSQL; SQLite writers are serialized), so two
    runs finishing at once do not both fill the same slot.
    """
    sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id).with_for_update())
    if sweep is None or sweep.cancel_requested:
        return []
    active = session.scalar(
        select(func.count()).where(
            Simulation.sweep_id == sweep_id, Simulation.status.in_(ACTIVE_STATUSES)
        )
    )
    owner_room = max_active_per_owner - count_active(
        session, sweep.owner, up_to=max_active_per_owner
    )
    room = min(sweep.max_concurrent - (active or 0), owner_room)
    if room <= 0:
        return []
    ids = list(
        session.scalars(
            select(Simulation.id)
            .where(Simulation.sweep_id == sweep_id, Simulation.status == SimulationStatus.pending)
            .order_by(Simulation.created_at, Simulation.id)
            .limit(room)
        )
    )
    if ids:
        # Published by the caller now; the reaper re-sends after a lease if that got lost.
        later = utcnow() + timedelta(seconds=lease_seconds)
        session.execute(
            update(Simulation)
            .where(Simulation.id.in_(ids), Simulation.status == SimulationStatus.pending)
            .values(status=SimulationStatus.queued, next_publish_at=later)
        )
    return ids


def sweep_early_stop(session: Session, sweep_id: uuid.UUID) -> dict[str, Any] | None:
    """The sweep's early-stopping rule (`request.early_stop`), if it has one."""
    request = session.scalar(select(Sweep.request).where(Sweep.id == sweep_id))
    rule = (request or {}).get("early_stop")
    return dict(rule) if rule else None


def sweep_metric_series(
    session: Session, sweep_id: uuid.UUID, metric: str, *, up_to: int
) -> dict[uuid.UUID, list[float]]:
    """Each run of the sweep → its `metric` in rounds 1..`up_to`, in order (rounds without it
    left out)."""
    runs = select(Simulation.id).where(Simulation.sweep_id == sweep_id)
    rows = session.execute(
        select(RoundMetrics.simulation_id, RoundMetrics.metrics)
        .where(RoundMetrics.simulation_id.in_(runs), RoundMetrics.round <= up_to)
        .order_by(RoundMetrics.simulation_id, RoundMetrics.round)
    )
    series: dict[uuid.UUID, list[float]] = {}
    for simulation_id, metrics in rows:
        if metric in metrics:
            series.setdefault(simulation_id, []).append(metrics[metric])
    return series


def sweeps_with_pending(session: Session) -> list[uuid.UUID]:
    """Sweeps with runs still waiting for a slot (the reaper tops them up)."""
    return list(
        session.scalars(
            select(Simulation.sweep_id)
            .where(Simulation.status == SimulationStatus.pending)
            .distinct()
        )
    )


def get_sweep(session: Session, sweep_id: uuid.UUID, owner: str) -> Sweep | None:
    return session.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner))


def list_sweeps(
    session: Session, *, owner: str, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[Sweep]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    query = select(Sweep).where(Sweep.owner == owner)
    return list(session.scalars(newest_first(query, Sweep, limit, after)))


def sweep_status_counts(
    session: Session, sweep_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """How many runs of each sweep are in each status, in one query."""
    counts: dict[uuid.UUID, dict[str, int]] = {sweep_id: {} for sweep_id in sweep_ids}
    rows = session.execute(
        select(Simulation.sweep_id, Simulation.status, func.count())
        .where(Simulation.sweep_id.in_(sweep_ids))
        .group_by(Simulation.sweep_id, Simulation.status)
    )
    for sweep_id, status, count in rows:
        if sweep_id is not None:
            counts[sweep_id][status] = count
    return counts


def sweep_runs(session: Session, sweep_id: uuid.UUID) -> list[Simulation]:
    """The sweep's runs in plan order."""
    return list(
        session.scalars(
            select(Simulation)
            .where(Simulation.sweep_id == sweep_id)
            .order_by(Simulation.created_at, Simulation.id)
        )
    )


def cancel_sweep(session: Session, sweep: Sweep) -> None:
    """No more runs start; pending and queued ones are cancelled at once, running ones flagged
    (their worker stops after the current round)."""
    now = utcnow()
    sweep.cancel_requested = True
    of_sweep = Simulation.sweep_id == sweep.id
    waiting = Simulation.status.in_((SimulationStatus.pending, SimulationStatus.queued))
    cancelled = session.scalars(
        update(Simulation)
        .where(of_sweep, waiting)
        .values(status=SimulationStatus.cancelled, finished_at=now, cancel_requested=True)
        .returning(Simulation.id)
    ).all()
    for simulation_id in cancelled:
        notify(session, simulation_id, SimulationStatus.cancelled)
    session.execute(
        update(Simulation)
        .where(of_sweep, Simulation.status == SimulationStatus.running)
        .values(cancel_requested=True)
    )
    session.flush()


def delete_sweep(session: Session, sweep: Sweep) -> None:
    """The sweep, its runs and every row of theirs."""
    runs = select(Simulation.id).where(Simulation.sweep_id == sweep.id)
    for table in (RoundMetrics, ClientInsight, MetaParams, SimulationLog, Checkpoint):
        session.execute(delete(table).where(table.simulation_id.in_(runs)))
    session.execute(delete(Simulation).where(Simulation.sweep_id == sweep.id))
    session.delete(sweep)
    session.flush()
