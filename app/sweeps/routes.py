"""Sweeps: submit a grid or random search over configs and seeds, follow it, read its results.
Each route calls one function of `app/sweeps/service.py`."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app import idempotency
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
from app.responses import (
    INVALID,
    NOT_ACCEPTABLE,
    UNAUTHORIZED,
    conflict,
    creation_responses,
    csv_table,
)
from app.schemas import (
    ErrorBody,
    SweepCreate,
    SweepPublic,
    SweepResultsPublic,
    SweepsPublic,
)
from app.sweeps import service

router = APIRouter(prefix="/sweeps", tags=["sweeps"], dependencies=[Depends(reject_unknown_query)])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: UNAUTHORIZED,
    404: {"model": ErrorBody, "description": "No such sweep (or not yours)."},
    422: INVALID,
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
    return await service.create_sweep(body, owner, settings, admission, response, idempotency_key)


@router.get(
    "", status_code=200, response_model=SweepsPublic, responses={401: ERRORS[401], 422: ERRORS[422]}
)
def list_sweeps(
    session: ReadSessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    limit: int = Query(20, ge=1, description="Page size (capped by SCARCITY_MAX_PAGE_SIZE)."),
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` of the last page."),
) -> SweepsPublic:
    """Your sweeps, newest first, each with its progress by status."""
    return service.list_sweeps(
        session, owner, limit=min(limit, settings.max_page_size), cursor=cursor
    )


@router.get("/{sweep_id}", status_code=200, response_model=SweepPublic, responses=ERRORS)
def get_sweep(sweep_id: uuid.UUID, session: ReadSessionDep, owner: OwnerDep) -> SweepPublic:
    """One sweep: its request, status and how many of its runs are in each status."""
    return service.read_sweep(session, sweep_id, owner)


@router.get(
    "/{sweep_id}/results",
    status_code=200,
    response_model=SweepResultsPublic,
    responses={**csv_table("One row per configuration."), **ERRORS, 406: NOT_ACCEPTABLE},
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
    return service.results_table(
        session, sweep_id, owner, format=format, accept=request.headers.get("accept")
    )


@router.post(
    "/{sweep_id}/cancel",
    status_code=200,
    response_model=SweepPublic,
    responses={**ERRORS, **conflict("Already ended.")},
)
def cancel_sweep(sweep_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> SweepPublic:
    """Cancel: no more runs start, waiting ones are cancelled, running ones stop after their
    current round."""
    return service.cancel_sweep(session, sweep_id, owner)


@router.delete(
    "/{sweep_id}",
    status_code=204,
    responses={**ERRORS, **conflict("A run is still running.")},
)
def delete_sweep(sweep_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete a sweep with all its simulations and their rounds (none may be running)."""
    service.delete_sweep(session, sweep_id, owner)
    return Response(status_code=204)
