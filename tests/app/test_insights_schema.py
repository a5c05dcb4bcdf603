"""GET /simulations/{id}/insights has a typed schema (ClientInsightPublic) that the engine's
insights (scarcity.results.Insight.to_dict()) fit exactly: nothing dropped, renamed or added."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.schemas import ClientInsightPublic
from scarcity import resolve_config, run_simulation
from tests.service_processes import wait_for_status

SMALL = {"num_clients": 3, "rounds": 2, "seed": 7}
CASES = {
    "stage8 synthetic": {"preset": "stage8", **SMALL},
    # the personal score is the shared model's: the supervised hybrid keeps it
    "stage8 digits, personal accuracy": {
        "preset": "stage8", "dataset": "digits", "client_test_fraction": 0.2,
        "federated_averaging": True, "label_free": False, **SMALL,
    },
    "stage3 diabetes, personal loss": {
        "preset": "stage3", "dataset": "diabetes", "client_test_fraction": 0.2,
        "federated_averaging": True, **SMALL,
    },
}  # fmt: skip


def _engine_insights(request: dict[str, Any]) -> list[dict[str, Any]]:
    results = run_simulation(resolve_config(request))
    return [insight.to_dict() for r in results for insight in r.insights]


@pytest.mark.parametrize("request_body", CASES.values(), ids=CASES.keys())
def test_the_engines_insights_fit_the_schema_exactly(request_body: dict[str, Any]) -> None:
    insights = _engine_insights(request_body)
    assert insights
    for insight in insights:
        parsed = ClientInsightPublic.model_validate(insight)
        assert parsed.model_dump(mode="json") == insight
        assert parsed.experts and all(isinstance(e.summary, dict) for e in parsed.experts.values())
    personal = {k for i in insights for k in i if k.startswith("personal_")}
    wanted = {"dataset": set(), "digits": {"personal_accuracy"}, "diabetes": {"personal_loss"}}
    assert personal == wanted[request_body.get("dataset", "dataset")]


def test_served_insights_are_the_engines_and_the_document_types_them(
    client: httpx.Client,
) -> None:
    # with and without the optional personal score (absent, not null, when there is none)
    for body in (CASES["stage8 digits, personal accuracy"], CASES["stage8 synthetic"]):
        sim = client.post("/simulations", json=body).json()
        wait_for_status(client, sim["id"], {"succeeded"})
        served = client.get(f"/simulations/{sim['id']}/insights").json()["insights"]
        assert [i["insight"] for i in served] == _engine_insights(body)
        assert all(i["client_id"] == i["insight"]["client_id"] for i in served)

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    row = schemas["InsightPublic"]["properties"]["insight"]
    assert row == {"$ref": "#/components/schemas/ClientInsightPublic"}
    insight = schemas["ClientInsightPublic"]
    assert set(insight["required"]) == {
        "client_id", "loss", "mean_grad", "uncertainty", "loss_improvement", "selected_expert",
        "experts",
    }  # fmt: skip
    # the personal scores are optional numbers, never null
    assert insight["properties"]["personal_accuracy"]["type"] == "number"
    assert insight["properties"]["experts"]["additionalProperties"] == {
        "$ref": "#/components/schemas/ExpertReportPublic"
    }
