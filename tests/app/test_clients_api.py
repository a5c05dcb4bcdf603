"""`GET /simulations/{id}/clients` and `GET /partitions`, against a real server process."""

from __future__ import annotations

import csv
import io

import httpx
import numpy as np
import pytest

from scarcity import resolve_config
from scarcity.core.data import natural_split
from tests.service_processes import wait_for_status


def test_the_clients_label_histograms_are_the_partitions_json_and_csv(
    client: httpx.Client,
) -> None:
    body = {
        "preset": "baseline",
        "dataset": "digits",
        "partition": "pathological",
        "num_clients": 12,
        "rounds": 1,
        "seed": 3,
    }
    created = client.post("/simulations", json=body)
    assert created.status_code == 202, created.text
    simulation_id = created.json()["id"]
    # the split computed here, independently of the server process
    split = natural_split(resolve_config(body))
    expected = [np.bincount(split.data.y_train[p], minlength=10).tolist() for p in split.parts]
    # queued or running: the data it trains on is already known
    early = client.get(f"/simulations/{simulation_id}/clients")
    assert early.status_code == 200, early.text
    assert [c["label_counts"] for c in early.json()["clients"]] == expected
    wait_for_status(client, simulation_id, {"succeeded"})
    clients = client.get(f"/simulations/{simulation_id}/clients").json()["clients"]
    assert [c["client_id"] for c in clients] == list(range(12))
    assert [c["label_counts"] for c in clients] == expected
    assert [c["train_samples"] for c in clients] == [len(p) for p in split.parts]
    assert all(sum(1 for n in c["label_counts"] if n) == 2 for c in clients)  # k = 2
    assert all(c["target_mean"] is None and c["test_samples"] == 0 for c in clients)
    table = client.get(f"/simulations/{simulation_id}/clients", headers={"Accept": "text/csv"})
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [int(r["train_samples"]) for r in rows] == [len(p) for p in split.parts]
    assert [[int(r[f"label_{k}"]) for k in range(10)] for r in rows] == expected


def test_a_regression_data_sets_clients_report_target_moments(client: httpx.Client) -> None:
    body = {
        "preset": "baseline",
        "dataset": "diabetes",
        "num_clients": 3,
        "rounds": 1,
        "client_test_fraction": 0.25,
    }
    created = client.post("/simulations", json=body)
    assert created.status_code == 202, created.text
    clients = client.get(f"/simulations/{created.json()['id']}/clients").json()["clients"]
    # 442 rows, 20 % held out globally; each client keeps a quarter of its 118 rows
    assert [c["test_samples"] for c in clients] == [30, 30, 30]
    assert sum(c["train_samples"] + c["test_samples"] for c in clients) == 354
    assert all(c["label_counts"] is None and len(c["target_std"]) == 1 for c in clients)
    missing = client.get("/simulations/00000000-0000-0000-0000-000000000000/clients")
    assert missing.status_code == 404


def test_partitions_list_every_rule_and_bad_splits_are_422_naming_the_field(
    client: httpx.Client,
) -> None:
    partitions = {p["name"]: p for p in client.get("/partitions").json()}
    assert set(partitions) == {
        "iid",
        "dirichlet",
        "pathological",
        "shard",
        "inner_dirichlet",
        "linear",
        "square",
        "exponential",
        "natural",
    }
    assert partitions["pathological"]["parameters"] == {
        "num_classes_per_partition": 2,
        "class_assignment_mode": "random",
    }
    assert partitions["dirichlet"]["by_label"] and not partitions["linear"]["by_label"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SimulationCreate"]
    assert schema["properties"]["partition"]["anyOf"][0]["enum"] == list(partitions)
    for body, field in [
        (
            {
                "dataset": "iris",
                "num_clients": 45,
                "partition": "shard",
                "num_shards_per_partition": 3,
            },
            "num_shards_per_partition",
        ),
        (
            {"dataset": "digits", "partition": "pathological", "num_classes_per_partition": 11},
            "num_classes_per_partition",
        ),
        ({"dataset": "diabetes", "partition": "dirichlet"}, "partition"),
        ({"dataset": "digits", "quantity_skew": 1.0}, "quantity_skew"),
    ]:
        response = client.post("/simulations", json={"preset": "baseline", **body})
        assert response.status_code == 422, (body, response.text)
        assert [d["field"] for d in response.json()["detail"]] == [field], response.text


def test_a_large_synthetic_run_is_described_by_its_worker_not_by_the_api(sqlite_url: str) -> None:
    """The API makes a queued run's description itself only while that is cheap: a million
    synthetic rows and more are written by the worker that builds them anyway (409 until
    then); a stored description is served as stored."""
    from sqlalchemy.orm import sessionmaker

    from app.errors import Conflict
    from app.results import service
    from models import results_repo, simulations_repo
    from models.db import make_engine
    from models.migrate import upgrade_to_head

    upgrade_to_head(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    big = resolve_config(preset="baseline", num_clients=20_000, samples_per_client=100)
    try:
        with sessions.begin() as session:
            row = simulations_repo.create_simulation(
                session, owner="", config=big.model_dump(mode="json")
            )
        with sessions.begin() as session, pytest.raises(Conflict, match="2,000,000"):
            service.client_data(session, row.id, "")
        written = [
            {"client_id": i, "train_samples": 100, "test_samples": 0, "label_counts": None,
             "target_mean": [0.5], "target_std": [1.0]}
            for i in range(3)
        ]  # fmt: skip
        with sessions.begin() as session:
            results_repo.save_client_data(session, row.id, written)
            results_repo.save_client_data(session, row.id, [{**written[0], "train_samples": 7}])
        with sessions.begin() as session:
            # the first write stands; a row written without the flag has none; no round yet
            assert service.client_data(session, row.id, "") == [
                {**w, "malicious": None, "rounds_trained": 0} for w in written
            ]
    finally:
        engine.dispose()
