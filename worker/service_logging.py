"""The service's logging, the same in every process it runs (API, Celery worker, engine process):
the console and `SCARCITY_LOG_DIR`/scarcity.log, plain or JSON (`SCARCITY_LOG_FORMAT`)."""

from __future__ import annotations

import logging
from pathlib import Path

from models.settings import get_settings
from scarcity.logging_setup import configure_logging


def configure_service_logging() -> logging.Logger:
    """Raises `scarcity.logging_setup.LogFileError` naming the path it cannot write."""
    settings = get_settings()
    return configure_logging(
        log_file=Path(settings.log_dir) / "scarcity.log",
        json_format=settings.log_format == "json",
    )
