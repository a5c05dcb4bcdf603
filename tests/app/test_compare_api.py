"""`GET /compare`: the fields that set runs apart and their metrics aligned by round."""

from __future__ import annotations

import httpx

from tests.service_processes import wait_for_status


def test_compare_names_the_differing_fields_and_aligns_rounds(client: httpx.Client) -> None:
    base = {"preset": "stage2", "num_clients": 2, "samples_per_client": 8}
    one = client.post("/simulations", json=base | {"rounds": 2, "name": "slow"}).json()
    two = client.post("/simulations", json=base | {"rounds": 3, "learning_rate": 0.1}).json()
    for sim in (one, two):
        wait_for_status(client, sim["id"], {"succeeded"})
    response = client.get("/compare", params={"ids": f"{one['id']}, {two['id']}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["differing_fields"] == ["rounds", "learning_rate"]
    runs = body["runs"]
    assert [r["id"] for r in runs] == [one["id"], two["id"]]
    assert runs[0]["differing"] == {"rounds": 2, "learning_rate": 0.01}
    assert runs[0]["label"] == "slow · rounds=2, learning_rate=0.01"
    assert runs[1]["label"] == "rounds=3, learning_rate=0.1"
    assert body["rounds"] == [1, 2, 3]
    for k, sim in enumerate((one, two)):
        own = client.get(f"/simulations/{sim['id']}/metrics").json()["rounds"]
        expected = [r["metrics"]["test_loss"] for r in own] + [None] * (3 - len(own))
        assert body["metrics"]["test_loss"][k] == expected
    assert set(body["metrics"]) == {
        "loss",
        "test_loss",
        "ensemble_loss",  # stage 1 on: the clients' expert ensembles on held-out rows
        "data_mean",
        "data_std",
        "drift",
        "bytes_up",  # what every round moves (engine_version 8)
        "bytes_down",
        "bytes_up_total",
        "bytes_down_total",
    }

    same = client.post("/simulations", json=base | {"rounds": 2, "name": "slow again"}).json()
    twins = client.get("/compare", params={"ids": f"{one['id']},{same['id']}"}).json()
    assert twins["differing_fields"] == [] and twins["runs"][1]["label"] == "slow again"


def test_compare_rejects_bad_id_lists(client: httpx.Client) -> None:
    sim = client.post("/simulations", json={"preset": "stage1", "rounds": 1}).json()["id"]
    missing = "00000000-0000-4000-8000-000000000000"
    for ids, words in [
        (sim, "got 1"),
        (",".join([sim] * 2), "twice"),
        (f"{sim},nope", "'nope' is not a simulation id"),
        (",".join(f"00000000-0000-4000-8000-{k:012d}" for k in range(21)), "got 21"),
    ]:
        response = client.get("/compare", params={"ids": ids})
        assert response.status_code == 422, ids
        assert response.json()["detail"][0]["field"] == "ids" and words in response.text
    assert client.get("/compare").status_code == 422
    unknown = client.get("/compare", params={"ids": f"{sim},{missing}"})
    assert unknown.status_code == 404 and missing in unknown.text
