"""The answers routes declare in the OpenAPI document besides their own 200, shared by every
domain so one error reads the same wherever it can occur."""

from __future__ import annotations

from typing import Any

from app.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]

UNAUTHORIZED: dict[str, Any] = {"model": ErrorBody, "description": "Missing or invalid API key."}
INVALID: dict[str, Any] = {
    "model": ErrorBody,
    "description": "Invalid input; the message names the field.",
}
NOT_ACCEPTABLE: dict[str, Any] = {
    "model": ErrorBody,
    "description": "`Accept` allows neither JSON nor CSV.",
}

#: Every route under `/simulations/{simulation_id}` (and `/compare`, which names runs).
SIMULATION_ERRORS: Responses = {
    401: UNAUTHORIZED,
    404: {"model": ErrorBody, "description": "No such simulation (or not yours)."},
    422: INVALID,
}


def conflict(description: str) -> Responses:
    """A 409 answer: the resource is in a state that forbids the request."""
    return {409: {"model": ErrorBody, "description": description}}


def csv_table(description: str) -> Responses:
    """The CSV form of a table route's 200 (its JSON form is the route's response_model)."""
    return {
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": description}
    }


def creation_responses(invalid: str) -> Responses:
    """The answers of a POST that creates work (a simulation, a sweep); `invalid`: its 422."""
    return {
        400: {"model": ErrorBody, "description": "Body unreadable (not UTF-8, or a BOM)."},
        401: UNAUTHORIZED,
        409: {
            "model": ErrorBody,
            "description": "Too many active simulations, or the first request with this "
            "Idempotency-Key is still running.",
        },
        413: {"model": ErrorBody, "description": "Request body too large."},
        415: {"model": ErrorBody, "description": "Body not sent as application/json."},
        422: {"model": ErrorBody, "description": invalid},
    }
