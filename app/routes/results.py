"""Per-round results of a simulation: metrics (JSON or CSV), insights, meta-params, logs, events."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app import service
from app.deps import OwnerDep, ReadSessionDep, reject_unknown_query
from app.events import EventHub, events
from app.routes.simulations import ERRORS
from app.schemas import (
    MAX_INT,
    AttemptsPublic,
    ErrorBody,
    InsightPublic,
    InsightsPublic,
    LogLine,
    LogsPublic,
    MetaParamsPublic,
    MetaParamsRow,
    MetricsPublic,
)
from models.db import session_scope

router = APIRouter(
    prefix="/simulations/{simulation_id}",
    tags=["results"],
    dependencies=[Depends(reject_unknown_query)],
)

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "Metrics."}
}


@router.get(
    "/metrics",
    response_model=MetricsPublic,
    responses={
        **CSV_RESPONSE,
        **ERRORS,
        406: {"model": ErrorBody, "description": "`Accept` allows neither JSON nor CSV."},
    },
)
def get_metrics(
    simulation_id: uuid.UUID,
    request: Request,
    session: ReadSessionDep,
    owner: OwnerDep,
    from_round: int | None = Query(None, ge=1, le=MAX_INT),
    to_round: int | None = Query(None, ge=1, le=MAX_INT),
    names: str | None = Query(None, max_length=2000, description="Comma list of metric names."),
    format: str | None = Query(None, pattern="^(json|csv)$", description="Or `Accept: text/csv`."),
) -> Any:
    """Metrics of every finished round; `Accept: text/csv` (q-values honoured) or `format=csv`
    for one row per round; `format` wins over `Accept`."""
    service.get_simulation(session, simulation_id, owner)
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    rows = service.metrics_rows(
        session, simulation_id, from_round=from_round, to_round=to_round, names=wanted
    )
    if service.wants_csv(format, request.headers.get("accept")):
        return Response(service.metrics_csv(rows), media_type="text/csv")
    return {"simulation_id": simulation_id, "rounds": rows}


@router.get("/insights", response_model=InsightsPublic, responses=ERRORS)
def get_insights(
    simulation_id: uuid.UUID,
    session: ReadSessionDep,
    owner: OwnerDep,
    round: int | None = Query(None, ge=1, le=MAX_INT),
    client_id: int | None = Query(None, ge=0, le=MAX_INT),
    limit: int = Query(1000, ge=1, le=10_000),
    offset: int = Query(0, ge=0, le=MAX_INT),
) -> InsightsPublic:
    """Per-client insights, by round and/or client."""
    service.get_simulation(session, simulation_id, owner)
    rows = service.insights(
        session, simulation_id, round=round, client_id=client_id, limit=limit, offset=offset
    )
    return InsightsPublic(
        simulation_id=simulation_id,
        insights=[
            InsightPublic(round=r.round, client_id=r.client_id, insight=r.insight) for r in rows
        ],
    )


@router.get("/meta-params", response_model=MetaParamsPublic, responses=ERRORS)
def get_meta_params(
    simulation_id: uuid.UUID,
    session: ReadSessionDep,
    owner: OwnerDep,
    from_round: int | None = Query(None, ge=1, le=MAX_INT),
    to_round: int | None = Query(None, ge=1, le=MAX_INT),
) -> MetaParamsPublic:
    """The meta-learner's parameters after each round (mean, std, lr, updates, priors)."""
    service.get_simulation(session, simulation_id, owner)
    rows = service.meta_params_rows(
        session, simulation_id, from_round=from_round, to_round=to_round
    )
    return MetaParamsPublic(
        simulation_id=simulation_id,
        rounds=[MetaParamsRow(round=r.round, **r.params) for r in rows],
    )


@router.get("/logs", response_model=LogsPublic, responses=ERRORS)
def get_logs(
    simulation_id: uuid.UUID,
    session: ReadSessionDep,
    owner: OwnerDep,
    after_id: int = Query(0, ge=0, le=MAX_INT, description="Only lines after this id."),
) -> LogsPublic:
    """Log lines in the order they were written: lifecycle (round 0) and per-round lines."""
    service.get_simulation(session, simulation_id, owner)
    rows = service.log_lines(session, simulation_id, after_id)
    return LogsPublic(
        simulation_id=simulation_id,
        lines=[LogLine(id=r.id, round=r.round, level=r.level, message=r.message) for r in rows],
    )


@router.get("/attempts", response_model=AttemptsPublic, responses=ERRORS)
def get_attempts(simulation_id: uuid.UUID, session: ReadSessionDep, owner: OwnerDep) -> Any:
    """Provenance of every attempt: the worker, when it started, scarcity's version and git
    commit, the torch and numpy versions, torch's thread count, the CPU kernels, the host."""
    return {
        "simulation_id": simulation_id,
        "attempts": service.attempts(session, simulation_id, owner),
    }


def _exists(simulation_id: uuid.UUID, owner: str) -> None:
    with session_scope(read_only=True) as session:
        service.get_simulation(session, simulation_id, owner)


@router.get(
    "/events",
    # a response class without a media type: FastAPI documents no body of its own (it would add
    # an application/json one this route never sends), only the event stream below
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    # each event, by OpenAPI 3.2's itemSchema (schemathesis checks every one); no
                    # `schema`, which a 3.1 reader takes for each event and a 3.2 one for them all
                    "itemSchema": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string", "enum": ["round", "end"]},
                            "id": {"type": "string", "description": "The round (`round`)."},
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "description": "`round`: its RoundMetricsPublic with "
                                "`rounds_total`; `end`: the SimulationPublic.",
                            },
                        },
                        "required": ["event", "data"],
                    }
                }
            },
            "description": "Server-sent events.",
        },
        **ERRORS,
    },
)
async def stream_events(
    simulation_id: uuid.UUID,
    request: Request,
    owner: OwnerDep,
    last_event_id: Annotated[
        int, Header(ge=0, le=MAX_INT, description="Resume after this round (set by browsers).")
    ] = 0,
) -> StreamingResponse:
    """Server-sent events: `round` per finished round (with metrics), then one `end`.

    Every subscriber of a simulation in this process shares one reader, woken as soon as the
    worker stores a round (`app/events.py`)."""
    hub: EventHub = request.app.state.events
    await hub.check(simulation_id, owner, _exists)  # 404 before the stream opens
    return StreamingResponse(
        events(hub, simulation_id, owner, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
