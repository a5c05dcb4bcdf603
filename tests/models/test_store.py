"""The repositories (`models.lease`, `simulations_repo`, `sweeps_repo`, `results_repo`,
`idempotency_repo`) on a migrated database of each kind: lifecycle, fencing, cancel, pages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import (
    Checkpoint,
    ClientInsight,
    MetaParams,
    RoundMetrics,
    Simulation,
    SimulationLog,
    SimulationStatus,
    idempotency_repo,
    lease,
    results_repo,
    simulations_repo,
    sweeps_repo,
)
from models.base import utcnow
from models.db import make_engine
from scarcity.results import GossipPair, Insight, RoundResult

LEASE = 60.0
CONFIG = {"preset": "stage8", "rounds": 3, "seed": 1}


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the service's engine; `with sessions.begin() as s:` is one transaction."""
    engine = make_engine(database_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def round_result(number: int, loss: float = 0.5) -> RoundResult:
    """A round of two clients, as the engine yields it."""
    return RoundResult(
        round=number,
        metrics={"loss": loss},
        expert_usage={"0": 2},
        gossip_pairs=(GossipPair(client_a=0, client_b=1, expert="0"),),
        duration_seconds=0.01,
        insights=tuple(
            Insight(
                client_id=c,
                loss=loss,
                mean_grad=0.0,
                uncertainty=loss + c,
                loss_improvement=0.0,
                selected_expert="0",
                experts={},
            )
            for c in range(2)
        ),
        meta_params={"mean": 0.0, "std": 1.0, "lr": 0.01, "updates": number},
        logs=(f"round {number} done",),
    )


def create(sessions: sessionmaker[Session], owner: str = "") -> uuid.UUID:
    with sessions.begin() as session:
        return simulations_repo.create_simulation(session, owner=owner, config=CONFIG).id


def claim(
    sessions: sessionmaker[Session], simulation_id: uuid.UUID, max_attempts: int = 5
) -> lease.Claim | None:
    with sessions.begin() as session:
        return lease.claim(session, simulation_id, lease_seconds=LEASE, max_attempts=max_attempts)


class Fenced(Exception):
    pass


def save(
    sessions: sessionmaker[Session], claim: lease.Claim, number: int, **kw: Any
) -> bool | None:
    """One round in one transaction, rolled back when fenced (as the worker does)."""
    checkpoint = f"cp{number}".encode()
    try:
        with sessions.begin() as session:
            cancel = lease.save_round(session, claim, round_result(number, **kw), checkpoint)
            if cancel is None:
                raise Fenced
            return cancel
    except Fenced:
        return None


def expire_lease(sessions: sessionmaker[Session], simulation_id: uuid.UUID) -> None:
    """The worker holding it died: its heartbeat is older than a lease."""
    with sessions.begin() as session:
        session.execute(
            update(Simulation)
            .where(Simulation.id == simulation_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=2 * LEASE))
        )


def load(sessions: sessionmaker[Session], simulation_id: uuid.UUID) -> Simulation:
    with sessions() as session:
        simulation = session.get(Simulation, simulation_id)
        assert simulation is not None
        return simulation


def count(sessions: sessionmaker[Session], table: Any, simulation_id: uuid.UUID) -> int:
    with sessions() as session:
        query = select(func.count()).select_from(table).where(table.simulation_id == simulation_id)
        return int(session.scalar(query) or 0)


def test_lifecycle_with_replayed_round_and_takeover_of_a_stale_lease(
    sessions: sessionmaker[Session],
) -> None:
    sim_id = create(sessions)
    assert load(sessions, sim_id).status == SimulationStatus.queued

    first = claim(sessions, sim_id)
    assert first is not None
    assert (first.attempt, first.rounds_completed, first.checkpoint) == (1, 0, None)
    assert first.config == CONFIG
    running = load(sessions, sim_id)
    assert running.status == SimulationStatus.running
    assert running.started_at is not None and running.heartbeat_at is not None

    # The same round stored twice overwrites: no duplicate rows.
    assert save(sessions, first, 1, loss=0.9) is False
    assert save(sessions, first, 1, loss=0.8) is False
    for table, rows in [
        (RoundMetrics, 1),
        (ClientInsight, 2),
        (MetaParams, 1),
        (SimulationLog, 1),
        (Checkpoint, 1),
    ]:
        assert count(sessions, table, sim_id) == rows, table.__tablename__
    with sessions() as session:
        [metrics] = results_repo.round_metrics(session, sim_id, None, None)
        assert metrics.metrics == {"loss": 0.8}
    assert load(sessions, sim_id).rounds_completed == 1

    # While the lease is fresh nobody else gets it.
    assert claim(sessions, sim_id) is None
    assert load(sessions, sim_id).attempt == 1

    # The worker dies; another takes over from the stored checkpoint with the next attempt.
    expire_lease(sessions, sim_id)
    second = claim(sessions, sim_id)
    assert second is not None
    assert (second.attempt, second.rounds_completed, second.checkpoint) == (2, 1, b"cp1")

    # The first worker comes back: all its writes are fenced off.
    assert save(sessions, first, 2) is None
    assert count(sessions, RoundMetrics, sim_id) == 1
    with sessions.begin() as session:
        assert lease.heartbeat(session, first) is False
        assert lease.finish(session, first, SimulationStatus.failed, "stale") is False

    assert save(sessions, second, 2) is False
    assert save(sessions, second, 3) is False
    with sessions.begin() as session:
        assert lease.heartbeat(session, second) is True
        assert lease.finish(session, second, SimulationStatus.succeeded) is True
    done = load(sessions, sim_id)
    assert done.status == SimulationStatus.succeeded
    assert done.rounds_completed == 3 and done.finished_at is not None and done.error is None
    assert count(sessions, Checkpoint, sim_id) == 0  # only a resumable run needs one
    assert count(sessions, RoundMetrics, sim_id) == 3
    assert claim(sessions, sim_id) is None  # finished for good


def test_rounds_written_together_and_a_resume_from_an_older_checkpoint(
    sessions: sessionmaker[Session],
) -> None:
    """Rounds 1-2 with a checkpoint, round 3 without: a takeover resumes from round 2, and
    its recomputed round 3 overwrites the stored one without moving progress back."""
    sim_id = create(sessions)
    first = claim(sessions, sim_id)
    assert first is not None
    with sessions.begin() as session:
        rounds = [round_result(1), round_result(2)]
        assert lease.save_rounds(session, first, rounds, b"cp2") is False
    with sessions.begin() as session:
        assert lease.save_rounds(session, first, [round_result(3, loss=0.9)], None) is False
    for table, rows in [(RoundMetrics, 3), (ClientInsight, 6), (MetaParams, 3), (Checkpoint, 1)]:
        assert count(sessions, table, sim_id) == rows, table.__tablename__
    assert load(sessions, sim_id).rounds_completed == 3

    expire_lease(sessions, sim_id)
    second = claim(sessions, sim_id)
    assert second is not None
    assert (second.rounds_completed, second.checkpoint_round, second.checkpoint) == (3, 2, b"cp2")
    with sessions.begin() as session:
        assert lease.save_rounds(session, second, [round_result(3, loss=0.7)], b"cp3") is False
        # A recomputed round below the stored progress leaves the progress where it was.
        assert lease.save_rounds(session, second, [round_result(1)], None) is False
    assert load(sessions, sim_id).rounds_completed == 3
    with sessions() as session:
        stored = results_repo.round_metrics(session, sim_id, None, None)
        assert [(m.round, m.metrics) for m in stored] == [
            (1, {"loss": 0.5}),
            (2, {"loss": 0.5}),
            (3, {"loss": 0.7}),
        ]
    assert count(sessions, RoundMetrics, sim_id) == 3
    expire_lease(sessions, sim_id)
    third = claim(sessions, sim_id)
    assert third is not None and (third.checkpoint_round, third.checkpoint) == (3, b"cp3")


def test_cancel_of_a_queued_simulation_ends_it_at_once(sessions: sessionmaker[Session]) -> None:
    sim_id = create(sessions)
    with sessions.begin() as session:
        simulation = session.get(Simulation, sim_id)
        assert simulation is not None
        simulations_repo.request_cancel(session, simulation)
    cancelled = load(sessions, sim_id)
    assert cancelled.status == SimulationStatus.cancelled and cancelled.finished_at is not None
    assert claim(sessions, sim_id) is None


def test_cancel_of_a_running_simulation_is_seen_by_its_next_save(
    sessions: sessionmaker[Session],
) -> None:
    sim_id = create(sessions)
    held = claim(sessions, sim_id)
    assert held is not None
    with sessions.begin() as session:
        simulation = session.get(Simulation, sim_id)
        assert simulation is not None
        simulations_repo.request_cancel(session, simulation)
    assert load(sessions, sim_id).status == SimulationStatus.running
    assert save(sessions, held, 1) is True


def test_a_simulation_whose_workers_keep_dying_fails_after_max_attempts(
    sessions: sessionmaker[Session],
) -> None:
    sim_id = create(sessions)
    for attempt in (1, 2):
        held = claim(sessions, sim_id, max_attempts=2)
        assert held is not None and held.attempt == attempt
        expire_lease(sessions, sim_id)

    assert claim(sessions, sim_id, max_attempts=2) is None
    failed = load(sessions, sim_id)
    assert failed.status == SimulationStatus.failed
    assert failed.finished_at is not None and "2 attempts" in (failed.error or "")
    assert failed.attempt == 2


def lifecycle_lines(sessions: sessionmaker[Session], simulation_id: uuid.UUID) -> list[str]:
    with sessions() as session:
        return [
            line.message for line in results_repo.logs(session, simulation_id) if line.round == 0
        ]


def test_released_and_refunded_claims_are_not_charged_and_the_logs_say_so(
    sessions: sessionmaker[Session],
) -> None:
    """Only workers that really disappeared count towards max_attempts: a release (shutdown,
    database give-up) and a refund (taken over while alive) give their attempt back."""
    sim_id = create(sessions)
    for _ in range(4):  # four graceful releases: never failed, each resumable at once
        held = claim(sessions, sim_id, max_attempts=2)
        assert held is not None and save(sessions, held, held.attempt) is False
        with sessions.begin() as session:
            assert lease.release(session, held)
            assert not lease.release(session, held)  # once per claim
    frozen = claim(sessions, sim_id, max_attempts=2)
    assert frozen is not None and frozen.rounds_completed == 4
    expire_lease(sessions, sim_id)  # the frozen worker's lease lapses; it is taken over...
    taker = claim(sessions, sim_id, max_attempts=2)
    assert taker is not None and taker.attempt == frozen.attempt + 1
    with sessions.begin() as session:  # ...then it wakes, finds itself fenced, and refunds
        assert not lease.release(session, frozen)
        assert lease.refund(session, frozen)
        assert not lease.refund(session, taker)  # nobody took over from the taker: no refund
    row = load(sessions, sim_id)  # claims 1-4 released, 5 frozen and refunded, 6 holds it
    assert (row.status, row.attempt, row.releases) == (SimulationStatus.running, 6, 5)
    lines = lifecycle_lines(sessions, sim_id)
    assert [x for x in lines if " lost" in x] == [
        "attempt 5 lost: its worker stopped renewing the lease (1 of 2 lost workers so far)"
    ]

    expire_lease(sessions, sim_id)  # two real deaths (6 − 5 = 1 lost so far, then 2): failed
    assert claim(sessions, sim_id, max_attempts=2) is not None
    expire_lease(sessions, sim_id)
    assert claim(sessions, sim_id, max_attempts=2) is None
    assert load(sessions, sim_id).status == SimulationStatus.failed
    assert "gave up: 2 workers were lost" in lifecycle_lines(sessions, sim_id)[-1]


def test_a_claim_racing_a_late_release_waits_for_it_instead_of_failing_the_run(
    sessions: sessionmaker[Session],
) -> None:
    """SCARCITY_MAX_ATTEMPTS=1: the worker gave up during an outage and its release lands just
    after another worker's claim, as the database comes back. That claim, which would fail the
    run, waits instead; the release lands and the run is claimed uncharged. A worker that
    really died still fails the run, once the grace is over."""

    def grace_claim() -> lease.Claim | None:
        with sessions.begin() as session:
            return lease.claim(
                session, sim_id, lease_seconds=LEASE, max_attempts=1, release_grace_seconds=10
            )

    sim_id = create(sessions)
    gave_up = grace_claim()
    assert gave_up is not None and save(sessions, gave_up, 1) is False
    expire_lease(sessions, sim_id)  # cut off from the database past its lease
    assert grace_claim() is None  # would fail the run: waits for the release
    waiting = load(sessions, sim_id)
    assert waiting.status == SimulationStatus.running and waiting.give_up_after is not None
    assert waiting.next_publish_at == waiting.give_up_after  # the reaper re-sends it then
    assert grace_claim() is None  # within the grace: neither claimed nor failed
    assert load(sessions, sim_id).status == SimulationStatus.running
    with sessions.begin() as session:  # the database is back for the old worker too
        assert lease.release(session, gave_up)
    taker = grace_claim()
    assert taker is not None and (taker.attempt, taker.rounds_completed) == (2, 1)
    row = load(sessions, sim_id)
    assert (row.status, row.releases, row.give_up_after) == (SimulationStatus.running, 1, None)
    assert any("may still be released" in line for line in lifecycle_lines(sessions, sim_id))

    expire_lease(sessions, sim_id)  # this one really died
    assert grace_claim() is None
    assert load(sessions, sim_id).status == SimulationStatus.running
    with sessions.begin() as session:  # the grace is over
        session.execute(
            update(Simulation)
            .where(Simulation.id == sim_id)
            .values(give_up_after=utcnow() - timedelta(seconds=1))
        )
    assert grace_claim() is None
    failed = load(sessions, sim_id)
    assert failed.status == SimulationStatus.failed and "1 attempts" in (failed.error or "")
    assert "gave up: 1 workers were lost" in lifecycle_lines(sessions, sim_id)[-1]


def test_a_sign_of_life_of_the_holder_ends_the_wait(sessions: sessionmaker[Session]) -> None:
    """The holder was only slow: its next round write clears the wait, so a later loss of it
    gets a grace of its own rather than failing the run at once."""
    sim_id = create(sessions)
    with sessions.begin() as session:
        held = lease.claim(
            session, sim_id, lease_seconds=LEASE, max_attempts=1, release_grace_seconds=10
        )
    assert held is not None
    expire_lease(sessions, sim_id)
    with sessions.begin() as session:
        assert (
            lease.claim(
                session, sim_id, lease_seconds=LEASE, max_attempts=1, release_grace_seconds=10
            )
            is None
        )
    assert load(sessions, sim_id).give_up_after is not None
    assert save(sessions, held, 1) is False  # its claim still holds: nobody took over
    assert load(sessions, sim_id).give_up_after is None


def test_list_is_newest_first_and_the_after_cursor_pages_through_ties(
    sessions: sessionmaker[Session],
) -> None:
    ids = [create(sessions, owner="alice") for _ in range(5)]
    create(sessions, owner="bob")
    base = utcnow()
    offsets = [0, 1, 1, 1, 2]  # three rows share a timestamp: the id breaks the tie
    with sessions.begin() as session:
        for sim_id, seconds in zip(ids, offsets, strict=True):
            session.execute(
                update(Simulation)
                .where(Simulation.id == sim_id)
                .values(created_at=base + timedelta(seconds=seconds))
            )
    expected = [i for _, i in sorted(zip(offsets, ids, strict=True), reverse=True)]

    seen: list[uuid.UUID] = []
    after = None
    with sessions() as session:
        while True:
            page = simulations_repo.list_simulations(session, owner="alice", limit=2, after=after)
            if not page:
                break
            assert len(page) <= 2
            seen += [simulation.id for simulation in page]
            after = (page[-1].created_at, page[-1].id)
    assert seen == expected

    with sessions() as session:
        assert (
            simulations_repo.list_simulations(session, owner="alice", status="running", limit=10)
            == []
        )
        queued = simulations_repo.list_simulations(
            session, owner="alice", status="queued", limit=10
        )
        assert len(queued) == 5
        assert simulations_repo.count_active(session, "alice") == 5


def test_another_owner_cannot_see_a_simulation(sessions: sessionmaker[Session]) -> None:
    sim_id = create(sessions, owner="alice")
    with sessions() as session:
        assert simulations_repo.get_simulation(session, sim_id, "alice") is not None
        assert simulations_repo.get_simulation(session, sim_id, "bob") is None


def test_delete_removes_the_simulation_and_its_rounds(sessions: sessionmaker[Session]) -> None:
    sim_id = create(sessions)
    held = claim(sessions, sim_id)
    assert held is not None
    assert save(sessions, held, 1) is False
    with sessions.begin() as session:
        simulation = session.get(Simulation, sim_id)
        assert simulation is not None
        simulations_repo.delete_simulation(session, simulation)
    for table in (Simulation, RoundMetrics, ClientInsight, MetaParams, SimulationLog, Checkpoint):
        key = Simulation.id if table is Simulation else table.simulation_id
        with sessions() as session:
            assert session.scalar(select(func.count()).where(key == sim_id)) == 0


def test_a_cancel_flagged_on_a_run_whose_worker_died_is_honoured_by_the_next_claim(
    sessions: sessionmaker[Session],
) -> None:
    sim_id = create(sessions)
    assert claim(sessions, sim_id) is not None
    with sessions.begin() as session:
        simulation = session.get(Simulation, sim_id)
        assert simulation is not None
        simulations_repo.request_cancel(session, simulation)
    expire_lease(sessions, sim_id)
    assert claim(sessions, sim_id) is None
    assert load(sessions, sim_id).status == SimulationStatus.cancelled


def test_the_reaper_republishes_old_queued_and_stale_running_simulations_only(
    sessions: sessionmaker[Session],
) -> None:
    fresh_queued, old_queued, live, dead = (create(sessions) for _ in range(4))
    with sessions.begin() as session:
        session.execute(
            update(Simulation)
            .where(Simulation.id == old_queued)
            .values(created_at=utcnow() - timedelta(seconds=2 * LEASE))
        )
    for sim_id in (live, dead):
        assert claim(sessions, sim_id) is not None
    expire_lease(sessions, dead)
    due = take_due(sessions)
    assert set(due) == {old_queued, dead}


def take_due(sessions: sessionmaker[Session]) -> list[uuid.UUID]:
    with sessions.begin() as session:
        return lease.take_due_for_republish(
            session, lease_seconds=LEASE, max_backoff_seconds=8 * LEASE
        )


def age(sessions: sessionmaker[Session], sim_id: uuid.UUID, seconds: float) -> None:
    """Move a simulation's clock `seconds` into the past (creation and any backoff)."""
    with sessions.begin() as session:
        simulation = session.get(Simulation, sim_id)
        assert simulation is not None
        simulation.created_at -= timedelta(seconds=seconds)
        if simulation.next_publish_at is not None:
            simulation.next_publish_at -= timedelta(seconds=seconds)


def test_a_waiting_job_is_republished_with_a_doubling_backoff_up_to_the_cap(
    sessions: sessionmaker[Session],
) -> None:
    sim_id = create(sessions)
    waited = LEASE + 1
    age(sessions, sim_id, waited)
    assert take_due(sessions) == [sim_id]
    assert take_due(sessions) == []  # just re-sent: not on the next pass
    gaps = []
    for _ in range(5):
        gap = min(waited, 8 * LEASE)  # the backoff is as long as it has waited, up to the cap
        age(sessions, sim_id, gap - 5)
        assert take_due(sessions) == [], gap
        age(sessions, sim_id, 10)
        assert take_due(sessions) == [sim_id], gap
        gaps.append(gap)
        waited += gap + 5
    assert gaps[1] > 2 * LEASE and gaps[2] > 4 * LEASE and gaps[3:] == [8 * LEASE] * 2


def test_a_claim_clears_the_backoff_so_a_dead_worker_is_recovered_after_one_lease(
    sessions: sessionmaker[Session],
) -> None:
    sim_id = create(sessions)
    age(sessions, sim_id, 10 * LEASE)
    assert take_due(sessions) == [sim_id]  # backoff now 8 leases
    assert claim(sessions, sim_id) is not None
    expire_lease(sessions, sim_id)
    assert take_due(sessions) == [sim_id]


def test_admit_inserts_in_order_while_each_owner_has_room(
    sessions: sessionmaker[Session],
) -> None:
    create(sessions, owner="alice")
    named = {"name": "bob's run", "tags": {"team": "fl"}, "notes": "first try"}
    submissions = [
        ("alice", CONFIG, {}),
        ("bob", CONFIG, named),
        ("alice", CONFIG, {}),
        ("alice", CONFIG, {}),
    ]
    with sessions.begin() as session:
        outcomes = simulations_repo.admit(session, submissions, room={"alice": 1, "bob": 5})
    assert [row is not None for row in outcomes] == [True, True, False, False]
    with sessions() as session:
        assert simulations_repo.count_active(session, "alice") == 2
        assert simulations_repo.count_active(session, "bob") == 1
        assert simulations_repo.count_active(session, "alice", up_to=1) == 1
        stored = session.get(Simulation, outcomes[1].id)  # type: ignore[union-attr]
        assert stored is not None and stored.owner == "bob" and stored.status == "queued"
        assert stored.config == CONFIG and stored.rounds_total == CONFIG["rounds"]
        assert (stored.name, stored.tags, stored.notes) == (
            "bob's run",
            {"team": "fl"},
            "first try",
        )


# --- sweeps -----------------------------------------------------------------------------------


def make_sweep(
    sessions: sessionmaker[Session], runs: int, max_concurrent: int, owner: str = "alice"
) -> uuid.UUID:
    with sessions.begin() as session:
        sweep = sweeps_repo.create_sweep(
            session,
            sweep_id=uuid.uuid4(),
            owner=owner,
            name="s",
            request={},
            varied=["seed"],
            method="grid",
            max_concurrent=max_concurrent,
            runs=[(CONFIG | {"seed": seed}, {"name": f"seed {seed}"}) for seed in range(runs)],
        )
        return sweep.id


def release(sessions: sessionmaker[Session], sweep_id: uuid.UUID, cap: int) -> list[uuid.UUID]:
    with sessions.begin() as session:
        return sweeps_repo.release_pending(
            session, sweep_id, max_active_per_owner=cap, lease_seconds=LEASE
        )


def seeds_of(sessions: sessionmaker[Session], ids: list[uuid.UUID]) -> list[int]:
    with sessions() as session:
        rows = session.scalars(select(Simulation).where(Simulation.id.in_(ids))).all()
        return sorted(row.config["seed"] for row in rows)


def test_a_sweep_releases_runs_in_order_within_max_concurrent_and_the_owner_cap(
    sessions: sessionmaker[Session],
) -> None:
    sweep_id = make_sweep(sessions, runs=5, max_concurrent=2)
    create(sessions, owner="alice")  # one active run of the owner outside the sweep
    assert seeds_of(sessions, release(sessions, sweep_id, cap=2)) == [0]  # the cap: 1 room
    with sessions.begin() as session:  # as if it had not been released, to test both bounds
        session.execute(
            update(Simulation).where(Simulation.sweep_id == sweep_id).values(status="pending")
        )
    first = release(sessions, sweep_id, cap=3)
    assert seeds_of(sessions, first) == [0, 1]  # max_concurrent 2, in plan order
    assert release(sessions, sweep_id, cap=100) == []  # both slots taken
    with sessions.begin() as session:  # run seed 0 ends
        session.execute(
            update(Simulation).where(Simulation.id == first[0]).values(status="succeeded")
        )
    nxt = release(sessions, sweep_id, cap=100)
    assert seeds_of(sessions, nxt) == [2]
    with sessions() as session:
        counts = sweeps_repo.sweep_status_counts(session, [sweep_id])[sweep_id]
        assert counts == {"succeeded": 1, "queued": 2, "pending": 2}
        assert sweeps_repo.sweeps_with_pending(session) == [sweep_id]
        # a pending run is neither claimable nor due for publishing
        pending = session.scalars(
            select(Simulation.id).where(Simulation.status == SimulationStatus.pending)
        ).all()
    assert claim(sessions, pending[0]) is None
    with sessions.begin() as session:
        assert not set(pending) & set(
            lease.take_due_for_republish(session, lease_seconds=0, max_backoff_seconds=1)
        )


def test_cancelling_a_sweep_cancels_waiting_runs_and_flags_running_ones(
    sessions: sessionmaker[Session],
) -> None:
    sweep_id = make_sweep(sessions, runs=4, max_concurrent=2)
    started = release(sessions, sweep_id, cap=100)
    running = claim(sessions, started[0])
    assert running is not None and running.sweep_id == sweep_id
    with sessions.begin() as session:
        sweep = sweeps_repo.get_sweep(session, sweep_id, "alice")
        assert sweep is not None and sweeps_repo.get_sweep(session, sweep_id, "bob") is None
        sweeps_repo.cancel_sweep(session, sweep)
    assert release(sessions, sweep_id, cap=100) == []  # nothing starts any more
    with sessions() as session:
        counts = sweeps_repo.sweep_status_counts(session, [sweep_id])[sweep_id]
        assert counts == {"running": 1, "cancelled": 3}
    assert save(sessions, running, 1) is True  # the worker sees the cancel after its round
    with sessions.begin() as session:
        assert lease.finish(session, running, SimulationStatus.cancelled)
        sweep = sweeps_repo.get_sweep(session, sweep_id, "alice")
        assert sweep is not None
        sweeps_repo.delete_sweep(session, sweep)
    with sessions() as session:
        for table in (Simulation, RoundMetrics, SimulationLog):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table


def test_an_idempotency_key_is_reserved_once_answered_and_freed_on_failure(
    sessions: sessionmaker[Session],
) -> None:
    args = {"owner": "alice", "key": "k1", "endpoint": "POST /simulations", "request_hash": "h"}
    with sessions.begin() as session:
        assert idempotency_repo.reserve_key(session, **args) is None  # ours
    with sessions.begin() as session:
        running = idempotency_repo.reserve_key(session, **args)
        assert running is not None and running.status_code is None  # still in progress
        assert (
            idempotency_repo.reserve_key(session, **(args | {"owner": "bob"})) is None
        )  # per owner
    with sessions.begin() as session:
        idempotency_repo.complete_key(
            session, owner="alice", key="k1", status_code=202, response={"id": 1}, location="/x"
        )
    with sessions.begin() as session:
        done = idempotency_repo.reserve_key(session, **args)
        assert done is not None and (done.status_code, done.response) == (202, {"id": 1})
        idempotency_repo.release_key(session, owner="alice", key="k1")  # answered: kept
        assert idempotency_repo.reserve_key(session, **args) is not None
    with sessions.begin() as session:
        idempotency_repo.release_key(session, owner="bob", key="k1")  # unanswered: freed
        assert idempotency_repo.reserve_key(session, **(args | {"owner": "bob"})) is None
    with sessions.begin() as session:  # an unanswered reservation past stale_after is taken over
        assert (
            idempotency_repo.reserve_key(session, **(args | {"owner": "bob"}), stale_after=0)
            is None
        )


def test_the_rows_of_a_round_are_its_dict_form_in_order() -> None:
    """The worker hands the engine's `RoundResult`s to the repository; the rows it stores hold
    what `RoundResult.to_dict()` names, keys in its order, so the JSON text of every column is
    what the worker stored when it wrote those dicts itself (readers and the API see no change)."""
    from scarcity import Simulation as Engine
    from scarcity.config import resolve_config
    from scarcity.results import UNCERTAINTY_GROUPS

    config = resolve_config(
        preset="stage8", num_clients=6, clients_per_round=4, rounds=2, samples_per_client=20
    )
    results = list(Engine(config).rounds())
    sim_id = uuid.uuid4()
    rows = results_repo.round_rows(sim_id, results)
    dicts = [result.to_dict() for result in results]
    # every column is exercised: sampled rounds, gossip, insights, meta-parameters, log lines
    assert all(d["participants"] and d["gossip_pairs"] and d["meta_params"] for d in dicts)
    assert all(d["insights"] and d["logs"] for d in dicts)
    metric_columns = ("metrics", "expert_usage", "gossip_pairs", "participants", "duration_seconds")
    expected = {
        "metrics": [
            {"simulation_id": sim_id, "round": d["round"], **{k: d[k] for k in metric_columns}}
            for d in dicts
        ],
        "insights": [
            {
                "simulation_id": sim_id,
                "round": d["round"],
                "client_id": i["client_id"],
                "insight": i,
            }
            for d in dicts
            for i in d["insights"]
        ],
        "meta_params": [
            {
                "simulation_id": sim_id,
                "round": d["round"],
                "params": {**d["meta_params"], **{key: d[key] for key in UNCERTAINTY_GROUPS}},
            }
            for d in dicts
        ],
        "logs": [
            {
                "simulation_id": sim_id,
                "round": d["round"],
                "seq": seq,
                "level": "INFO",
                "message": m,
            }
            for d in dicts
            for seq, m in enumerate(d["logs"])
        ],
    }
    for table, want in expected.items():
        assert json.dumps(getattr(rows, table), default=str) == json.dumps(want, default=str), table
