"""One error hierarchy, one handler: every API error is `{"type": ..., "detail": ...}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("app.errors")


class APIError(Exception):
    status_code = 500
    type = "internal_error"

    def __init__(self, detail: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(detail))
        self.detail = detail
        self.headers = headers


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


def validation_detail(errors: list[dict[str, object]]) -> list[dict[str, object]]:
    """Pydantic errors as `{field, message}` with a readable dotted field name."""
    out = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]  # type: ignore[union-attr]
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field (not a simulation setting)"
        # Model-level checks name their field as "field: message" (scarcity.config).
        if not loc and ": " in message:
            field, _, message = message.removeprefix("Value error, ").partition(": ")
            loc = [field]
        out.append(
            {"field": ".".join(loc) or None, "message": message.removeprefix("Value error, ")}
        )
    return out


def _body(error_type: str, detail: object) -> dict[str, object]:
    return {"type": error_type, "detail": detail}


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

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _body("http_error", exc.detail), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return JSONResponse(_body("internal_error", "internal server error"), 500)
