"""Simulations: submit, read, list, rename, cancel, delete. Each route calls one function of
`app/simulations/service.py`."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response

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
from app.responses import SIMULATION_ERRORS as ERRORS
from app.responses import conflict, creation_responses
from app.schemas import (
    ErrorBody,
    SimulationCreate,
    SimulationPublic,
    SimulationsPublic,
    SimulationUpdate,
)
from app.simulations import service
from scarcity.config import PresetName

router = APIRouter(
    prefix="/simulations", tags=["simulations"], dependencies=[Depends(reject_unknown_query)]
)

Status = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled"]


@router.post(
    "",
    status_code=202,
    response_model=SimulationPublic,
    dependencies=[Depends(require_json), Depends(require_utf8_json_object_keys_once)],
    responses=creation_responses(
        "Invalid input, a key sent twice, an Idempotency-Key used for another request, a limit "
        "or the work budget exceeded, or settings that do not go together (e.g. `input_dim` of "
        "a real data set); the message names the field and the limit."
    ),
)
async def create_simulation(
    body: SimulationCreate,  # type: ignore[valid-type]
    owner: OwnerDep,
    settings: SettingsDep,
    admission: AdmissionDep,
    response: Response,
    idempotency_key: idempotency.KeyHeader = None,
) -> Any:
    """Queue a simulation: a preset plus overrides; answers 202 with its resource."""
    return await service.create_simulation(
        body, owner, settings, admission, response, idempotency_key
    )


@router.get(
    "",
    status_code=200,
    response_model=SimulationsPublic,
    responses={401: ERRORS[401], 422: ERRORS[422]},
)
def list_simulations(
    session: ReadSessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    status: Status | None = None,
    preset: PresetName | None = None,
    filter: str | None = Query(
        None,
        max_length=2000,
        description="Comparisons joined by `and` over `config.<field>`, `metrics.<name>` (final "
        "round), `tags.<key>`, `name`, `status`, `preset`, e.g. `config.dataset = 'digits' and "
        "metrics.test_accuracy >= 0.9` (README: the filter language).",
    ),
    order_by: str | None = Query(
        None,
        max_length=500,
        description="Sort keys, each optionally `asc`/`desc` (default asc), e.g. "
        "`metrics.loss asc, config.seed`; ties and the default: newest first.",
    ),
    limit: int = Query(20, ge=1, description="Page size (capped by SCARCITY_MAX_PAGE_SIZE)."),
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` of the last page."),
) -> SimulationsPublic:
    """Your simulations, newest first (or by `order_by`), filtered by `filter`, status, preset."""
    return service.list_simulations(
        session,
        owner,
        status=status,
        preset=preset,
        filter=filter,
        order_by=order_by,
        limit=min(limit, settings.max_page_size),
        cursor=cursor,
    )


@router.get("/{simulation_id}", status_code=200, response_model=SimulationPublic, responses=ERRORS)
def get_simulation(
    simulation_id: uuid.UUID, session: ReadSessionDep, owner: OwnerDep
) -> SimulationPublic:
    """One simulation: status, resolved config, progress, timestamps, error."""
    return service.read_simulation(session, simulation_id, owner)


@router.patch(
    "/{simulation_id}",
    status_code=200,
    response_model=SimulationPublic,
    dependencies=[Depends(require_json), Depends(require_utf8_json_object_keys_once)],
    responses={
        **ERRORS,
        400: {"model": ErrorBody, "description": "Body unreadable (not UTF-8)."},
        413: {"model": ErrorBody, "description": "Request body too large."},
        415: {"model": ErrorBody, "description": "Body not sent as application/json."},
    },
)
def update_simulation(
    simulation_id: uuid.UUID, body: SimulationUpdate, session: SessionDep, owner: OwnerDep
) -> SimulationPublic:
    """Rename, tag or annotate a run (any status); fields left out stay as they are."""
    return service.update_simulation(session, simulation_id, owner, body)


@router.post(
    "/{simulation_id}/cancel",
    status_code=200,
    response_model=SimulationPublic,
    responses={**ERRORS, **conflict("Already finished.")},
)
def cancel_simulation(
    simulation_id: uuid.UUID, session: SessionDep, owner: OwnerDep
) -> SimulationPublic:
    """Cancel: a queued run at once, a running one after its current round."""
    return service.cancel_simulation(session, simulation_id, owner)


@router.delete(
    "/{simulation_id}",
    status_code=204,
    responses={**ERRORS, **conflict("Still running.")},
)
def delete_simulation(simulation_id: uuid.UUID, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete a simulation that is not running, with all its rounds."""
    service.delete_simulation(session, simulation_id, owner)
    return Response(status_code=204)
