"""With SCARCITY_API_KEYS set, a simulation belongs to the key that created it."""

from __future__ import annotations

import httpx

from tests.app.conftest import Server


def test_keys_are_required_and_owners_are_isolated(keyed_server: Server) -> None:
    url = keyed_server.url
    anonymous = httpx.post(f"{url}/simulations", json={"preset": "stage1"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert (
        httpx.get(f"{url}/simulations", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    assert httpx.get(f"{url}/healthz").status_code == 200
    schema = httpx.get(f"{url}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    create = schema["paths"]["/simulations"]["post"]
    assert create["security"] == [{"HTTPBearer": []}] and "401" in create["responses"]
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    sim = httpx.post(f"{url}/simulations", json={"preset": "stage1", "rounds": 1}, headers=a).json()
    assert httpx.get(f"{url}/simulations/{sim['id']}", headers=a).status_code == 200
    for method, path in [
        ("GET", ""),
        ("GET", "/metrics"),
        ("GET", "/events"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ]:
        response = httpx.request(method, f"{url}/simulations/{sim['id']}{path}", headers=b)
        assert response.status_code == 404, (method, path)
    assert httpx.get(f"{url}/simulations", headers=b).json()["data"] == []
    assert [s["id"] for s in httpx.get(f"{url}/simulations", headers=a).json()["data"]] == [
        sim["id"]
    ]
