"""A claim taking over an expired lease on PostgreSQL ends the connections its frozen worker
left inside a write transaction (`models/stalled.py`), and only those."""

from __future__ import annotations

import time
import uuid

import psycopg
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import SimulationLog, lease, simulations_repo
from models.db import make_engine
from models.migrate import upgrade_to_head

LEASE = 1.0
CONFIG = {"preset": "stage8", "rounds": 3, "seed": 1}


def open_transaction(url: str, process: str, sim_id: uuid.UUID, round_: int) -> psycopg.Connection:
    """A connection of worker process `process` with an uncommitted row of the run: a backend
    holding a transaction id and row locks, as a round write that froze leaves it."""
    connection = psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"),
        application_name=f"scarcity {process}",
    )
    connection.execute(
        "INSERT INTO simulation_logs (simulation_id, round, seq, level, message)"
        " VALUES (%s, %s, 0, 'INFO', 'unfinished')",
        (sim_id, round_),
    )
    return connection


def alive(connection: psycopg.Connection) -> bool:
    try:
        connection.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    connection.rollback()
    return True


def test_a_takeover_ends_the_old_attempts_transactions_begun_under_its_lease_only(
    postgres_url: str,
) -> None:
    upgrade_to_head(postgres_url)
    engine = make_engine(postgres_url)
    sessions = sessionmaker(engine, expire_on_commit=False)

    def claim() -> lease.Claim | None:
        with sessions.begin() as session:
            return lease.claim(session, sim_id, lease_seconds=LEASE, max_attempts=5)

    with sessions.begin() as session:
        sim_id = simulations_repo.create_simulation(session, owner="", config=CONFIG).id
    first = claim()
    assert first is not None
    with sessions.begin() as session:
        lease.record_attempt(session, first, worker="host-a:101", environment={})
    frozen = open_transaction(postgres_url, "host-a:101", sim_id, 1)
    other_process = open_transaction(postgres_url, "host-b:202", sim_id, 2)
    time.sleep(LEASE + 0.5)  # the lease expires; the same process then begins another one
    begun_later = open_transaction(postgres_url, "host-a:101", sim_id, 3)
    try:
        taker = claim()
        assert taker is not None and taker.attempt == 2
        assert not alive(frozen)
        assert alive(other_process) and alive(begun_later)
        with sessions.begin() as session:
            messages = session.scalars(
                select(SimulationLog.message).where(
                    SimulationLog.simulation_id == sim_id, SimulationLog.round == 0
                )
            ).all()
        ended = [m for m in messages if m.startswith("ended the stalled connection")]
        assert len(ended) == 1 and "of attempt 1 (host-a:101, backend " in ended[0], messages
        # The lease of attempt 2 holds: a second claim ends nothing and takes nothing.
        assert claim() is None
    finally:
        for connection in (frozen, other_process, begun_later):
            connection.close()
        engine.dispose()


def test_on_sqlite_a_takeover_has_no_connections_to_end(sqlite_url: str) -> None:
    upgrade_to_head(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with Session(engine) as session, session.begin():
            sim_id = simulations_repo.create_simulation(session, owner="", config=CONFIG).id
            first = lease.claim(session, sim_id, lease_seconds=0.0, max_attempts=5)
            assert first is not None
            lease.record_attempt(session, first, worker="host-a:101", environment={})
        time.sleep(0.01)
        with Session(engine) as session, session.begin():
            taker = lease.claim(session, sim_id, lease_seconds=0.0, max_attempts=5)
            assert taker is not None and taker.attempt == 2
    finally:
        engine.dispose()
