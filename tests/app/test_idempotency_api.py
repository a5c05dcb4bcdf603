"""`Idempotency-Key`: the same key sent twice creates one simulation (or sweep)."""

from __future__ import annotations

import uuid

import httpx

BODY = {"preset": "stage1", "rounds": 1, "name": "idempotent"}


def count_named(client: httpx.Client, name: str) -> int:
    page = client.get("/simulations", params={"filter": f"name = '{name}'"}).json()
    return len(page["data"])


def test_the_same_key_twice_creates_one_simulation(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    name = f"idem {key[:8]}"
    first = client.post(
        "/simulations", json=BODY | {"name": name}, headers={"Idempotency-Key": key}
    )
    assert first.status_code == 202, first.text
    again = client.post(
        "/simulations", json=BODY | {"name": name}, headers={"Idempotency-Key": key}
    )
    assert again.status_code == 202
    assert again.json() == first.json()  # the first answer, as it was
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert count_named(client, name) == 1

    other = client.post("/simulations", json=BODY | {"name": "x"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["detail"][0]["field"] == "Idempotency-Key"
    # Without a key, or with a new one, the same body creates another.
    assert client.post("/simulations", json=BODY | {"name": name}).status_code == 202
    fresh = {"Idempotency-Key": str(uuid.uuid4())}
    assert client.post("/simulations", json=BODY | {"name": name}, headers=fresh).status_code == 202
    assert count_named(client, name) == 3


def test_a_refused_request_does_not_use_up_its_key(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    bad = client.post("/simulations", json={"num_clients": 0}, headers={"Idempotency-Key": key})
    assert bad.status_code == 422
    name = f"after 422 {key[:8]}"
    good = client.post("/simulations", json=BODY | {"name": name}, headers={"Idempotency-Key": key})
    assert good.status_code == 202 and count_named(client, name) == 1


def test_the_same_key_twice_creates_one_sweep(client: httpx.Client) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    request = {"base": {"preset": "stage1", "rounds": 1}, "seeds": [0, 1]}
    first = client.post("/sweeps", json=request, headers=key)
    again = client.post("/sweeps", json=request, headers=key)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    sweeps = client.get("/sweeps", params={"limit": 5}).json()["data"]
    assert [s["id"] for s in sweeps].count(first.json()["id"]) == 1
    runs = client.get(
        "/simulations", params={"filter": f"tags.sweep = '{first.json()['id']}'"}
    ).json()["data"]
    assert len(runs) == 2
    # A key belongs to one endpoint: the sweep's key does not create a simulation.
    used = client.post("/simulations", json=BODY, headers=key)
    assert used.status_code == 422 and "POST /sweeps" in used.text
