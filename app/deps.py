"""Named dependencies: the database session and the caller's identity (owner)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.admission import Admission
from app.errors import BadRequest, Unauthorized, Unprocessable, UnsupportedMediaType
from models.db import session_scope
from models.settings import Settings, get_settings

_bearer = HTTPBearer(auto_error=False, description="Needed when SCARCITY_API_KEYS is set.")


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def get_read_session() -> Iterator[Session]:
    with session_scope(read_only=True) as session:
        yield session


# The dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency on its
# thread pool, a hop that costs more than the work itself.
async def settings_dependency() -> Settings:
    return get_settings()


def owner_of(key: str) -> str:
    """A stable, non-reversible owner id for an API key: rows never hold the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def get_owner(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    settings: Annotated[Settings, Depends(settings_dependency)],
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


async def require_json(request: Request) -> None:
    """A body must be sent as JSON: any other Content-Type is a 415 that says so."""
    content_type = request.headers.get("content-type")
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if not has_body and content_type is None:
        return  # no body at all: the body validation names what is missing
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {content_type or 'none'!r}"
        )


async def require_multipart(request: Request) -> None:
    """An upload is sent as a multipart form (`curl -F`): any other Content-Type is a 415."""
    content_type = request.headers.get("content-type")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Content-Type must be multipart/form-data (a form with the file), got "
            f"{content_type or 'none'!r}"
        )


_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise Unprocessable(
                [{"field": key, "message": f"duplicate key {key!r}: send each field once"}]
            )
        seen[key] = value
    return seen


async def require_utf8_json_object_keys_once(request: Request) -> None:
    """The body is UTF-8 JSON without a byte-order mark (Python's JSON decoder would also take
    UTF-16 and UTF-32, with or without a BOM) and names each key once (the decoder keeps the
    last of repeated keys silently). 400 / 422 naming the key; malformed JSON is FastAPI's."""
    body = await request.body()  # cached: FastAPI parses the same bytes
    if not body:
        return
    try:
        if body.startswith(_BOMS) or b"\x00" in body:
            raise UnicodeDecodeError("utf-8", body, 0, 1, "BOM or NUL byte")
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("request body is not valid UTF-8 JSON (no byte-order mark)") from exc
    try:
        json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError:
        return  # malformed: FastAPI's own 422 says where


_query_names: dict[int, frozenset[str]] = {}


def _declared_query(dependant: Any) -> set[str]:
    """Query parameter names of a route's dependant and all its sub-dependencies."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared_query(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not declare is a 422 naming it, not silently ignored
    (`GET /simulations?dataset=digits` would otherwise list every run)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names.get(id(route))
    if known is None:
        known = _query_names[id(route)] = frozenset(_declared_query(dependant))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise Unprocessable(
            [
                {
                    "field": name,
                    "message": f"unknown query parameter (this endpoint takes: {takes})",
                }
                for name in unknown
            ]
        )


async def get_admission(request: Request) -> Admission:
    return cast(Admission, request.app.state.admission)


# scope="function": the transaction commits before the response is sent, so a client that
# got its answer reads what it just changed.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
OwnerDep = Annotated[str, Depends(get_owner)]
SettingsDep = Annotated[Settings, Depends(settings_dependency)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
