"""`GET /models` and runs of a non-linear model, against a real server process."""

from __future__ import annotations

import httpx
import pytest

from tests.service_processes import wait_for_status


def test_models_list_every_backbone_and_the_form_offers_them(client: httpx.Client) -> None:
    models = {m["name"]: m for m in client.get("/models").json()}
    assert list(models) == ["linear", "mlp", "cnn", "simple_cnn", "char_rnn"]
    assert models["mlp"]["parameters"] == {"hidden_sizes": [64]}
    assert models["cnn"]["parameters"] == {"cnn_channels": 8}
    assert models["linear"]["parameters"] == models["simple_cnn"]["parameters"] == {}
    assert models["char_rnn"]["parameters"] == {"rnn_hidden": 64, "rnn_layers": 1}
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SimulationCreate"]
    assert schema["properties"]["model"]["anyOf"][0]["enum"] == list(models)


def test_an_mlp_run_over_http_stores_its_config_and_rounds(client: httpx.Client) -> None:
    body = {
        "preset": "stage4",
        "dataset": "digits",
        "num_clients": 3,
        "rounds": 2,
        "model": "mlp",
        "hidden_sizes": [16, 8],
    }
    created = client.post("/simulations", json=body)
    assert created.status_code == 202, created.text
    assert created.json()["config"]["hidden_sizes"] == [16, 8]
    simulation_id = created.json()["id"]
    wait_for_status(client, simulation_id, {"succeeded"})
    rounds = client.get(f"/simulations/{simulation_id}/metrics").json()["rounds"]
    assert len(rounds) == 2 and 0 <= rounds[-1]["metrics"]["ensemble_accuracy"] <= 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "cnn"}, "model"),  # synthetic data are no 8×8 images
        ({"model": "simple_cnn"}, "model"),  # nor 28×28 ones
        ({"model": "resnet"}, "model"),
        ({"model": "mlp", "hidden_sizes": [0]}, "hidden_sizes"),
        ({"model": "mlp", "hidden_sizes": []}, "hidden_sizes"),
    ],
)
def test_a_model_that_cannot_be_built_is_422_naming_the_field(
    client: httpx.Client, body: dict, field: str
) -> None:
    response = client.post("/simulations", json=body)
    assert response.status_code == 422, response.text
    fields = [str(d["field"]) for d in response.json()["detail"]]
    assert any(f == field or f.startswith(f"{field}.") for f in fields), fields
