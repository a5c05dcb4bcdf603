"""Change notifications are told when, and only if, their transaction commits: to this
process's callbacks on both databases, and on PostgreSQL to another connection's LISTEN."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from models import SimulationStatus, notify
from models.db import session_scope


@pytest.fixture
def heard() -> Iterator[list[notify.Note]]:
    notes: list[notify.Note] = []
    unsubscribe = notify.subscribe(notes.append)
    yield notes
    unsubscribe()


def test_a_note_is_told_after_commit_and_never_for_a_rollback(
    database_url: str, heard: list[notify.Note]
) -> None:
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    with session_scope(database_url) as session:
        notify.notify(session, kept, SimulationStatus.running, 3)
        assert heard == []  # not before the commit
    assert heard == [notify.Note(kept, 3, "running")]
    with pytest.raises(RuntimeError), session_scope(database_url) as session:
        notify.notify(session, dropped, SimulationStatus.succeeded)
        raise RuntimeError("roll back")
    with session_scope(database_url) as session:  # the rolled-back note stays dropped
        pass
    assert heard == [notify.Note(kept, 3, "running")]


def test_postgresql_listeners_hear_committed_notes_only(postgres_url: str) -> None:
    from models.migrate import upgrade_to_head

    upgrade_to_head(postgres_url)
    kept, dropped = uuid.uuid4(), uuid.uuid4()

    async def listen_while_writing() -> list[str]:
        listener = await psycopg.AsyncConnection.connect(
            notify.libpq_url(postgres_url), autocommit=True
        )
        async with listener:
            await listener.execute(f"LISTEN {notify.CHANNEL}")

            def write() -> None:
                with pytest.raises(RuntimeError), session_scope(postgres_url) as session:
                    notify.notify(session, dropped, SimulationStatus.failed)
                    raise RuntimeError("roll back")
                with session_scope(postgres_url) as session:
                    notify.notify(session, kept, SimulationStatus.running, 7)

            await asyncio.to_thread(write)
            payloads = []
            async for message in listener.notifies(timeout=5, stop_after=1):
                payloads.append(message.payload)
            return payloads

    payloads = asyncio.run(listen_while_writing())
    assert [notify.Note.parse(p) for p in payloads] == [notify.Note(kept, 7, "running")]
