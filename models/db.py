"""Engines and the one session pattern: `session_scope()` commits on success, rolls back on error.

SQLite (embedded mode) runs in WAL with a busy timeout, and every transaction starts with
`BEGIN IMMEDIATE` (SQLAlchemy's pysqlite recipe): a deferred transaction that reads and then
writes would otherwise fail with "database is locked" at once, ignoring the busy timeout.
`synchronous=NORMAL`: a process crash loses nothing; a power loss may drop the last commits,
which a resumed simulation recomputes identically (runs are deterministic).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "scarcity_read_only"  # execution option of sessions that never write
POSTGRES_LOCK_TIMEOUT_MS = 10_000
# Each PostgreSQL connection's application_name is this and host:pid of its process: the worker
# taking over a frozen one's run finds that one's connections by it (models/stalled.py).
APPLICATION_NAME_PREFIX = "scarcity "
# A session left idle inside a transaction (its process frozen or stalled mid-transaction) is
# ended by the server after this long, releasing its locks: a worker taking over a frozen one's
# simulation then waits at most this long on them (docs/reliability.md).
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000
# SQLSTATEs of a transaction the server ended that is worth trying again.
_TRANSIENT_SQLSTATES = {"25P03", "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003"}
# Why a database refused work, in words for logs, 503s and /readyz: SQLite's primary result
# codes (an extended code such as SQLITE_IOERR_WRITE is read by its primary part) and
# PostgreSQL's SQLSTATEs. Anything else is named by its exception's type, as no message may
# leak SQL, a URL or a password.
_SQLITE_REASONS = {
    "SQLITE_FULL": "disk full",
    "SQLITE_READONLY": "read-only",
    "SQLITE_BUSY": "locked",
    "SQLITE_LOCKED": "locked",
    "SQLITE_IOERR": "disk I/O error",
    "SQLITE_CANTOPEN": "cannot open the database file",
    "SQLITE_PERM": "permission denied",
    "SQLITE_CORRUPT": "database file corrupt",
    "SQLITE_NOTADB": "not a database file",
}
_POSTGRES_REASONS = {
    "53100": "disk full",
    "53200": "out of memory",
    "53300": "too many connections",
    "25006": "read-only",
    "55P03": "locked",
    "40P01": "deadlock",
    "40001": "serialization failure",
    "57014": "statement timed out",
    "25P03": "idle in transaction too long",
    "57P01": "server shutting down",
    "57P02": "server crashed",
    "57P03": "server not accepting connections now",
    "08000": "connection lost",
    "08003": "connection lost",
    "08006": "connection lost",
    "28P01": "authentication failed",
    "3D000": "database does not exist",
}
# A pooled SQLite connection that failed with one of these is dropped: one opened while the
# file could not be written stays read-only for good, and a fresh one sees the file as it is.
_SQLITE_STALE_CONNECTION = ("SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        if _sqlite_code(context.original_exception).startswith(_SQLITE_STALE_CONNECTION):
            context.is_disconnect = True  # discard this connection, not the whole pool
            context.invalidate_pool_on_disconnect = False

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Read-only sessions begin DEFERRED so WAL lets them read beside the writer.
        mode = "DEFERRED" if connection.get_execution_options().get(READ_ONLY) else "IMMEDIATE"
        connection.exec_driver_sql(f"BEGIN {mode}")


def worker_process() -> str:
    """host:pid of this process (engines are made after a fork: the pid is the child's)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={
            "options": f"-c lock_timeout={POSTGRES_LOCK_TIMEOUT_MS} "
            f"-c idle_in_transaction_session_timeout={POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS}",
            # pg_stat_activity shows which process holds a connection (engines are made after
            # a fork: the pid is the connecting process's own).
            "application_name": f"{APPLICATION_NAME_PREFIX}{worker_process()}"[:63],
        },
    )


def is_transient(exc: BaseException) -> bool:
    """A database error that says nothing about the statement: the connection dropped, the
    server restarts or is unreachable, a lock or a transaction timed out, SQLite was busy. The
    same work may succeed when tried again; anything else is a real error."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return False


def _sqlite_code(error: BaseException | None) -> str:
    """The SQLite result code's name of a sqlite3 error (`SQLITE_FULL`), else ''."""
    return str(getattr(error, "sqlite_errorname", "") or "")


def describe_database_error(exc: BaseException) -> str:
    """Why the database refused, in words ("disk full", "read-only", "locked" …), from the
    driver's error code; else the error's type name. Never the message: it may hold SQL."""
    driver_error = getattr(exc, "orig", None) or exc
    sqlite_primary = "_".join(_sqlite_code(driver_error).split("_")[:2])
    sqlstate = getattr(driver_error, "sqlstate", None)
    reason = _SQLITE_REASONS.get(sqlite_primary) or _POSTGRES_REASONS.get(str(sqlstate))
    return reason or type(driver_error).__name__


def check_writable(engine: Engine) -> None:
    """Raise the database's own error unless it takes a committed write right now.

    The write rewrites the one row of `alembic_version` with itself (every migrated database
    has it; no row is added and no value changes). It is committed, not rolled back, because
    a full disk or an unwritable file only shows when the write reaches the file: SQLite keeps
    an uncommitted change in memory, and PostgreSQL flushes its log at commit. On SQLite the
    transaction begins IMMEDIATE, so a database locked by a writer answers too. A connection
    the error made stale is dropped (`_on_error`), so the check is tried once more on a fresh
    one, which reports the file as it is now.
    """
    for attempt in (1, 2):
        try:
            with engine.begin() as connection:
                connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            return
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise


_engines: dict[str, Engine] = {}
_factories: dict[tuple[str, bool], sessionmaker[Session]] = {}


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine of `url` (default: the configured database)."""
    url = url or get_settings().database_url
    if url not in _engines:
        _engines[url] = make_engine(url)
    return _engines[url]


@contextmanager
def session_scope(url: str | None = None, *, read_only: bool = False) -> Iterator[Session]:
    """A session whose transaction commits when the block ends and rolls back if it raises.

    `read_only=True` for sessions that only read: on SQLite they then don't queue for the
    write lock (writers begin IMMEDIATE; see the module docstring).
    """
    url = url or get_settings().database_url
    key = (url, read_only)
    if key not in _factories:
        bind = get_engine(url).execution_options(**{READ_ONLY: read_only})
        _factories[key] = sessionmaker(bind=bind, expire_on_commit=False)
    session = _factories[key]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Drop pooled connections (after a fork a child must not reuse its parent's sockets)."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _factories.clear()
