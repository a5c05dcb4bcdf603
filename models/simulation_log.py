"""The `simulation_logs` table: log lines of a simulation."""

from __future__ import annotations

import uuid

from sqlalchemy import Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, simulation_fk


class SimulationLog(Base):
    """Log lines; round 0 holds lifecycle lines (claimed, failed, ...); seq orders a round."""

    __tablename__ = "simulation_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk())
    round: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16), default="INFO")
    message: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("simulation_id", "round", "seq"),)
