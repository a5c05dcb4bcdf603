"""Operations: whether this process can serve (the database and the queue answer), and its
Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from app.schemas import Health
from models.db import READ_ONLY, check_writable, describe_database_error, get_engine


def readiness(queue_check: Callable[[], str]) -> Health:
    """`ok` when the database answers and takes a write and `queue_check()` says `ok`; else
    `unavailable`, each failed check with its reason in words (no detail that could leak a
    URL or a password)."""
    checks = {"database": _database_check(), "queue": queue_check()}
    ok = all(v == "ok" for v in checks.values())
    return Health(status="ok" if ok else "unavailable", checks=checks)


def _database_check() -> str:
    """`ok`, `error: <reason>` when the database does not answer, or `refuses writes:
    <reason>` when it answers reads only (a full disk, a read-only file or server): every
    submission and every round would then fail, so the process is not ready."""
    engine = get_engine()
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {describe_database_error(exc)}"
    try:
        check_writable(engine)
    except Exception as exc:
        return f"refuses writes: {describe_database_error(exc)}"
    return "ok"


async def prometheus() -> tuple[bytes, str]:
    """The metrics text and its content type, read off the event loop (it reads the database)."""
    from app.metrics import render

    return await run_in_threadpool(render)
