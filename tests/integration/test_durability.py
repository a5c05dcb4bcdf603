"""Durable jobs with real processes: kill -9 and resume exactly, a lost queue, cancel, limits."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from scarcity import resolve_config, run_simulation
from tests.service_processes import (
    RedisServer,
    Server,
    Worker,
    wait_for_progress,
    wait_for_status,
)

pytestmark = pytest.mark.integration

LEASE = "2"  # seconds: a dead worker's simulation is taken over quickly
FINISHED = {"succeeded", "failed", "cancelled"}


def expected_metrics(job: dict) -> list[dict]:
    """The uninterrupted run of the same config, in this process (workers use 1 thread too)."""
    torch.set_num_threads(1)
    return [dict(r.metrics) for r in run_simulation(resolve_config(job))]


def stored_metrics(client: httpx.Client, sim_id: str) -> list[dict]:
    rounds = client.get(f"/simulations/{sim_id}/metrics").json()["rounds"]
    return [r["metrics"] for r in rounds]


@pytest.fixture
def stack_env(migrated_postgres_url: str, redis_url: str) -> dict[str, str]:
    return {
        "SCARCITY_DATABASE_URL": migrated_postgres_url,
        "SCARCITY_BROKER_URL": redis_url,
        "SCARCITY_WORKER_LEASE_SECONDS": LEASE,
    }


@pytest.fixture
def api(stack_env: dict[str, str], tmp_path: Path) -> Iterator[httpx.Client]:
    server = Server(stack_env, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def test_worker_killed_at_random_rounds_resumes_with_identical_metrics(
    api: httpx.Client, stack_env: dict[str, str], tmp_path: Path
) -> None:
    # Big enough that a round outlasts the test's polling: the batched engine is fast. At least
    # half the rounds are left when the kill comes, so the worker cannot finish first (rounds
    # are written in batches of 0.2 s).
    job = {"preset": "stage8", "num_clients": 300, "rounds": 16, "seed": 7}
    expected = expected_metrics(job)
    chooser = random.Random(2026)
    for attempt in range(10):
        worker = Worker(stack_env, tmp_path / f"worker-{attempt}.log", name=f"w{attempt}")
        sim_id = api.post("/simulations", json=job).json()["id"]
        kill_after = chooser.randint(1, job["rounds"] // 2)
        progress = wait_for_progress(api, sim_id, kill_after)
        worker.kill()
        assert progress["status"] == "running", progress
        survivor = Worker(stack_env, tmp_path / f"survivor-{attempt}.log", name=f"s{attempt}")
        try:
            final = wait_for_status(api, sim_id, FINISHED, timeout=90)
        finally:
            survivor.stop()
        assert final["status"] == "succeeded", (final, survivor.output()[-3000:])
        assert final["progress"]["rounds_completed"] == job["rounds"]
        rounds = api.get(f"/simulations/{sim_id}/metrics").json()["rounds"]
        assert [r["round"] for r in rounds] == list(range(1, job["rounds"] + 1))
        assert stored_metrics(api, sim_id) == expected, f"attempt {attempt}, killed at {kill_after}"
        insights = api.get(f"/simulations/{sim_id}/insights?limit=10000").json()["insights"]
        assert len(insights) == job["num_clients"] * job["rounds"]
        logs = api.get(f"/simulations/{sim_id}/logs").json()["lines"]
        assert sum("claimed by" in line["message"] for line in logs) >= 2


def test_queued_jobs_survive_a_broker_restart_that_drops_every_message(
    migrated_postgres_url: str, tmp_path: Path
) -> None:
    broker = RedisServer(tmp_path / "redis.log")
    env = {
        "SCARCITY_DATABASE_URL": migrated_postgres_url,
        "SCARCITY_BROKER_URL": broker.url,
        "SCARCITY_WORKER_LEASE_SECONDS": LEASE,
    }
    server = Server(env, tmp_path / "api.log")
    worker: Worker | None = None
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = [
                client.post("/simulations", json={"preset": "stage3", "seed": s}).json()["id"]
                for s in range(3)
            ]
            broker.kill()  # no persistence: the three messages are gone
            broker = RedisServer(tmp_path / "redis-2.log", port=broker.port)
            worker = Worker(env, tmp_path / "worker.log")
            for sim_id in ids:
                assert wait_for_status(client, sim_id, FINISHED, 90)["status"] == "succeeded"
            # The worker still consumes after its broker went away and came back (celery#8030).
            broker.kill()
            started = time.monotonic()
            offline = client.post("/simulations", json={"preset": "stage2", "rounds": 2})
            assert offline.status_code == 202  # the row is the record; the reaper publishes
            assert time.monotonic() - started < 10
            broker = RedisServer(tmp_path / "redis-3.log", port=broker.port)
            final = wait_for_status(client, offline.json()["id"], FINISHED, 90)
            assert final["status"] == "succeeded", worker.output()[-3000:]
    finally:
        server.stop()
        if worker:
            worker.stop()
        broker.stop()


def test_cancel_stops_a_running_simulation_within_a_round_and_keeps_its_rounds(
    api: httpx.Client, stack_env: dict[str, str], tmp_path: Path
) -> None:
    worker = Worker(stack_env, tmp_path / "worker.log")
    try:
        sim_id = api.post("/simulations", json={"preset": "stage8", "rounds": 1000}).json()["id"]
        wait_for_progress(api, sim_id, 2)
        asked = time.monotonic()
        response = api.post(f"/simulations/{sim_id}/cancel")
        assert response.status_code == 200
        final = wait_for_status(api, sim_id, FINISHED, timeout=30)
        latency = time.monotonic() - asked
        print(f"cancel latency of a running simulation: {latency:.2f} s")
        assert final["status"] == "cancelled"
        done = final["progress"]["rounds_completed"]
        assert 2 <= done < 1000
        assert len(stored_metrics(api, sim_id)) == done
        assert api.post(f"/simulations/{sim_id}/cancel").status_code == 409
        queued = api.post("/simulations", json={"preset": "stage1"}).json()["id"]
        # Behind nothing? It may already run; either way cancel answers with the resource.
        assert api.post(f"/simulations/{queued}/cancel").status_code in (200, 409)
    finally:
        worker.stop()


def test_time_limit_fails_the_simulation_with_a_useful_error(
    stack_env: dict[str, str], api: httpx.Client, tmp_path: Path
) -> None:
    worker = Worker(
        {**stack_env, "SCARCITY_SIMULATION_TIME_LIMIT_SECONDS": "1"}, tmp_path / "worker.log"
    )
    try:
        sim_id = api.post("/simulations", json={"preset": "stage8", "rounds": 1000}).json()["id"]
        final = wait_for_status(api, sim_id, FINISHED, timeout=60)
        assert final["status"] == "failed"
        assert "time limit of 1 s" in final["error"]
        logs = api.get(f"/simulations/{sim_id}/logs").json()["lines"]
        assert any(line["level"] == "ERROR" and "time limit" in line["message"] for line in logs)
    finally:
        worker.stop()


def engine_process(server: Server) -> int:
    """The pid of the embedded server's engine process (its multiprocessing child that is not
    the resource tracker), whichever of the server's threads started it."""
    pid = server.process.pid
    children = [
        c for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()
    ]
    for child in children:
        if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text():
            return int(child)
    raise AssertionError(f"server {pid} has no engine process")


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def resumes_on_restart(env: dict, tmp_path: Path, port: int, sim_id: str, job: dict) -> None:
    """A new embedded server on the same database finishes the run with the metrics of an
    uninterrupted one, in a second claim."""
    server = Server(env, tmp_path / "api-2.log", port=port)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            final = wait_for_status(client, sim_id, FINISHED, timeout=90)
            assert final["status"] == "succeeded", server.output()[-3000:]
            assert stored_metrics(client, sim_id) == expected_metrics(job)
            logs = client.get(f"/simulations/{sim_id}/logs").json()["lines"]
            assert sum("claimed by" in line["message"] for line in logs) == 2
    finally:
        server.stop()


def test_embedded_server_killed_mid_run_resumes_on_restart(tmp_path: Path) -> None:
    job = {"preset": "stage8", "num_clients": 300, "rounds": 12, "seed": 11}
    env = {"SCARCITY_DATABASE_URL": f"sqlite:///{tmp_path}/embedded.db"}
    server = Server(env, tmp_path / "api-1.log")
    engine = engine_process(server)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sim_id = client.post("/simulations", json=job).json()["id"]
        wait_for_progress(client, sim_id, 3)
    os.kill(server.process.pid, signal.SIGKILL)  # the API alone: its engine must go with it
    server.process.wait(10)
    deadline = time.monotonic() + 5
    while is_running(engine):
        assert time.monotonic() < deadline, "the engine process outlived the API"
        time.sleep(0.05)
    server.kill()
    resumes_on_restart(env, tmp_path, server.port, sim_id, job)


def test_embedded_server_stopped_mid_run_releases_it_at_a_round_and_resumes_it(
    tmp_path: Path,
) -> None:
    job = {"preset": "stage8", "num_clients": 300, "rounds": 12, "seed": 13}
    env = {"SCARCITY_DATABASE_URL": f"sqlite:///{tmp_path}/embedded.db"}
    server = Server(env, tmp_path / "api-1.log")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sim_id = client.post("/simulations", json=job).json()["id"]
        wait_for_progress(client, sim_id, 2)
    server.stop()  # SIGTERM: the API stops its engine process at the next round
    output = server.output()
    assert re.search(r"stopped after round \d+ \(\S+ is shutting down\)", output), output[-3000:]
    assert "still in a round" not in output
    resumes_on_restart(env, tmp_path, server.port, sim_id, job)


def test_embedded_engine_process_killed_mid_run_is_replaced_and_the_run_resumes(
    tmp_path: Path,
) -> None:
    job = {"preset": "stage8", "num_clients": 300, "rounds": 12, "seed": 12}
    env = {
        "SCARCITY_DATABASE_URL": f"sqlite:///{tmp_path}/embedded.db",
        "SCARCITY_WORKER_LEASE_SECONDS": LEASE,
    }
    server = Server(env, tmp_path / "api.log")
    try:
        first = engine_process(server)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            sim_id = client.post("/simulations", json=job).json()["id"]
            wait_for_progress(client, sim_id, 3)
            os.kill(first, signal.SIGKILL)  # out of memory, say: the API itself lives on
            assert client.get("/healthz").status_code == 200
            final = wait_for_status(client, sim_id, FINISHED, timeout=90)
            assert final["status"] == "succeeded", server.output()[-3000:]
            assert stored_metrics(client, sim_id) == expected_metrics(job)
            logs = client.get(f"/simulations/{sim_id}/logs").json()["lines"]
            assert sum("claimed by" in line["message"] for line in logs) == 2
            assert client.get("/readyz").json()["checks"]["queue"] == "ok"
        assert engine_process(server) != first
        assert "engine process died" in server.output()
    finally:
        server.stop()


def _progress_and_checkpoint(database_url: str, sim_id: str) -> tuple[int, int | None]:
    """The stored rounds and the round of the stored checkpoint (None: none yet), as the
    database has them: the checkpoint is not part of the API."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            done = connection.execute(
                sa.text("SELECT rounds_completed FROM simulations WHERE id = :id"), {"id": sim_id}
            ).scalar_one()
            checkpoint = connection.execute(
                sa.text("SELECT round FROM checkpoints WHERE simulation_id = :id"), {"id": sim_id}
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    return done, checkpoint


def test_worker_killed_between_checkpoints_recomputes_the_rounds_after_the_last_one(
    api: httpx.Client, stack_env: dict[str, str], migrated_postgres_url: str, tmp_path: Path
) -> None:
    # A transaction per round, a checkpoint at most every second: a round takes a fraction
    # of that, so rounds stored after the last checkpoint are what the worker dies with.
    env = {**stack_env, "SCARCITY_CHECKPOINT_SECONDS": "1", "SCARCITY_ROUND_WRITE_SECONDS": "0"}
    job = {"preset": "stage8", "num_clients": 300, "rounds": 20, "seed": 5}
    expected = expected_metrics(job)
    worker = Worker(env, tmp_path / "worker.log", name="w1")
    sim_id = api.post("/simulations", json=job).json()["id"]
    deadline = time.monotonic() + 120
    while True:
        done, checkpoint = _progress_and_checkpoint(migrated_postgres_url, sim_id)
        if checkpoint is not None and 0 < checkpoint < done < job["rounds"] - 2:
            break
        assert done < job["rounds"] - 2 and time.monotonic() < deadline, (done, checkpoint)
        time.sleep(0.02)
    worker.kill()
    done, checkpoint = _progress_and_checkpoint(migrated_postgres_url, sim_id)  # as it died
    assert checkpoint is not None and 0 < checkpoint < done, (done, checkpoint)
    survivor = Worker(env, tmp_path / "survivor.log", name="s1")
    try:
        final = wait_for_status(api, sim_id, FINISHED, timeout=120)
    finally:
        survivor.stop()
    assert final["status"] == "succeeded", (final, survivor.output()[-3000:])
    logs = [line["message"] for line in api.get(f"/simulations/{sim_id}/logs").json()["lines"]]
    claims = [m for m in logs if "claimed by" in m]
    assert len(claims) == 2, claims
    resumed = claims[1]
    assert f"resuming after round {checkpoint} (its checkpoint" in resumed, resumed
    assert f"rounds up to {done} are stored" in resumed, resumed
    rounds = api.get(f"/simulations/{sim_id}/metrics").json()["rounds"]
    assert [r["round"] for r in rounds] == list(range(1, job["rounds"] + 1))
    assert stored_metrics(api, sim_id) == expected
    insights = api.get(f"/simulations/{sim_id}/insights?limit=10000").json()["insights"]
    assert len(insights) == job["num_clients"] * job["rounds"]
