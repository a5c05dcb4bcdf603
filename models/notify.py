"""Change notifications: "simulation X stored round N / is now S", told once its transaction
commits, so live event streams read the new rows at once instead of waiting for a poll.

A note says only what changed, never the rows: listeners read those from the database, which
stays the record (and the fallback when a note is lost).

- In this process: `notify(session, ...)` keeps the note on the session; when the transaction
  commits, every callback given to `subscribe` gets it (the embedded worker's rounds reach the
  API's event feeds this way). A rolled-back transaction tells nothing.
- Across processes, on PostgreSQL: the same note goes out with `pg_notify` inside the
  transaction; PostgreSQL delivers it to every `LISTEN`ing connection when, and only if, the
  transaction commits. `listen` is that connection, one per API process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, make_url, select
from sqlalchemy.orm import Session

logger = logging.getLogger("models.notify")

CHANNEL = "scarcity_simulation_changes"
_NOTES = "scarcity_notes"  # key of the pending notes in `Session.info`


@dataclass(frozen=True)
class Note:
    simulation_id: uuid.UUID
    round: int | None  # the round just stored, if any
    status: str

    def payload(self) -> str:
        return f"{self.simulation_id} {self.round or 0} {self.status}"

    @classmethod
    def parse(cls, payload: str) -> Note:
        simulation_id, number, status = payload.split(" ")
        return cls(uuid.UUID(simulation_id), int(number) or None, status)


Callback = Callable[[Note], None]
_callbacks: list[Callback] = []
_callbacks_lock = threading.Lock()


def subscribe(callback: Callback) -> Callable[[], None]:
    """Call `callback` (from the committing thread: keep it short) with every committed note of
    this process; returns the function that unsubscribes it."""
    with _callbacks_lock:
        _callbacks.append(callback)

    def unsubscribe() -> None:
        with _callbacks_lock:
            if callback in _callbacks:
                _callbacks.remove(callback)

    return unsubscribe


def dispatch(note: Note) -> None:
    with _callbacks_lock:
        callbacks = list(_callbacks)
    for callback in callbacks:
        try:
            callback(note)
        except Exception:  # a listener's bug must not fail the writer's commit
            logger.exception("change notification callback failed")


def notify(
    session: Session, simulation_id: uuid.UUID, status: str, round: int | None = None
) -> None:
    """Tell listeners, once this session's transaction commits, that the simulation changed."""
    note = Note(simulation_id, round, str(status))
    session.info.setdefault(_NOTES, []).append(note)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CHANNEL, note.payload())))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for note in session.info.pop(_NOTES, ()):
        dispatch(note)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_NOTES, None)


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as psycopg's own connection string."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


async def listen(
    database_url: str,
    on_note: Callback,
    on_connect: Callable[[], Any],
) -> None:
    """Deliver every note PostgreSQL sends on `CHANNEL` to `on_note`, reconnecting (with a
    backoff) whenever the connection drops; runs until cancelled. `on_connect` runs after each
    (re)connection: notes sent while none was listening are lost, so callers read again."""
    import psycopg

    failures = 0
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(
                libpq_url(database_url),
                autocommit=True,
                connect_timeout=5,
                # a silently dead server is noticed within a minute, not hours
                keepalives=1,
                keepalives_idle=20,
                keepalives_interval=10,
                keepalives_count=3,
                application_name="scarcity events",
            )
            async with connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                if failures:
                    logger.info("change notifications: listening again")
                failures = 0
                on_connect()
                async for notification in connection.notifies():
                    try:
                        note = Note.parse(notification.payload)
                    except ValueError:
                        logger.warning("change notifications: bad payload %r", notification.payload)
                        continue
                    on_note(note)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
            failures += 1
            if failures == 1:
                logger.warning(
                    "change notifications: connection lost (%s); events fall back to polling "
                    "and it reconnects",
                    type(exc).__name__,
                )
            await asyncio.sleep(delay)
