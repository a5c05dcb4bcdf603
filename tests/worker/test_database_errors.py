"""The worker's log lines and a run's error say why the database refused, not its error type."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from worker.tasks import DatabaseUnavailable, public_error, with_database


def test_a_read_only_database_is_named_in_the_retry_line_the_give_up_and_the_run_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    read_only = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")

    def write(_: Session) -> None:
        with read_only.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))

    with (
        caplog.at_level(logging.WARNING, logger="worker.tasks"),
        pytest.raises(DatabaseUnavailable, match=r"\(2 tries, read-only\)$") as raised,
    ):
        with_database("round write", write, bound=0.15)
    assert "round write hit a database error (read-only)" in caplog.text
    assert public_error(raised.value.__cause__) == (
        "database error (read-only); the worker's log has the details"
    )
