"""Database faults and stops never fail a run (docs/reliability.md), with real processes.

Each case ends `succeeded` with every round and the metrics of an uninterrupted run: the
worker's connection terminated inside its round transaction, PostgreSQL restarted and down for
20 s (a server of the test's own), Redis restarted twice under a running job, a worker frozen
(SIGSTOP) inside its round transaction past its lease (its backend idle, or active mid-write), a
worker stopped by SIGTERM while a second one is alive, and a worker whose clock runs ahead of
the database's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_durability import expected_metrics, stored_metrics
from tests.service_processes import (
    ROOT,
    SCARCITY,
    PostgresServer,
    RedisServer,
    Server,
    Worker,
    free_port,
    wait_for_status,
)

pytestmark = pytest.mark.integration

FINISHED = {"succeeded", "failed", "cancelled"}
# Debian's faketime (make test installs it): the worker's clock runs 30 s ahead of everyone's.
FAKETIME_30_S_AHEAD = ("faketime", "-f", "+30s")
# Rounds of ~0.1 s: long enough for the test to act between them, short enough to be cheap.
JOB = {"preset": "stage8", "num_clients": 300, "rounds": 16, "seed": 11}


@pytest.fixture(scope="module")
def expected() -> list[dict]:
    return expected_metrics(JOB)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, which it may restart."""
    server = RedisServer(tmp_path / "redis.log")
    yield server
    server.stop()


@pytest.fixture
def own_redis(redis_server: RedisServer) -> str:
    return redis_server.url


def plain(url: str) -> str:
    """The libpq URL of a SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def until(what: str, timeout: float, condition: Callable[..., Any], *args: Any) -> Any:
    """`condition(*args)` once it is truthy; errors meanwhile (a database down) count as no."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, psycopg.Error):
            value = condition(*args)
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def reached(api: httpx.Client, sim_id: str, rounds: int) -> bool:
    response = api.get(f"/simulations/{sim_id}")
    return response.is_success and response.json()["progress"]["rounds_completed"] >= rounds


def logged(api: httpx.Client, sim_id: str, words: str) -> bool:
    return any(words in line for line in lifecycle(api, sim_id))


def lifecycle(api: httpx.Client, sim_id: str) -> list[str]:
    lines = api.get(f"/simulations/{sim_id}/logs").json()["lines"]
    return [line["message"] for line in lines if line["round"] == 0]


def blocked_round_write(admin: psycopg.Connection, other_than: int = 0) -> tuple[int, str] | None:
    """(backend pid, application name) of a worker's round write waiting on a row lock."""
    row = admin.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query ILIKE '%%rounds_completed%%' LIMIT 1"
    ).fetchone()
    return (int(row[0]), str(row[1])) if row and row[0] != other_than else None


@contextlib.contextmanager
def row_locked(url: str, sim_id: str) -> Iterator[None]:
    """Hold the simulation's row so the worker's next round write waits inside its transaction
    (after its upserts, at the fenced UPDATE): the test then acts at exactly that point."""
    with psycopg.connect(plain(url)) as locker:
        # NO KEY: the upserts' foreign-key checks (KEY SHARE) pass, the fenced UPDATE waits.
        locker.execute("SELECT 1 FROM simulations WHERE id = %s FOR NO KEY UPDATE", (sim_id,))
        yield


def assert_identical_success(api: httpx.Client, sim_id: str, expected: list[dict]) -> dict:
    final = wait_for_status(api, sim_id, FINISHED, timeout=120)
    assert final["status"] == "succeeded" and final["error"] is None, final
    assert final["progress"]["rounds_completed"] == JOB["rounds"]
    assert stored_metrics(api, sim_id) == expected
    return final


@pytest.fixture
def stack(migrated_postgres_url: str, own_redis: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = {
        "SCARCITY_DATABASE_URL": migrated_postgres_url,
        "SCARCITY_BROKER_URL": own_redis,
        "SCARCITY_WORKER_LEASE_SECONDS": "2",
    }
    server = Server(env, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            yield {"env": env, "api": api, "url": migrated_postgres_url, "tmp": tmp_path}
    finally:
        server.stop()


def test_terminated_connections_inside_round_writes_are_retried_not_failures(
    stack: dict[str, Any], expected: list[dict]
) -> None:
    api, url = stack["api"], stack["url"]
    metrics_port = free_port()
    # A transaction per round, so that each of the five cuts meets a round of its own (with
    # rounds written in batches the run could end before the fifth).
    env = {
        **stack["env"],
        "SCARCITY_WORKER_METRICS_PORT": str(metrics_port),
        "SCARCITY_ROUND_WRITE_SECONDS": "0",
    }
    worker = Worker(env, stack["tmp"] / "worker.log", name=None)  # the default node name
    try:
        sim_id = api.post("/simulations", json=JOB).json()["id"]
        until("the first round", 60, reached, api, sim_id, 1)
        with psycopg.connect(plain(url), autocommit=True) as admin:
            for _ in range(5):
                with row_locked(url, sim_id):
                    pid, _ = until("a round write", 30, blocked_round_write, admin)
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    # the retry comes back and waits on the row again: same point, new session
                    until("the retry", 30, blocked_round_write, admin, pid)
        assert_identical_success(api, sim_id, expected)
        lines = lifecycle(api, sim_id)
        assert sum("claimed by" in line for line in lines) == 1, lines  # never taken over
        # The largest Last-Event-ID the schema allows is no overflow on PostgreSQL: no rounds
        # after it, just the end.
        events = api.get(f"/simulations/{sim_id}/events", headers={"Last-Event-ID": str(2**31 - 1)})
        assert events.status_code == 200, events.text
        assert "event: end" in events.text and "event: round" not in events.text
        # The worker's own metrics: its pool process serves them on the configured port.
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scraped)
            for s in family.samples
        }
        assert values[("scarcity_rounds_written_total", ())] == JOB["rounds"]
        assert values[("scarcity_db_errors_total", (("step", "round write"),))] >= 5
        assert values[("scarcity_claims_total", (("kind", "start"),))] == 1
        # Unique node names by default, and task events on for Celery's own tooling.
        output = worker.output()
        assert re.search(r"scarcity-\d+@\S+ ready", output) and "task events: ON" in output
        assert "DuplicateNodenameWarning" not in output
    finally:
        worker.stop()


def test_a_worker_frozen_inside_its_round_transaction_past_its_lease_is_taken_over(
    stack: dict[str, Any], expected: list[dict]
) -> None:
    """The frozen worker's transaction holds the row; the server ends it after
    idle_in_transaction_session_timeout, the taker's claim goes through, and the frozen worker,
    woken, finds itself fenced off and gives its attempt back."""
    api, url, env = stack["api"], stack["url"], {**stack["env"], "SCARCITY_MAX_ATTEMPTS": "2"}
    workers = [Worker(env, stack["tmp"] / f"worker-{n}.log", name=f"w{n}") for n in (1, 2)]
    try:
        with psycopg.connect(plain(url), autocommit=True) as admin:
            for _ in range(2):
                sim_id = api.post("/simulations", json=JOB).json()["id"]
                until("two rounds", 60, reached, api, sim_id, 2)
                with row_locked(url, sim_id):
                    _, name = until("a round write", 30, blocked_round_write, admin)
                    group = os.getpgid(int(name.rsplit(":", 1)[1]))
                    os.killpg(group, signal.SIGSTOP)
                # the frozen worker's UPDATE now completes; it sits idle in its transaction
                try:
                    assert_identical_success(api, sim_id, expected)
                finally:
                    os.killpg(group, signal.SIGCONT)
                until("the woken worker's refund", 30, logged, api, sim_id, "lived on")
    finally:
        for worker in workers:
            worker.stop()


# Longer than lease + 10 s: a taker that waits out the freeze misses the test's bound.
FREEZE_SECONDS = 15


@contextlib.contextmanager
def log_rows_taken(url: str, sim_id: str) -> Iterator[None]:
    """Insert, uncommitted, the first log line of every round not yet stored, so that the
    worker's next round write waits on them in its log upsert (a pipelined batch, after the
    upserts of the round's other rows: it holds those meanwhile); rolled back at the end."""
    with psycopg.connect(plain(url)) as locker:
        locker.execute(
            "INSERT INTO simulation_logs (simulation_id, round, seq, level, message)"
            " SELECT %s, r, 0, 'INFO', 'test' FROM generate_series(1, %s) AS r"
            " ON CONFLICT DO NOTHING",
            (sim_id, JOB["rounds"]),
        )
        try:
            yield
        finally:
            locker.rollback()


def blocked_log_write(admin: psycopg.Connection) -> tuple[int, str] | None:
    """(backend pid, application name) of a worker's log upsert waiting on a lock."""
    row = admin.execute(
        "SELECT pid, application_name FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND application_name LIKE 'scarcity %%'"
        " AND query ILIKE '%%INSERT INTO simulation_logs%%' LIMIT 1"
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def backend_alive(admin: psycopg.Connection, pid: int) -> bool:
    found = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return found is not None


def test_a_worker_frozen_mid_write_with_its_backend_active_cannot_stall_the_run(
    stack: dict[str, Any], expected: list[dict]
) -> None:
    """A backend whose client froze in the middle of a pipelined batch stays `active`: neither
    idle_in_transaction_session_timeout nor any other server timeout ends it, and it keeps the
    rows it wrote, which the worker taking the run over writes again. Here the frozen worker's
    log upsert waits on rows the test holds, which keeps its backend active the same way for as
    long as that backend lives (at most the freeze). The taker ends that backend and finishes
    the run within lease + 10 s of the freeze, identical to an uninterrupted one; the frozen
    worker, woken, finds its connection gone and its retry fenced off, and gives its attempt
    back."""
    api, url, env = stack["api"], stack["url"], {**stack["env"], "SCARCITY_MAX_ATTEMPTS": "2"}
    lease = float(env["SCARCITY_WORKER_LEASE_SECONDS"])
    workers = [Worker(env, stack["tmp"] / f"worker-{n}.log", name=f"w{n}") for n in (1, 2)]
    group = 0
    try:
        with psycopg.connect(plain(url), autocommit=True) as admin:
            sim_id = api.post("/simulations", json=JOB).json()["id"]
            until("two rounds", 60, reached, api, sim_id, 2)
            try:
                with log_rows_taken(url, sim_id):
                    backend, name = until("a round write", 30, blocked_log_write, admin)
                    group = os.getpgid(int(name.rsplit(":", 1)[1]))
                    os.killpg(group, signal.SIGSTOP)
                    frozen_at = time.monotonic()
                    while (
                        backend_alive(admin, backend)
                        and time.monotonic() - frozen_at < FREEZE_SECONDS
                    ):
                        time.sleep(0.05)
                wait_for_status(api, sim_id, FINISHED, timeout=FREEZE_SECONDS + 60)
                finished_after = time.monotonic() - frozen_at
                assert_identical_success(api, sim_id, expected)
                assert finished_after < lease + 10, (finished_after, lifecycle(api, sim_id))
                # Frozen for longer than two leases, the run long finished meanwhile.
                time.sleep(max(0.0, frozen_at + 2 * lease + 1 - time.monotonic()))
            finally:
                if group:
                    os.killpg(group, signal.SIGCONT)
            until("the woken worker's refund", 30, logged, api, sim_id, "lived on")
            assert_identical_success(api, sim_id, expected)
            lines = lifecycle(api, sim_id)
            assert any("ended the stalled connection of attempt 1" in x for x in lines), lines
    finally:
        for worker in workers:
            worker.stop()


def claimed_by_pid(api: httpx.Client, sim_id: str, claims: int) -> int:
    """The pid of the worker process that made the `claims`-th claim, 0 before it."""
    found = [
        re.search(r"claimed by \S+:(\d+) ", line) for line in lifecycle(api, sim_id)
    ]  # fmt: skip
    pids = [int(m.group(1)) for m in found if m]
    return pids[claims - 1] if len(pids) >= claims else 0


def test_sigterm_stops_at_a_round_boundary_and_another_worker_resumes_at_once(
    stack: dict[str, Any], expected: list[dict]
) -> None:
    api, env, tmp = (
        stack["api"],
        {**stack["env"], "SCARCITY_WORKER_LEASE_SECONDS": "60"},
        stack["tmp"],
    )
    workers = [Worker(env, tmp / f"worker-{n}.log", name=f"w{n}") for n in (1, 2)]
    try:
        for rep in range(3):
            sim_id = api.post("/simulations", json=JOB).json()["id"]
            first = until("a claim", 60, claimed_by_pid, api, sim_id, 1)
            until("two rounds", 60, reached, api, sim_id, 2)
            holder = next(w for w in workers if w.process.pid == os.getpgid(first))
            holder.process.terminate()
            holder.process.wait(60)  # a lease of 60 s: only the release makes a quick resume
            exited = time.monotonic()
            second = until("a second claim", 30, claimed_by_pid, api, sim_id, 2)
            resumed_after = time.monotonic() - exited
            assert resumed_after < 2.0, resumed_after
            assert second != first
            final = assert_identical_success(api, sim_id, expected)
            assert final["status"] == "succeeded"
            assert any("released after round" in line for line in lifecycle(api, sim_id))
            holder.stop()
            workers.remove(holder)
            workers.append(Worker(env, tmp / f"worker-r{rep}.log", name=f"r{rep}"))
    finally:
        for worker in workers:
            worker.stop()


def test_broker_restarts_release_the_run_without_charging_an_attempt(
    stack: dict[str, Any], redis_server: RedisServer, expected: list[dict]
) -> None:
    """Two Redis restarts (1 s down each) during one run with SCARCITY_MAX_ATTEMPTS=2: Celery
    no longer terminates the task it cannot acknowledge; the job releases the run at its next
    round boundary, the reaper re-sends it, and it ends as an uninterrupted run would, with no
    attempt charged (`attempt - releases` stays 1: the attempt that finished)."""
    api, url = stack["api"], stack["url"]
    worker = Worker({**stack["env"], "SCARCITY_MAX_ATTEMPTS": "2"}, stack["tmp"] / "worker.log")
    try:
        sim_id = api.post("/simulations", json=JOB).json()["id"]
        until("round 2", 60, reached, api, sim_id, 2)
        redis_server.restart(down_seconds=1)
        # The second restart meets the second attempt computing a round of its own.
        until("a second claim", 60, claimed_by_pid, api, sim_id, 2)
        resumed = api.get(f"/simulations/{sim_id}").json()["progress"]["rounds_completed"]
        until("a resumed round", 60, reached, api, sim_id, resumed + 1)
        redis_server.restart(down_seconds=1)
        assert_identical_success(api, sim_id, expected)
        lines = lifecycle(api, sim_id)
        released = [x for x in lines if "released after round" in x and "broker connection" in x]
        assert len(released) == 2, lines
        with psycopg.connect(plain(url)) as db:
            attempt, releases = db.execute(
                "SELECT attempt, releases FROM simulations WHERE id = %s", (sim_id,)
            ).fetchone() or (0, 0)
        assert (attempt, releases) == (3, 2), lines
    finally:
        worker.stop()


def test_a_worker_whose_clock_runs_ahead_takes_over_no_live_run(stack: dict[str, Any]) -> None:
    """Leases are judged by the database's clock: a second worker whose clock runs 30 s ahead
    (libfaketime) would otherwise see the live run's heartbeats 30 s old, re-publish it and take
    it over. It says in its log that its clock is off; the run keeps its one claim."""
    api, tmp = stack["api"], stack["tmp"]
    env = {**stack["env"], "SCARCITY_WORKER_LEASE_SECONDS": "2"}
    job = {**JOB, "rounds": 400}  # long enough for the skewed worker to start and reap
    live = Worker(env, tmp / "live.log", name="live")
    skewed: Worker | None = None
    try:
        sim_id = api.post("/simulations", json=job).json()["id"]
        until("the live worker's claim", 60, claimed_by_pid, api, sim_id, 1)
        skewed = Worker(env, tmp / "skewed.log", name="skewed", wrapper=FAKETIME_30_S_AHEAD)
        until("the skewed worker", 60, lambda: re.search(r"@\S+ ready", skewed.output()))
        time.sleep(3 * 2)  # three leases: six passes of the skewed worker's reaper
        assert api.get(f"/simulations/{sim_id}").json()["status"] == "running", "too short a job"
        api.post(f"/simulations/{sim_id}/cancel")  # the rest of the run would prove nothing more
        final = wait_for_status(api, sim_id, FINISHED, timeout=120)
        assert final["status"] == "cancelled" and final["error"] is None, final
        lines = lifecycle(api, sim_id)
        assert os.getpgid(claimed_by_pid(api, sim_id, 1)) == live.process.pid
        assert claimed_by_pid(api, sim_id, 2) == 0, lines
        assert not any("lost" in line for line in lines), lines
        warned = re.search(r"clock is ([\d.]+) s ahead of the database's", skewed.output())
        assert warned and 28 < float(warned.group(1)) < 32, skewed.output()[-2000:]
    finally:
        live.stop()
        if skewed is not None:
            skewed.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[PostgresServer, str]]:
    server = PostgresServer(tmp_path / "postgres.log")
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE scarcity")
        url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/scarcity"
        env = {**os.environ, "SCARCITY_DATABASE_URL": url}
        done = subprocess.run([*SCARCITY, "migrate"], cwd=ROOT, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
        yield server, url
    finally:
        server.destroy()


def test_postgres_restarts_and_a_20_s_outage_never_fail_or_charge_a_run(
    own_postgres: tuple[PostgresServer, str], own_redis: str, tmp_path: Path, expected: list[dict]
) -> None:
    """Three restarts and one 20 s outage with SCARCITY_MAX_ATTEMPTS=2 and a 2 s lease: the
    worker waits the database out (no attempt charged); the API answers 503 meanwhile."""
    postgres, url = own_postgres
    env = {
        "SCARCITY_DATABASE_URL": url,
        "SCARCITY_BROKER_URL": own_redis,
        "SCARCITY_WORKER_LEASE_SECONDS": "2",
        "SCARCITY_MAX_ATTEMPTS": "2",
    }
    server = Server(env, tmp_path / "api.log")
    worker = Worker(env, tmp_path / "worker.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            sim_id = api.post("/simulations", json=JOB).json()["id"]
            for after in (2, 5, 8):
                until(f"round {after}", 60, reached, api, sim_id, after)
                postgres.stop()
                time.sleep(0.5)
                postgres.start()
            until("round 11", 60, reached, api, sim_id, 11)
            postgres.stop()
            down_at = time.monotonic()
            try:
                for response in (
                    api.get(f"/simulations/{sim_id}"),
                    api.post("/simulations", json=JOB),
                ):
                    assert response.status_code == 503, response.text
                    assert int(response.headers["Retry-After"]) > 0
                    assert "database" in response.json()["detail"]
                    assert response.headers.get("connection", "").lower() != "close"  # keep-alive
                ready = api.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"]["database"].startswith("error")
                assert ready.json()["checks"]["queue"] == "ok"
                time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))
            finally:
                postgres.start()
            final = assert_identical_success(api, sim_id, expected)
            assert final["status"] == "succeeded"
            lines = lifecycle(api, sim_id)
            assert not any("lost" in line or "gave up" in line for line in lines), lines
    finally:
        worker.stop()
        server.stop()


def test_an_outage_past_the_retry_bound_releases_the_run_which_then_resumes(
    own_postgres: tuple[PostgresServer, str], own_redis: str, tmp_path: Path, expected: list[dict]
) -> None:
    """SCARCITY_DB_RETRY_SECONDS=2 and 8 s without the database: the worker gives up, releases
    the run once the database is back (not charged, SCARCITY_MAX_ATTEMPTS=1) and it resumes."""
    postgres, url = own_postgres
    env = {
        "SCARCITY_DATABASE_URL": url,
        "SCARCITY_BROKER_URL": own_redis,
        "SCARCITY_WORKER_LEASE_SECONDS": "2",
        "SCARCITY_MAX_ATTEMPTS": "1",
        "SCARCITY_DB_RETRY_SECONDS": "2",
    }
    server = Server(env, tmp_path / "api.log")
    worker = Worker(env, tmp_path / "worker.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as api:
            sim_id = api.post("/simulations", json=JOB).json()["id"]
            until("round 3", 60, reached, api, sim_id, 3)
            postgres.stop()
            time.sleep(8)
            postgres.start()
            final = assert_identical_success(api, sim_id, expected)
            assert final["status"] == "succeeded"
            lines = lifecycle(api, sim_id)
            assert any("released after round" in x and "gave up" in x for x in lines), lines
            assert sum("claimed by" in line for line in lines) == 2, lines
            assert not any(" lost" in line for line in lines), lines
    finally:
        worker.stop()
        server.stop()
