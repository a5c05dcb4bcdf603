"""The `meta_params` table: the meta-learner's broadcast parameters after each round, and the
clients it found above / at or below the round's mean uncertainty (in `params`, rounds written
since they were kept)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Integer, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, simulation_fk

#: A round result's client lists (`scarcity.results.UNCERTAINTY_GROUPS`) kept in `params`.
UNCERTAINTY_GROUPS = ("high_uncertainty_clients", "low_uncertainty_clients")


class MetaParams(Base):
    __tablename__ = "meta_params"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk())
    round: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)

    __table_args__ = (UniqueConstraint("simulation_id", "round"),)
