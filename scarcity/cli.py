"""The `scarcity` command: `run` a simulation in-process; on a running service (over HTTP,
`scarcity.client`): `datasets add|list` upload and list data sets, `model` downloads a trained
model and `export mlflow|tensorboard` sends runs to the experiment trackers; `serve`, `worker`,
`migrate` belong to the service and are imported lazily from `app.cli`, so the engine never
imports the service.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scarcity.errors import ConfigError

SERVICE_COMMANDS = ("serve", "worker", "migrate")
EXIT_USAGE = 2


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; values are JSON when they parse (`0.5`, `true`), strings otherwise."""
    fields: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            fields[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            fields[key.strip()] = raw
    return fields


def package_version() -> str:
    """The installed package's version (pyproject.toml), or "unknown" when run from a tree."""
    try:
        return metadata.version("scarcity")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scarcity", description=__doc__)
    parser.add_argument("--version", action="version", version=f"scarcity {package_version()}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run one simulation in-process")
    run.add_argument("--preset", default=None, help="stage1 … stage8 or baseline (default stage8)")
    run.add_argument(
        "--strategy",
        default=None,
        help="federated strategy of the shared model (fedavg, fedprox, fedadam, krum, …; "
        "from stage2 or the baseline preset)",
    )
    run.add_argument(
        "--scenario",
        default=None,
        help="how the clients' data changes over the rounds (static, drift, tasks, …)",
    )
    run.add_argument("--clients", type=int, default=None, help="number of clients")
    run.add_argument("--rounds", type=int, default=None, help="number of global rounds")
    run.add_argument("--seed", type=int, default=None, help="random seed")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config field (repeatable)",
    )
    run.add_argument(
        "--json",
        dest="json_file",
        type=Path,
        default=None,
        help="write the config, its provenance, each client's data and every round's result",
    )
    run.add_argument("--log-level", default="INFO", help="console/file log level")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--torch-threads",
        type=int,
        default=int(os.environ.get("SCARCITY_TORCH_THREADS", "1")),
        help="torch intra-op threads (default $SCARCITY_TORCH_THREADS or 1, as the service's "
        "workers: equal thread counts give equal metrics; tiny ops run fastest on one)",
    )
    _add_datasets_parser(sub)
    _add_model_parser(sub)
    _add_export_parser(sub)
    for name in SERVICE_COMMANDS:
        sub.add_parser(name, help=f"service: {name} (see app.cli)", add_help=False)
    return parser


def _add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("SCARCITY_URL", "http://127.0.0.1:8000"),
        help="the service (default $SCARCITY_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SCARCITY_API_KEY"),
        help="bearer token of a service with API keys (default $SCARCITY_API_KEY)",
    )


def _add_model_parser(sub: Any) -> None:
    model = sub.add_parser(
        "model",
        help="download a run's global model (or a client's experts) after a round "
        "(GET /simulations/{id}/model)",
    )
    model.add_argument("simulation_id", help="the simulation's id")
    model.add_argument("--round", type=int, required=True, help="the round (1 …)")
    model.add_argument(
        "--client", type=int, default=None, help="a client's experts instead of the global model"
    )
    model.add_argument(
        "--format",
        choices=("safetensors", "torch"),
        default="safetensors",
        help="safetensors (default; the architecture in its metadata) or a torch state dict",
    )
    model.add_argument("-o", "--output", type=Path, required=True, help="the file to write")
    _add_service_options(model)


def _add_export_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="send runs of a service to MLflow or TensorBoard (needs 'scarcity[export]')",
    )
    trackers = export.add_subparsers(dest="tracker", required=True)
    mlflow = trackers.add_parser(
        "mlflow", help="config as params, metrics by round, the final model as an artifact"
    )
    mlflow.add_argument("simulation_ids", nargs="+", metavar="ID", help="simulations to export")
    mlflow.add_argument(
        "--to",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        help="tracking URI (default $MLFLOW_TRACKING_URI or MLflow's own default, "
        "sqlite:///mlflow.db, with artifacts in mlruns/ beside it; a file store such as "
        "./mlruns needs MLFLOW_ALLOW_FILE_STORE=true in MLflow 3)",
    )
    mlflow.add_argument("--experiment", default="scarcity", help="experiment name")
    mlflow.add_argument(
        "--no-model", action="store_true", help="skip the final models (no recomputing)"
    )
    _add_service_options(mlflow)
    board = trackers.add_parser("tensorboard", help="event files: a scalar per metric by round")
    board.add_argument("simulation_ids", nargs="+", metavar="ID", help="simulations to export")
    board.add_argument(
        "--to",
        type=Path,
        default=Path("runs"),
        help="log directory (default runs/); each run in DIR/<id>",
    )
    _add_service_options(board)


def _add_datasets_parser(sub: Any) -> None:
    datasets = sub.add_parser(
        "datasets", help="upload and list data sets on a running service (POST/GET /datasets)"
    )
    _add_service_options(datasets)
    actions = datasets.add_subparsers(dest="action", required=True)
    add = actions.add_parser(
        "add", help="upload a CSV, Parquet or .npz file; prints its id (ds_…) on stdout"
    )
    add.add_argument("file", type=Path, help="the file to upload")
    add.add_argument("--label", required=True, help="the label column (an .npz: its array)")
    add.add_argument("--client-column", default=None, help="the column naming each row's client")
    add.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help="hold out this share of each class as the data set's own test split",
    )
    add.add_argument(
        "--task",
        choices=("classification", "regression"),
        default=None,
        help="override the task read from the label's values",
    )
    actions.add_parser("list", help="the built-in data sets and your uploads")


def service_command(args: argparse.Namespace, command: str, action: Callable[[Any], None]) -> int:
    """Run `action(api)` against the service: 0, or 1 when the service refuses (its detail on
    stderr), a file or the connection fails, or an optional package is missing."""
    import httpx

    from scarcity.client import ScarcityClient, ScarcityError

    try:
        with ScarcityClient(args.url, api_key=args.api_key, timeout=300) as api:
            action(api)
    except ImportError as error:  # an optional extra (scarcity[export])
        print(f"scarcity {command}: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the file, or the connection
        print(f"scarcity {command}: {error}", file=sys.stderr)
        return 1
    except ScarcityError as error:
        details = error.detail if isinstance(error.detail, list) else [error.detail]
        lines = [
            f"{d.get('field')}: {d.get('message')}" if isinstance(d, dict) else str(d)
            for d in details
        ]
        print(f"scarcity {command}: HTTP {error.status}", *lines, sep="\n  ", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:  # refused, timed out
        print(f"scarcity {command}: {args.url}: {error}", file=sys.stderr)
        return 1
    return 0


def datasets_command(args: argparse.Namespace) -> int:
    """`scarcity datasets add|list`."""

    def act(api: Any) -> None:
        if args.action == "add":
            found = api.upload_dataset(
                args.file,
                args.label,
                client_column=args.client_column,
                test_fraction=args.test_fraction,
                task=args.task,
            )
            print(found["id"])
            print(f"{args.file.name}: {found['summary']}", file=sys.stderr)
        else:
            print(format_datasets(api.datasets()))

    return service_command(args, "datasets", act)


def model_command(args: argparse.Namespace) -> int:
    """`scarcity model ID --round R [--client C] -o FILE`: the file's path on stdout."""

    def act(api: Any) -> None:
        blob = api.model(args.simulation_id, args.round, client_id=args.client, format=args.format)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(blob)
        print(args.output)

    return service_command(args, "model", act)


def export_command(args: argparse.Namespace) -> int:
    """`scarcity export mlflow|tensorboard ID...`: one line per run on stdout (its id and
    where it went)."""
    from scarcity import export

    def act(api: Any) -> None:
        with_model = args.tracker == "mlflow" and not args.no_model
        runs = [export.read_run(api, i, model=with_model) for i in args.simulation_ids]
        if args.tracker == "mlflow":
            found = export.to_mlflow(runs, args.to, args.experiment)
            for run in runs:
                model = "with" if run.model is not None else "without"
                print(f"{run.id}\tmlflow run {found[run.id]} ({model} its final model)")
        else:
            for simulation_id, folder in export.to_tensorboard(runs, args.to).items():
                print(f"{simulation_id}\t{folder}")

    return service_command(args, "export", act)


def format_datasets(rows: Sequence[dict[str, Any]]) -> str:
    """`GET /datasets` as an aligned text table."""
    header = ["id", "kind", "task", "rows", "features", "classes", "clients", "file"]
    body = [
        [
            str(d["id"]),
            str(d["kind"]),
            str(d["task"]),
            "-" if d.get("rows") is None else str(d["rows"]),
            str(d["features"]),
            str(d["classes"]),
            str(d["natural_clients"]),
            d.get("filename") or "-",
        ]
        for d in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {}
    for option, field in (
        ("preset", "preset"),
        ("strategy", "strategy"),
        ("scenario", "scenario"),
        ("clients", "num_clients"),
        ("rounds", "rounds"),
        ("seed", "seed"),
    ):
        value = getattr(args, option)
        if value is not None:
            request[field] = value
    request.update(parse_set(args.overrides))
    return request


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Per-round metrics as an aligned text table."""
    names: list[str] = []
    for row in rows:
        names += [n for n in row["metrics"] if n not in names]
    header = ["round", *names]
    body = [
        [
            str(row["round"]),
            *(f"{row['metrics'][n]:.4f}" if n in row["metrics"] else "-" for n in names),
        ]
        for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):  # a combination of fields, refused naming one
            lines.append(str(cause))
            continue
        message = str(item["msg"]).removeprefix("Value error, ")
        field = ".".join(str(p) for p in item["loc"])
        lines.append(f"{field}: {message}" if field else message)  # else the message names it
    return "invalid configuration:\n  " + "\n  ".join(lines)


def run_command(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from scarcity.config import resolve_config
    from scarcity.core.data import describe_clients
    from scarcity.logging_setup import LogFileError, configure_logging, default_log_file
    from scarcity.plan import plan
    from scarcity.provenance import environment
    from scarcity.simulation import Simulation, SimulationError

    try:
        config = plan(resolve_config(request_from_args(args))).config
    except ValidationError as error:
        print(format_validation_error(error), file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:  # the data cannot be split as asked
        print(f"invalid configuration:\n  {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        return EXIT_USAGE

    class TqdmHandler(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    try:
        configure_logging(
            args.log_level.upper(), log_file=default_log_file(), console=TqdmHandler()
        )
    except LogFileError as error:
        print(f"scarcity: {error}", file=sys.stderr)
        return EXIT_USAGE
    torch.set_num_threads(max(1, args.torch_threads))
    simulation = Simulation(config)
    rows = []
    try:
        with tqdm(
            total=config.rounds,
            desc=f"{config.preset}",
            unit="round",
            disable=args.no_progress,
            file=sys.stderr,
        ) as bar:
            for result in simulation.rounds():
                rows.append(result.to_dict())
                bar.update(1)
    except SimulationError as error:
        print(f"simulation failed: {error}", file=sys.stderr)
        return 1
    print(format_table(rows))
    if args.json_file is not None:
        args.json_file.parent.mkdir(parents=True, exist_ok=True)
        clients = [c.to_dict() for c in describe_clients(config)]
        payload = {
            "config": config.model_dump(mode="json"),
            "provenance": environment(),
            "clients": clients,
            "rounds": rows,
        }
        args.json_file.write_text(json.dumps(payload, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `scarcity` console script (no arguments = `run` with defaults)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SERVICE_COMMANDS:
        service_cli = importlib.import_module("app.cli")
        return int(service_cli.main(args_list) or 0)
    own_options = ("-h", "--help", "--version")
    if not args_list or args_list[0].startswith("-") and args_list[0] not in own_options:
        args_list = ["run", *args_list]
    args = build_parser().parse_args(args_list)
    if args.command == "datasets":
        return datasets_command(args)
    if args.command == "model":
        return model_command(args)
    if args.command == "export":
        return export_command(args)
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
