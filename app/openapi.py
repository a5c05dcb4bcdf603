"""The OpenAPI document states what this server asks for: no bearer auth when it has no keys.

FastAPI declares the `HTTPBearer` dependency (and our 401 answers) on every route it guards.
With `SCARCITY_API_KEYS` unset no route asks for a key, so the docs UI must not offer an
"Authorize" button and clients generated from the document must not send one.

A file of a multipart form (`POST /datasets`) is also spelt `format: binary`, as OpenAPI 3.0
wrote it, beside 3.1's `contentMediaType` that FastAPI writes: generators that know only the
older spelling (openapi-python-client) would otherwise send the file as a text field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def spell_files_as_binary(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # caches it in app.openapi_schema, which we edit in place
            for component in schema.get("components", {}).get("schemas", {}).values():
                for prop in (component.get("properties") or {}).values():
                    if prop.get("type") == "string" and "contentMediaType" in prop:
                        prop["format"] = "binary"
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


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
