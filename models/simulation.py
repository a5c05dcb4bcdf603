"""The `simulations` table: one row per submitted simulation, the record of its lifecycle."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, Timestamp, utcnow


class SimulationStatus(enum.StrEnum):
    pending = "pending"  # a sweep's run waiting for a slot of its max_concurrent (models/sweep.py)
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset(
    {SimulationStatus.succeeded, SimulationStatus.failed, SimulationStatus.cancelled}
)


class Simulation(Base):
    __tablename__ = "simulations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Owner = a digest of the API key that created it ("" when the API is open); never the key.
    owner: Mapped[str] = mapped_column(String(64), default="")
    preset: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=SimulationStatus.queued)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    rounds_total: Mapped[int] = mapped_column(Integer)
    rounds_completed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    error: Mapped[str | None] = mapped_column(Text)
    # Fencing token: bumped by every claim; a worker's writes only land while it still matches.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Claims that ended without their worker dying (released at a shutdown or after database
    # errors, or taken over while the worker was cut off): `attempt - releases` workers were
    # lost, and that is what SCARCITY_MAX_ATTEMPTS bounds.
    releases: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The lease, renewed while a worker runs it; NULL on a running row: released, claim at once.
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set by the reaper when it re-publishes a waiting job: not again before this time, so a job
    # waiting behind a long queue is re-sent with a growing backoff, not on every pass.
    next_publish_at: Mapped[datetime | None] = mapped_column(Timestamp)
    # Set by a claim that would fail the run for lost workers while the last one may still be
    # releasing it (revision 0007): only a claim after this time fails it; a sign of life of
    # the holder, or any successful claim, clears it.
    give_up_after: Mapped[datetime | None] = mapped_column(Timestamp)
    # What a researcher calls the run (revision 0003): free text, never read by the engine.
    # Runs stored before it have null name and notes and null tags (served as {}).
    name: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    notes: Mapped[str | None] = mapped_column(Text)
    # The sweep this run belongs to, if any (its rows go with it: sweeps_repo.delete_sweep).
    sweep_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        Index("ix_simulations_owner_created_at", "owner", "created_at"),
        Index("ix_simulations_status_heartbeat_at", "status", "heartbeat_at"),
        Index("ix_simulations_owner_status", "owner", "status"),  # the cap on active runs
        Index("ix_simulations_sweep_id_status", "sweep_id", "status"),  # a sweep's progress
    )
