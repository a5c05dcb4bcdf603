"""Runs of a Scarcity service into the experiment trackers: MLflow and TensorBoard.

Each run is read from the service over HTTP (`scarcity.client`), so the export works against
a remote one: its resource (config, name, tags, status, times), every stored round's metrics
and, where the run has one, its final global model (`GET /simulations/{id}/model`).

- MLflow (`to_mlflow`, with MLflow's own client): one MLflow run per simulation in one
  experiment, the config as params (lists and nulls as JSON), every metric's history with
  step = round, the name, tags, status and times as the run's, and the final model as the
  artifacts `model/model.safetensors` and `model/architecture.json`. Exporting a simulation
  again replaces its MLflow run (found by the tag `scarcity.simulation_id`). MLflow 3's
  default store is `sqlite:///mlflow.db`; its file store (`./mlruns`) is in maintenance mode
  and opens only with `MLFLOW_ALLOW_FILE_STORE=true`.
- TensorBoard (`to_tensorboard`, torch's `SummaryWriter`): one log directory per simulation,
  `DIR/<simulation id>`, a scalar per metric with step = round and the config as text; an
  export again replaces that directory's event files.

Both need the `export` extra: pip install 'scarcity[export]'.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from scarcity.client import ScarcityClient, ScarcityError

#: The MLflow tag that says which simulation a run holds.
SIMULATION_TAG = "scarcity.simulation_id"
#: MLflow's own default store since 3.x (its file store is in maintenance mode).
DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"
#: `SummaryWriter`'s own default directory.
DEFAULT_TENSORBOARD_DIR = "runs"
_MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}


def _need(package: str) -> None:
    raise ImportError(f"the export needs {package}: pip install 'scarcity[export]'")


@dataclass(frozen=True)
class ExportedRun:
    """One simulation as the trackers receive it."""

    resource: dict[str, Any]
    #: Every stored round: (round, {metric: value}).
    rounds: list[tuple[int, dict[str, float]]]
    #: The final global model (safetensors) and its architecture, when the run has one.
    model: bytes | None
    architecture: dict[str, Any] | None

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def name(self) -> str:
        return str(self.resource.get("name") or self.id)


def read_run(api: ScarcityClient, simulation_id: str, *, model: bool = True) -> ExportedRun:
    """A simulation's resource, its rounds' metrics and (with `model`) its final model: the
    global model after its last stored round, or None when it has none (no FedAvg, no round
    stored, or a recomputation the service refuses)."""
    resource = api.get(simulation_id)
    rounds = [
        (
            int(row["round"]),
            {k: float(v) for k, v in row.items() if k not in ("round", "participants")},
        )
        for row in api.metrics(simulation_id)
    ]
    blob = architecture = None
    last = int(resource["progress"]["rounds_completed"])
    if model and last > 0 and resource["config"].get("federated_averaging"):
        try:
            blob = api.model(simulation_id, last)
            architecture = api.model_architecture(simulation_id, last)
        except ScarcityError as error:
            if error.status != 409:  # 409: the service says why it has no model; export the rest
                raise
    return ExportedRun(resource, rounds, blob, architecture)


def config_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The config as MLflow params: strings as they are, everything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in sorted(config.items())}


def _millis(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def to_mlflow(
    runs: Iterable[ExportedRun],
    tracking_uri: str = DEFAULT_MLFLOW_URI,
    experiment: str = "scarcity",
) -> dict[str, str]:
    """Log each run into `experiment` of the MLflow store at `tracking_uri`; simulation id →
    MLflow run id. A `sqlite:///` store keeps its artifacts in `mlruns/` beside its file."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        _need("mlflow-skinny")
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = None
        if tracking_uri.startswith("sqlite:///"):
            database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
            location = (database.parent / "mlruns").as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    exported: dict[str, str] = {}
    for run in runs:
        for old in client.search_runs(
            [experiment_id], filter_string=f"tags.`{SIMULATION_TAG}` = '{run.id}'"
        ):
            client.delete_run(old.info.run_id)
        resource = run.resource
        tags = {
            **{k: str(v) for k, v in (resource.get("tags") or {}).items()},
            SIMULATION_TAG: run.id,
            "scarcity.status": str(resource["status"]),
            "scarcity.preset": str(resource.get("preset")),
        }
        if resource.get("notes"):
            tags["mlflow.note.content"] = str(resource["notes"])
        created = client.create_run(
            experiment_id,
            start_time=_millis(resource.get("started_at") or resource.get("created_at")),
            tags=tags,
            run_name=run.name,
        )
        run_id = created.info.run_id
        params = [Param(k, v) for k, v in config_params(resource["config"]).items()]
        stamp = _millis(resource.get("finished_at")) or created.info.start_time
        metrics = [
            Metric(name, value, stamp, step)
            for step, values in run.rounds
            for name, value in values.items()
        ]
        for start in range(0, len(params), 100):  # MLflow's batch limits
            client.log_batch(run_id, params=params[start : start + 100])
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        client.log_batch(run_id, tags=[RunTag("scarcity.rounds", str(len(run.rounds)))])
        if run.model is not None:
            with tempfile.TemporaryDirectory() as folder:
                (Path(folder) / "model.safetensors").write_bytes(run.model)
                (Path(folder) / "architecture.json").write_text(
                    json.dumps(run.architecture, indent=2)
                )
                client.log_artifacts(run_id, folder, artifact_path="model")
        status = _MLFLOW_STATUS.get(str(resource["status"]), "RUNNING")
        if status != "RUNNING":
            client.set_terminated(run_id, status, end_time=_millis(resource.get("finished_at")))
        exported[run.id] = run_id
    return exported


def to_tensorboard(
    runs: Iterable[ExportedRun], directory: str | Path = DEFAULT_TENSORBOARD_DIR
) -> dict[str, Path]:
    """Write each run's event file into `directory/<simulation id>`; simulation id → its
    log directory."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _need("tensorboard")
    written: dict[str, Path] = {}
    for run in runs:
        folder = Path(directory) / run.id
        for old in folder.glob("events.out.tfevents.*"):
            old.unlink()  # a re-export replaces the run, never adds a second copy of it
        writer = SummaryWriter(log_dir=str(folder))
        try:
            for step, values in run.rounds:
                for name, value in values.items():
                    writer.add_scalar(name, value, global_step=step)
            summary = {k: run.resource.get(k) for k in ("name", "status", "preset", "tags")}
            writer.add_text("config", _markdown_json(run.resource["config"]))
            writer.add_text("simulation", _markdown_json({"id": run.id, **summary}))
        finally:
            writer.close()
        written[run.id] = folder
    return written


def _markdown_json(value: Any) -> str:
    # TensorBoard renders text as Markdown: indented by four spaces, JSON stays as written
    return "\n".join("    " + line for line in json.dumps(value, indent=2).splitlines())


__all__ = [
    "DEFAULT_MLFLOW_URI",
    "DEFAULT_TENSORBOARD_DIR",
    "SIMULATION_TAG",
    "ExportedRun",
    "config_params",
    "read_run",
    "to_mlflow",
    "to_tensorboard",
]
