"""The HTTP layer: FastAPI routes, request/response schemas, auth, dashboard and docs assets."""
