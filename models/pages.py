"""Keyset pages of a newest-first listing: (created_at, id) descending, resumed after a row."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_


def newest_first(
    query: Select[Any], entity: Any, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> Select[Any]:
    """`query` of `entity` rows newest first, at most `limit`, after the (created_at, id) of
    the previous page's last row when given (stable under ties of created_at)."""
    if after is not None:
        created_at, last_id = after
        query = query.where(
            or_(
                entity.created_at < created_at,
                and_(entity.created_at == created_at, entity.id < last_id),
            )
        )
    return query.order_by(entity.created_at.desc(), entity.id.desc()).limit(limit)
