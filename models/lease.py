"""The lease protocol (docs/reliability.md): a worker claims a run, bumping `attempt` (the
fencing token), and every later write of that worker (a round, a heartbeat, the finish, a
release) only lands `WHERE attempt = <its attempt> AND status = 'running'` with a live lease
(`_fenced`). Also what the reaper re-publishes and the embedded worker re-queues at start-up.
Callers own the transaction (`session_scope`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, and_, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from models.attempt import Attempt
from models.base import as_utc, utcnow
from models.checkpoint import Checkpoint
from models.client_insight import ClientInsight
from models.clock import SKEW_WARNING_SECONDS, database_now, describe_skew, read_clock
from models.meta_params import MetaParams
from models.notify import notify
from models.results_repo import add_log, round_rows
from models.round_metrics import RoundMetrics
from models.simulation import FINISHED_STATUSES, Simulation, SimulationStatus
from models.simulation_log import SimulationLog
from models.stalled import end_stalled_connections
from models.upsert import insert_for, upsert

if TYPE_CHECKING:  # only read here: models/ does not import the engine
    from scarcity.results import RoundResult


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
    now = database_now(session)
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


@dataclass(frozen=True)
class Claim:
    simulation_id: uuid.UUID
    attempt: int
    rounds_completed: int
    config: dict[str, Any]
    checkpoint: bytes | None
    sweep_id: uuid.UUID | None = None
    #: The round `checkpoint` was taken after (0: none); `rounds_completed` may be further on.
    checkpoint_round: int = 0


def _fenced(claim: Claim) -> Any:
    """The fence of every write after a claim: it lands only while this claim still holds."""
    return and_(
        Simulation.id == claim.simulation_id,
        Simulation.attempt == claim.attempt,
        Simulation.status == SimulationStatus.running,
        Simulation.heartbeat_at.is_not(None),  # NULL: released, the claim holds nothing
    )


def _end_stalled_writes(
    session: Session, simulation_id: uuid.UUID, stale: datetime, lease_seconds: float
) -> None:
    """Before taking over an expired lease, end the connections its frozen worker still holds
    locks on (models/stalled.py); else this claim and the rounds after it wait on them for as
    long as the freeze lasts. Read without a lock: the row may be the one held."""
    held = session.execute(
        select(Simulation.attempt, Simulation.heartbeat_at).where(
            Simulation.id == simulation_id,
            Simulation.status == SimulationStatus.running,
            Simulation.heartbeat_at < stale,  # NULL (released): its worker holds nothing
        )
    ).one_or_none()
    if held is None:
        return
    expired_at = as_utc(held.heartbeat_at) + timedelta(seconds=lease_seconds)
    for ended in end_stalled_connections(session, simulation_id, held.attempt, expired_at):
        add_log(
            session,
            simulation_id,
            f"ended the stalled connection of attempt {held.attempt} ({ended.worker}, "
            f"backend {ended.pid}), frozen mid-write past its lease",
            level="WARNING",
        )


def claim(
    session: Session,
    simulation_id: uuid.UUID,
    *,
    lease_seconds: float,
    max_attempts: int,
    release_grace_seconds: float = 0.0,
) -> Claim | None:
    """Take the simulation if it is queued or its lease expired; None if someone else holds it.

    A simulation whose workers died `max_attempts` times (claims not given back by a release
    or a refund: `attempt - releases`) is failed instead of run again; taking over an expired
    lease and giving up are both lines in the run's logs.

    The last of those workers may not be dead: one that gave up during a database outage
    releases the run as the database comes back, racing this claim. So the first claim that
    would fail the run waits instead (None, and `give_up_after` set `release_grace_seconds`
    ahead, when the reaper re-sends it); only a claim after that time fails it. A release
    that lands meanwhile makes the run claimable, uncharged.
    """
    now, skew = read_clock(session)
    stale = now - timedelta(seconds=lease_seconds)
    _end_stalled_writes(session, simulation_id, stale, lease_seconds)
    expired = and_(Simulation.status == SimulationStatus.running, _lapsed(stale))
    claimable = and_(
        Simulation.id == simulation_id,
        Simulation.cancel_requested.is_(False),
        or_(Simulation.status == SimulationStatus.queued, expired),
    )
    # A cancel flagged on a run whose worker died can only be honoured here.
    cancelled = session.execute(
        update(Simulation)
        .where(Simulation.id == simulation_id, Simulation.cancel_requested.is_(True), expired)
        .values(status=SimulationStatus.cancelled, finished_at=now)
    )
    if cast(CursorResult[Any], cancelled).rowcount:
        notify(session, simulation_id, SimulationStatus.cancelled)
    lost = Simulation.attempt - Simulation.releases
    if release_grace_seconds > 0:
        later = now + timedelta(seconds=release_grace_seconds)
        waits = session.execute(
            update(Simulation)
            .where(claimable, lost >= max_attempts, Simulation.give_up_after.is_(None))
            .values(give_up_after=later, next_publish_at=later)
            .returning(Simulation.attempt)
        ).one_or_none()
        if waits is not None:
            add_log(
                session,
                simulation_id,
                f"attempt {waits.attempt} may still be released by its worker: failing the run "
                f"unless that happens within {release_grace_seconds:g} s",
                level="WARNING",
            )
            return None
    given_up = session.execute(
        update(Simulation)
        .where(
            claimable,
            lost >= max_attempts,
            or_(Simulation.give_up_after.is_(None), Simulation.give_up_after <= now),
        )
        .values(
            status=SimulationStatus.failed,
            finished_at=now,
            error=f"gave up after {max_attempts} attempts: the worker running it kept dying",
        )
        .returning(Simulation.attempt, Simulation.releases)
    ).one_or_none()
    if given_up is not None:
        notify(session, simulation_id, SimulationStatus.failed)
        add_log(
            session,
            simulation_id,
            f"gave up: {given_up.attempt - given_up.releases} workers were lost running it "
            f"(SCARCITY_MAX_ATTEMPTS={max_attempts}); failed",
            level="ERROR",
        )
        return None
    claimable = and_(claimable, lost < max_attempts)  # else still waiting for that release
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
            give_up_after=None,
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
    if abs(skew) > SKEW_WARNING_SECONDS:
        add_log(
            session,
            simulation_id,
            f"attempt {row.attempt}: this worker's clock is {describe_skew(skew)} the "
            "database's (leases are judged by the database's clock)",
            level="WARNING",
        )
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
    # The last checkpoint may lie a few rounds behind the stored rounds (it is written every
    # SCARCITY_CHECKPOINT_SECONDS): the engine recomputes the rounds after it.
    saved = session.execute(
        select(Checkpoint.round, Checkpoint.state).where(Checkpoint.simulation_id == simulation_id)
    ).one_or_none()
    return Claim(
        simulation_id,
        row.attempt,
        row.rounds_completed,
        row.config,
        saved.state if saved is not None else None,
        row.sweep_id,
        saved.round if saved is not None else 0,
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


def save_round(
    session: Session,
    claim: Claim,
    result: RoundResult,
    checkpoint: bytes | None,
) -> bool | None:
    """Store one round with the engine state after it, if given."""
    return save_rounds(session, claim, [result], checkpoint)


def save_rounds(
    session: Session,
    claim: Claim,
    results: Sequence[RoundResult],
    checkpoint: bytes | None,
) -> bool | None:
    """Store consecutive rounds, the engine's results (`results_repo.round_rows` gives their
    rows), and advance progress, fenced by the claim; `checkpoint`, when given, is the engine
    state after the last of them.

    Rows are upserts: a resumed run recomputes the rounds after its checkpoint and writes the
    same rows again, and progress never goes back meanwhile. Returns whether a cancel was
    requested, or None when the lease was lost (the caller must roll back and stop).
    """
    sim_id, number = claim.simulation_id, results[-1].round
    rows = round_rows(sim_id, results)
    upsert(session, RoundMetrics, rows.metrics, ("simulation_id", "round"))
    upsert(session, ClientInsight, rows.insights, ("simulation_id", "round", "client_id"))
    upsert(session, MetaParams, rows.meta_params, ("simulation_id", "round"))
    upsert(session, SimulationLog, rows.logs, ("simulation_id", "round", "seq"))
    if checkpoint is not None:
        upsert(
            session,
            Checkpoint,
            [{"simulation_id": sim_id, "round": number, "state": checkpoint}],
            ("simulation_id",),
        )
    row = session.execute(
        update(Simulation)
        .where(_fenced(claim))
        .values(
            rounds_completed=case(
                (Simulation.rounds_completed > number, Simulation.rounds_completed),
                else_=number,
            ),
            heartbeat_at=database_now(session),
            give_up_after=None,
        )
        .returning(Simulation.cancel_requested, Simulation.rounds_completed)
    ).one_or_none()
    if row is None:
        return None
    notify(session, sim_id, SimulationStatus.running, row.rounds_completed)
    return bool(row.cancel_requested)


def heartbeat(session: Session, claim: Claim) -> bool:
    """Renew the lease; False when it was lost."""
    result = session.execute(
        update(Simulation)
        .where(_fenced(claim))
        .values(heartbeat_at=database_now(session), give_up_after=None)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def finish(
    session: Session, claim: Claim, status: SimulationStatus, error: str | None = None
) -> bool:
    """End the run with `status`; False when the lease was lost (another worker owns it now)."""
    assert status in FINISHED_STATUSES
    result = session.execute(
        update(Simulation)
        .where(_fenced(claim))
        .values(status=status, error=error, finished_at=database_now(session))
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        return False
    session.execute(delete(Checkpoint).where(Checkpoint.simulation_id == claim.simulation_id))
    notify(session, claim.simulation_id, status)
    return True


def record_attempt(
    session: Session, claim: Claim, *, worker: str, environment: dict[str, Any]
) -> None:
    """Who runs this attempt, on what (once per attempt: a retried write changes nothing)."""
    statement = insert_for(session)(Attempt).values(
        simulation_id=claim.simulation_id,
        attempt=claim.attempt,
        worker=worker,
        started_at=utcnow(),
        environment=environment,
    )
    session.execute(statement.on_conflict_do_nothing(index_elements=["simulation_id", "attempt"]))
