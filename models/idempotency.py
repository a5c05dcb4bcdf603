"""The `idempotency_keys` table: the first answer to a POST sent with an `Idempotency-Key`.

A row is written (without an answer) before the request's work, so a concurrent retry finds it
and is told to wait; the answer is stored when the work is done, and a later retry with the
same key and body gets that answer again instead of creating anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, PrimaryKeyConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, Timestamp, utcnow


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    endpoint: Mapped[str] = mapped_column(String(64))  # e.g. "POST /simulations"
    request_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the validated body
    status_code: Mapped[int | None] = mapped_column(Integer)  # null while in progress
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    __table_args__ = (PrimaryKeyConstraint("owner", "key"),)
