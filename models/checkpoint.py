"""The `checkpoints` table: engine state after the last stored round."""

from __future__ import annotations

import uuid

from sqlalchemy import Integer, LargeBinary, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, simulation_fk


class Checkpoint(Base):
    """Engine state after the last stored round: a taken-over run resumes exactly from it."""

    __tablename__ = "checkpoints"

    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk(), primary_key=True)
    round: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
