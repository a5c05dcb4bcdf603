"""Ending the database connections of a worker that lost its lease while frozen mid-write.

A worker frozen (SIGSTOP, a VM pause) or cut off inside its round transaction keeps that
transaction's row locks. `idle_in_transaction_session_timeout` frees them only when its backend
is idle; a backend frozen in the middle of a pipelined batch (psycopg's `executemany`) or
waiting on a lock is `active`, and no server timeout ends it: the worker taking over the run
would wait on those locks for as long as the freeze lasts (docs/reliability.md). The lease has
expired by the database's clock, so that transaction can never commit (every write of the old
claim is fenced by `attempt`): the taker ends its backend (`pg_terminate_backend`, allowed for
the same role) before it claims, and the locks go with it.

A backend is the old attempt's when its `application_name` names that attempt's worker process
(`models/db.py` sets it to "scarcity host:pid", `attempts.worker` records host:pid), it holds
a transaction id (it wrote or locked rows) and its transaction began before the lease expired:
a transaction the same process began later, on some other run, is left alone.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from models.attempt import Attempt
from models.db import APPLICATION_NAME_PREFIX

_APPLICATION_NAME_LIMIT = 63  # PostgreSQL's NAMEDATALEN - 1


class EndedConnection(NamedTuple):
    worker: str  # host:pid
    pid: int  # the backend's


def end_stalled_connections(
    session: Session, simulation_id: uuid.UUID, attempt: int, lease_expired_at: datetime
) -> list[EndedConnection]:
    """End the backends of `attempt`'s worker whose transactions began before its lease
    expired at `lease_expired_at` (the database's time) and are still open. PostgreSQL only:
    on SQLite there are no server backends, and the one writer's lock is the file's."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    worker = session.scalar(
        select(Attempt.worker).where(
            Attempt.simulation_id == simulation_id, Attempt.attempt == attempt
        )
    )
    if worker is None:  # it stopped before recording itself: it wrote nothing since its claim
        return []
    rows = session.execute(
        text(
            "SELECT pid, pg_terminate_backend(pid) AS ended FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name = :name AND backend_xid IS NOT NULL"
            " AND state <> 'idle' AND xact_start < :expired"
        ),
        {
            "name": f"{APPLICATION_NAME_PREFIX}{worker}"[:_APPLICATION_NAME_LIMIT],
            "expired": lease_expired_at,
        },
    ).all()
    return [EndedConnection(worker, int(row.pid)) for row in rows if row.ended]
