"""`ConfigError`: a config the engine cannot run, naming the field to change.

It is a `ValueError`, so pydantic validators may raise it (the validation error keeps it in
its context) and callers read `field` and `message` instead of parsing text. It lives at the
bottom of the engine: the strategies, partitioners and backbones raise it without importing
the config.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting (or combination) the engine refuses; `str()` reads "field: message"."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        return type(self), (self.field, self.message)  # picklable (Celery, multiprocessing)
