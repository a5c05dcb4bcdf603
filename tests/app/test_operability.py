"""What an operator and a careful client rely on, over real HTTP: strict UTF-8 JSON bodies,
q-value negotiation, round ranges, `/metrics` in Prometheus' format, request ids, JSON logs
with the simulation id, and start-up errors that name the setting and the path."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.app.test_bad_inputs import detail_text
from tests.service_processes import ROOT, SCARCITY, Server, wait_for_status

BODY = '{"preset": "stage1", "rounds": 1}'


@pytest.fixture
def nothing_created(client: httpx.Client) -> Iterator[None]:
    """No simulation is created meanwhile (the newest stays the newest; it may progress: other
    tests' runs share this server)."""

    def newest() -> list[str]:
        return [s["id"] for s in client.get("/simulations", params={"limit": 1}).json()["data"]]

    before = newest()
    yield
    assert newest() == before


@pytest.mark.parametrize(
    "raw",
    [
        BODY.encode("utf-16"),  # with its BOM
        BODY.encode("utf-16-le"),  # without
        BODY.encode("utf-32"),
        b"\xef\xbb\xbf" + BODY.encode(),  # UTF-8 with a BOM
    ],
    ids=["utf-16", "utf-16-le", "utf-32", "utf-8-bom"],
)
@pytest.mark.usefixtures("nothing_created")
def test_a_body_in_another_encoding_or_with_a_bom_is_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/simulations", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "UTF-8" in response.json()["detail"]


@pytest.mark.usefixtures("nothing_created")
def test_a_key_sent_twice_is_422_naming_it(client: httpx.Client) -> None:
    response = client.post(
        "/simulations",
        content=b'{"preset": "stage1", "rounds": 1, "rounds": 3}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"field": "rounds", "message": "duplicate key 'rounds': send each field once"}
    ]


@pytest.mark.usefixtures("nothing_created")
def test_a_sweep_body_is_held_to_the_same_rules(client: httpx.Client) -> None:
    sweep = '{"base": {"preset": "stage1", "rounds": 1}, "space": {"seed": {"values": [1, 2]}}}'
    utf16 = client.post(
        "/sweeps", content=sweep.encode("utf-16"), headers={"Content-Type": "application/json"}
    )
    assert utf16.status_code == 400, utf16.text
    twice = client.post(
        "/sweeps",
        content=sweep[:-1].encode() + b', "seeds": [0], "seeds": [1]}',
        headers={"Content-Type": "application/json"},
    )
    assert twice.status_code == 422, twice.text
    assert [d["field"] for d in twice.json()["detail"]] == ["seeds"]


@pytest.fixture(scope="module")
def finished(server: Server) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sim_id = client.post("/simulations", json={"preset": "stage2", "rounds": 3}).json()["id"]
        wait_for_status(client, sim_id, {"succeeded"})
        return str(sim_id)


@pytest.mark.parametrize("resource", ["metrics", "meta-params"])
def test_a_round_range_backwards_is_422_naming_from_round(
    client: httpx.Client, finished: str, resource: str
) -> None:
    response = client.get(
        f"/simulations/{finished}/{resource}", params={"from_round": 3, "to_round": 2}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "from_round"
    assert "after to_round" in detail_text(response)


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        ("text/csv;q=0, application/json", "application/json"),
        ("text/csv", "text/csv"),
        ("application/json;q=0.5, text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("*/*", "application/json"),
        ("text/csv;q=0.3, */*;q=0.5", "application/json"),
        ("text/html, */*;q=0.1", "application/json"),
        ("", "application/json"),
        ("image/png", None),
        ("application/json;q=0, text/csv;q=0", None),
    ],
)
def test_metrics_honour_accept_q_values(
    client: httpx.Client, finished: str, accept: str, media: str | None
) -> None:
    response = client.get(f"/simulations/{finished}/metrics", headers={"Accept": accept})
    if media is None:
        assert response.status_code == 406, response.text
        assert "text/csv" in response.json()["detail"]
        return
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == media
    if media == "text/csv":
        assert response.text.splitlines()[0].startswith("round,")
    else:
        assert len(response.json()["rounds"]) == 3


def samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`, parsed by Prometheus' own text parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_parse_and_move_as_runs_are_submitted_and_finish(client: httpx.Client) -> None:
    succeeded = ("scarcity_simulations", (("status", "succeeded"),))
    rounds = ("scarcity_rounds_written_total", ())
    posts = (
        "scarcity_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/simulations"), ("status", "202")),
    )
    before = samples(client)
    sim_id = client.post("/simulations", json={"preset": "stage3", "rounds": 4}).json()["id"]
    wait_for_status(client, sim_id, {"succeeded"})
    after = samples(client)
    assert after[succeeded] == before.get(succeeded, 0) + 1
    assert after[rounds] == before.get(rounds, 0) + 4
    assert after[posts] == before.get(posts, 0) + 1
    assert after[("scarcity_round_duration_seconds_count", ())] >= 4
    assert ("scarcity_queue_depth", ()) in after


async def _follow(client: httpx.AsyncClient, sim_id: str) -> list[str]:
    """The event names of one subscriber's stream, to its end."""
    names = []
    async with client.stream("GET", f"/simulations/{sim_id}/events", timeout=120) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                names.append(line.split(":", 1)[1].strip())
                if names[-1] == "end":
                    break
    return names


def test_event_subscribers_of_one_run_share_one_database_reader(
    client: httpx.Client, server: Server
) -> None:
    """20 streams on one run: the reads are those of one subscriber (at most one per stored
    round, plus the first read and a fallback poll per 5 s), not 20×."""
    import asyncio

    polls = ("scarcity_event_reads_total", (("kind", "poll"),))
    notified = ("scarcity_event_reads_total", (("kind", "notified"),))
    catch_ups = ("scarcity_event_reads_total", (("kind", "catch_up"),))
    before = samples(client)
    job = {"preset": "stage8", "rounds": 20}
    sim_id = client.post("/simulations", json=job).json()["id"]

    async def subscribe_all() -> list[list[str]]:
        async with httpx.AsyncClient(base_url=server.url) as http:
            return await asyncio.gather(*(_follow(http, sim_id) for _ in range(20)))

    start = time.monotonic()
    streams = asyncio.run(subscribe_all())
    elapsed = time.monotonic() - start
    assert all(names == ["round"] * 20 + ["end"] for names in streams), streams
    after = samples(client)
    made = after[polls] - before.get(polls, 0)
    assert 1 <= made <= elapsed / 5 + 2, (made, elapsed)
    woken = after.get(notified, 0) - before.get(notified, 0)
    assert woken <= 20 + 1, woken  # a note per round and one for the end, read once for all
    assert after.get(catch_ups, 0) - before.get(catch_ups, 0) <= 20
    assert after[("scarcity_event_subscribers", ())] == 0


def test_every_response_carries_a_request_id(client: httpx.Client) -> None:
    assert len(client.get("/healthz").headers["x-request-id"]) == 32
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


def test_json_logs_carry_the_simulation_id_and_attempt(tmp_path: Path) -> None:
    env = {
        "SCARCITY_DATABASE_URL": f"sqlite:///{tmp_path}/api.db",
        "SCARCITY_LOG_FORMAT": "json",
        "SCARCITY_LOG_DIR": str(tmp_path / "logs"),
    }
    server = Server(env, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            sim_id = client.post("/simulations", json={"preset": "stage1", "rounds": 2}).json()
            wait_for_status(client, sim_id["id"], {"succeeded"})
    finally:
        server.stop()
    lines = [json.loads(x) for x in (tmp_path / "logs" / "scarcity.log").read_text().splitlines()]
    rounds = [x for x in lines if x["message"].startswith("Round 2/2")]
    assert rounds and rounds[0]["simulation_id"] == sim_id["id"] and rounds[0]["attempt"] == 1
    assert {"time", "level", "logger"} <= set(rounds[0])


def one_line_failure(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*SCARCITY, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


def test_start_up_storage_errors_are_one_line_naming_the_setting_and_path(
    tmp_path: Path,
) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    missing = tmp_path / "missing" / "scarcity.db"
    sqlite = {"SCARCITY_DATABASE_URL": f"sqlite:///{missing}", "SCARCITY_LOG_DIR": str(tmp_path)}
    for command in (["serve", "--port", "1"], ["migrate"]):
        error = one_line_failure(command, sqlite)
        assert "SCARCITY_DATABASE_URL" in error and str(missing.parent) in error
    for command in (["serve", "--port", "1"], ["run", "--rounds", "1", "--clients", "2"]):
        error = one_line_failure(command, {"SCARCITY_LOG_DIR": str(a_file)})
        assert "SCARCITY_LOG_DIR" in error and str(a_file) in error


def test_scarcity_run_logs_into_scarcity_log_dir(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *SCARCITY,
            "run",
            "--preset",
            "stage1",
            "--rounds",
            "1",
            "--clients",
            "2",
            "--no-progress",
        ],
        cwd=tmp_path,
        env={**os.environ, "SCARCITY_LOG_DIR": str(tmp_path / "elsewhere")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Round 1/1" in (tmp_path / "elsewhere" / "scarcity.log").read_text()
    assert not (tmp_path / "logs").exists()
