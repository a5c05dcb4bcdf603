"""`Idempotency-Key` on `POST /simulations` and `POST /sweeps`: a retried request gets the
first answer again and creates nothing (models/idempotency.py keeps the answers).

The key is reserved after the body has been checked (a 422 reserves nothing) and before any
work; a request that then fails frees it again, so only a created resource is remembered. The
same key with another body (or endpoint) is a 422; while the first request still runs, a 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.errors import Conflict, Unprocessable
from models import idempotency_repo
from models.db import session_scope

KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Any unique string (a UUID): a retry with the same key and body returns the "
        "first answer and creates nothing.",
    ),
]


def request_hash(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json", exclude_unset=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def begin(owner: str, key: str, endpoint: str, body_hash: str) -> JSONResponse | None:
    """None: the key is ours, do the work. Else the first answer to replay."""
    with session_scope() as session:
        row = idempotency_repo.reserve_key(
            session, owner=owner, key=key, endpoint=endpoint, request_hash=body_hash
        )
        if row is None:
            return None
        if row.endpoint != endpoint or row.request_hash != body_hash:
            raise Unprocessable(
                [
                    {
                        "field": "Idempotency-Key",
                        "message": f"already used for another request ({row.endpoint} with "
                        "another body): use a new key for a new request",
                    }
                ]
            )
        if row.status_code is None or row.response is None:
            raise Conflict("a request with this Idempotency-Key is still running: retry shortly")
        headers = {"Idempotent-Replayed": "true"}
        if row.location:
            headers["Location"] = row.location
        return JSONResponse(row.response, status_code=row.status_code, headers=headers)


def finish(owner: str, key: str, status_code: int, body: dict[str, Any], location: str) -> None:
    with session_scope() as session:
        idempotency_repo.complete_key(
            session,
            owner=owner,
            key=key,
            status_code=status_code,
            response=body,
            location=location,
        )


def abandon(owner: str, key: str) -> None:
    with session_scope() as session:
        idempotency_repo.release_key(session, owner=owner, key=key)


async def created_once(
    owner: str,
    key: str | None,
    endpoint: str,
    body: BaseModel,
    create: Callable[[], Awaitable[tuple[BaseModel, str]]],
    response: Response,
) -> Any:
    """Run `create()` (→ the 202 resource and its Location) at most once per key: a retry
    with the same key and body gets the first answer again; a failure frees the key."""
    if key is not None:
        replay = await run_in_threadpool(begin, owner, key, endpoint, request_hash(body))
        if replay is not None:
            return replay
    try:
        public, location = await create()
    except BaseException:
        if key is not None:
            await run_in_threadpool(abandon, owner, key)
        raise
    if key is not None:
        answer = public.model_dump(mode="json")
        await run_in_threadpool(finish, owner, key, 202, answer, location)
    response.headers["Location"] = location
    return public
