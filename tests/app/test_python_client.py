"""`scarcity.client.ScarcityClient` against the real server over HTTP: submit, stream the
rounds live, wait, fetch metrics / insights / clients, tag and find runs, compare, sweep, and
the service's errors raised with their detail."""

from __future__ import annotations

import sys

import pytest

from scarcity.client import ScarcityClient, ScarcityError
from tests.app.conftest import Server

SMALL = {"num_clients": 3, "rounds": 3, "samples_per_client": 20}


@pytest.fixture
def api(server: Server):
    with ScarcityClient(server.url) as client:
        yield client


def test_submit_stream_wait_and_fetch_a_run(api: ScarcityClient) -> None:
    run = api.submit("stage3", name="client test", tags={"via": "python"}, **SMALL)
    assert run["status"] == "queued" and run["config"]["num_clients"] == 3
    streamed = list(api.rounds(run["id"]))  # live until the end event
    assert [r["round"] for r in streamed] == [1, 2, 3]
    final = api.wait(run["id"])
    assert final["status"] == "succeeded"
    metrics = api.metrics(run["id"])
    assert [m["round"] for m in metrics] == [1, 2, 3]
    assert [m["loss"] for m in metrics] == [r["metrics"]["loss"] for r in streamed]
    insights = api.insights(run["id"], round=2)
    assert [i["client_id"] for i in insights] == [0, 1, 2] and all(
        i["round"] == 2 for i in insights
    )
    assert [c["train_samples"] for c in api.clients(run["id"])] == [20, 20, 20]
    # resuming the stream after round 2 gives round 3 only
    assert [r["round"] for r in api.rounds(run["id"], after_round=2)] == [3]
    # a run whose clients send no insights: empty, and a warning says why
    baseline = api.wait(api.submit("baseline", **SMALL)["id"])
    with pytest.warns(UserWarning, match="insight_exchange is off"):
        assert api.insights(baseline["id"]) == []


def test_tag_find_compare_and_errors(api: ScarcityClient) -> None:
    a = api.submit("stage2", learning_rate=0.01, tags={"study": "lr-client"}, **SMALL)
    b = api.submit("stage2", learning_rate=0.05, tags={"study": "lr-client"}, **SMALL)
    for run in (a, b):
        api.wait(run["id"], timeout=60)
    api.update(b["id"], name="fast", tags={"keep": "yes"})
    # pages of the server's cap (5 on this server) are followed to the end
    found = list(api.list(filter="tags.study = 'lr-client'", order_by="config.learning_rate"))
    assert [r["id"] for r in found] == [a["id"], b["id"]]
    assert found[1]["name"] == "fast" and found[1]["tags"] == {"study": "lr-client", "keep": "yes"}
    compared = api.compare(a["id"], b["id"])
    assert compared["differing_fields"] == ["learning_rate"]
    with pytest.raises(ScarcityError) as refused:
        api.submit("stage2", num_clients=0)
    assert refused.value.status == 422
    assert [d["field"] for d in refused.value.detail] == ["num_clients"]
    with pytest.raises(ScarcityError) as missing:
        api.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404


def test_a_small_sweep_through_the_client(api: ScarcityClient) -> None:
    sweep = api.sweep(
        {"preset": "stage2", **SMALL, "rounds": 2},
        {"learning_rate": {"values": [0.01, 0.05]}},
        seeds=[0, 1],
    )
    assert sweep["progress"]["total"] == 4
    for run in api.list(filter=f"tags.sweep = '{sweep['id']}'"):
        api.wait(run["id"], timeout=60)
    rows = api.sweep_results(sweep["id"])
    assert [r["params"] for r in rows] == [{"learning_rate": 0.01}, {"learning_rate": 0.05}]
    assert all(r["succeeded"] == 2 and r["metrics"]["loss"]["count"] == 2 for r in rows)


def test_frame_without_pandas_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from scarcity import client

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(ImportError, match=r"scarcity\[pandas\]"):
        client._frame([{"round": 1}])
