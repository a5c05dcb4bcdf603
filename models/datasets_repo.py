"""The `datasets` table as the API uses it: add an owner's upload, read, list, delete, and
whether a simulation of the owner still names it. Callers own the transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.dataset import UploadedDataset
from models.simulation import Simulation
from models.upsert import insert_for


def add(
    session: Session,
    *,
    owner: str,
    dataset_id: str,
    filename: str | None,
    options: Mapping[str, Any],
    description: Mapping[str, Any],
) -> tuple[UploadedDataset, bool]:
    """The owner's row of the upload, and whether this call added it (False: the owner had
    uploaded it before, perhaps concurrently; their first row stands)."""
    statement = insert_for(session)(UploadedDataset.__table__).values(
        owner=owner,
        id=dataset_id,
        filename=filename,
        options=dict(options),
        description=dict(description),
        created_at=utcnow(),
    )
    # RETURNING says whether the row went in (a driver's rowcount may be -1 for it)
    conflict_free = statement.on_conflict_do_nothing(index_elements=["owner", "id"])
    added = session.execute(conflict_free.returning(UploadedDataset.__table__.c.id)).first()
    row = get(session, owner, dataset_id)
    assert row is not None
    return row, added is not None


def get(session: Session, owner: str, dataset_id: str) -> UploadedDataset | None:
    return session.get(UploadedDataset, (owner, dataset_id))


def list_for(session: Session, owner: str) -> list[UploadedDataset]:
    """The owner's uploads, newest first."""
    query = (
        select(UploadedDataset)
        .where(UploadedDataset.owner == owner)
        .order_by(UploadedDataset.created_at.desc(), UploadedDataset.id)
    )
    return list(session.scalars(query))


def simulations_using(session: Session, owner: str, dataset_id: str, limit: int = 5) -> list[Any]:
    """Ids of the owner's stored simulations (any status) whose config names the data set."""
    query = (
        select(Simulation.id)
        .where(Simulation.owner == owner, Simulation.config["dataset"].as_string() == dataset_id)
        .order_by(Simulation.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def delete_row(session: Session, row: UploadedDataset) -> bool:
    """Delete the owner's row; whether another owner still holds the same upload."""
    session.execute(
        delete(UploadedDataset).where(
            UploadedDataset.owner == row.owner, UploadedDataset.id == row.id
        )
    )
    others = select(UploadedDataset.owner).where(UploadedDataset.id == row.id).limit(1)
    return session.scalars(others).first() is not None
