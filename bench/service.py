"""Service benchmark: API latency under concurrency, metrics query size, service overhead.

Figures, each against a reference measured in the same run:
- POST /simulations p50/p99 at 50 concurrent clients, vs GET /healthz at the same concurrency;
- GET /simulations/{id}/metrics of a stored 1,000-round, 100-client simulation, vs the bare SQL;
- end-to-end stage8 5×5 through the API and the embedded worker, vs the engine alone;
- write time of one 100-client round (metrics, insights, meta-params, logs, checkpoint).
Targets (issue 5): POST p99 ≤ 50 ms; metrics ≤ 100 ms; overhead ≤ 20% + 0.5 s.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from tests.service_processes import Server

if TYPE_CHECKING:
    from scarcity.results import RoundResult


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


WRK = "/usr/bin/wrk"  # `make bench` installs Debian's wrk when it is missing
POST_BODY = '{"preset": "stage1", "rounds": 1}'
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class Load:
    p50: float
    p99: float
    per_second: float

    def __str__(self) -> str:
        return (
            f"p50 {self.p50 * 1e3:.1f} ms, p99 {self.p99 * 1e3:.1f} ms, "
            f"{self.per_second:,.0f} req/s"
        )


def _wrk(url: str, *, seconds: float, post: str | None = None) -> Load:
    """50 concurrent clients (connections), each sending its next request when answered.

    wrk is C: unlike a Python load client it takes little of the 2 cores the server runs on.
    Any non-2xx answer or socket error fails the benchmark: an error is not a fast answer.
    """
    if not Path(WRK).exists():
        raise SystemExit(f"{WRK} is missing: run `make bench` (it installs Debian's wrk)")
    args = [WRK, "-t2", "-c50", f"-d{seconds:g}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if post is not None:
            script.write(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(post)}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
            script.flush()
            args[1:1] = ["-s", script.name]
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"errors under load:\n{out}")

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    rate = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))  # type: ignore[union-attr]
    return Load(latency("50"), latency("99"), rate)


def _post_vs_health(url: str, seconds: float, label: str) -> None:
    _wrk(f"{url}/healthz", seconds=2)  # warm every API process and connection
    health = _wrk(f"{url}/healthz", seconds=seconds)
    posts = _wrk(f"{url}/simulations", seconds=seconds, post=POST_BODY)
    print(
        f"POST /simulations @50 concurrent, {label}: {posts}; GET /healthz {health} "
        f"(p99 ratio {posts.p99 / health.p99:.1f}x) target p99 <= 50 ms",
        flush=True,
    )


def _fake_round(number: int, clients: int) -> RoundResult:
    from scarcity.results import Insight, RoundResult

    return RoundResult(
        round=number,
        metrics={"loss": 1.0 / number, "recon_loss": 0.5, "replay_error": 0.1, "drift": 0.0},
        insights=tuple(
            Insight.of(c, 1.0 / number, 0.1, 0.2, 0.3, "StructureExpert", {})
            for c in range(clients)
        ),
        meta_params={"mean": 0.0, "std": 1.0, "lr": 0.01, "updates": number},
        expert_usage={"StructureExpert": clients},
        logs=(f"Round {number}: loss={1.0 / number:.4f}",),
    )


def main(quick: bool = False) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="scarcity-bench-"))
    seconds = 3 if quick else 10
    _stored_rounds(workdir, rounds=100 if quick else 1000)
    _end_to_end_overhead(workdir)
    _embedded_post_latency(workdir, seconds)
    _distributed_post_latency(workdir, seconds)


def _stored_rounds(workdir: Path, rounds: int) -> None:
    """Per-round write time, and GET metrics of a stored `rounds`-round, 100-client run."""
    from scarcity import resolve_config

    db_url = f"sqlite:///{workdir}/bench.db"
    server = Server({"SCARCITY_DATABASE_URL": db_url}, workdir / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            # A stored 1,000-round simulation of 100 clients, written through the real repositories.
            os.environ["SCARCITY_DATABASE_URL"] = db_url
            from models import lease, simulations_repo
            from models.db import session_scope

            with session_scope(db_url) as session:
                row = simulations_repo.create_simulation(
                    session,
                    owner="",
                    config=resolve_config({"rounds": rounds, "num_clients": 100}).model_dump(),
                )
                sim_id = row.id
            with session_scope(db_url) as session:
                claim = lease.claim(session, sim_id, lease_seconds=3600, max_attempts=5)
            assert claim is not None
            write_times = []
            checkpoint = os.urandom(200_000)
            for number in range(1, rounds + 1):
                started = time.perf_counter()
                with session_scope(db_url) as session:
                    lease.save_round(session, claim, _fake_round(number, 100), checkpoint)
                write_times.append(time.perf_counter() - started)
            w50, w99 = _percentiles(write_times)
            print(
                f"round write (100 clients + 200 kB checkpoint, SQLite): p50 {w50 * 1e3:.1f} ms, "
                f"p99 {w99 * 1e3:.1f} ms"
            )
            from sqlalchemy import select

            from models import RoundMetrics
            from models.db import get_engine

            bare_timings = []
            for _ in range(5):  # best of 5, as the GET below: one run may meet a WAL checkpoint
                started = time.perf_counter()
                with get_engine(db_url).connect() as connection:
                    raw = connection.execute(
                        select(RoundMetrics.round, RoundMetrics.metrics)
                        .where(RoundMetrics.simulation_id == sim_id)
                        .order_by(RoundMetrics.round)
                    ).all()
                bare_timings.append(time.perf_counter() - started)
                assert len(raw) == rounds, len(raw)
            bare = min(bare_timings)
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                body = client.get(f"/simulations/{sim_id}/metrics").json()
                timings.append(time.perf_counter() - started)
            assert len(body["rounds"]) == rounds
            best = min(timings)
            print(
                f"GET metrics of {rounds} rounds: {best * 1e3:.1f} ms "
                f"(bare query {bare * 1e3:.1f} ms; {best / bare:.1f}x) target <= 100 ms"
            )

    finally:
        server.stop()


def _embedded_post_latency(workdir: Path, seconds: float) -> None:
    """`make run`'s mode: SQLite and one process, whose worker runs the submitted jobs meanwhile."""
    env = {
        "SCARCITY_DATABASE_URL": f"sqlite:///{workdir}/post.db",
        "SCARCITY_MAX_ACTIVE_PER_OWNER": "1000000",
    }
    server = Server(env, workdir / "post.log")
    try:
        _post_vs_health(server.url, seconds, "embedded (SQLite, 1 process, its worker busy)")
    finally:
        server.stop()


def _end_to_end_overhead(workdir: Path) -> None:
    """stage8 5×5 through the API and an idle embedded worker vs the engine alone."""
    import torch

    from scarcity import resolve_config, run_simulation
    from tests.service_processes import wait_for_status

    config = {"preset": "stage8", "num_clients": 5, "rounds": 5, "seed": 123}
    torch.set_num_threads(1)
    run_simulation(resolve_config(config))  # warm-up: lazy torch initialisation
    started = time.perf_counter()
    run_simulation(resolve_config(config))
    engine_alone = time.perf_counter() - started
    server = Server({"SCARCITY_DATABASE_URL": f"sqlite:///{workdir}/e2e.db"}, workdir / "e2e.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            warm = client.post("/simulations", json={**config, "rounds": 1}).json()
            wait_for_status(client, warm["id"], {"succeeded"}, timeout=300)
            started = time.perf_counter()
            sim = client.post("/simulations", json=config).json()
            wait_for_status(client, sim["id"], {"succeeded"}, timeout=300)
            through_service = time.perf_counter() - started
    finally:
        server.stop()
    overhead = through_service - engine_alone
    print(
        f"stage8 5x5 end to end: {through_service:.2f} s via API+worker vs "
        f"{engine_alone:.3f} s engine alone (overhead {overhead:.2f} s; "
        f"target <= 20% + 0.5 s = {0.2 * engine_alone + 0.5:.2f} s)"
    )


def _distributed_post_latency(workdir: Path, seconds: float) -> None:
    """The same POST load on the distributed API: PostgreSQL, Redis, 1 vs 2 API processes, and
    no worker (workers run on other machines; here they would take the API's cores)."""
    import psycopg
    import redis

    name = f"scarcity_bench_{uuid.uuid4().hex[:8]}"
    admin_url = "postgresql://postgres@127.0.0.1:5432/postgres"
    broker = "redis://127.0.0.1:6379/13"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = {
        "SCARCITY_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "SCARCITY_BROKER_URL": broker,
        "SCARCITY_MAX_ACTIVE_PER_OWNER": "1000000",
    }
    try:
        subprocess.run(
            [sys.executable, "-m", "scarcity", "migrate"],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
        for processes in (1, 2):
            server = Server(
                env, workdir / f"api-{processes}.log", extra_args=["--workers", str(processes)]
            )
            try:
                _post_vs_health(server.url, seconds, f"distributed, {processes} API process(es)")
            finally:
                server.stop()
    finally:
        redis.Redis.from_url(broker).flushdb()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
