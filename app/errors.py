"""One error hierarchy, one handler: every API error is `{"type": ..., "detail": ...}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from app.text import encodable
from models.db import describe_database_error, is_transient
from scarcity.errors import ConfigError

logger = logging.getLogger("app.errors")


class APIError(Exception):
    status_code = 500
    type = "internal_error"

    def __init__(self, detail: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.detail = detail
        self.headers = headers


class BadRequest(APIError):
    status_code, type = 400, "http_error"


class NotFound(APIError):
    status_code, type = 404, "not_found"


class Conflict(APIError):
    status_code, type = 409, "conflict"


class Unprocessable(APIError):
    status_code, type = 422, "validation_error"


class Unauthorized(APIError):
    status_code, type = 401, "unauthorized"


class PayloadTooLarge(APIError):
    status_code, type = 413, "payload_too_large"


class UnsupportedMediaType(APIError):
    status_code, type = 415, "unsupported_media_type"


class NotAcceptable(APIError):
    status_code, type = 406, "not_acceptable"


# While the database is unreachable: when to ask again (seconds).
RETRY_AFTER_SECONDS = 5


def _body_error(error: Mapping[str, Any]) -> dict[str, object] | None:
    """Errors about the body as a whole (not one field), in words that say what to send."""
    loc, kind = tuple(error.get("loc", ())), error.get("type")
    if kind == "json_invalid":
        ctx = error.get("ctx") or {}
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        reason = ctx.get("error", "invalid JSON") if isinstance(ctx, dict) else "invalid JSON"
        return {"field": "body", "message": f"malformed JSON{where}: {reason}"}
    if loc != ("body",):
        return None
    if kind == "missing":
        return {
            "field": "body",
            "message": 'request body required: a JSON object, e.g. {"preset": "stage8"}',
        }
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        got = type(error.get("input")).__name__
        got = {"list": "an array", "str": "a string", "NoneType": "null", "bytes": "raw bytes"}.get(
            got, got
        )
        return {"field": "body", "message": f"request body must be a JSON object, not {got}"}
    return None


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, object]]:
    """Pydantic errors as `{field, message}` with a readable dotted field name."""
    out = []
    for error in errors:
        whole = _body_error(error)
        if whole is not None:
            out.append(whole)
            continue
        # The engine's checks of a combination of fields raise a ConfigError naming its field.
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            out.append(config_error_detail(cause))
            continue
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field (not a simulation setting)"
        out.append(
            {"field": ".".join(loc) or None, "message": message.removeprefix("Value error, ")}
        )
    return out


def config_error_detail(error: ConfigError) -> dict[str, object]:
    """The engine's refusal of a config as one `{field, message}` of a 422."""
    return {"field": error.field, "message": error.message}


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only one route's)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
            if not isinstance(route, Mount)  # static files match any method
        )
    ]


def _echoable(detail: object) -> object:
    """The detail with every string UTF-8-encodable: a field name may echo a JSON key that
    holds a lone surrogate, which would otherwise fail the answer itself as a 500."""
    if isinstance(detail, str):
        return encodable(detail)
    if isinstance(detail, list | tuple):
        return [_echoable(item) for item in detail]
    if isinstance(detail, dict):
        return {
            encodable(key) if isinstance(key, str) else key: _echoable(value)
            for key, value in detail.items()
        }
    return detail


def _body(error_type: str, detail: object) -> dict[str, object]:
    return {"type": error_type, "detail": _echoable(detail)}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(_body(exc.type, exc.detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_body("validation_error", validation_detail(list(exc.errors()))), 422)

    @app.exception_handler(ValidationError)
    async def _model_validation(_: Request, exc: ValidationError) -> JSONResponse:
        return JSONResponse(_body("validation_error", validation_detail(list(exc.errors()))), 422)

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse(_body("validation_error", [config_error_detail(exc)]), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail, headers = exc.detail, dict(getattr(exc, "headers", None) or {})
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's 400 on a non-UTF-8 body
            detail = "request body is not valid UTF-8 JSON"
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
            detail = f"method {request.method} not allowed; allowed: {headers['Allow']}"
        return JSONResponse(_body("http_error", detail), exc.status_code, headers=headers or None)

    # A handler for this class (not for Exception) answers inside the app: the connection stays
    # open, unlike Starlette's last-resort 500.
    @app.exception_handler(SQLAlchemyError)
    async def _database(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not is_transient(exc):
            logger.error("database error", exc_info=exc)
            return JSONResponse(_body("internal_error", "internal server error"), 500)
        from worker.metrics import DB_ERRORS

        reason = describe_database_error(exc)
        DB_ERRORS.labels(step="api").inc()
        logger.warning("database unavailable (%s)", reason)
        return JSONResponse(
            _body(
                "service_unavailable",
                f"the database is unavailable ({reason}); try again in {RETRY_AFTER_SECONDS} s",
            ),
            503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return JSONResponse(_body("internal_error", "internal server error"), 500)
