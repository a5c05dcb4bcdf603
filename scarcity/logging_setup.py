"""Logging setup for entry points (never run at import time): console + `logs/scarcity.log`.

Format is the seed's: `YYYY-MM-DD HH:MM:SS - module.class - LEVEL - message`. The service may
call `configure_logging` too; calling it again replaces the handlers it added before.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_LOG_FILE = Path("logs") / "scarcity.log"
_MARK = "_scarcity_handler"


def configure_logging(
    level: int | str = logging.INFO,
    log_file: str | Path | None = DEFAULT_LOG_FILE,
    console: bool | logging.Handler = True,
    logger_name: str = "",
) -> logging.Logger:
    """Attach a console handler and a file handler (directory created) to `logger_name`.

    `logger_name` "" is the root logger; `console` may be a ready handler (the CLI passes
    one that writes around its progress bar).
    """
    target = logging.getLogger(logger_name)
    for handler in list(target.handlers):
        if getattr(handler, _MARK, False):
            target.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    handlers: list[logging.Handler] = []
    if isinstance(console, logging.Handler):
        handlers.append(console)
    elif console:
        handlers.append(logging.StreamHandler(sys.stderr))
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _MARK, True)
        target.addHandler(handler)
    target.setLevel(level)
    return target
