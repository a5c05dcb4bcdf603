"""Sweep throughput: one sweep of stage2 digits runs (N=10, R=20, a run per seed) through the
distributed service (API, 2 Celery worker processes, PostgreSQL, Redis) vs the engine alone.

Figures, against a reference measured in the same run:
- wall time from `POST /sweeps` to the sweep's `finished`, and runs/s;
- the engine alone on the same configs: `scarcity.run_simulation` in-process, 1 thread, one
  after another (so 2 workers could at best halve it: the ratio shows the service's cost).
Target (issue 14): 100 runs in <= 20 s with 2 workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.service_processes import Server, Worker

BASE = {"preset": "stage2", "dataset": "digits", "num_clients": 10, "rounds": 20}
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER = "redis://127.0.0.1:6379/12"  # a database of its own: the bench empties it
WORKERS = 2


def main(quick: bool = False) -> None:
    runs = 20 if quick else 100
    seeds = list(range(runs))
    engine = _engine_alone(seeds)
    wall, checkpoints = _through_service(seeds)
    print(
        f"sweep of {runs} stage2 digits runs (N=10, R=20), {WORKERS} Celery workers on "
        f"PostgreSQL + Redis: {wall:.1f} s wall, {runs / wall:.1f} runs/s "
        f"({wall / runs:.2f} s a run); engine alone {engine:.1f} s for the same {runs} "
        f"({engine / runs:.3f} s a run, 1 thread, one after another): "
        f"{wall / engine:.2f}x the engine alone; "
        f"target <= {20 * runs / 100:g} s"
    )
    print(f"checkpoint writes: {checkpoints} for {runs * BASE['rounds']} rounds")


def _engine_alone(seeds: list[int]) -> float:
    import torch

    from scarcity import resolve_config, run_simulation

    torch.set_num_threads(1)
    run_simulation(resolve_config({**BASE, "rounds": 1}))  # warm-up: lazy torch, data load
    started = time.perf_counter()
    for seed in seeds:
        run_simulation(resolve_config({**BASE, "seed": seed}))
    return time.perf_counter() - started


def _through_service(seeds: list[int]) -> tuple[float, int]:
    """Wall time of the sweep, and how many checkpoint writes its workers made (their logs)."""
    import psycopg
    import redis

    workdir = Path(tempfile.mkdtemp(prefix="scarcity-bench-sweep-"))
    name = f"scarcity_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url(BROKER).flushdb()
    env = {
        "SCARCITY_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "SCARCITY_BROKER_URL": BROKER,
        "SCARCITY_MAX_ACTIVE_PER_OWNER": "1000000",
        "SCARCITY_LOG_DIR": str(workdir),
    }
    try:
        subprocess.run(
            [sys.executable, "-m", "scarcity", "migrate"],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
        server = Server(env, workdir / "api.log")
        workers = [Worker(env, workdir / f"w{i}.log", name=f"w{i}") for i in range(WORKERS)]
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                _wait_for_workers(client, len(workers))
                request = {
                    "name": "bench",
                    "base": BASE,
                    "space": {},
                    "seeds": seeds,
                    "max_concurrent": len(seeds),
                }
                started = time.perf_counter()
                answer = client.post("/sweeps", json=request)
                assert answer.status_code == 202, answer.text
                sweep = answer.json()
                while True:
                    body = client.get(f"/sweeps/{sweep['id']}").json()
                    if body["status"] != "running":
                        break
                    time.sleep(0.1)
                wall = time.perf_counter() - started
                assert body["status"] == "finished", body
                assert body["progress"].get("succeeded") == len(seeds), body["progress"]
            checkpoints = _checkpoint_writes(env["SCARCITY_DATABASE_URL"])
        finally:
            for worker in workers:
                worker.stop()
            server.stop()
    finally:
        redis.Redis.from_url(BROKER).flushdb()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return wall, checkpoints


def _wait_for_workers(client: httpx.Client, count: int) -> None:
    """One 1-round run per worker first, so the timed sweep meets workers that have imported
    torch and loaded the data (a long-lived worker's steady state)."""
    ids = [
        client.post("/simulations", json={**BASE, "rounds": 1, "seed": 1000 + i}).json()["id"]
        for i in range(count)
    ]
    deadline = time.monotonic() + 300
    while any(client.get(f"/simulations/{i}").json()["status"] != "succeeded" for i in ids):
        if time.monotonic() > deadline:
            raise SystemExit("workers did not run the warm-up runs")
        time.sleep(0.2)


def _checkpoint_writes(database_url: str) -> int:
    """Checkpoint writes as PostgreSQL counted them (finished runs' rows are deleted)."""
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'checkpoints'"
        ).fetchone()
    return int(row[0]) if row else 0
