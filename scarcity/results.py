"""Immutable per-round results: what the engine yields and every consumer (CLI, worker, API)
stores."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GossipPair:
    """One P2P sync of a round: both clients end with the average of one expert's weights."""

    client_a: int
    client_b: int
    expert: str

    def to_dict(self) -> dict[str, Any]:
        return {"client_a": self.client_a, "client_b": self.client_b, "expert": self.expert}


@dataclass(frozen=True)
class RoundResult:
    """Everything one finished round produced. Rounds are numbered from 1.

    `metrics` holds only quantities that are a pure function of the config (no wall-clock
    figures), so equal configs give equal metrics; timing lives in `duration_seconds`.
    """

    round: int
    metrics: Mapping[str, float]
    insights: tuple[Mapping[str, Any], ...] = ()
    meta_params: Mapping[str, float] = field(default_factory=dict)
    expert_usage: Mapping[str, int] = field(default_factory=dict)
    gossip_pairs: tuple[GossipPair, ...] = ()
    logs: tuple[str, ...] = ()
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the names match the HTTP API and `scarcity run --json`."""
        return {
            "round": self.round,
            "metrics": dict(self.metrics),
            "meta_params": dict(self.meta_params),
            "insights": [dict(i) for i in self.insights],
            "expert_usage": dict(self.expert_usage),
            "gossip_pairs": [p.to_dict() for p in self.gossip_pairs],
            "logs": list(self.logs),
            "duration_seconds": self.duration_seconds,
        }
