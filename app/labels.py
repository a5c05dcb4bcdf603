"""How a config value reads where people see it: a comparison's legend, a sweep run's name."""

from __future__ import annotations

from typing import Any


def shown(value: Any) -> str:
    """A config value as a label shows it: `0.1`, `true`, `null`, `digits`."""
    if isinstance(value, float):
        return f"{value:g}"
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )
