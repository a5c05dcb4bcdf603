"""The `round_metrics` table: one row per finished round (metrics, routing, gossip)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Float, Integer, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, simulation_fk


class RoundMetrics(Base):
    __tablename__ = "round_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk())
    round: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, float]] = mapped_column(JSONType)
    expert_usage: Mapped[dict[str, int]] = mapped_column(JSONType)
    gossip_pairs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    duration_seconds: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("simulation_id", "round"),)
