"""The `datasets` table: one row per owner and uploaded data set.

The files are content-addressed in the upload store (`scarcity.datasets.uploaded`): the same
bytes with the same options have one id, whoever uploads them. A row says that this owner
uploaded that id (so only they can read it, run on it or delete it), under which file name and
when; two owners who upload the same bytes each have their row, the files once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, Timestamp, utcnow


class UploadedDataset(Base):
    __tablename__ = "datasets"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    # `ds_` and 24 hex digits of the content's sha256 (scarcity.datasets.uploaded).
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The file's name as the owner sent it (shown only; the id does not depend on it).
    filename: Mapped[str | None] = mapped_column(String(255))
    # label, client_column, test_fraction, task: as sent (part of the id).
    options: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # rows, features, classes, natural clients, test rows, task, names: the store's description.
    description: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    __table_args__ = (
        Index("ix_datasets_owner_created_at", "owner", "created_at"),
        Index("ix_datasets_id", "id"),  # does any other owner still hold it
    )
