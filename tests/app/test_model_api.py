"""`GET /simulations/{id}/model` against a real server: a downloaded global model, loaded back
into its backbone, scores the run's own test set as the stored round says; a client's experts
equal those of the engine run here; rounds and runs without a model are refused, naming why."""

from __future__ import annotations

import uuid

import httpx
import pytest
import torch
import torch.nn.functional as F

from scarcity import artifacts
from scarcity.backbones import make_backbone
from scarcity.client import ScarcityClient, ScarcityError
from scarcity.config import SimulationConfig
from scarcity.core.data import make_federated_data
from scarcity.simulation import Simulation
from tests.app.conftest import Server
from tests.service_processes import wait_for_status

DIGITS = {
    "preset": "baseline",
    "dataset": "digits",
    "model": "mlp",
    "hidden_sizes": [16],
    "num_clients": 3,
    "rounds": 3,
    "seed": 3,
}
EXPERTS = {"preset": "stage2", "num_clients": 3, "rounds": 3, "samples_per_client": 20}


def _run(client: httpx.Client, body: dict[str, object], status: str = "succeeded") -> str:
    created = client.post("/simulations", json=body)
    assert created.status_code == 202, created.text
    simulation_id = str(created.json()["id"])
    wait_for_status(client, simulation_id, {status})
    return simulation_id


def _stored(client: httpx.Client, simulation_id: str, round: int) -> dict[str, float]:
    rows = client.get(f"/simulations/{simulation_id}/metrics").json()["rounds"]
    return dict(next(row["metrics"] for row in rows if row["round"] == round))


def test_a_downloaded_model_reproduces_the_stored_rounds_test_metrics(
    client: httpx.Client, server: Server
) -> None:
    simulation_id = _run(client, DIGITS)
    config = SimulationConfig.model_validate(
        client.get(f"/simulations/{simulation_id}").json()["config"]
    )
    data = make_federated_data(config)
    for round in (1, 2):
        x, y = data.test_set(round)
        response = client.get(f"/simulations/{simulation_id}/model", params={"round": round})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/octet-stream"
        assert f"round-{round}-global.safetensors" in response.headers["content-disposition"]
        # the README's two lines: download, load back into the backbone
        model = make_backbone(config).template()
        model.load_state_dict(artifacts.decode(response.content))
        with torch.no_grad():
            logits = model(x)
        stored = _stored(client, simulation_id, round)
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
        assert abs(accuracy - stored["test_accuracy"]) <= 1e-6
        assert abs(float(F.cross_entropy(logits, y)) - stored["test_loss"]) <= 1e-6
        assert 0.1 < accuracy < 1  # a trained model, not an empty one
    # the two rounds are different models; the torch format holds the same tensors
    with ScarcityClient(server.url) as api:
        first = artifacts.decode(api.model(simulation_id, 1))
        second = artifacts.decode(api.model(simulation_id, 2))
        as_torch = artifacts.decode(api.model(simulation_id, 2, format="torch"), "torch")
        described = api.model_architecture(simulation_id, 2)
    assert not torch.equal(first["0.weight"], second["0.weight"])
    assert second.keys() == as_torch.keys()
    assert all(torch.equal(second[name], as_torch[name]) for name in second)
    # the architecture: in the file's metadata and at the sibling endpoint, naming every tensor
    assert described["backbone"] == {
        "name": "mlp",
        "fields": {"hidden_sizes": [16]},
        "input_dim": 64,
        "output_dim": 10,
        "description": described["backbone"]["description"],
    }
    assert described["task"] == "classification" and described["kind"] == "global"
    assert {t["name"]: t["shape"] for t in described["tensors"]} == {
        name: list(t.shape) for name, t in second.items()
    }
    response = client.get(f"/simulations/{simulation_id}/model", params={"round": 2})
    in_file = artifacts.read_description(response.content)
    assert in_file == {**described, "simulation_id": simulation_id, "round": 2}


def test_a_clients_experts_are_the_engines(client: httpx.Client) -> None:
    simulation_id = _run(client, EXPERTS)
    config = SimulationConfig.model_validate(
        client.get(f"/simulations/{simulation_id}").json()["config"]
    )
    engine = Simulation(config)
    engine.run_round()
    engine.run_round()
    assert engine.pool is not None
    response = client.get(
        f"/simulations/{simulation_id}/model", params={"round": 2, "client_id": 1}
    )
    assert response.status_code == 200, response.text
    downloaded = artifacts.decode(response.content)
    expected = {
        f"{name}.{key}": value
        for index, name in enumerate(engine.pool.names)
        for key, value in engine.pool.expert_weights(1, index).items()
    }
    assert (
        sorted(downloaded)
        == sorted(expected)
        == sorted(
            f"{e}.{part}.{p}"
            for e in ("StructureExpert", "DriftExpert")
            for part in ("model", "encoder", "decoder")
            for p in ("weight", "bias")
        )
    )
    assert all(torch.equal(downloaded[name], expected[name]) for name in expected)
    described = client.get(
        f"/simulations/{simulation_id}/model/architecture", params={"round": 2, "client_id": 1}
    ).json()
    assert described["kind"] == "client_experts" and described["experts"] == [
        "StructureExpert",
        "DriftExpert",
    ]
    assert {t["name"]: t["shape"] for t in described["tensors"]} == {
        name: list(t.shape) for name, t in downloaded.items()
    }


@pytest.mark.parametrize("path", ["/model", "/model/architecture"])
def test_rounds_and_runs_without_a_model_are_refused_naming_why(
    client: httpx.Client, path: str
) -> None:
    # stage2 at learning rate 5 diverges in round 3, before its worker wrote a round
    failed = _run(client, {**EXPERTS, "rounds": 5, "learning_rate": 5.0}, status="failed")
    late = client.get(f"/simulations/{failed}{path}", params={"round": 2})
    assert late.status_code == 409
    assert "round 2 has not run (failed, 0 rounds stored)" in late.json()["detail"]
    beyond = client.get(f"/simulations/{failed}{path}", params={"round": 6})
    assert beyond.status_code == 422 and beyond.json()["detail"][0]["field"] == "round"
    stranger = client.get(f"/simulations/{failed}{path}", params={"round": 1, "client_id": 3})
    assert stranger.status_code == 422 and stranger.json()["detail"][0]["field"] == "client_id"
    # stage1 shares insights, not weights: no global model, but every client has experts
    stage1 = _run(client, {**EXPERTS, "preset": "stage1"})
    refused = client.get(f"/simulations/{stage1}{path}", params={"round": 1})
    assert refused.status_code == 409 and "no global model" in refused.json()["detail"]
    assert (
        client.get(f"/simulations/{stage1}{path}", params={"round": 1, "client_id": 0}).status_code
        == 200
    )
    # the baseline's clients hold the shared model only
    baseline = _run(client, {**EXPERTS, "preset": "baseline", "rounds": 1})
    none = client.get(f"/simulations/{baseline}{path}", params={"round": 1, "client_id": 0})
    assert none.status_code == 409 and "no experts" in none.json()["detail"]
    missing = client.get(
        f"/simulations/00000000-0000-0000-0000-000000000000{path}", params={"round": 1}
    )
    assert missing.status_code == 404
    assert client.get(f"/simulations/{baseline}{path}").status_code == 422  # round is required


def test_another_owners_run_has_no_model(keyed_server: Server) -> None:
    with ScarcityClient(keyed_server.url, api_key="key-a") as a:
        run = a.submit(**EXPERTS)
        a.wait(run["id"], timeout=60)
        assert artifacts.decode(a.model(run["id"], 1))
    with ScarcityClient(keyed_server.url, api_key="key-b") as b, pytest.raises(ScarcityError) as no:
        b.model(run["id"], 1)
    assert no.value.status == 404


def test_a_round_the_replay_does_not_reproduce_or_too_long_to_replay_is_refused(
    client: httpx.Client, server: Server
) -> None:
    from sqlalchemy import create_engine, update
    from sqlalchemy.orm import Session

    from models import RoundMetrics

    simulation_id = _run(client, EXPERTS)
    stored = _stored(client, simulation_id, 1)
    engine = create_engine(server._env["SCARCITY_DATABASE_URL"])
    with Session(engine) as session, session.begin():
        # round 1 as if another CPU had rounded it otherwise; round 3 as if it had taken long
        tampered = {**stored, "test_loss": stored["test_loss"] * (1 + 1e-4)}
        key = (RoundMetrics.simulation_id == uuid.UUID(simulation_id),)
        session.execute(
            update(RoundMetrics).where(*key, RoundMetrics.round == 1).values(metrics=tampered)
        )
        session.execute(
            update(RoundMetrics)
            .where(*key, RoundMetrics.round == 3)
            .values(duration_seconds=1000.0)
        )
    engine.dispose()
    path = f"/simulations/{simulation_id}/model"
    differ = client.get(path, params={"round": 1})
    assert differ.status_code == 409
    assert "did not reproduce its stored metrics (test_loss: " in differ.json()["detail"]
    assert client.get(path, params={"round": 2}).status_code == 200  # untouched
    slow = client.get(path, params={"round": 3})
    assert slow.status_code == 409
    assert "above 120 s (SCARCITY_MODEL_REPLAY_SECONDS)" in slow.json()["detail"]
