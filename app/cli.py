"""The service's subcommands of the `scarcity` console script: serve, worker, migrate.

`scarcity.cli` dispatches here lazily, so importing the engine never imports the service.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from models.settings import get_settings


class StartupError(Exception):
    """A setting the service cannot start with; the message names the setting and the path."""


def _setup_logging() -> None:
    from scarcity.logging_setup import LogFileError
    from worker.service_logging import configure_service_logging

    try:
        configure_service_logging()
    except LogFileError as exc:
        raise StartupError(str(exc)) from exc


def _check_sqlite_path() -> None:
    """An embedded database the process cannot create or write, said in one line up front
    (SQLite's own error names no path and surfaces as a traceback from the app's start-up)."""
    from pathlib import Path

    from sqlalchemy import make_url

    url = make_url(get_settings().database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database).resolve()
    problem = None
    if not path.parent.is_dir():
        problem = f"directory {path.parent} does not exist"
    elif path.is_dir():
        problem = f"{path} is a directory"
    elif not os.access(path if path.exists() else path.parent, os.W_OK):
        problem = f"{path if path.exists() else path.parent} is not writable"
    if problem:
        raise StartupError(f"SCARCITY_DATABASE_URL={url}: cannot use {path}: {problem}")


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers > 1 and not get_settings().broker_url:
        print(
            "scarcity serve: --workers > 1 needs SCARCITY_BROKER_URL (the distributed mode); "
            "embedded mode runs its one engine process from one API process",
            file=sys.stderr,
        )
        return 2
    _setup_logging()
    _check_sqlite_path()
    uvicorn.run(
        "app.main:app", host=args.host, port=args.port, workers=args.workers, log_config=None
    )
    return 0


def worker(args: argparse.Namespace) -> int:
    from worker.celery_app import celery_app

    _setup_logging()
    if not get_settings().broker_url:
        logging.getLogger("worker").warning(
            "SCARCITY_BROKER_URL is not set: using redis://127.0.0.1:6379/0"
        )
    argv = [
        "worker",
        f"--loglevel={args.loglevel}",
        f"--concurrency={args.concurrency}",
        "--queues=simulations",
        "--without-gossip",
        "--without-mingle",
    ]
    # Unique by default (Celery's own default, celery@host, repeats for every worker of a host).
    argv.append(f"--hostname={args.hostname or f'scarcity-{os.getpid()}@%h'}")
    celery_app.worker_main(argv)
    return 0


def migrate(_: argparse.Namespace) -> int:
    from models.migrate import current_revision, upgrade_to_head

    _check_sqlite_path()
    upgrade_to_head()
    print(f"database at revision {current_revision()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="scarcity", description="Scarcity service commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="API + dashboard (+ embedded worker without a broker)")
    p.add_argument("--host", default=settings.host)
    p.add_argument("--port", type=int, default=settings.port)
    p.add_argument(
        "--workers", type=int, default=1, help="API processes (distributed mode only; default 1)"
    )
    p.set_defaults(func=serve)
    p = commands.add_parser("worker", help="a Celery worker for the distributed mode")
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="simulations run at once by this process (default 1; scale by processes)",
    )
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--hostname", default=None)
    p.set_defaults(func=worker)
    p = commands.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    p.set_defaults(func=migrate)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StartupError as exc:
        print(f"scarcity {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
