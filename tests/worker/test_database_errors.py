"""The worker's log lines and a run's error say why the database refused, not its error type."""

from __future__ import annotations

import logging
import re
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
        pytest.raises(DatabaseUnavailable, match=r"\((\d+) tries, read-only\)$") as raised,
    ):
        # A bound of several retry delays (0.1 + 0.2 + 0.4 s): at least one retry however slow
        # the machine is (with 0.15 s a slow first try left no time for a second).
        with_database("round write", write, bound=1.0)
    tries = re.search(r"\((\d+) tries", str(raised.value))
    assert tries is not None and int(tries.group(1)) >= 2, raised.value
    assert "round write hit a database error (read-only)" in caplog.text
    assert public_error(raised.value.__cause__) == (
        "database error (read-only); the worker's log has the details"
    )
