"""Logging setup for entry points (never run at import time): console + `logs/scarcity.log`.

Format is the seed's: `YYYY-MM-DD HH:MM:SS - module.class - LEVEL - message`, or one JSON
object a line (`json_format=True`, python-json-logger) for log collectors. The service may
call `configure_logging` too; calling it again replaces the handlers it added before.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_DIR_VARIABLE = "SCARCITY_LOG_DIR"  # shared with the service's settings
DEFAULT_LOG_FILE = Path("logs") / "scarcity.log"
_MARK = "_scarcity_handler"


class LogFileError(OSError):
    """The log file cannot be written; the message names the path and the setting."""


def default_log_file() -> Path:
    """`scarcity.log` in $SCARCITY_LOG_DIR (default `logs`)."""
    return Path(os.environ.get(LOG_DIR_VARIABLE) or "logs") / "scarcity.log"


_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Fields added to every record logged in this context (thread or task), e.g. the
    service's `simulation_id` and `attempt` while a job runs: keys of their own in JSON logs."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: Any) -> None:
    """Add fields to the current `log_context` until it ends."""
    _context.set({**(_context.get() or {}), **fields})


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _formatter(json_format: bool) -> logging.Formatter:
    if not json_format:
        return logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    from pythonjsonlogger.json import JsonFormatter

    # Extra fields a caller binds (simulation_id, attempt, request_id) become keys of their own.
    return JsonFormatter(
        "%(asctime)s %(name)s %(levelname)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def configure_logging(
    level: int | str = logging.INFO,
    log_file: str | Path | None = DEFAULT_LOG_FILE,
    console: bool | logging.Handler = True,
    logger_name: str = "",
    json_format: bool = False,
) -> logging.Logger:
    """Attach a console handler and a file handler (directory created) to `logger_name`.

    `logger_name` "" is the root logger; `console` may be a ready handler (the CLI passes
    one that writes around its progress bar). Raises `LogFileError` naming the path when the
    log file cannot be opened.
    """
    target = logging.getLogger(logger_name)
    for handler in list(target.handlers):
        if getattr(handler, _MARK, False):
            target.removeHandler(handler)
            handler.close()
    formatter = _formatter(json_format)
    handlers: list[logging.Handler] = []
    if isinstance(console, logging.Handler):
        handlers.append(console)
    elif console:
        handlers.append(logging.StreamHandler(sys.stderr))
    if log_file is not None:
        path = Path(log_file)
        try:
            if path.parent.exists() and not path.parent.is_dir():
                raise NotADirectoryError(f"{path.parent} is not a directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(path, encoding="utf-8"))
        except OSError as exc:
            raise LogFileError(
                f"cannot write the log file {path} ({LOG_DIR_VARIABLE}={path.parent}): "
                f"{exc.strerror or exc}"
            ) from exc
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_ContextFilter())
        setattr(handler, _MARK, True)
        target.addHandler(handler)
    target.setLevel(level)
    return target


def is_configured(logger_name: str = "") -> bool:
    """Whether `configure_logging` has attached its handlers to `logger_name`."""
    return any(getattr(h, _MARK, False) for h in logging.getLogger(logger_name).handlers)
