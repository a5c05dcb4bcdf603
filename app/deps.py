"""Named dependencies: the database session and the caller's identity (owner)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.errors import Unauthorized
from models.db import session_scope
from models.settings import Settings, get_settings

_bearer = HTTPBearer(auto_error=False, description="Needed when SCARCITY_API_KEYS is set.")


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def owner_of(key: str) -> str:
    """A stable, non-reversible owner id for an API key: rows never hold the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def get_owner(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> str:
    keys = settings.api_key_list
    if not keys:
        return ""  # open API: one shared owner
    supplied = credentials.credentials if credentials else ""
    # Compare against every key, in constant time each, so timing says nothing.
    matched = [k for k in keys if secrets.compare_digest(k.encode(), supplied.encode())]
    if not supplied or not matched:
        raise Unauthorized(
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner_of(matched[0])


def get_publisher(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.publish


SessionDep = Annotated[Session, Depends(get_session)]
OwnerDep = Annotated[str, Depends(get_owner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
