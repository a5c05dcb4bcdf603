"""HTTP → queue → worker → engine → tables → metrics, in both run modes, with real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scarcity import resolve_config
from scarcity.core.data import describe_clients
from scarcity.provenance import environment
from tests.service_processes import Server, Worker, wait_for_status

pytestmark = pytest.mark.integration

# Three different jobs; each has insights (stage ≥ 3) and meta-params (stage ≥ 5).
JOBS = [
    {"preset": "stage8", "num_clients": 5, "rounds": 5, "seed": 1},
    {"preset": "stage5", "num_clients": 4, "rounds": 3, "seed": 2},
    {"preset": "stage8", "num_clients": 3, "rounds": 4, "seed": 3, "drift": 0.5},
]


def run_jobs_and_check(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        created = []
        for job in JOBS:
            response = client.post("/simulations", json=job)
            assert response.status_code == 202, response.text
            body = response.json()
            assert response.headers["location"] == f"/simulations/{body['id']}"
            assert body["status"] == "queued"
            assert body["config"]["num_clients"] == job["num_clients"]
            created.append(body["id"])
        for job, sim_id in zip(JOBS, created, strict=True):
            final = wait_for_status(client, sim_id, {"succeeded", "failed", "cancelled"})
            assert final["status"] == "succeeded", final
            rounds, clients = job["rounds"], job["num_clients"]
            assert final["progress"] == {"rounds_completed": rounds, "rounds_total": rounds}
            metrics = client.get(f"/simulations/{sim_id}/metrics").json()
            assert [r["round"] for r in metrics["rounds"]] == list(range(1, rounds + 1))
            insights = client.get(f"/simulations/{sim_id}/insights").json()["insights"]
            assert len(insights) == clients * rounds
            assert {(i["round"], i["client_id"]) for i in insights} == {
                (r, c) for r in range(1, rounds + 1) for c in range(clients)
            }
            # provenance: the worker of each attempt and what it computed on
            (attempt,) = client.get(f"/simulations/{sim_id}/attempts").json()["attempts"]
            assert attempt["attempt"] == 1 and ":" in attempt["worker"]
            assert attempt["started_at"].endswith(("Z", "+00:00"))  # UTC, on SQLite too
            assert attempt["environment"] == {
                **environment(),
                "torch_threads": attempt["environment"]["torch_threads"],  # the worker's own
            }
            # what each client holds: written by the worker as the run started
            described = client.get(f"/simulations/{sim_id}/clients").json()["clients"]
            assert described == [
                c.to_dict() | {"rounds_trained": rounds}  # every client, every round
                for c in describe_clients(resolve_config(job))
            ]
            meta = client.get(f"/simulations/{sim_id}/meta-params").json()["rounds"]
            assert [m["round"] for m in meta] == list(range(1, rounds + 1))
            assert all({"mean", "std", "lr", "updates"} <= m.keys() for m in meta)


def check_stage8_metrics(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        sim_id = client.post("/simulations", json={"preset": "stage8"}).json()["id"]
        wait_for_status(client, sim_id, {"succeeded"})
        rounds = client.get(f"/simulations/{sim_id}/metrics").json()["rounds"]
        assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
        for row in rounds:
            assert {"loss", "recon_loss", "replay_error", "drift"} <= row["metrics"].keys()
        csv_text = client.get(f"/simulations/{sim_id}/metrics", headers={"Accept": "text/csv"}).text
        lines = csv_text.strip().splitlines()
        assert lines[0].split(",")[0] == "round" and "recon_loss" in lines[0].split(",")
        assert len(lines) == 1 + 5
        assert client.get(f"/simulations/{sim_id}/metrics?format=csv").text == csv_text


def check_a_run_on_an_upload(url: str) -> None:
    """The API writes an upload into the store; the worker that runs on it reads it there."""
    rows = "".join(f"{i % 5},{(i * 7) % 3},{'xy'[i % 2]},{'pq'[i % 4 // 2]}\n" for i in range(40))
    data = f"a,b,label,site\n{rows}".encode()
    with httpx.Client(base_url=url, timeout=30) as client:
        form = {"label": "label", "client_column": "site", "test_fraction": "0.25"}
        uploaded = client.post("/datasets", data=form, files={"file": ("u.csv", data)})
        assert uploaded.status_code == 201, uploaded.text
        dataset_id = uploaded.json()["id"]
        again = client.post("/datasets", data=form, files={"file": ("u.csv", data)})
        assert again.status_code == 200 and again.json()["id"] == dataset_id
        job = {"preset": "stage5", "federated_averaging": True, "dataset": dataset_id}
        sim_id = client.post("/simulations", json={**job, "rounds": 3}).json()["id"]
        final = wait_for_status(client, sim_id, {"succeeded", "failed", "cancelled"})
        assert final["status"] == "succeeded", final
        assert final["config"]["partition"] == "natural" and final["config"]["num_clients"] == 2
        rounds = client.get(f"/simulations/{sim_id}/metrics").json()["rounds"]
        assert [r["round"] for r in rounds] == [1, 2, 3]
        assert all("test_accuracy" in r["metrics"] for r in rounds)


@pytest.fixture
def embedded_url(tmp_path: Path) -> Iterator[str]:
    server = Server({"SCARCITY_DATABASE_URL": f"sqlite:///{tmp_path}/e2e.db"}, tmp_path / "api.log")
    try:
        yield server.url
    finally:
        server.stop()
        print(server.output()[-4000:])


@pytest.fixture
def distributed_url(tmp_path: Path, migrated_postgres_url: str, redis_url: str) -> Iterator[str]:
    env = {"SCARCITY_DATABASE_URL": migrated_postgres_url, "SCARCITY_BROKER_URL": redis_url}
    server = Server(env, tmp_path / "api.log")
    worker = Worker(env, tmp_path / "worker.log")
    try:
        yield server.url
    finally:
        server.stop()
        worker.stop()
        print(server.output()[-3000:], worker.output()[-4000:])


def test_embedded_mode_runs_jobs_and_stores_every_round(embedded_url: str) -> None:
    run_jobs_and_check(embedded_url)
    check_stage8_metrics(embedded_url)


def test_distributed_mode_runs_jobs_on_a_celery_worker(distributed_url: str) -> None:
    run_jobs_and_check(distributed_url)
    check_stage8_metrics(distributed_url)
    check_a_run_on_an_upload(distributed_url)
