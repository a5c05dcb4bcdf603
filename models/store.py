"""Queries on the simulation tables. Callers own the transaction (`session_scope`); these flush.

The worker's writes are fenced (docs/reliability.md): a claim bumps `attempt`, and every later write
of that worker only lands `WHERE attempt = <its attempt> AND status = 'running'`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import search
from models.attempt import Attempt
from models.base import Base, as_utc, utcnow
from models.checkpoint import Checkpoint
from models.client_data import ClientData
from models.client_insight import ClientInsight
from models.idempotency import IdempotencyKey
from models.meta_params import UNCERTAINTY_GROUPS, MetaParams
from models.round_metrics import RoundMetrics
from models.simulation import FINISHED_STATUSES, Simulation, SimulationStatus
from models.simulation_log import SimulationLog
from models.sweep import Sweep

ACTIVE_STATUSES = (SimulationStatus.queued, SimulationStatus.running)


# --- simulations -----------------------------------------------------------------------------


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
    if after is not None:
        created_at, last_id = after
        query = query.where(
            or_(
                Simulation.created_at < created_at,
                and_(Simulation.created_at == created_at, Simulation.id < last_id),
            )
        )
    query = query.order_by(Simulation.created_at.desc(), Simulation.id.desc()).limit(limit)
    return list(session.scalars(query))


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
    simulation.cancel_requested = True
    session.flush()


def delete_simulation(session: Session, simulation: Simulation) -> None:
    for table in (RoundMetrics, ClientInsight, MetaParams, SimulationLog, Checkpoint):
        session.execute(delete(table).where(table.simulation_id == simulation.id))
    session.delete(simulation)
    session.flush()


def requeue_running(session: Session) -> int:
    """Embedded mode at start-up: this process is the only worker, so every `running` row is an
    orphan of the previous process; queue it again (its checkpoint and attempt count remain)."""
    running = Simulation.status == SimulationStatus.running
    session.execute(
        update(Simulation)
        .where(running, Simulation.cancel_requested.is_(True))
        .values(status=SimulationStatus.cancelled, finished_at=utcnow())
    )
    result = session.execute(update(Simulation).where(running).values(status="queued"))
    return cast(CursorResult[Any], result).rowcount


def waiting_simulations(session: Session) -> list[uuid.UUID]:
    """Every queued simulation, oldest first (embedded start-up: its in-memory queue is new)."""
    return list(
        session.scalars(
            select(Simulation.id)
            .where(Simulation.status == SimulationStatus.queued)
            .order_by(Simulation.created_at)
        )
    )


def _lapsed(stale: datetime) -> Any:
    """A running simulation's lease is over: no heartbeat since `stale`, or released (NULL)."""
    return or_(Simulation.heartbeat_at.is_(None), Simulation.heartbeat_at < stale)


def take_due_for_republish(
    session: Session, *, lease_seconds: float, max_backoff_seconds: float
) -> list[uuid.UUID]:
    """The reaper's work: queued longer than a lease, or running with an expired lease, and not
    re-published within their backoff. Each one taken gets its next backoff: as long as it has
    waited so far (at least a lease, at most `max_backoff_seconds`), so the re-sends of a job
    stuck behind a long queue thin out: after 1, 2, 4, 8 ... leases."""
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    queued_since = Simulation.created_at
    rows = session.execute(
        select(Simulation.id, Simulation.status, queued_since, Simulation.heartbeat_at)
        .where(
            or_(
                # Fresh queued rows were just published by the API; only older ones may have
                # lost their message.
                and_(Simulation.status == SimulationStatus.queued, queued_since < stale),
                and_(Simulation.status == SimulationStatus.running, _lapsed(stale)),
            ),
            or_(Simulation.next_publish_at.is_(None), Simulation.next_publish_at <= now),
        )
        .order_by(queued_since)
    ).all()
    if not rows:
        return []

    def next_publish(since: datetime) -> datetime:
        waited = (now - as_utc(since)).total_seconds()
        return now + timedelta(seconds=min(max(waited, lease_seconds), max_backoff_seconds))

    session.execute(
        update(Simulation),  # ORM bulk UPDATE by primary key: one statement, a row each
        [
            {
                "id": row.id,
                "next_publish_at": next_publish(
                    row.created_at
                    if row.status == SimulationStatus.queued
                    else row.heartbeat_at or now  # released: no lease to wait for
                ),
            }
            for row in rows
        ],
    )
    return [row.id for row in rows]


# --- idempotency keys (models/idempotency.py) ----------------------------------------------------


def reserve_key(
    session: Session,
    *,
    owner: str,
    key: str,
    endpoint: str,
    request_hash: str,
    stale_after: float = 60.0,
) -> IdempotencyKey | None:
    """Claim `key` for a request about to run (None), or the row already there: its stored
    answer, or no answer yet when that request is still running. A reservation without an
    answer older than `stale_after` seconds is taken over (its request died unanswered)."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner == owner,
            IdempotencyKey.key == key,
            IdempotencyKey.status_code.is_(None),
            IdempotencyKey.created_at < utcnow() - timedelta(seconds=stale_after),
        )
    )
    statement = (
        _insert(session)(IdempotencyKey)
        .values(
            owner=owner, key=key, endpoint=endpoint, request_hash=request_hash, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["owner", "key"])
        .returning(IdempotencyKey.key)
    )
    if session.execute(statement).first() is not None:  # inserted: the key is ours
        return None
    return session.get(IdempotencyKey, (owner, key))


def complete_key(
    session: Session,
    *,
    owner: str,
    key: str,
    status_code: int,
    response: dict[str, Any],
    location: str | None,
) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        .values(status_code=status_code, response=response, location=location)
    )


def release_key(session: Session, *, owner: str, key: str) -> None:
    """Forget a reservation whose request failed: a retry with the key runs afresh."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner == owner,
            IdempotencyKey.key == key,
            IdempotencyKey.status_code.is_(None),
        )
    )


# --- sweeps (models/sweep.py) -------------------------------------------------------------------


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
    if after is not None:
        created_at, last_id = after
        query = query.where(
            or_(
                Sweep.created_at < created_at,
                and_(Sweep.created_at == created_at, Sweep.id < last_id),
            )
        )
    return list(
        session.scalars(query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit))
    )


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
    session.execute(
        update(Simulation)
        .where(of_sweep, waiting)
        .values(status=SimulationStatus.cancelled, finished_at=now, cancel_requested=True)
    )
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


# --- the worker's fenced writes ----------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    simulation_id: uuid.UUID
    attempt: int
    rounds_completed: int
    config: dict[str, Any]
    checkpoint: bytes | None
    sweep_id: uuid.UUID | None = None


def _fenced(claim: Claim) -> Any:
    """The fence of every write after a claim: it lands only while this claim still holds."""
    return and_(
        Simulation.id == claim.simulation_id,
        Simulation.attempt == claim.attempt,
        Simulation.status == SimulationStatus.running,
        Simulation.heartbeat_at.is_not(None),  # NULL: released, the claim holds nothing
    )


def claim(
    session: Session, simulation_id: uuid.UUID, *, lease_seconds: float, max_attempts: int
) -> Claim | None:
    """Take the simulation if it is queued or its lease expired; None if someone else holds it.

    A simulation whose workers died `max_attempts` times (claims not given back by a release
    or a refund: `attempt - releases`) is failed instead of run again; taking over an expired
    lease and giving up are both lines in the run's logs.
    """
    now = utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    expired = and_(Simulation.status == SimulationStatus.running, _lapsed(stale))
    claimable = and_(
        Simulation.id == simulation_id,
        Simulation.cancel_requested.is_(False),
        or_(Simulation.status == SimulationStatus.queued, expired),
    )
    # A cancel flagged on a run whose worker died can only be honoured here.
    session.execute(
        update(Simulation)
        .where(Simulation.id == simulation_id, Simulation.cancel_requested.is_(True), expired)
        .values(status=SimulationStatus.cancelled, finished_at=now)
    )
    lost = Simulation.attempt - Simulation.releases
    given_up = session.execute(
        update(Simulation)
        .where(claimable, lost >= max_attempts)
        .values(
            status=SimulationStatus.failed,
            finished_at=now,
            error=f"gave up after {max_attempts} attempts: the worker running it kept dying",
        )
        .returning(Simulation.attempt, Simulation.releases)
    ).one_or_none()
    if given_up is not None:
        add_log(
            session,
            simulation_id,
            f"gave up: {given_up.attempt - given_up.releases} workers were lost running it "
            f"(SCARCITY_MAX_ATTEMPTS={max_attempts}); failed",
            level="ERROR",
        )
        return None
    previous = session.execute(
        select(Simulation.status, Simulation.heartbeat_at).where(claimable)
    ).one_or_none()
    row = session.execute(
        update(Simulation)
        .where(claimable)
        .values(
            status=SimulationStatus.running,
            attempt=Simulation.attempt + 1,
            heartbeat_at=now,
            next_publish_at=None,  # a later lapse of this lease is due for re-publishing at once
            started_at=func.coalesce(Simulation.started_at, now),
        )
        .returning(
            Simulation.attempt,
            Simulation.rounds_completed,
            Simulation.config,
            Simulation.releases,
            Simulation.sweep_id,
        )
    ).one_or_none()
    if row is None:
        return None
    if (
        previous is not None
        and previous.status == SimulationStatus.running
        and previous.heartbeat_at
    ):
        add_log(
            session,
            simulation_id,
            f"attempt {row.attempt - 1} lost: its worker stopped renewing the lease "
            f"({row.attempt - row.releases - 1} of {max_attempts} lost workers so far)",
            level="WARNING",
        )
    checkpoint = session.scalar(
        select(Checkpoint.state).where(
            Checkpoint.simulation_id == simulation_id, Checkpoint.round == row.rounds_completed
        )
    )
    return Claim(
        simulation_id, row.attempt, row.rounds_completed, row.config, checkpoint, row.sweep_id
    )


def release(session: Session, claim: Claim) -> bool:
    """Give the run back without charging an attempt: it stays `running` with its last stored
    round and no lease (`heartbeat_at` NULL), so the next claim takes it at once and the fence
    keeps this claim from writing again. False when the claim no longer held (someone took
    over meanwhile: then `refund` is what applies)."""
    result = session.execute(
        update(Simulation)
        .where(_fenced(claim))
        .values(heartbeat_at=None, next_publish_at=None, releases=Simulation.releases + 1)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def refund(session: Session, claim: Claim) -> bool:
    """The claim was taken over while its worker lived on (frozen, or cut off from the
    database): that takeover charged an attempt for a worker that did not die; give it back.
    False when no later claim exists (the run was cancelled or ended otherwise)."""
    result = session.execute(
        update(Simulation)
        .where(Simulation.id == claim.simulation_id, Simulation.attempt > claim.attempt)
        .values(releases=Simulation.releases + 1)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _upsert(
    session: Session, table: type[Base], rows: Sequence[dict[str, Any]], keys: Iterable[str]
) -> None:
    if not rows:
        return
    keys = list(keys)
    statement = _insert(session)(table).values(list(rows))
    updates = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates))


def save_round(
    session: Session,
    claim: Claim,
    result: dict[str, Any],
    checkpoint: bytes | None,
) -> bool | None:
    """Store one round (a `RoundResult.to_dict()`) and advance progress, fenced by the claim.

    Returns whether a cancel was requested, or None when the lease was lost (the caller must
    roll back and stop).
    """
    sim_id, number = claim.simulation_id, result["round"]
    _upsert(
        session,
        RoundMetrics,
        [
            {
                "simulation_id": sim_id,
                "round": number,
                "metrics": result["metrics"],
                "expert_usage": result.get("expert_usage", {}),
                "gossip_pairs": result.get("gossip_pairs", []),
                "duration_seconds": result.get("duration_seconds", 0.0),
            }
        ],
        ("simulation_id", "round"),
    )
    _upsert(
        session,
        ClientInsight,
        [
            {"simulation_id": sim_id, "round": number, "client_id": i["client_id"], "insight": i}
            for i in result.get("insights", [])
        ],
        ("simulation_id", "round", "client_id"),
    )
    if result.get("meta_params"):
        # The meta-learner's client lists are kept beside the parameters it broadcast.
        groups = {key: result[key] for key in UNCERTAINTY_GROUPS if key in result}
        params = {**result["meta_params"], **groups}
        _upsert(
            session,
            MetaParams,
            [{"simulation_id": sim_id, "round": number, "params": params}],
            ("simulation_id", "round"),
        )
    _upsert(
        session,
        SimulationLog,
        [
            {"simulation_id": sim_id, "round": number, "seq": seq, "level": "INFO", "message": m}
            for seq, m in enumerate(result.get("logs", []))
        ],
        ("simulation_id", "round", "seq"),
    )
    if checkpoint is not None:
        _upsert(
            session,
            Checkpoint,
            [{"simulation_id": sim_id, "round": number, "state": checkpoint}],
            ("simulation_id",),
        )
    row = session.execute(
        update(Simulation)
        .where(_fenced(claim))
        .values(rounds_completed=number, heartbeat_at=utcnow())
        .returning(Simulation.cancel_requested)
    ).one_or_none()
    return None if row is None else bool(row.cancel_requested)


def heartbeat(session: Session, claim: Claim) -> bool:
    """Renew the lease; False when it was lost."""
    result = session.execute(update(Simulation).where(_fenced(claim)).values(heartbeat_at=utcnow()))
    return cast(CursorResult[Any], result).rowcount == 1


def finish(
    session: Session, claim: Claim, status: SimulationStatus, error: str | None = None
) -> bool:
    """End the run with `status`; False when the lease was lost (another worker owns it now)."""
    assert status in FINISHED_STATUSES
    result = session.execute(
        update(Simulation)
        .where(_fenced(claim))
        .values(status=status, error=error, finished_at=utcnow())
    )
    if cast(CursorResult[Any], result).rowcount == 1:
        session.execute(delete(Checkpoint).where(Checkpoint.simulation_id == claim.simulation_id))
    return cast(CursorResult[Any], result).rowcount == 1


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


# --- reads ------------------------------------------------------------------------------------


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


# --- the clients' data -----------------------------------------------------------------------


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
        statement = _insert(session)(ClientData).values(chunk)
        session.execute(
            statement.on_conflict_do_nothing(index_elements=["simulation_id", "client_id"])
        )


# --- provenance ------------------------------------------------------------------------------


def record_attempt(
    session: Session, claim: Claim, *, worker: str, environment: dict[str, Any]
) -> None:
    """Who runs this attempt, on what (once per attempt: a retried write changes nothing)."""
    statement = _insert(session)(Attempt).values(
        simulation_id=claim.simulation_id,
        attempt=claim.attempt,
        worker=worker,
        started_at=utcnow(),
        environment=environment,
    )
    session.execute(statement.on_conflict_do_nothing(index_elements=["simulation_id", "attempt"]))


def attempts(session: Session, simulation_id: uuid.UUID) -> list[Attempt]:
    query = select(Attempt).where(Attempt.simulation_id == simulation_id)
    return list(session.scalars(query.order_by(Attempt.attempt)))
