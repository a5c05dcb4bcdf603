"""The OpenAPI document states what this server asks for: no bearer auth when it has no keys.

FastAPI declares the `HTTPBearer` dependency (and our 401 answers) on every route it guards.
With `SCARCITY_API_KEYS` unset no route asks for a key, so the docs UI must not offer an
"Authorize" button and clients generated from the document must not send one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def drop_auth_when_open(app: FastAPI, *, open_api: bool) -> None:
    if not open_api:
        return
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # caches it in app.openapi_schema, which we edit in place
            schema.get("components", {}).pop("securitySchemes", None)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
