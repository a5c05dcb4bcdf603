"""Admission (group commit of submissions) on a real database of each kind, and over HTTP."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from app.admission import Admission
from app.errors import Conflict
from models import Simulation, simulations_repo
from models.db import session_scope
from scarcity import resolve_config
from tests.service_processes import Server

CONFIG = resolve_config({"preset": "stage1", "rounds": 1}).model_dump()


class Recorder:
    """A publish_many that keeps what it was given, from the publisher thread."""

    def __init__(self) -> None:
        self.batches: list[list[uuid.UUID]] = []
        self.published = threading.Event()

    def __call__(self, ids: Sequence[uuid.UUID]) -> int:
        self.batches.append(list(ids))
        self.published.set()
        return len(ids)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [i for batch in self.batches for i in batch]


async def _submit_all(admission: Admission, owners: list[str]) -> list[Simulation | Exception]:
    admission.start()
    try:
        return await asyncio.gather(
            *(admission.submit(owner, CONFIG) for owner in owners), return_exceptions=True
        )
    finally:
        await admission.stop()


def test_concurrent_submissions_are_committed_together_then_published(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    admission = Admission(recorder, database_url=database_url, max_active_per_owner=1000)
    commits = []
    original = admission._commit
    monkeypatch.setattr(
        admission, "_commit", lambda batch: commits.append(len(batch)) or original(batch)
    )

    rows = asyncio.run(_submit_all(admission, ["alice"] * 40))

    assert all(isinstance(row, Simulation) for row in rows), rows
    ids = [row.id for row in rows]  # type: ignore[union-attr]
    assert len(set(ids)) == 40
    assert sum(commits) == 40 and len(commits) < 40, commits  # fewer transactions than requests
    assert sorted(recorder.ids) == sorted(ids)  # every committed row published, once
    with session_scope(database_url, read_only=True) as session:
        stored = {s.id: s for s in session.query(Simulation).all()}
    assert set(stored) == set(ids)
    assert all(s.status == "queued" and s.config == CONFIG for s in stored.values())


def test_the_cap_on_active_runs_holds_within_a_batch_per_owner(database_url: str) -> None:
    recorder = Recorder()
    admission = Admission(recorder, database_url=database_url, max_active_per_owner=3)
    owners = ["alice", "bob"] * 5

    outcomes = asyncio.run(_submit_all(admission, owners))

    by_owner: dict[str, list[bool]] = {"alice": [], "bob": []}
    for owner, outcome in zip(owners, outcomes, strict=True):
        by_owner[owner].append(isinstance(outcome, Simulation))
        if not isinstance(outcome, Simulation):
            assert isinstance(outcome, Conflict), outcome
            assert "SCARCITY_MAX_ACTIVE_PER_OWNER" in str(outcome.detail)
    assert by_owner == {"alice": [True] * 3 + [False] * 2, "bob": [True] * 3 + [False] * 2}
    assert len(recorder.ids) == 6
    with session_scope(database_url, read_only=True) as session:
        assert (
            simulations_repo.count_active(session, "alice")
            == simulations_repo.count_active(session, "bob")
            == 3
        )


def test_a_database_error_reaches_every_request_of_the_batch_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    # Never migrated: the INSERT fails (no such table).
    admission = Admission(
        recorder, database_url=f"sqlite:///{tmp_path}/empty.db", max_active_per_owner=10
    )
    outcomes = asyncio.run(_submit_all(admission, ["alice"] * 5))
    assert all(isinstance(o, Exception) and "simulations" in str(o) for o in outcomes), outcomes
    assert recorder.ids == []


def test_over_http_concurrent_posts_each_get_their_own_row_or_a_409_at_the_cap(
    tmp_path: Path,
) -> None:
    env = {
        "SCARCITY_DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
        "SCARCITY_MAX_ACTIVE_PER_OWNER": "5",
    }
    server = Server(env, tmp_path / "api.log")
    try:
        body = {"preset": "stage8", "num_clients": 5, "rounds": 50}  # stays active meanwhile

        def post(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=30) as own:
                return own.post("/simulations", json=body)

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(post, range(20)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [202] * 5 + [409] * 15, codes
        accepted = [r for r in responses if r.status_code == 202]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for response in accepted:
                sim = response.json()
                assert response.headers["location"] == f"/simulations/{sim['id']}"
                stored = client.get(response.headers["location"]).json()
                assert stored["config"] == sim["config"] and stored["config"]["rounds"] == 50
            listed = client.get("/simulations", params={"limit": 20}).json()["data"]
            assert {s["id"] for s in listed} == {r.json()["id"] for r in accepted}
            for response in accepted:
                client.post(f"/simulations/{response.json()['id']}/cancel")
    finally:
        server.stop()


def test_a_recent_count_admits_without_counting_but_a_refusal_counts_afresh(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts: list[str] = []
    count_active = simulations_repo.count_active

    def counted(session: Session, owner: str, *, up_to: int | None = None) -> int:
        counts.append(owner)
        return count_active(session, owner, up_to=up_to)

    monkeypatch.setattr(simulations_repo, "count_active", counted)
    admission = Admission(Recorder(), database_url=database_url, max_active_per_owner=2)

    async def scenario() -> list[object]:
        admission.start()
        try:
            first = await admission.submit("alice", CONFIG)
            await admission.submit("alice", CONFIG)  # room known from the first count
            assert counts == ["alice"]
            with session_scope(database_url) as session:  # one run finishes: a slot frees
                row = session.get(Simulation, first.id)
                assert row is not None
                row.status = "succeeded"
            third = await admission.submit("alice", CONFIG)  # the cache says full: count again
            assert counts == ["alice", "alice"]
            refused = await asyncio.gather(
                admission.submit("alice", CONFIG), return_exceptions=True
            )
            return [third, *refused]
        finally:
            await admission.stop()

    third, fourth = asyncio.run(scenario())
    assert isinstance(third, Simulation)
    assert isinstance(fourth, Conflict)
    assert counts == ["alice"] * 3  # the refusal rested on a fresh count
