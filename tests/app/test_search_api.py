"""Runs you can find: name, tags and notes, and the filter language of `GET /simulations`,
against a real server on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from models import SimulationStatus, lease, simulations_repo
from models.db import dispose_engines, session_scope
from scarcity.config import resolve_config
from scarcity.results import RoundResult
from tests.service_processes import Server


def fields_named(response: httpx.Response) -> list[str | None]:
    return [d["field"] for d in response.json()["detail"]]


def seed_run(
    url: str,
    overrides: dict[str, Any],
    final: dict[str, float] | None,
    *,
    name: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """A stored run: finished with two rounds whose last has `final`, or cancelled unrun."""
    config = resolve_config(overrides).model_dump()
    attrs = {"name": name, "tags": tags}
    with session_scope(url) as session:
        simulation = simulations_repo.create_simulation(
            session, owner="", config=config, attrs=attrs
        )
        if final is None:
            simulations_repo.request_cancel(session, simulation)
            return str(simulation.id)
        claim = lease.claim(session, simulation.id, lease_seconds=60, max_attempts=5)
        assert claim is not None
        first = {name: value + 10 for name, value in final.items()}  # round 1 must not count
        for number, metrics in ((1, first), (2, final)):
            lease.save_round(session, claim, RoundResult(round=number, metrics=metrics), None)
        assert lease.finish(session, claim, SimulationStatus.succeeded)
    return str(simulation.id)


@pytest.fixture
def runs_server(database_url: str, tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    digits = {"preset": "stage2", "dataset": "digits", "rounds": 2}
    runs = {
        "A": seed_run(
            database_url,
            digits | {"learning_rate": 0.01, "seed": 1},
            {"loss": 0.5, "test_accuracy": 0.95},
            name="alpha",
            tags={"team": "fl", "sweep": "s1"},
        ),
        "B": seed_run(
            database_url,
            digits | {"learning_rate": 0.1, "seed": 2},
            {"loss": 0.3, "test_accuracy": 0.85},
            name="beta",
            tags={"team": "fl"},
        ),
        "C": seed_run(database_url, {"preset": "stage1", "rounds": 2, "seed": 1}, {"loss": 0.7}),
        "D": seed_run(database_url, {"preset": "stage8", "rounds": 2}, None, name="ALPHA-2"),
    }
    dispose_engines()
    env = {"SCARCITY_DATABASE_URL": database_url, "SCARCITY_MAX_PAGE_SIZE": "10"}
    server = Server(env, tmp_path / "server.log")
    try:
        yield server, runs
    finally:
        server.stop()


FILTERS = [
    ("config.dataset = 'digits'", "AB"),
    ("config.dataset = 'digits' and metrics.test_accuracy >= 0.9", "A"),
    ("metrics.test_accuracy < 0.9", "B"),  # C has no test_accuracy, D no rounds
    ("metrics.loss <= 0.5", "AB"),  # the final round's, not round 1's (+10)
    ("metrics.loss >= 0", "ABC"),
    ("config.learning_rate > 0.05", "B"),
    ("config.seed in (1, 3)", "AC"),
    ("config.seed not in (1)", "BD"),
    ("tags.team = 'fl'", "AB"),
    ("tags.team != 'fl'", "CD"),  # a run without the tag differs from it
    ("tags.sweep = null", "BCD"),
    ("tags.`sweep` != null", "A"),
    ("name like 'alpha%'", "AD"),  # case-insensitive on both databases
    ("name = null", "C"),
    ("status = 'cancelled'", "D"),
    ("preset in ('stage1', 'stage8')", "CD"),
    ("config.federated_averaging = true", "AB"),  # stage8 shares no weights with the server
    ("config.federated_averaging = false", "CD"),
    ("config.gossip = false AND config.dataset != 'digits'", "C"),
    ("config.clients_per_round = null and config.strategy = 'fedavg'", "ABCD"),
    ("metrics.loss > 1", ""),
]

ORDERS = [
    ("metrics.loss asc", "BACD"),  # nulls last
    ("metrics.loss desc", "CABD"),
    ("config.seed desc, name", "BACD"),
    ("metrics.test_accuracy", "BADC"),  # ties (nulls) newest first
]


@pytest.mark.slow
def test_filters_and_orders_find_exactly_the_expected_runs(
    runs_server: tuple[Server, dict[str, str]],
) -> None:
    server, runs = runs_server
    letter = {sim_id: key for key, sim_id in runs.items()}
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def found(**params: str) -> str:
            response = client.get("/simulations", params=params)
            assert response.status_code == 200, (params, response.text)
            return "".join(letter[s["id"]] for s in response.json()["data"])

        assert found() == "DCBA"  # newest first
        for text, expected in FILTERS:
            assert sorted(found(filter=text)) == sorted(expected), text
        for text, expected in ORDERS:
            assert found(order_by=text) == expected, text
        assert found(filter="config.dataset = 'digits'", order_by="metrics.loss") == "BA"

        # An order_by list pages by offset: the cursor says how many rows were shown.
        first = client.get("/simulations", params={"order_by": "metrics.loss", "limit": 2}).json()
        assert [letter[s["id"]] for s in first["data"]] == ["B", "A"]
        rest = client.get(
            "/simulations",
            params={"order_by": "metrics.loss", "limit": 2, "cursor": first["next_cursor"]},
        ).json()
        assert [letter[s["id"]] for s in rest["data"]] == ["C", "D"]
        assert rest["next_cursor"] is None

        compared = client.get("/compare", params={"ids": f"{runs['B']},{runs['A']}"})
        assert compared.status_code == 200, compared.text
        body = compared.json()
        assert body["differing_fields"] == ["seed", "learning_rate"]
        assert [r["label"] for r in body["runs"]] == [
            "beta · seed=2, learning_rate=0.1",
            "alpha · seed=1, learning_rate=0.01",
        ]
        assert body["rounds"] == [1, 2]
        assert body["metrics"]["loss"] == [[10.3, 0.3], [10.5, 0.5]]

        listed = {s["id"]: s for s in client.get("/simulations").json()["data"]}
        assert listed[runs["A"]]["name"] == "alpha"
        assert listed[runs["A"]]["tags"] == {"team": "fl", "sweep": "s1"}
        assert listed[runs["C"]]["name"] is None and listed[runs["C"]]["tags"] == {}


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"dataset": "digits"}, "dataset", "unknown query parameter"),
        ({"filter": "config.bogus = 1"}, "filter", "unknown config field 'bogus'"),
        ({"filter": "metrics.acc > 0.9"}, "filter", "unknown metric 'acc'"),
        ({"filter": "seed = 1"}, "filter", "unknown field 'seed'"),
        ({"filter": "config.seed >"}, "filter", "syntax error at position 14"),
        ({"filter": "config.seed = 1 or config.seed = 2"}, "filter", "position 17"),
        ({"filter": "config.dataset = 3"}, "filter", "config.dataset is a string"),
        ({"filter": "config.dataset = 'imagenet'"}, "filter", "unknown value 'imagenet'"),
        ({"filter": "config.gossip > true"}, "filter", "use = or !="),
        ({"filter": "metrics.loss like 'x'"}, "filter", "a number, got a string"),
        ({"order_by": "metrics.nope desc"}, "order_by", "unknown metric 'nope'"),
        ({"order_by": "metrics.loss upward"}, "order_by", "position 14"),
        ({"order_by": "metrics.loss", "cursor": "bm90IGEgY3Vyc29y"}, "cursor", "previous page"),
    ],
)
def test_bad_queries_are_422_naming_the_field_and_position(
    client: httpx.Client, params: dict[str, str], field: str, words: str
) -> None:
    response = client.get("/simulations", params=params)
    assert response.status_code == 422, response.text
    assert field in fields_named(response)
    assert words in response.text


def test_unknown_query_parameters_are_422_on_every_resource(client: httpx.Client) -> None:
    sim = client.post("/simulations", json={"preset": "stage1", "rounds": 1}).json()
    for path in ("", "/metrics", "/insights", "/logs"):
        response = client.get(f"/simulations/{sim['id']}{path}", params={"round_": "2"})
        assert response.status_code == 422, path
        assert fields_named(response) == ["round_"]
    ok = client.get(f"/simulations/{sim['id']}/metrics", params={"format": "json", "names": "loss"})
    assert ok.status_code == 200


def test_name_tags_and_notes_at_creation_and_by_patch(client: httpx.Client) -> None:
    body = {"preset": "stage1", "rounds": 1, "name": "first", "tags": {"team": "fl", "k.1": "v"}}
    created = client.post("/simulations", json=body | {"notes": "try"})
    assert created.status_code == 202, created.text
    sim = created.json()
    assert (sim["name"], sim["tags"], sim["notes"]) == ("first", body["tags"], "try")
    assert "name" not in sim["config"] and "tags" not in sim["config"]  # not engine settings
    path = f"/simulations/{sim['id']}"

    patched = client.patch(path, json={"name": "renamed", "tags": {"team": None, "lr": "0.1"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == {"k.1": "v", "lr": "0.1"}  # merged: null removed `team`
    assert patched.json()["notes"] == "try"  # left out: unchanged
    again = client.get(path).json()
    assert (again["name"], again["tags"], again["notes"]) == (
        "renamed",
        {"k.1": "v", "lr": "0.1"},
        "try",
    )
    cleared = client.patch(path, json={"notes": None, "tags": None}).json()
    assert cleared["notes"] is None and cleared["tags"] == {} and cleared["name"] == "renamed"

    found = client.get("/simulations", params={"filter": "name = 'renamed'"}).json()["data"]
    assert [s["id"] for s in found] == [sim["id"]]

    for bad, field in [
        ({"tags": {"bad key": "v"}}, "tags"),
        ({"name": "x" * 201}, "name"),
        ({"name": ""}, "name"),
        ({"config": {}}, "config"),
        ({"tags": {"k": 1}}, "tags"),
    ]:
        response = client.patch(path, json=bad)
        assert response.status_code == 422, bad
        assert any(f and f.startswith(field) for f in fields_named(response)), response.text
    too_many = client.patch(path, json={"tags": {f"t{i}": "v" for i in range(49)}})
    assert too_many.status_code == 200
    over = client.patch(path, json={"tags": {"t49": "v", "t50": "v"}})
    assert over.status_code == 422 and fields_named(over) == ["tags"] and "50" in over.text
    bad_create = client.post("/simulations", json={"preset": "stage1", "tags": {"a b": "c"}})
    assert bad_create.status_code == 422
    assert (
        client.patch(path, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    )
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.patch(f"/simulations/{missing}", json={"name": "x"}).status_code == 404
