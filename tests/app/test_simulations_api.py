"""The public HTTP contract (docs/design.md), against a real server process."""

from __future__ import annotations

import json

import httpx
import pytest

from scarcity import resolve_config, run_simulation
from tests.service_processes import wait_for_status


def fields_named(response: httpx.Response) -> list[str | None]:
    return [d["field"] for d in response.json()["detail"]]


def test_create_returns_202_location_and_the_resolved_config(client: httpx.Client) -> None:
    response = client.post("/simulations", json={"preset": "stage2", "rounds": 3})
    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/simulations/{body['id']}"
    assert body["preset"] == "stage2"
    assert body["config"]["rounds"] == 3
    assert body["config"]["federated_averaging"] is True and body["config"]["gossip"] is False
    assert body["progress"] == {"rounds_completed": 0, "rounds_total": 3}
    assert body["error"] is None and body["created_at"].endswith(("Z", "+00:00"))
    assert client.get(f"/simulations/{body['id']}").json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"preset": "stage8", "bogus": 1}, "bogus", "unknown field"),
        ({"num_clients": -1}, "num_clients", "greater than or equal"),
        ({"num_clients": 51}, "num_clients", "50"),
        ({"rounds": "many"}, "rounds", "integer"),
        ({"preset": "stage99"}, "preset", "stage8"),
        ({"dataset": "imagenet"}, "dataset", "digits"),
        ({"partition": "dirichlet"}, "partition", "labelled"),
        ({"dataset": "iris", "input_dim": 7}, "input_dim", "4 features"),
        ({"num_clients": 50, "rounds": 20, "samples_per_client": 1000}, "num_clients", "200,000"),
        # 100,000 with equal sizes; the largest skewed client (4 × 100) makes it 400,000.
        (
            {"preset": "stage2", "num_clients": 50, "rounds": 20, "samples_per_client": 100}
            | {"quantity_skew": 2.0},
            "num_clients",
            "400,000 > limit 200,000",
        ),
        ({"learning_rate": 0}, "learning_rate", "greater than"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: httpx.Client, body: dict, field: str, words: str
) -> None:
    newest = [s["id"] for s in client.get("/simulations?limit=1").json()["data"]]
    response = client.post("/simulations", json=body)
    assert response.status_code == 422, response.text
    assert field in fields_named(response)
    assert words in json.dumps(response.json()["detail"])
    after = [s["id"] for s in client.get("/simulations?limit=1").json()["data"]]
    assert after == newest  # nothing was created


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"stage8"', b"null"])
def test_malformed_bodies_are_422(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/simulations", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["type"] == "validation_error"


def test_oversized_body_is_413(client: httpx.Client) -> None:
    response = client.post("/simulations", json={"preset": "stage8", "pad": "x" * 10_000})
    assert response.status_code == 413
    assert "4096" in response.json()["detail"]


def test_unknown_and_malformed_ids(client: httpx.Client) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for path in ("", "/metrics", "/insights", "/meta-params", "/logs", "/events"):
        response = client.get(f"/simulations/{missing}{path}")
        assert response.status_code == 404, path
        assert response.json()["type"] == "not_found"
    assert client.post(f"/simulations/{missing}/cancel").status_code == 404
    assert client.delete(f"/simulations/{missing}").status_code == 404
    assert client.get("/simulations/not-a-uuid").status_code == 422


def test_list_is_newest_first_filtered_and_paginated(client: httpx.Client) -> None:
    ids = [
        client.post("/simulations", json={"preset": "stage1", "rounds": 1, "seed": s}).json()["id"]
        for s in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"preset": "stage1", "limit": 50} | ({"cursor": cursor} if cursor else {})
        page = client.get("/simulations", params=params).json()
        assert len(page["data"]) <= 5  # page size capped by SCARCITY_MAX_PAGE_SIZE
        seen += [s["id"] for s in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:7] == ids[::-1]
    assert all(
        s["preset"] == "stage1" for s in client.get("/simulations?preset=stage1").json()["data"]
    )
    assert client.get("/simulations?status=bogus").status_code == 422


def test_cancel_and_delete_lifecycle(client: httpx.Client) -> None:
    sim = client.post("/simulations", json={"preset": "stage1", "rounds": 1}).json()
    final = wait_for_status(client, sim["id"], {"succeeded", "failed"})
    assert final["status"] == "succeeded"
    assert client.post(f"/simulations/{sim['id']}/cancel").status_code == 409
    assert client.delete(f"/simulations/{sim['id']}").status_code == 204
    assert client.get(f"/simulations/{sim['id']}").status_code == 404


def test_metrics_filters_by_round_range_and_names(client: httpx.Client) -> None:
    sim = client.post("/simulations", json={"preset": "stage8", "rounds": 4}).json()
    wait_for_status(client, sim["id"], {"succeeded"})
    body = client.get(
        f"/simulations/{sim['id']}/metrics",
        params={"from_round": 2, "to_round": 3, "names": "loss,drift"},
    ).json()
    assert [r["round"] for r in body["rounds"]] == [2, 3]
    assert all(set(r["metrics"]) == {"loss", "drift"} for r in body["rounds"])
    insights = client.get(f"/simulations/{sim['id']}/insights", params={"round": 2, "client_id": 1})
    assert [(i["round"], i["client_id"]) for i in insights.json()["insights"]] == [(2, 1)]
    logs = client.get(f"/simulations/{sim['id']}/logs").json()["lines"]
    assert any("claimed" in line["message"] for line in logs)
    assert any(line["round"] == 4 for line in logs)


def test_events_stream_one_event_per_round_and_an_end(client: httpx.Client) -> None:
    sim = client.post("/simulations", json={"preset": "stage8", "rounds": 3}).json()
    events: list[tuple[str, str]] = []
    with client.stream("GET", f"/simulations/{sim['id']}/events", timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name:
                events.append((name, line.split(":", 1)[1].strip()))
                if name == "end":
                    break
    assert [n for n, _ in events] == ["round", "round", "round", "end"]
    assert [json.loads(d)["round"] for n, d in events if n == "round"] == [1, 2, 3]
    assert json.loads(events[-1][1])["status"] == "succeeded"


def test_presets_health_readiness_and_offline_docs(client: httpx.Client) -> None:
    presets = client.get("/presets").json()
    assert [p["name"] for p in presets] == [f"stage{i}" for i in range(1, 9)] + ["baseline"]
    assert presets[7]["config"]["structure_discovery"] is True
    assert presets[8]["config"]["expert_ensemble"] is False
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["checks"] == {"database": "ok", "queue": "ok"}
    docs = client.get("/docs").text
    assert "https://" not in docs and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/simulations", "/simulations/{simulation_id}/metrics"} <= set(schema["paths"])
    # Open mode (no SCARCITY_API_KEYS): the document asks for no key anywhere.
    assert "securitySchemes" not in schema.get("components", {})
    operations = [op for ops in schema["paths"].values() for op in ops.values()]
    asking = [o["operationId"] for o in operations if "security" in o or "401" in o["responses"]]
    assert asking == []
    # a resource's config has a typed schema: every field, with its type and choices
    config_schema = schema["components"]["schemas"]["SimulationPublic"]["properties"]["config"]
    assert config_schema["additionalProperties"] is False
    assert config_schema["properties"]["partition"]["enum"][:2] == ["iid", "dirichlet"]
    assert config_schema["properties"]["num_clients"]["type"] == "integer"
    preset_config = client.get("/presets").json()[0]["config"]
    assert set(preset_config) == set(config_schema["properties"])
    # readable operation ids, one per operation, for generated clients
    ids = [o["operationId"] for o in operations]
    assert len(set(ids)) == len(ids)
    assert {"create_simulation", "get_metrics", "stream_events", "get_clients"} <= set(ids)
    assert "Run" in client.get("/").text


def test_strategies_list_every_strategy_with_its_parameters_and_paper(
    client: httpx.Client,
) -> None:
    strategies = {s["name"]: s for s in client.get("/strategies").json()}
    assert {"fedavg", "reptile", "fedprox", "fedadam", "krum", "scaffold", "dp_fedavg"} <= set(
        strategies
    )
    assert len(strategies) == 19
    assert strategies["fedprox"]["parameters"] == {"proximal_mu": 0.01}
    assert strategies["local"]["parameters"] == {}
    assert strategies["fedavg_ft"]["parameters"] == {"finetune_epochs": 1}
    assert strategies["ditto"]["parameters"] == {"ditto_lambda": 0.1}
    assert strategies["ifca"]["parameters"] == {"num_clusters": 2}
    assert "Ghosh" in strategies["ifca"]["paper"] and "2021" in strategies["ditto"]["paper"]
    assert "Li" in strategies["fedprox"]["paper"] and "2020" in strategies["fedprox"]["paper"]
    assert all(s["summary"] and s["paper"] for s in strategies.values())
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SimulationCreate"]
    choices = schema["properties"]["strategy"]["anyOf"][0]["enum"]
    assert choices == list(strategies)  # the form's choices are the registry's
    unknown = client.post("/simulations", json={"preset": "stage2", "strategy": "fedbogus"})
    assert unknown.status_code == 422 and "strategy" in fields_named(unknown)


def test_a_strategy_run_with_sampling_and_attackers_over_http(client: httpx.Client) -> None:
    body = {
        "preset": "baseline",
        "dataset": "digits",
        "partition": "dirichlet",
        "num_clients": 10,
        "clients_per_round": 7,
        "rounds": 3,
        "strategy": "fedtrimmedavg",
        "malicious_fraction": 0.2,
    }
    created = client.post("/simulations", json=body)
    assert created.status_code == 202, created.text
    config = created.json()["config"]
    assert config["trim_beta"] == 0.2 and config["proximal_mu"] is None  # its defaults only
    simulation_id = created.json()["id"]
    wait_for_status(client, simulation_id, {"succeeded"})
    rounds = client.get(f"/simulations/{simulation_id}/metrics").json()["rounds"]
    assert [r["metrics"]["clients_sampled"] for r in rounds] == [7.0, 7.0, 7.0]
    assert all("attackers_sampled" in r["metrics"] for r in rounds)
    bad = client.post("/simulations", json={**body, "num_clients": 4, "strategy": "bulyan"})
    assert bad.status_code == 422 and "num_malicious_clients" in fields_named(bad)


def test_events_resume_after_last_event_id(client: httpx.Client) -> None:
    sim = client.post("/simulations", json={"preset": "stage2", "rounds": 3}).json()
    wait_for_status(client, sim["id"], {"succeeded"})
    names, rounds = [], []
    with client.stream(
        "GET", f"/simulations/{sim['id']}/events", headers={"Last-Event-ID": "2"}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                names.append(line.split(":", 1)[1].strip())
            elif line.startswith("data:") and names[-1] == "round":
                rounds.append(json.loads(line.split(":", 1)[1])["round"])
            if names[-1:] == ["end"]:
                break
    assert names == ["round", "end"] and rounds == [3]


def test_an_engine_failure_ends_failed_with_the_reason_and_a_log_line(
    client: httpx.Client,
) -> None:
    diverging = {"preset": "stage2", "learning_rate": 10, "rounds": 20, "local_epochs": 20}
    sim = client.post("/simulations", json=diverging).json()
    final = wait_for_status(client, sim["id"], {"succeeded", "failed", "cancelled"})
    assert final["status"] == "failed"
    assert "SimulationError" in final["error"] and "diverged" in final["error"]
    assert final["finished_at"] is not None
    lines = client.get(f"/simulations/{sim['id']}/logs").json()["lines"]
    assert any(line["level"] == "ERROR" and "diverged" in line["message"] for line in lines)


def test_an_exploding_loss_ends_failed_naming_the_round_and_the_metric(
    client: httpx.Client,
) -> None:
    """Finite but beyond 1e12 (engine_version 5): the same error as in-process and the CLI."""
    exploding = {"preset": "stage5", "drift": 10, "rounds": 5}
    sim = client.post("/simulations", json=exploding).json()
    final = wait_for_status(client, sim["id"], {"succeeded", "failed", "cancelled"})
    assert final["status"] == "failed"
    assert "SimulationError: round 4: ensemble_loss is 9." in final["error"], final["error"]
    assert final["config"]["engine_version"] >= 5


def test_resource_carries_the_last_rounds_metrics(client: httpx.Client) -> None:
    sim = client.post("/simulations", json={"preset": "stage2", "rounds": 3}).json()
    assert sim["final_metrics"] is None
    final = wait_for_status(client, sim["id"], {"succeeded"})
    last = client.get(f"/simulations/{sim['id']}/metrics").json()["rounds"][-1]
    assert last["round"] == 3 and final["final_metrics"] == last["metrics"]
    listed = {s["id"]: s for s in client.get("/simulations", params={"limit": 5}).json()["data"]}
    assert listed[sim["id"]]["final_metrics"] == last["metrics"]


def test_meta_params_carry_the_high_and_low_uncertainty_clients(client: httpx.Client) -> None:
    job = {"preset": "stage5", "dataset": "wine", "num_clients": 6, "rounds": 3}
    sim = client.post("/simulations", json=job).json()
    wait_for_status(client, sim["id"], {"succeeded"})
    rows = client.get(f"/simulations/{sim['id']}/meta-params").json()["rounds"]
    expected = run_simulation(resolve_config(sim["config"]))
    assert [r["round"] for r in rows] == [1, 2, 3]
    for row, result in zip(rows, expected, strict=True):
        for key in ("high_uncertainty_clients", "low_uncertainty_clients"):
            assert row[key] == list(result.uncertainty_groups[key]), key
        assert sorted(row["high_uncertainty_clients"] + row["low_uncertainty_clients"]) == list(
            range(6)
        )
        assert row["lr"] == result.meta_params["lr"]


def test_metrics_carry_the_ensembles_scores_in_json_and_csv(client: httpx.Client) -> None:
    job = {"preset": "stage7", "dataset": "iris", "num_clients": 3, "rounds": 2}
    sim = client.post("/simulations", json=job).json()
    assert sim["config"]["ensemble_evaluation"] is True
    wait_for_status(client, sim["id"], {"succeeded"})
    rows = client.get(f"/simulations/{sim['id']}/metrics").json()["rounds"]
    expected = run_simulation(resolve_config(sim["config"]))
    for row, result in zip(rows, expected, strict=True):
        for name in ("ensemble_loss", "ensemble_accuracy"):
            assert row["metrics"][name] == pytest.approx(result.metrics[name], abs=1e-6), name
    csv_text = client.get(f"/simulations/{sim['id']}/metrics", params={"format": "csv"}).text
    header, *lines = csv_text.strip().splitlines()
    column = header.split(",").index("ensemble_accuracy")
    assert [float(line.split(",")[column]) for line in lines] == pytest.approx(
        [r.metrics["ensemble_accuracy"] for r in expected], abs=1e-6
    )
