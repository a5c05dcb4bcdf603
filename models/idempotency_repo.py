"""Idempotency keys (models/idempotency.py): reserve a key for a request, keep its answer,
forget the reservation of a request that failed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.idempotency import IdempotencyKey
from models.upsert import insert_for


def reserve_key(
    session: Session,
    *,
    owner: str,
    key: str,
    endpoint: str,
    request_hash: str,
    stale_after: float = 60.0,
) -> IdempotencyKey | None:
    """Claim `key` for a request about to run (None), or the row already there: its stored
    answer, or no answer yet when that request is still running. A reservation without an
    answer older than `stale_after` seconds is taken over (its request died unanswered)."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner == owner,
            IdempotencyKey.key == key,
            IdempotencyKey.status_code.is_(None),
            IdempotencyKey.created_at < utcnow() - timedelta(seconds=stale_after),
        )
    )
    statement = (
        insert_for(session)(IdempotencyKey)
        .values(
            owner=owner, key=key, endpoint=endpoint, request_hash=request_hash, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["owner", "key"])
        .returning(IdempotencyKey.key)
    )
    if session.execute(statement).first() is not None:  # inserted: the key is ours
        return None
    return session.get(IdempotencyKey, (owner, key))


def complete_key(
    session: Session,
    *,
    owner: str,
    key: str,
    status_code: int,
    response: dict[str, Any],
    location: str | None,
) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        .values(status_code=status_code, response=response, location=location)
    )


def release_key(session: Session, *, owner: str, key: str) -> None:
    """Forget a reservation whose request failed: a retry with the key runs afresh."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner == owner,
            IdempotencyKey.key == key,
            IdempotencyKey.status_code.is_(None),
        )
    )
