"""Sweeps over HTTP against a real server (embedded worker, SQLite): grid and random search,
results against a recomputation from the runs' own metrics, limits, cancel and delete."""

from __future__ import annotations

import csv
import io
import math
import statistics
import time

import httpx

BASE = {"preset": "stage2", "num_clients": 2, "rounds": 2, "samples_per_client": 8}


def wait_for_sweep(client: httpx.Client, sweep_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/sweeps/{sweep_id}").json()
        if body["status"] != "running":
            return body
        time.sleep(0.2)
    raise AssertionError(f"sweep {sweep_id} still running: {body['progress']}")


def runs_of(client: httpx.Client, sweep_id: str) -> list[dict]:
    """The sweep's runs, found by the tag each carries (every page: the server shows 5)."""
    found: list[dict] = []
    params = {"filter": f"tags.sweep = '{sweep_id}'"}
    while True:
        page = client.get("/simulations", params=params).json()
        found += page["data"]
        if not page["next_cursor"]:
            return found
        params["cursor"] = page["next_cursor"]


def test_grid_sweep_runs_every_configuration_per_seed_and_summarises_them(
    client: httpx.Client,
) -> None:
    request = {
        "name": "lr",
        "base": BASE,
        "space": {"learning_rate": {"values": [0.01, 0.1]}},
        "seeds": [0, 1, 2],
        "max_concurrent": 2,
    }
    created = client.post("/sweeps", json=request)
    assert created.status_code == 202, created.text
    sweep = created.json()
    assert created.headers["location"] == f"/sweeps/{sweep['id']}"
    progress = sweep["progress"]
    assert progress["total"] == 6 and progress["queued"] == 2 and progress["pending"] == 4
    assert sweep["varied"] == ["learning_rate"] and sweep["status"] == "running"

    final = wait_for_sweep(client, sweep["id"])
    assert final["status"] == "finished" and final["progress"]["succeeded"] == 6
    runs = runs_of(client, sweep["id"])
    assert len(runs) == 6
    pairs = sorted((r["config"]["learning_rate"], r["config"]["seed"]) for r in runs)
    assert pairs == [(lr, s) for lr in (0.01, 0.1) for s in (0, 1, 2)]
    assert all(r["name"].startswith("lr · learning_rate=") for r in runs)

    # mean ± std over the seeds, recomputed from each run's own last round
    body = client.get(f"/sweeps/{sweep['id']}/results").json()
    assert [row["params"] for row in body["rows"]] == [
        {"learning_rate": 0.01},
        {"learning_rate": 0.1},
    ]
    for row in body["rows"]:
        lr = row["params"]["learning_rate"]
        own = [r for r in runs if r["config"]["learning_rate"] == lr]
        finals = [
            client.get(f"/simulations/{r['id']}/metrics").json()["rounds"][-1]["metrics"]
            for r in own
        ]
        assert (row["runs"], row["succeeded"]) == (3, 3)
        for name in ("loss", "test_loss"):
            values = [f[name] for f in finals]
            summary = row["metrics"][name]
            assert math.isclose(summary["mean"], statistics.fmean(values), rel_tol=1e-12)
            assert math.isclose(summary["std"], statistics.stdev(values), rel_tol=1e-9)
            assert summary["count"] == 3

    text = client.get(f"/sweeps/{sweep['id']}/results", headers={"Accept": "text/csv"}).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert [row["learning_rate"] for row in table] == ["0.01", "0.1"]
    assert float(table[1]["loss_mean"]) == body["rows"][1]["metrics"]["loss"]["mean"]
    assert table[0]["runs"] == "3" and table[0]["loss_count"] == "3"

    listed = client.get("/sweeps").json()["data"]
    assert sweep["id"] in [s["id"] for s in listed]
    assert client.post(f"/sweeps/{sweep['id']}/cancel").status_code == 409  # finished

    # delete takes every run of the sweep with it
    assert client.delete(f"/sweeps/{sweep['id']}").status_code == 204
    assert client.get(f"/sweeps/{sweep['id']}").status_code == 404
    assert all(client.get(f"/simulations/{r['id']}").status_code == 404 for r in runs)


def test_random_search_with_run_cap_runs_exactly_that_many(client: httpx.Client) -> None:
    request = {
        "base": BASE,
        "space": {
            "learning_rate": {"distribution": "log_uniform", "min": 0.001, "max": 0.1},
            "num_clients": {"values": [2, 3]},
        },
        "seeds": [0, 1],
        "method": "random",
        "run_cap": 5,
        "max_concurrent": 5,
        "random_seed": 7,
    }
    sweep = client.post("/sweeps", json=request).json()
    assert sweep["progress"]["total"] == 5
    final = wait_for_sweep(client, sweep["id"])
    assert final["progress"]["succeeded"] == 5
    runs = runs_of(client, sweep["id"])
    assert len(runs) == 5
    rates = {r["config"]["learning_rate"] for r in runs}
    assert len(rates) == 3  # 3 configurations drawn (2 seeds each, the last cut by run_cap)
    assert all(0.001 <= lr <= 0.1 for lr in rates)
    assert {r["config"]["num_clients"] for r in runs} <= {2, 3}
    rows = client.get(f"/sweeps/{sweep['id']}/results").json()["rows"]
    assert [row["runs"] for row in rows] == [2, 2, 1]
    assert rows[2]["metrics"]["loss"]["std"] is None  # one run: no spread


def test_cancel_stops_every_unfinished_run(client: httpx.Client) -> None:
    request = {
        "base": BASE | {"rounds": 20, "samples_per_client": 50},
        "space": {"learning_rate": {"values": [0.01, 0.02, 0.03, 0.04]}},
        "max_concurrent": 1,
    }
    sweep = client.post("/sweeps", json=request).json()
    cancelled = client.post(f"/sweeps/{sweep['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = [r["status"] for r in runs_of(client, sweep["id"])]
        if all(s in ("succeeded", "cancelled", "failed") for s in statuses):
            break
        time.sleep(0.2)
    assert len(statuses) == 4 and statuses.count("cancelled") >= 3, statuses
    progress = client.get(f"/sweeps/{sweep['id']}").json()["progress"]
    assert progress["pending"] == progress["queued"] == progress["running"] == 0
    assert client.post(f"/sweeps/{sweep['id']}/cancel").status_code == 409


def test_bad_sweeps_are_422_naming_the_field_and_create_nothing(client: httpx.Client) -> None:
    before = len(client.get("/sweeps", params={"limit": 5}).json()["data"])
    big = {"values": [0.01, 0.02, 0.03, 0.04, 0.05]}
    for request, field, words in [
        ({"base": BASE, "space": {"learning_rate": big, "drift": big}}, "space", "25 runs"),
        (
            {"base": BASE, "space": {"learning_rate": big}, "seeds": [0, 1, 2, 3, 4]},
            "space",
            "SCARCITY_MAX_SWEEP_RUNS",
        ),
        ({"base": BASE, "method": "random", "run_cap": 21}, "run_cap", "limit of 20"),
        ({"base": BASE, "method": "random"}, "run_cap", "needs run_cap"),
        (
            {"base": BASE, "space": {"drift": {"distribution": "uniform", "min": 0, "max": 1}}},
            "space.drift",
            "need method random",
        ),
        ({"base": BASE, "space": {"seed": {"values": [1]}}}, "space.seed", "seeds"),
        ({"base": BASE, "space": {"bogus": {"values": [1]}}}, "space.bogus", "not a config"),
        (
            {"base": BASE, "space": {"num_clients": {"values": [2, 51]}}},
            "space.num_clients",
            "run 2",
        ),
        (
            {"base": BASE, "space": {"num_clients": {"values": [2.5]}}},
            "space.num_clients",
            "integer",
        ),
        ({"base": BASE | {"name": "x"}}, "base.name", "name the sweep"),
        ({"base": BASE, "seeds": [1, 1]}, "seeds", "twice"),
        ({"base": BASE | {"bogus": 1}}, "base.bogus", "unknown field"),
        ({"space": {}}, "base", "required"),
    ]:
        response = client.post("/sweeps", json=request)
        assert response.status_code == 422, (request, response.text)
        detail = response.json()["detail"]
        assert any((d["field"] or "").startswith(field) for d in detail), (field, detail)
        assert words in response.text, (words, detail)
    after = len(client.get("/sweeps", params={"limit": 5}).json()["data"])
    assert after == before
    missing = "00000000-0000-4000-8000-000000000000"
    for method, path in [
        ("GET", ""),
        ("GET", "/results"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ]:
        assert client.request(method, f"/sweeps/{missing}{path}").status_code == 404


def test_the_median_rule_stops_a_run_that_falls_behind(client: httpx.Client) -> None:
    request = {
        "base": BASE | {"rounds": 4},
        "space": {"learning_rate": {"values": [0.05, 0.06, 0.07, 0.0001]}},
        "max_concurrent": 1,  # in order: the slow last run meets three finished ones
        "early_stop": {"metric": "test_loss", "grace_rounds": 1, "min_runs": 3},
    }
    sweep = client.post("/sweeps", json=request)
    assert sweep.status_code == 202, sweep.text
    assert sweep.json()["request"]["early_stop"]["mode"] == "min"  # stored in full
    final = wait_for_sweep(client, sweep.json()["id"])
    runs = sorted(runs_of(client, final["id"]), key=lambda r: r["created_at"])
    assert [r["status"] for r in runs] == ["succeeded"] * 3 + ["cancelled"], runs
    slow = runs[-1]
    assert slow["progress"]["rounds_completed"] < 4
    lines = client.get(f"/simulations/{slow['id']}/logs").json()["lines"]
    assert any("stopped early by the median rule" in line["message"] for line in lines)
    rows = client.get(f"/sweeps/{final['id']}/results").json()["rows"]
    assert [row["succeeded"] for row in rows] == [1, 1, 1, 0]

    request.pop("early_stop")  # the same sweep without the rule runs every run to the end
    again = wait_for_sweep(client, client.post("/sweeps", json=request).json()["id"])
    assert again["progress"]["succeeded"] == 4
    bad = client.post("/sweeps", json=request | {"early_stop": {"metric": "accuracy"}})
    assert bad.status_code == 422 and "early_stop.metric" in bad.text
