"""The `sweeps` table: one row per submitted sweep; its runs are ordinary `simulations` rows.

A sweep's runs are all created with it: the first `max_concurrent` (as the owner's cap allows)
`queued`, the rest `pending`, which no worker claims and no reaper publishes. Whenever one of
them finishes, the next pending ones are released (`queued`) up to `max_concurrent` active.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, Timestamp, utcnow


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str | None] = mapped_column(String(200))
    # The request as sent (base, space, seeds, method, run_cap, max_concurrent, random_seed).
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Config fields the space varies (the results' columns), in the space's order.
    varied: Mapped[list[str]] = mapped_column(JSONType)
    method: Mapped[str] = mapped_column(String(16))
    total: Mapped[int] = mapped_column(Integer)
    max_concurrent: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_sweeps_owner_created_at", "owner", "created_at"),)
