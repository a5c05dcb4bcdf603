"""Live events arrive as soon as their round commits, in both run modes, with real processes.

The API's fallback poll is set to 30 s, so an event that comes within a couple of seconds of
its commit was brought by a change notification (the embedded worker's, or PostgreSQL's NOTIFY
from a Celery worker). The commit time of each round is watched in the database itself (every
10 ms; several rounds may share one commit), the end's is the resource's `finished_at`. A
stream cut mid-run and reopened with `Last-Event-ID` gets exactly the rounds it missed, then
the rest live.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from models import Simulation
from models.db import session_scope
from tests.service_processes import Server, Worker, wait_for_progress, wait_for_status

pytestmark = pytest.mark.integration

POLL = {"SCARCITY_EVENT_POLL_SECONDS": "30"}
BOUND_SECONDS = 2.0  # commit → event, against a 30 s fallback poll
JOB = {"preset": "stage8", "num_clients": 300, "rounds": 12, "seed": 5}
FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[str, str]]:
    database_url = f"sqlite:///{tmp_path}/events.db"
    server = Server({"SCARCITY_DATABASE_URL": database_url, **POLL}, tmp_path / "api.log")
    try:
        yield server.url, database_url
    finally:
        server.stop()
        print(server.output()[-3000:])


@pytest.fixture
def distributed(
    tmp_path: Path, migrated_postgres_url: str, redis_url: str
) -> Iterator[tuple[str, str]]:
    env = {"SCARCITY_DATABASE_URL": migrated_postgres_url, "SCARCITY_BROKER_URL": redis_url}
    server = Server({**env, **POLL}, tmp_path / "api.log")
    worker = Worker(env, tmp_path / "worker.log")
    try:
        yield server.url, migrated_postgres_url
    finally:
        server.stop()
        worker.stop()
        print(server.output()[-3000:], worker.output()[-3000:])


class CommitWatch(threading.Thread):
    """When each round count first shows in the database (within 10 ms of its commit)."""

    def __init__(self, database_url: str, simulation_id: str) -> None:
        super().__init__(daemon=True)
        self.database_url, self.id = database_url, uuid.UUID(simulation_id)
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with session_scope(self.database_url, read_only=True) as session:
                row = session.get(Simulation, self.id)
                done = row is not None and row.status in FINISHED
                if row is not None:
                    self.seen.setdefault(row.rounds_completed, time.monotonic())
            if done:
                return
            time.sleep(0.01)


def follow(url: str, sim_id: str, last_event_id: int = 0, until: int | None = None) -> dict:
    """One stream: each event's arrival time (monotonic, and wall clock for `end`); stops
    after round `until` when given (the client goes away)."""
    rounds: list[tuple[int, float]] = []
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
    with (
        httpx.Client(base_url=url, timeout=120) as client,
        client.stream("GET", f"/simulations/{sim_id}/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("id:") and event == "round":
                rounds.append((int(line.split(":", 1)[1]), time.monotonic()))
                if rounds[-1][0] == until:
                    return {"rounds": rounds}
            elif event == "end" and line.startswith("data:"):
                return {"rounds": rounds, "end_at": datetime.now(UTC)}
    raise AssertionError(f"stream ended without an end event after {rounds}")


def check_events_are_prompt_and_resume(url: str, database_url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        sim_id = client.post("/simulations", json=JOB).json()["id"]
        watch = CommitWatch(database_url, sim_id)
        watch.start()
        results: dict[str, dict] = {}
        whole = threading.Thread(target=lambda: results.update(whole=follow(url, sim_id)))
        whole.start()
        # a second stream goes away after round 3 and comes back three rounds later
        cut = follow(url, sim_id, until=3)
        wait_for_progress(client, sim_id, 6)
        resumed = follow(url, sim_id, last_event_id=3)
        whole.join(120)
        final = wait_for_status(client, sim_id, FINISHED)
        watch.stop.set()
        watch.join(10)
    assert final["status"] == "succeeded", final
    rounds = JOB["rounds"]
    assert [n for n, _ in cut["rounds"]] == [1, 2, 3]
    assert [n for n, _ in resumed["rounds"]] == list(range(4, rounds + 1))
    stream = results["whole"]
    assert [n for n, _ in stream["rounds"]] == list(range(1, rounds + 1))
    # rounds are written in batches (the round-write cadence), so a round's commit is the
    # first one the watch saw with at least that many rounds
    commits = {
        n: min(at for count, at in watch.seen.items() if count >= n) for n in range(1, rounds + 1)
    }
    delays = {n: at - commits[n] for n, at in stream["rounds"]}
    assert len(set(commits.values())) >= 3, watch.seen  # the run was watched while it wrote
    assert max(delays.values()) < BOUND_SECONDS, delays
    end_delay = (stream["end_at"] - datetime.fromisoformat(final["finished_at"])).total_seconds()
    assert end_delay < BOUND_SECONDS, end_delay
    print(f"commit → event: max {max(delays.values()):.3f} s, end {end_delay:.3f} s")


def test_embedded_events_arrive_moments_after_their_round_commits(
    embedded: tuple[str, str],
) -> None:
    check_events_are_prompt_and_resume(*embedded)


def test_distributed_events_arrive_moments_after_their_round_commits(
    distributed: tuple[str, str],
) -> None:
    check_events_are_prompt_and_resume(*distributed)
