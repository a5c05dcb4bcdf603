"""The `attempts` table: who ran each attempt of a simulation, on what software and machine."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, Timestamp, simulation_fk


class Attempt(Base):
    __tablename__ = "attempts"

    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk(), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker: Mapped[str] = mapped_column(String(200))  # host:pid
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    # scarcity.provenance.environment(): versions, git commit, torch threads, CPU, host.
    environment: Mapped[dict[str, Any]] = mapped_column(JSONType)
