"""Hostile text never reaches a database: each input below once failed inside the driver (a 500
on PostgreSQL, some on SQLite too, one a 503) and is now a 422 naming the field, the same on
both databases, with the connection kept open for the next request."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.db import dispose_engines
from tests.app.test_search_api import seed_run
from tests.service_processes import Server

SIMULATION = "{simulation}"  # a path's placeholder for the stored run's id
TOO_BIG = 2**63
SWEEP_BASE = {"preset": "stage1", "rounds": 2}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    named: str  # the `field` the 422 names (a dotted prefix for a dict key)
    body: Any = None  # sent as JSON with \u escapes, as a hostile client would
    raw: str | None = None  # a body sent byte for byte
    params: dict[str, str] = field(default_factory=dict)


def offset_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"@{offset}".encode()).decode()


CASES = {
    "create: NUL in name": Case("POST", "/simulations", "name", {"name": "a\x00b"}),
    "create: NUL in notes": Case("POST", "/simulations", "notes", {"notes": "\x00"}),
    "create: NUL in a tag value": Case(
        "POST", "/simulations", "tags.team", {"tags": {"team": "\x00"}}
    ),
    "create: NUL in a tag key": Case("POST", "/simulations", "tags.", {"tags": {"te\x00am": "x"}}),
    "create: lone surrogate in name": Case("POST", "/simulations", "name", {"name": "a\ud800"}),
    "update: NUL in name": Case("PATCH", SIMULATION, "name", {"name": "\x00"}),
    "update: NUL in notes": Case("PATCH", SIMULATION, "notes", {"notes": "a\x00"}),
    "update: NUL in a tag value": Case(
        "PATCH", SIMULATION, "tags.team", {"tags": {"team": "\x00"}}
    ),
    "update: NUL in a tag key": Case("PATCH", SIMULATION, "tags.", {"tags": {"\x00": "x"}}),
    "update: lone surrogate in notes": Case("PATCH", SIMULATION, "notes", {"notes": "\udfff"}),
    # A lone surrogate in a key comes back in the error's field name, escaped: still UTF-8.
    "create: lone surrogate in a tag key": Case(
        "POST", "/simulations", "tags.", {"tags": {"\ud800": "x"}}
    ),
    "update: lone surrogate as an unknown field": Case("PATCH", SIMULATION, "", {"\udc00": 1}),
    "update: a lone surrogate key sent twice": Case(
        "PATCH", SIMULATION, "", raw='{"\\ud800": "a", "\\ud800": "b"}'
    ),
    "update: a key sent twice": Case("PATCH", SIMULATION, "name", raw='{"name": "a", "name": "b"}'),
    "sweep: NUL in name": Case("POST", "/sweeps", "name", {"name": "\x00", "base": SWEEP_BASE}),
    "sweep: NUL in a space value": Case(
        "POST",
        "/sweeps",
        "space.learning_rate",
        # random search draws 0.1 (random_seed 0): the NUL reaches only the stored request
        {
            "base": SWEEP_BASE,
            "space": {"learning_rate": {"values": ["\x00", 0.1]}},
            "method": "random",
            "run_cap": 1,
        },
    ),
    "sweep: base.seed": Case("POST", "/sweeps", "base.seed", {"base": {**SWEEP_BASE, "seed": 7}}),
    "filter: NUL in a value": Case(
        "GET", "/simulations", "filter", params={"filter": "name = 'a\x00'"}
    ),
    "filter: NUL in a quoted tag key": Case(
        "GET", "/simulations", "filter", params={"filter": "tags.`a\x00` = 'x'"}
    ),
    "order_by: NUL in a quoted tag key": Case(
        "GET", "/simulations", "order_by", params={"order_by": "tags.`a\x00`"}
    ),
    "filter: like ending in a backslash": Case(
        "GET", "/simulations", "filter", params={"filter": "name like '%\\'"}
    ),
    "filter: an integer of 2^63": Case(
        "GET", "/simulations", "filter", params={"filter": f"config.seed = {TOO_BIG}"}
    ),
    "filter: an integer below -2^63": Case(
        "GET", "/simulations", "filter", params={"filter": f"config.seed > -{TOO_BIG + 1}"}
    ),
    "filter: a number beyond a float": Case(
        "GET", "/simulations", "filter", params={"filter": "metrics.loss < 1e400"}
    ),
    "cursor: an offset of 2^63": Case(
        "GET",
        "/simulations",
        "cursor",
        params={"order_by": "name", "cursor": offset_cursor(TOO_BIG)},
    ),
}


@pytest.fixture
def hostile_server(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A real server on the database, with one stored run to PATCH."""
    simulation = seed_run(database_url, {"preset": "stage1", "rounds": 2}, None, name="kept")
    dispose_engines()
    server = Server({"SCARCITY_DATABASE_URL": database_url}, tmp_path / "server.log")
    try:
        yield server, simulation
    finally:
        server.stop()


def send(client: httpx.Client, case: Case, simulation: str) -> httpx.Response:
    path = f"/simulations/{simulation}" if case.path == SIMULATION else case.path
    content = case.raw if case.body is None else json.dumps(case.body)  # ASCII: \u0000, \ud800
    headers = {"Content-Type": "application/json"} if content is not None else {}
    return client.request(case.method, path, content=content, params=case.params, headers=headers)


def refusal_problems(response: httpx.Response, case: Case) -> list[str]:
    """What is wrong with the answer: anything but a 422 naming the field, on an open connection."""
    problems = []
    if response.headers.get("connection", "").lower() == "close":
        problems.append("the server closed the connection")
    if response.status_code != 422 or response.json().get("type") != "validation_error":
        return [*problems, f"{response.status_code} {response.text[:200]}"]
    named = [str(d["field"]) for d in response.json()["detail"]]
    if not any(f == case.named or f.startswith(case.named) for f in named):
        problems.append(f"names {named}, not {case.named!r}")
    return problems


def test_hostile_input_is_a_422_naming_the_field_and_the_connection_stays_open(
    hostile_server: tuple[Server, str],
) -> None:
    server, simulation = hostile_server
    failures = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name, case in CASES.items():
            try:
                response = send(client, case, simulation)
                failures += [f"{name}: {problem}" for problem in refusal_problems(response, case)]
                # The next request goes over the same connection and is answered.
                after = client.get(f"/simulations/{simulation}")
            except httpx.TransportError as exc:  # the server dropped the connection
                failures.append(f"{name}: {exc!r}")
                continue
            reused = after.extensions["network_stream"] is response.extensions["network_stream"]
            if after.status_code != 200 or not reused:
                failures.append(f"{name}: next request {after.status_code}, reused={reused}")
        stored = client.get(f"/simulations/{simulation}").json()
        listed = client.get("/simulations").json()["data"]
    assert not failures, "\n".join(failures)
    assert (stored["name"], stored["notes"], stored["tags"]) == ("kept", None, {})
    assert [run["id"] for run in listed] == [simulation], "a refused request stored something"


def test_like_escapes_with_a_backslash_on_both_databases(
    hostile_server: tuple[Server, str],
) -> None:
    """`\\%` and `\\_` match themselves, `\\\\` a backslash: the same on both databases."""
    server, simulation = hostile_server
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def matches(name: str, pattern: str) -> bool:
            assert (
                client.patch(f"/simulations/{simulation}", json={"name": name}).status_code == 200
            )
            response = client.get("/simulations", params={"filter": f"name like '{pattern}'"})
            assert response.status_code == 200, response.text
            return [run["id"] for run in response.json()["data"]] == [simulation]

        assert matches("50%", "50\\%") and not matches("500", "50\\%")
        assert matches("a_b", "a\\_b") and not matches("axb", "a\\_b")
        assert matches("c:\\dir", "c:\\\\%") and not matches("c:/dir", "c:\\\\%")
