"""Per-round results of a simulation: metrics (JSON or CSV), insights, meta-params, logs, events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sse_starlette.sse import EventSourceResponse

from app import service
from app.deps import OwnerDep, ReadSessionDep, reject_unknown_query
from app.routes.simulations import ERRORS
from app.schemas import (
    MAX_INT,
    InsightPublic,
    InsightsPublic,
    LogLine,
    LogsPublic,
    MetaParamsPublic,
    MetaParamsRow,
    MetricsPublic,
)
from models import FINISHED_STATUSES, store
from models.db import session_scope

router = APIRouter(
    prefix="/simulations/{simulation_id}",
    tags=["results"],
    dependencies=[Depends(reject_unknown_query)],
)
EVENT_POLL_SECONDS = 0.5

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "Metrics."}
}


@router.get("/metrics", response_model=MetricsPublic, responses={**CSV_RESPONSE, **ERRORS})
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
    """Metrics of every finished round; `Accept: text/csv` or `format=csv` for one row per round."""
    service.get_simulation(session, simulation_id, owner)
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    rows = service.metrics_rows(
        session, simulation_id, from_round=from_round, to_round=to_round, names=wanted
    )
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
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
    rows = store.insights(
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
    rows = store.meta_params(session, simulation_id, from_round, to_round)
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
    rows = store.logs(session, simulation_id, after_id)
    return LogsPublic(
        simulation_id=simulation_id,
        lines=[LogLine(id=r.id, round=r.round, level=r.level, message=r.message) for r in rows],
    )


def _poll(simulation_id: uuid.UUID, owner: str, after_round: int) -> tuple[Any, list[Any]]:
    with session_scope(read_only=True) as session:
        simulation = service.get_simulation(session, simulation_id, owner)
        rows = service.metrics_rows(
            session, simulation_id, from_round=after_round + 1, to_round=None, names=None
        )
        return service.to_public(session, [simulation])[0], rows


@router.get(
    "/events",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."},
        **ERRORS,
    },
)
async def stream_events(
    simulation_id: uuid.UUID,
    owner: OwnerDep,
    last_event_id: Annotated[
        int, Header(ge=0, le=MAX_INT, description="Resume after this round (set by browsers).")
    ] = 0,
) -> EventSourceResponse:
    """Server-sent events: `round` per finished round (with metrics), then one `end`."""
    await run_in_threadpool(_poll, simulation_id, owner, 0)  # 404 before the stream opens

    async def events() -> AsyncIterator[dict[str, str]]:
        sent = last_event_id  # a reconnecting client gets only the rounds it missed
        while True:
            simulation, rows = await run_in_threadpool(_poll, simulation_id, owner, sent)
            for row in rows:
                sent = row["round"]
                payload = {**row, "rounds_total": simulation.progress.rounds_total}
                yield {"event": "round", "id": str(sent), "data": json.dumps(payload)}
            if simulation.status in FINISHED_STATUSES:
                yield {"event": "end", "data": simulation.model_dump_json()}
                return
            await asyncio.sleep(EVENT_POLL_SECONDS)

    return EventSourceResponse(events(), ping=15)
