"""/readyz and the 503s say why the database refuses writes, not just the driver's error type."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from models.db import describe_database_error, get_engine
from tests.service_processes import Server

JOB = {"preset": "stage1", "rounds": 1}


@contextmanager
def immutable(*files: Path) -> Iterator[None]:
    """The files can be neither written nor replaced, even by root (for whom `chmod` stops
    nothing). The WAL's shared-memory index is left alone: SQLite maps it, and writes to a
    mapped immutable file kill the process."""
    names = [str(f) for f in files]
    try:
        subprocess.run(["chattr", "+i", *names], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"chattr +i is not available here ({exc})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *names], check=True)


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A server of its own: its database file is made unwritable under it."""
    tmp = tmp_path_factory.mktemp("readiness")
    server = Server({"SCARCITY_DATABASE_URL": f"sqlite:///{tmp}/api.db"}, tmp / "api.log")
    yield server.url, tmp / "api.db"
    server.stop()


def test_readyz_is_503_with_the_reason_while_the_database_file_refuses_writes(
    own_server: tuple[str, Path],
) -> None:
    url, db = own_server
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/simulations", json=JOB).status_code == 202
        assert client.get("/readyz").json()["checks"]["database"] == "ok"
        with immutable(db, db.with_name("api.db-wal")):
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"] == {
                "database": "refuses writes: read-only",
                "queue": "ok",
            }
            assert client.get("/healthz").status_code == 200  # alive, just not ready
            refused = client.post("/simulations", json=JOB)
            assert refused.status_code == 503
            detail = refused.json()["detail"]
            assert "(read-only)" in detail or "(disk I/O error)" in detail, detail
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
        assert client.post("/simulations", json=JOB).status_code == 202


def test_a_full_database_is_described_as_disk_full(tmp_path: Path) -> None:
    """SQLite's own SQLITE_FULL ("database or disk is full"), made by capping the file's pages."""
    engine = get_engine(f"sqlite:///{tmp_path}/full.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x TEXT)"))
    with pytest.raises(OperationalError) as raised, engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA max_page_count = 3")
        connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": "x" * 100_000})
    assert describe_database_error(raised.value) == "disk full"


class _PostgresError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "reason"),
    [
        ("53100", "disk full"),
        ("25006", "read-only"),
        ("57P03", "server not accepting connections now"),
        (None, "_PostgresError"),  # unknown: the type's name, as before, never the message
    ],
)
def test_postgres_errors_are_described_by_their_sqlstate(sqlstate: str | None, reason: str) -> None:
    error = OperationalError("UPDATE secret", {}, _PostgresError(sqlstate))
    assert describe_database_error(error) == reason


def test_an_error_without_a_known_code_is_named_by_its_class(tmp_path: Path) -> None:
    """A violated constraint is the statement's fault, not the database's state: as before."""
    engine = get_engine(f"sqlite:///{tmp_path}/unique.db")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1), (1)"))
    assert describe_database_error(raised.value) == "IntegrityError"
