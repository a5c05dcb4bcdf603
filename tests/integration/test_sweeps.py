"""A sweep through the distributed stack: API, two Celery workers, Redis and PostgreSQL."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.service_processes import Server, Worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = {"preset": "stage2", "num_clients": 2, "rounds": 2, "samples_per_client": 8}


@pytest.fixture
def stack(migrated_postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    env = {"SCARCITY_DATABASE_URL": migrated_postgres_url, "SCARCITY_BROKER_URL": redis_url}
    server = Server(env, tmp_path / "api.log")
    workers = [Worker(env, tmp_path / f"worker{i}.log", name=f"w{i}") for i in (1, 2)]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def wait_for_sweep(client: httpx.Client, sweep_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/sweeps/{sweep_id}").json()
        if body["status"] != "running":
            return body
        time.sleep(0.3)
    raise AssertionError(f"sweep {sweep_id} still running: {body['progress']}")


def runs_of(client: httpx.Client, sweep_id: str) -> list[dict]:
    found: list[dict] = []
    params = {"filter": f"tags.sweep = '{sweep_id}'", "limit": "100"}
    while True:
        page = client.get("/simulations", params=params).json()
        found += page["data"]
        if not page["next_cursor"]:
            return found
        params["cursor"] = page["next_cursor"]


def test_a_3x2x3_grid_through_two_workers_on_postgres(stack: httpx.Client) -> None:
    client = stack
    request = {
        "name": "grid",
        "base": BASE,
        "space": {
            "strategy": {"values": ["fedavg", "fedprox", "fedmedian"]},
            "learning_rate": {"values": [0.01, 0.05]},
        },
        "seeds": [0, 1, 2],
        "max_concurrent": 1,  # two workers, yet never two of its runs at once
    }
    created = client.post("/sweeps", json=request)
    assert created.status_code == 202, created.text
    sweep = created.json()
    assert sweep["progress"]["total"] == 18
    final = wait_for_sweep(client, sweep["id"])
    assert final["status"] == "finished" and final["progress"]["succeeded"] == 18, final

    runs = runs_of(client, sweep["id"])
    assert len(runs) == 18
    spans = sorted(
        (datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]))
        for r in runs
    )
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, "two runs of a max_concurrent=1 sweep overlapped"

    rows = client.get(f"/sweeps/{sweep['id']}/results").json()["rows"]
    assert len(rows) == 6
    assert [row["params"] for row in rows][:2] == [
        {"strategy": "fedavg", "learning_rate": 0.01},
        {"strategy": "fedavg", "learning_rate": 0.05},
    ]
    for row in rows:
        own = [
            r
            for r in runs
            if all(r["config"][field] == value for field, value in row["params"].items())
        ]
        assert sorted(r["config"]["seed"] for r in own) == [0, 1, 2]
        values = [r["final_metrics"]["test_loss"] for r in own]
        summary = row["metrics"]["test_loss"]
        assert (row["runs"], row["succeeded"], summary["count"]) == (3, 3, 3)
        assert math.isclose(summary["mean"], statistics.fmean(values), rel_tol=1e-12)
        assert math.isclose(summary["std"], statistics.stdev(values), rel_tol=1e-9)

    # Random search: run_cap 5 runs 5; a cancelled sweep stops every unfinished run.
    random_sweep = client.post(
        "/sweeps",
        json={
            "base": BASE,
            "space": {"learning_rate": {"distribution": "uniform", "min": 0.001, "max": 0.05}},
            "method": "random",
            "run_cap": 5,
        },
    ).json()
    assert wait_for_sweep(client, random_sweep["id"])["progress"]["succeeded"] == 5
    assert len(runs_of(client, random_sweep["id"])) == 5

    created_long = client.post(
        "/sweeps",
        json={
            # seconds a run (200 rounds of two 8-row clients took 0.2 s: four of the five
            # could finish before the cancel came)
            "base": BASE | {"rounds": 1000, "num_clients": 100, "samples_per_client": 50},
            "space": {"learning_rate": {"values": [0.001, 0.002, 0.003, 0.004, 0.005]}},
            "max_concurrent": 2,
        },
    )
    assert created_long.status_code == 202, created_long.text
    long = created_long.json()
    time.sleep(1)
    finished = ("succeeded", "failed", "cancelled")
    unfinished = {r["id"] for r in runs_of(client, long["id"]) if r["status"] not in finished}
    assert len(unfinished) >= 3, unfinished  # running and pending runs for the cancel to meet
    assert client.post(f"/sweeps/{long['id']}/cancel").status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = {r["id"]: r["status"] for r in runs_of(client, long["id"])}
        if all(s in finished for s in statuses.values()):
            break
        time.sleep(0.3)
    # every run that had not finished when the cancel came ends cancelled, none failed
    assert {statuses[i] for i in unfinished} == {"cancelled"}, statuses
    assert "failed" not in statuses.values(), statuses
    assert client.delete(f"/sweeps/{long['id']}").status_code == 204
    assert runs_of(client, long["id"]) == []
