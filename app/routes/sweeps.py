"""Sweeps: submit a grid or random search over configs and seeds, follow it, read its results."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from app import idempotency, service, sweeps
from app.deps import (
    AdmissionDep,
    OwnerDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
    reject_unknown_query,
    require_json,
    require_utf8_json_object_keys_once,
)
from app.routes.simulations import creation_responses
from app.schemas import (
    ErrorBody,
    SweepCreate,
    SweepPublic,
    SweepResultsPublic,
    SweepsPublic,
)

router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[Depends(reject_unknown_query)])

ENDPOINT = "POST /sweeps"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid API key."},
    404: {"model": ErrorBody, "description": "No such sweep (or not yours)."},
    422: {"model": ErrorBody, "description": "Invalid input; the message names the field."},
}
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "One row per configuration.",
    }
}


@router.post(
    "",
    status_code=202,
    response_model=SweepPublic,
    dependencies=[Depends(require_json), Depends(require_utf8_json_object_keys_once)],
    responses=creation_responses(
        "Invalid input, a key sent twice, an Idempotency-Key used for another request, a run "
        "of the sweep that `POST /simulations` would refuse (the message names the run and its "
        "field: `space.x`, `seeds`, `base.x`), or more runs than SCARCITY_MAX_SWEEP_RUNS."
    ),
)
async def create_sweep(
    body: SweepCreate,
    owner: OwnerDep,
    settings: SettingsDep,
    admission: AdmissionDep,
    response: Response,
    idempotency_key: idempotency.KeyHeader = None,
) -> Any:
    """Queue a sweep: every configuration of `space` once per seed, as ordinary simulations run
    by the same workers, at most `max_concurrent` at once; answers 202 with its resource."""

    async def create() -> tuple[SweepPublic, str]:
        public, released = await run_in_threadpool(sweeps.create_sweep, body, owner, settings)
        admission.publish(released)
        return public, f"/sweeps/{public.id}"

    return await idempotency.created_once(owner, idempotency_key, ENDPOINT, body, create, response)


@router.get("", response_model=SweepsPublic, responses={401: ERRORS[401], 422: ERRORS[422]})
def list_sweeps(
    session: ReadSessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    limit: int = Query(20, ge=1, description="Page size (capped by SCARCITY_MAX_PAGE_SIZE)."),
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` of the last page."),
) -> SweepsPublic:
    """Your sweeps, newest first, each with its progress by status."""
    data, next_cursor = sweeps.list_sweeps(
        session, owner, limit=min(limit, settings.max_page_size), cursor=cursor
    )
    return SweepsPublic(data=data, next_cursor=next_cursor)


@router.get("/{sweep_id}", response_model=SweepPublic, responses=ERRORS)
def get_sweep(sweep_id: uuid.UUID, session: ReadSessionDep, owner: OwnerDep) -> SweepPublic:
    """One sweep: its request, status and how many of its runs are in each status."""
    return sweeps.to_public(session, [sweeps.get_sweep(session, sweep_id, owner)])[0]


@router.get(
    "/{sweep_id}/results",
    response_model=SweepResultsPublic,
    responses={
        **CSV_RESPONSE,
        **ERRORS,
        406: {"model": ErrorBody, "description": "`Accept` allows neither JSON nor CSV."},
    },
)
def get_sweep_results(
    sweep_id: uuid.UUID,
    request: Request,
    session: ReadSessionDep,
    owner: OwnerDep,
    format: str | None = Query(None, pattern="^(json|csv)$", description="Or `Accept: text/csv`."),
) -> Any:
    """One row per configuration: the varied fields, mean ± std of the final metrics of its
    succeeded runs over the seeds, and counts; `Accept: text/csv` (q-values honoured) or
    `format=csv` for CSV."""
    body = sweeps.results(session, sweep_id, owner)
    if service.wants_csv(format, request.headers.get("accept")):
        return Response(sweeps.results_csv(body), media_type="text/csv")
    return body


@router.post(
    "/{sweep_id}/cancel",
    response_model=SweepPublic,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "Already ended."}},
)
def cancel_sweep(sweep_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> SweepPublic:
    """Cancel: no more runs start, waiting ones are cancelled, running ones stop after their
    current round."""
    return sweeps.cancel_sweep(session, sweep_id, owner)


@router.delete(
    "/{sweep_id}",
    status_code=204,
    responses={**ERRORS, 409: {"model": ErrorBody, "description": "A run is still running."}},
)
def delete_sweep(sweep_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete a sweep with all its simulations and their rounds (none may be running)."""
    sweeps.delete_sweep(session, sweep_id, owner)
    return Response(status_code=204)
