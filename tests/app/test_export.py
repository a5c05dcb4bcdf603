"""`scarcity model` and `scarcity export mlflow|tensorboard` against a real server: what the
trackers' own readers find (MLflow's client, TensorBoard's event accumulator) is each run's
config, every metric of every round and the final model the service serves."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from scarcity import artifacts
from scarcity.cli import main
from scarcity.export import SIMULATION_TAG, config_params
from tests.app.conftest import Server
from tests.service_processes import wait_for_status

SMALL = {"num_clients": 3, "rounds": 3, "samples_per_client": 20}
RUNS = [
    {"preset": "stage2", "name": "fedavg", "tags": {"study": "export"}, **SMALL},
    {"preset": "stage1", "seed": 4, **SMALL},  # no global model: exported without one
]


@pytest.fixture(scope="module")
def finished(server: Server) -> list[dict[str, object]]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ids = []
        for body in RUNS:
            created = client.post("/simulations", json=body)
            assert created.status_code == 202, created.text
            ids.append(str(created.json()["id"]))
        for simulation_id in ids:
            wait_for_status(client, simulation_id, {"succeeded"})
        return [
            {
                **client.get(f"/simulations/{i}").json(),
                "rounds": client.get(f"/simulations/{i}/metrics").json()["rounds"],
            }
            for i in ids
        ]


def test_scarcity_model_writes_the_file_the_api_serves(
    server: Server,
    finished: list[dict[str, object]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_id = str(finished[0]["id"])
    out = tmp_path / "m" / "global.safetensors"
    assert main(["model", run_id, "--round", "2", "-o", str(out), "--url", server.url]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    served = httpx.get(f"{server.url}/simulations/{run_id}/model", params={"round": 2}).content
    assert out.read_bytes() == served
    experts = tmp_path / "experts.pt"
    argv = ["model", run_id, "--round", "3", "--client", "2", "--format", "torch"]
    assert main([*argv, "-o", str(experts), "--url", server.url]) == 0
    loaded = artifacts.decode(experts.read_bytes(), "torch")
    assert sorted(loaded) == sorted(
        f"{e}.{p}.{n}"
        for e in ("StructureExpert", "DriftExpert")
        for p in ("model", "encoder", "decoder")
        for n in ("weight", "bias")
    )
    # refusals print the service's reason and exit 1
    stage1 = str(finished[1]["id"])
    assert main(["model", stage1, "--round", "1", "-o", str(out), "--url", server.url]) == 1
    assert "HTTP 409" in capsys.readouterr().err


def test_export_mlflow_is_read_back_by_mlflows_client(
    server: Server, finished: list[dict[str, object]], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = [str(run["id"]) for run in finished]
    for _ in range(2):  # a second export replaces the first
        assert main(["export", "mlflow", *ids, "--to", uri, "--url", server.url]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("scarcity")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags[SIMULATION_TAG] for r in found) == sorted(ids)
    for run in finished:
        (mlflow_run,) = [r for r in found if r.data.tags[SIMULATION_TAG] == run["id"]]
        assert mlflow_run.info.status == "FINISHED"
        assert mlflow_run.info.run_name == (run["name"] or run["id"])
        config = run["config"]
        assert isinstance(config, dict)
        assert mlflow_run.data.params == config_params(config)
        assert mlflow_run.data.params["learning_rate"] == str(config["learning_rate"])
        rounds = run["rounds"]
        assert isinstance(rounds, list)
        names = {name for row in rounds for name in row["metrics"]}
        assert set(mlflow_run.data.metrics) == names
        for name in names:
            history = client.get_metric_history(mlflow_run.info.run_id, name)
            assert sorted((m.step, m.value) for m in history) == [
                (row["round"], row["metrics"][name]) for row in rounds if name in row["metrics"]
            ]
        artifacts_listed = [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "model")]
        if config["federated_averaging"]:
            assert mlflow_run.data.tags["study"] == "export"
            assert sorted(artifacts_listed) == [
                "model/architecture.json",
                "model/model.safetensors",
            ]
            local = client.download_artifacts(
                mlflow_run.info.run_id, "model/model.safetensors", str(tmp_path)
            )
            served = httpx.get(f"{server.url}/simulations/{run['id']}/model", params={"round": 3})
            ours, theirs = (
                artifacts.decode(Path(local).read_bytes()),
                artifacts.decode(served.content),
            )
            assert ours.keys() == theirs.keys()
            assert all(torch.equal(ours[k], theirs[k]) for k in ours)
        else:
            assert artifacts_listed == []
    # the artifacts lie beside the database, not in the working directory
    assert (tmp_path / "mlruns").is_dir() and not Path("mlruns").exists()


def test_export_tensorboard_is_read_back_by_tensorboards_reader(
    server: Server, finished: list[dict[str, object]], tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ids = [str(run["id"]) for run in finished]
    for _ in range(2):  # a second export replaces the first
        assert (
            main(["export", "tensorboard", *ids, "--to", str(tmp_path), "--url", server.url]) == 0
        )
    for run in finished:
        folder = tmp_path / str(run["id"])
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1
        events = EventAccumulator(str(folder))
        events.Reload()
        rounds = run["rounds"]
        assert isinstance(rounds, list)
        names = {name for row in rounds for name in row["metrics"]}
        assert set(events.Tags()["scalars"]) == names
        for name in names:
            scalars = events.Scalars(name)
            assert [(s.step, s.value) for s in scalars] == [
                # event files hold float32 scalars
                (row["round"], float(np.float32(row["metrics"][name])))
                for row in rounds
                if name in row["metrics"]
            ]
