"""The clients' data of a simulation: rows held and labels (or targets), JSON or CSV."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app import service
from app.deps import OwnerDep, SessionDep, reject_unknown_query
from app.routes.simulations import ERRORS
from app.schemas import ClientsPublic, ErrorBody

router = APIRouter(
    prefix="/simulations/{simulation_id}",
    tags=["results"],
    dependencies=[Depends(reject_unknown_query)],
)

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "Clients."}
}


@router.get(
    "/clients",
    response_model=ClientsPublic,
    responses={
        **CSV_RESPONSE,
        **ERRORS,
        406: {"model": ErrorBody, "description": "`Accept` allows neither JSON nor CSV."},
        409: {"model": ErrorBody, "description": "A large run not started yet."},
    },
)
def get_clients(
    simulation_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    format: str | None = Query(None, pattern="^(json|csv)$", description="Or `Accept: text/csv`."),
) -> Any:
    """Each client's training rows and label histogram (regression: each target's mean and
    std), from the partition the run trains on; `Accept: text/csv` (q-values honoured) or
    `format=csv` for one row per client; `format` wins over `Accept`."""
    clients = service.client_data(session, simulation_id, owner)
    if service.wants_csv(format, request.headers.get("accept")):
        return Response(service.client_data_csv(clients), media_type="text/csv")
    return {"simulation_id": simulation_id, "clients": clients}
