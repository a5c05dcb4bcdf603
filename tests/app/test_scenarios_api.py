"""Scenarios over time through the API, against a real server process: `GET /scenarios`, the
config fields in `SimulationCreate`, 422s naming the field, a run's scenario metrics served and
searchable."""

from __future__ import annotations

import httpx

from tests.service_processes import wait_for_status


def test_scenarios_are_listed_with_their_parameters(client: httpx.Client) -> None:
    scenarios = {s["name"]: s for s in client.get("/scenarios").json()}
    assert list(scenarios) == [
        "static",
        "drift",
        "tasks",
        "availability",
        "few_labels",
        "arrivals",
    ]
    assert scenarios["static"]["parameters"] == {}
    assert scenarios["drift"]["parameters"] == {
        "drift_blocks": 4,
        "drift_kind": None,  # decided by the data set's task
        "drift_mode": "sudden",
    }
    assert "FedDrift" in scenarios["drift"]["summary"] and scenarios["tasks"]["paper"]
    assert scenarios["availability"]["parameters"] == {
        "availability_rate": 0.5,
        "availability_mode": "random",
        "availability_period": 10,
    }
    assert scenarios["few_labels"]["parameters"] == {"labelled_fraction": 0.1}
    assert scenarios["arrivals"]["parameters"] == {"unseen_fraction": 0.2, "adapt_steps": [0, 1, 5]}
    assert "Yuan" in scenarios["arrivals"]["paper"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SimulationCreate"]
    assert schema["properties"]["scenario"]["anyOf"][0]["enum"] == list(scenarios)


def test_bad_scenario_settings_are_422_naming_the_field(client: httpx.Client) -> None:
    for body, field in [
        ({"scenario": "seasons"}, "scenario"),
        ({"scenario": "drift", "drift_kind": "label_swap"}, "drift_kind"),  # synthetic: regression
        ({"dataset": "iris", "scenario": "drift", "rounds": 2, "drift_blocks": 3}, "drift_blocks"),
        (
            {
                "dataset": "digits",
                "partition": "pathological",
                "num_clients": 10,
                "scenario": "tasks",
            },
            "num_tasks",
        ),
        ({"preset": "stage8", "dataset": "iris", "scenario": "arrivals"}, "scenario"),
        ({"dataset": "iris", "scenario": "arrivals", "adapt_steps": [2]}, "adapt_steps.0"),
    ]:
        response = client.post("/simulations", json={"preset": "baseline", **body})
        assert response.status_code == 422, (body, response.text)
        assert [d["field"] for d in response.json()["detail"]] == [field], response.text


def test_a_task_sequence_reports_its_metrics_and_they_are_searchable(client: httpx.Client) -> None:
    body = {
        "preset": "baseline",
        "dataset": "iris",
        "num_clients": 3,
        "rounds": 4,
        "scenario": "tasks",
        "num_tasks": 2,
        "learning_rate": 0.1,
    }
    created = client.post("/simulations", json=body)
    assert created.status_code == 202, created.text
    simulation_id = created.json()["id"]
    done = wait_for_status(client, simulation_id, {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert done["config"]["task_kind"] == "class_split"
    rounds = client.get(f"/simulations/{simulation_id}/metrics").json()["rounds"]
    assert "avg_task_accuracy" not in rounds[0]["metrics"]  # at the tasks' ends
    assert "avg_task_accuracy" in rounds[1]["metrics"]
    assert {"forgetting", "backward_transfer"} <= set(rounds[-1]["metrics"])
    for text, hit in [
        ("config.scenario = 'tasks' and metrics.forgetting >= -1", True),
        ("config.num_tasks = 2 and metrics.avg_task_accuracy > 1", False),
    ]:
        found = client.get("/simulations", params={"filter": text})
        assert found.status_code == 200, found.text
        assert (simulation_id in [s["id"] for s in found.json()["data"]]) is hit, text
