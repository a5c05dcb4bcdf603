"""The `client_insights` table: one row per client per round."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Integer, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, simulation_fk


class ClientInsight(Base):
    __tablename__ = "client_insights"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk())
    round: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[int] = mapped_column(Integer)
    insight: Mapped[dict[str, Any]] = mapped_column(JSONType)

    __table_args__ = (UniqueConstraint("simulation_id", "round", "client_id"),)
