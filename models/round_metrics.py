"""The `round_metrics` table: one row per finished round (metrics, routing, gossip, and who
took part when the round was sampled).

The participants are a column of this table, not an entry of `meta_params`: they are a fact of
every sampled round, whatever the config switches on (a `baseline` run writes no
meta-parameters), and `GET /simulations/{id}/metrics` and the live events read this row alone.
A JSON list keeps a round one row (as `expert_usage` and `gossip_pairs`), and the ids are read
only with their round, never searched. NULL when every client took part, so a run without
sampling stores nothing new, and in rounds stored before revision 0011 (their `clients_sampled`
metric still says whether they were sampled).
"""

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
    # Ascending client ids of a sampled round; NULL when all took part (or stored before 0011).
    participants: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    duration_seconds: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("simulation_id", "round"),)
