"""`Param`: one config field declared by the part of the engine that reads it.

A strategy, a partitioner or a backbone lists the fields it reads beyond the run's own (their
name, type, default, bounds and description); `scarcity.config` assembles `SimulationConfig`
from the engine's own fields and these declarations, so adding a parameter touches only its
owner. A field read by several owners (FedAvgM's, FedOpt's and SCAFFOLD's server learning
rate) is declared once and listed by each of them. This module sits at the bottom of the
engine: it imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

#: A run's config (`scarcity.config.SimulationConfig`) as the parts that declare its fields read
#: it: the config is assembled from their declarations, so they cannot name its type without
#: importing what is built on them. They read their own fields and a few of the run's.
RunConfig = Any


@dataclass(frozen=True)
class Param:
    """One config field: its pydantic type, default, bounds and the description users read."""

    name: str
    annotation: Any
    default: Any
    description: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None

    def field(self) -> tuple[Any, Any]:
        """(annotation, FieldInfo) as `pydantic.create_model` takes a field."""
        bounds = {
            key: value
            for key in ("ge", "gt", "le", "lt", "min_length", "max_length")
            if (value := getattr(self, key)) is not None
        }
        return self.annotation, Field(self.default, description=self.description, **bounds)


def unique(params: Iterable[Param]) -> list[Param]:
    """Each field once, in first-declared order; two owners declaring one name differently is
    an error (they must share one declaration)."""
    seen: dict[str, Param] = {}
    for param in params:
        known = seen.setdefault(param.name, param)
        if known != param:
            raise TypeError(f"{param.name}: declared twice, differently")
    return list(seen.values())
