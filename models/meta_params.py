"""The `meta_params` table: the meta-learner's broadcast parameters after each round."""

from __future__ import annotations

import uuid

from sqlalchemy import Integer, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, simulation_fk


class MetaParams(Base):
    __tablename__ = "meta_params"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk())
    round: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, float]] = mapped_column(JSONType)

    __table_args__ = (UniqueConstraint("simulation_id", "round"),)
