"""Opaque page cursors shared by the list routes (simulations, sweeps): a newest-first page
continues after the (created_at, id) of its last row; an `order_by` page after a row count."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from app.errors import Unprocessable
from app.text import MAX_INT64


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def encode_position(created_at: datetime, row_id: uuid.UUID) -> str:
    """A newest-first page's cursor: the (created_at, id) of its last row."""
    return _encode(f"{created_at.isoformat()}|{row_id}")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, sim_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(sim_id)
    except ValueError as exc:
        raise Unprocessable(
            [{"field": "cursor", "message": "not a cursor from a previous page"}]
        ) from exc


def encode_offset(offset: int) -> str:
    """An `order_by` page's cursor: the count of rows already shown."""
    return _encode(f"@{offset}")


def decode_offset_cursor(cursor: str) -> int:
    """Pages of an `order_by` list: the cursor is the count of rows already shown."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if text.startswith("@") and text[1:].isdigit():
            offset = int(text[1:])
            if offset <= MAX_INT64:  # the databases' OFFSET is signed 64-bit
                return offset
    except ValueError:
        pass
    raise Unprocessable(
        [{"field": "cursor", "message": "not a cursor from a previous page of this order_by"}]
    )
