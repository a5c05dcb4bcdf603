"""Request body size cap: a small ASGI middleware answering 413 in the API's error shape.

Starlette's `RequestBodyLimitMiddleware` (FastAPI's `max_body_size=`) answers a body declared
too large with its own plain-text 413 before any handler runs, so it cannot give the JSON
`{"type", "detail"}` every other error has, naming the setting.

A route that takes files (`POST /datasets`) has a cap of its own (`overrides`), enforced the
same way while the body streams in: nothing past the cap is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: (method, path) → (cap in bytes, the setting that sets it)
Overrides = Mapping[tuple[str, str], tuple[int, str]]


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, overrides: Overrides | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.overrides = dict(overrides or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        max_bytes, setting = self.overrides.get(
            (scope["method"], scope["path"].rstrip("/") or "/"),
            (self.max_bytes, "SCARCITY_MAX_BODY_BYTES"),
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            return await self._reject(send, max_bytes, setting)
        received, rejected, started = 0, False, False

        # A body without Content-Length (chunked) is counted as it arrives. Past the cap we answer
        # 413 ourselves and tell the app the client left: FastAPI turns any error raised while it
        # reads the body into a 400, so raising from here would not reach the client as a 413.
        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                rejected = True
                if not started:
                    await self._reject(send, max_bytes, setting)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 went out already; drop whatever the app answers
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _reject(self, send: Send, max_bytes: int, setting: str) -> None:
        body: dict[str, Any] = {
            "type": "payload_too_large",
            "detail": f"request body exceeds {max_bytes} bytes ({setting})",
        }
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})
