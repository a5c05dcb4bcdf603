"""Who took part in each round (`participants` in `/metrics`) and who attacked (`malicious` in
`/clients`), against a real server process, checked against the engine run here."""

from __future__ import annotations

import csv
import io

import httpx

from scarcity import resolve_config, run_simulation
from scarcity.attacks import malicious_clients
from scarcity.client import ScarcityClient
from tests.app.conftest import Server
from tests.service_processes import wait_for_status

SAMPLED = {
    "preset": "baseline",
    "num_clients": 10,
    "clients_per_round": 4,
    "rounds": 4,
    "samples_per_client": 20,
    "seed": 7,
    "malicious_fraction": 0.2,
    "attack": "sign_flip",
}


def _finished(client: httpx.Client, body: dict[str, object]) -> dict[str, object]:
    created = client.post("/simulations", json=body)
    assert created.status_code == 202, created.text
    sim: dict[str, object] = created.json()
    wait_for_status(client, str(sim["id"]), {"succeeded"})
    return sim


def _csv(client: httpx.Client, path: str) -> list[dict[str, str]]:
    table = client.get(path, headers={"Accept": "text/csv"})
    assert table.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(table.text)))


def test_a_sampled_runs_rounds_name_the_engines_participants_in_both_executions(
    client: httpx.Client, server: Server
) -> None:
    stored = {}
    for execution in ("batched", "reference"):
        sim = _finished(client, {**SAMPLED, "execution": execution})
        rows = client.get(f"/simulations/{sim['id']}/metrics").json()["rounds"]
        # the same config run here, in process
        expected = run_simulation(resolve_config(sim["config"]))
        participants = [row["participants"] for row in rows]
        assert participants == [list(r.participants or ()) for r in expected]
        assert all(len(ids) == 4 for ids in participants)
        assert [row["metrics"]["clients_sampled"] for row in rows] == [4.0] * 4
        # a metric filter keeps them; the CSV's last column has them
        some = client.get(f"/simulations/{sim['id']}/metrics", params={"names": "loss"})
        assert [row["participants"] for row in some.json()["rounds"]] == participants
        table = _csv(client, f"/simulations/{sim['id']}/metrics")
        assert [[int(i) for i in row["participants"].split()] for row in table] == participants
        with ScarcityClient(server.url) as api:
            assert [row["participants"] for row in api.metrics(str(sim["id"]))] == participants
        stored[execution] = participants
        # participation per client: the rounds each one trained in, JSON and CSV
        clients = client.get(f"/simulations/{sim['id']}/clients").json()["clients"]
        counted = [sum(c["client_id"] in ids for ids in participants) for c in clients]
        assert [c["rounds_trained"] for c in clients] == counted and sum(counted) == 16
        rows = _csv(client, f"/simulations/{sim['id']}/clients")
        assert [int(r["rounds_trained"]) for r in rows] == counted
    assert stored["batched"] == stored["reference"]


def test_the_clients_malicious_flags_are_the_runs_attackers_json_and_csv(
    client: httpx.Client,
) -> None:
    sim = _finished(client, SAMPLED)
    attackers = malicious_clients(resolve_config(sim["config"])).tolist()
    assert len(attackers) == 2
    clients = client.get(f"/simulations/{sim['id']}/clients").json()["clients"]
    assert [c["client_id"] for c in clients if c["malicious"]] == attackers
    assert sum(c["malicious"] is False for c in clients) == 8
    rows = _csv(client, f"/simulations/{sim['id']}/clients")
    assert [int(r["client_id"]) for r in rows if r["malicious"] == "true"] == attackers
    assert {r["malicious"] for r in rows} == {"true", "false"}


def test_a_run_every_client_takes_part_in_has_no_participants_and_no_attackers(
    client: httpx.Client,
) -> None:
    body = {
        key: value
        for key, value in SAMPLED.items()
        if key not in ("clients_per_round", "malicious_fraction", "attack")
    }
    sim = _finished(client, body)
    rows = client.get(f"/simulations/{sim['id']}/metrics").json()["rounds"]
    assert [row["participants"] for row in rows] == [None] * 4
    assert all("clients_sampled" not in row["metrics"] for row in rows)
    table = client.get(f"/simulations/{sim['id']}/metrics", params={"format": "csv"}).text
    assert "participants" not in table.splitlines()[0]
    clients = client.get(f"/simulations/{sim['id']}/clients").json()["clients"]
    assert [c["malicious"] for c in clients] == [False] * 10
    assert [c["rounds_trained"] for c in clients] == [4] * 10  # every client, every round
