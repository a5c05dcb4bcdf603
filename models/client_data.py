"""The `client_data` table: what each client of a simulation holds, written once."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, Integer, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, simulation_fk


class ClientData(Base):
    __tablename__ = "client_data"

    simulation_id: Mapped[uuid.UUID] = mapped_column(Uuid, simulation_fk(), primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_samples: Mapped[int] = mapped_column(Integer)
    test_samples: Mapped[int] = mapped_column(Integer)  # its own held-out rows
    # Rows per class (classification) or each target's mean and std (regression); JSON lists.
    label_counts: Mapped[list[int] | None] = mapped_column(JSONType)
    target_mean: Mapped[list[float] | None] = mapped_column(JSONType)
    target_std: Mapped[list[float] | None] = mapped_column(JSONType)
    # One of the run's Byzantine attackers (`malicious_fraction`), fixed per run. NULL: not
    # recorded (a row written before revision 0011 for a run with attackers).
    malicious: Mapped[bool | None] = mapped_column(Boolean)

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "train_samples": self.train_samples,
            "test_samples": self.test_samples,
            "label_counts": self.label_counts,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "malicious": self.malicious,
        }
