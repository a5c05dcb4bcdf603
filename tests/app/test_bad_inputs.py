"""The issue's table of bad inputs that test_simulations_api.py does not already cover: each gets
a 4xx whose message names the problem, and no simulation is created."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest


def newest_id(client: httpx.Client) -> str | None:
    data = client.get("/simulations", params={"limit": 1}).json()["data"]
    return data[0]["id"] if data else None


@pytest.fixture
def nothing_created(client: httpx.Client) -> Iterator[None]:
    before = newest_id(client)
    yield
    assert newest_id(client) == before, "a bad request created a simulation"


def detail_text(response: httpx.Response) -> str:
    return json.dumps(response.json()["detail"])


def names_parameter(response: httpx.Response, name: str) -> bool:
    """Query errors name the parameter as `query.<name>` (or `<name>` for service checks)."""
    return any(d["field"] in (name, f"query.{name}") for d in response.json()["detail"])


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        # wrong types: the schema's types, no coercion of strings or booleans
        ({"num_clients": "5"}, "num_clients", "valid integer"),
        ({"drift": False}, "drift", "valid number"),
        ({"gossip": "yes"}, "gossip", "valid boolean"),
        ({"preset": ["stage8"]}, "preset", "stage8"),
        ({"rounds": {"n": 2}}, "rounds", "valid integer"),
        ({"num_clients": 2.5}, "num_clients", "integer"),
        # negative and huge values
        ({"samples_per_client": -5}, "samples_per_client", "greater than or equal to 2"),
        ({"rounds": 10**30}, "rounds", "less than or equal to 20"),
        ({"seed": 2**31}, "seed", str(2**31 - 1)),
        ({"learning_rate": 1e308}, "learning_rate", "less than or equal to 10"),
        ({"drift": -0.1}, "drift", "greater than or equal to 0"),
        # unknown preset / data set / enum value, unknown and forbidden fields
        ({"preset": "STAGE8"}, "preset", "stage1"),
        ({"dataset": "cifar10"}, "dataset", "breast_cancer"),
        ({"router_strategy": "best"}, "router_strategy", "round_robin"),
        ({"owner": "someone-else"}, "owner", "unknown field"),
        ({"status": "succeeded"}, "status", "unknown field"),
    ],
)
@pytest.mark.usefixtures("nothing_created")
def test_bad_values_are_422_naming_the_field(
    client: httpx.Client, body: dict, field: str, words: str
) -> None:
    response = client.post("/simulations", json=body)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["detail"]]
    assert words in detail_text(response)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        # a combination the config refuses (its validation, no data read)
        ({"preset": "stage1", "meta_reptile": True}, "meta_reptile", "needs federated_averaging"),
        ({"preset": "stage8", "replay_size": 20}, "replay_size", "label_free does not run"),
        ({"preset": "baseline", "meta_init": True}, "meta_init", "scenario arrivals"),
        ({"model": "cnn"}, "model", "cnn takes 8×8 images"),
        ({"preset": "baseline", "drift_detector": "adwin"}, "drift_detector", "expert_routing"),
        ({"preset": "stage8", "drift_detector": "adwin"}, "drift_detector", "label_free"),
        ({"preset": "stage4", "gossip_peers": "insight"}, "gossip_peers", "needs gossip"),
        ({"preset": "stage8", "router_strategy": "loss"}, "router_strategy", "label_free"),
        # a split the run plan finds cannot be made (the data set tried)
        (
            {
                "preset": "stage2",
                "dataset": "wine",
                "partition": "shard",
                "num_clients": 50,
                "num_shards_per_partition": 3,
            },
            "num_shards_per_partition",
            "",
        ),
        (
            {
                "preset": "stage2",
                "dataset": "iris",
                "partition": "pathological",
                "num_classes_per_partition": 4,
            },
            "num_classes_per_partition",
            "",
        ),
    ],
)
@pytest.mark.usefixtures("nothing_created")
def test_a_config_the_engine_refuses_is_one_422_naming_the_field(
    client: httpx.Client, body: dict, field: str, words: str
) -> None:
    response = client.post("/simulations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "validation_error"
    [detail] = response.json()["detail"]
    assert detail["field"] == field
    assert words in detail["message"] and not detail["message"].startswith(f"{field}:")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"preset": "stage8",', "malformed JSON"),
        (b"{'preset': 'stage8'}", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"stage8"', "must be a JSON object, not a string"),
        (b"null", "must be a JSON object, not null"),
        (b"42", "must be a JSON object"),
        (b'{"drift": NaN}', "finite number"),  # Python's json reads NaN; the API refuses it
        (b'{"variance_threshold": Infinity}', "finite number"),
    ],
)
@pytest.mark.usefixtures("nothing_created")
def test_malformed_json_is_422_saying_what_is_wrong(
    client: httpx.Client, raw: bytes, words: str
) -> None:
    response = client.post(
        "/simulations", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "validation_error"
    assert words in detail_text(response)


@pytest.mark.usefixtures("nothing_created")
def test_missing_body_is_422_asking_for_one(client: httpx.Client) -> None:
    response = client.post("/simulations")
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body"
    assert "request body required" in detail_text(response)


@pytest.mark.usefixtures("nothing_created")
def test_body_that_is_not_utf8_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/simulations",
        content=b'{"preset": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", b'{"preset": "stage1"}'),
        ("application/x-www-form-urlencoded", b"preset=stage1"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"\r\n'),
        ("application/xml", b"<preset>stage1</preset>"),
    ],
)
@pytest.mark.usefixtures("nothing_created")
def test_non_json_content_type_is_415(client: httpx.Client, content_type: str, raw: bytes) -> None:
    response = client.post("/simulations", content=raw, headers={"Content-Type": content_type})
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["type"] == "unsupported_media_type"
    assert "application/json" in body["detail"] and content_type in body["detail"]


def test_json_with_charset_or_a_json_suffix_is_accepted(client: httpx.Client) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = client.post(
            "/simulations",
            content=b'{"preset": "stage1", "rounds": 1}',
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 202, (content_type, response.text)


def _oversized() -> bytes:
    return json.dumps({"preset": "stage8", "pad": "x" * 10_000}).encode()


@pytest.mark.usefixtures("nothing_created")
def test_oversized_body_with_content_length_is_413(client: httpx.Client) -> None:
    response = client.post(
        "/simulations", content=_oversized(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {
        "type": "payload_too_large",
        "detail": "request body exceeds 4096 bytes (SCARCITY_MAX_BODY_BYTES)",
    }


@pytest.mark.usefixtures("nothing_created")
def test_oversized_chunked_body_is_413(client: httpx.Client) -> None:
    """No Content-Length: the cap is counted while the body arrives (not a 400 parse error)."""
    data = _oversized()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    response = client.post(
        "/simulations", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413, response.text
    assert response.json()["type"] == "payload_too_large"
    assert "4096" in response.json()["detail"]


def test_a_chunked_body_under_the_cap_is_accepted(client: httpx.Client) -> None:
    data = b'{"preset": "stage1", "rounds": 1}'
    response = client.post(
        "/simulations",
        content=iter([data[:10], data[10:]]),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/simulations?limit=0", "limit"),
        ("/simulations?status=done", "status"),
        ("/simulations?preset=stage9", "preset"),
        ("/simulations?cursor=bm90LWEtY3Vyc29y", "cursor"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(
    client: httpx.Client, path: str, field: str
) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert names_parameter(response, field)


@pytest.mark.parametrize(
    "query",
    ["from_round=0", "to_round=99999999999999999999999", "names=" + "x" * 2001, "format=xml"],
)
def test_bad_metrics_queries_are_422(client: httpx.Client, query: str) -> None:
    sim = client.post("/simulations", json={"preset": "stage1", "rounds": 1}).json()
    response = client.get(f"/simulations/{sim['id']}/metrics?{query}")
    assert response.status_code == 422, response.text
    assert names_parameter(response, query.split("=")[0])


@pytest.mark.parametrize(
    "query", ["offset=99999999999999999999", "client_id=-1", "round=2147483648", "limit=10001"]
)
def test_huge_or_negative_insight_queries_are_422_not_500(client: httpx.Client, query: str) -> None:
    sim = client.post("/simulations", json={"preset": "stage1", "rounds": 1}).json()
    response = client.get(f"/simulations/{sim['id']}/insights?{query}")
    assert response.status_code == 422, response.text
    assert names_parameter(response, query.split("=")[0])


def test_wrong_method_is_405_listing_every_allowed_method(client: httpx.Client) -> None:
    response = client.put("/simulations")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    missing = "00000000-0000-4000-8000-000000000000"
    response = client.put(f"/simulations/{missing}")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PATCH"  # PATCH: rename, tag, annotate
    assert "PUT" in response.json()["detail"]
