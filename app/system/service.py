"""Operations: whether this process can serve (the database and the queue answer), and its
Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import text

from app.schemas import Health
from models.db import get_engine


def readiness(queue_check: Callable[[], str]) -> Health:
    """`ok` when a query runs and `queue_check()` says `ok`; else `unavailable`, each check's
    error by type name (no detail that could leak a URL or a password)."""
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    checks["queue"] = queue_check()
    ok = all(v == "ok" for v in checks.values())
    return Health(status="ok" if ok else "unavailable", checks=checks)


async def prometheus() -> tuple[bytes, str]:
    """The metrics text and its content type, read off the event loop (it reads the database)."""
    from app.metrics import render

    return await run_in_threadpool(render)
