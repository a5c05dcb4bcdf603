"""`static`: every client holds the same rows in every round (what every run did before
scenarios; the default, so stored runs and presets keep their results)."""

from __future__ import annotations

from typing import ClassVar

from scarcity.scenarios.base import Scenario


class Static(Scenario):
    name: ClassVar[str] = "static"
    summary: ClassVar[str] = "The same rows in every round (the default)."
    consulted: ClassVar[bool] = False
    moves_data: ClassVar[bool] = False
