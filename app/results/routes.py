"""Per-round results of a simulation: metrics (JSON or CSV), insights, meta-params, logs,
attempts, live events and the clients' data. Each route calls one function of
`app/results/service.py` (the live events: `app/events.py`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app import events
from app.deps import OwnerDep, ReadSessionDep, SessionDep, SettingsDep, reject_unknown_query
from app.responses import NOT_ACCEPTABLE, conflict, csv_table
from app.responses import SIMULATION_ERRORS as ERRORS
from app.results import service
from app.schemas import (
    MAX_INT,
    AttemptsPublic,
    ClientsPublic,
    InsightsPublic,
    LogsPublic,
    MetaParamsPublic,
    MetricsPublic,
    ModelArchitecturePublic,
)

router = APIRouter(
    prefix="/simulations/{simulation_id}",
    tags=["results"],
    dependencies=[Depends(reject_unknown_query)],
)


@router.get(
    "/metrics",
    status_code=200,
    response_model=MetricsPublic,
    responses={**csv_table("Metrics."), **ERRORS, 406: NOT_ACCEPTABLE},
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
    return service.metrics(
        session,
        simulation_id,
        owner,
        from_round=from_round,
        to_round=to_round,
        names=names,
        format=format,
        accept=request.headers.get("accept"),
    )


@router.get("/insights", status_code=200, response_model=InsightsPublic, responses=ERRORS)
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
    return service.insights(
        session, simulation_id, owner, round=round, client_id=client_id, limit=limit, offset=offset
    )


@router.get("/meta-params", status_code=200, response_model=MetaParamsPublic, responses=ERRORS)
def get_meta_params(
    simulation_id: uuid.UUID,
    session: ReadSessionDep,
    owner: OwnerDep,
    from_round: int | None = Query(None, ge=1, le=MAX_INT),
    to_round: int | None = Query(None, ge=1, le=MAX_INT),
) -> MetaParamsPublic:
    """The meta-learner's parameters after each round (mean, std, lr, updates, priors)."""
    return service.meta_params(
        session, simulation_id, owner, from_round=from_round, to_round=to_round
    )


@router.get("/logs", status_code=200, response_model=LogsPublic, responses=ERRORS)
def get_logs(
    simulation_id: uuid.UUID,
    session: ReadSessionDep,
    owner: OwnerDep,
    after_id: int = Query(0, ge=0, le=MAX_INT, description="Only lines after this id."),
) -> LogsPublic:
    """Log lines in the order they were written: lifecycle (round 0) and per-round lines."""
    return service.logs(session, simulation_id, owner, after_id)


@router.get("/attempts", status_code=200, response_model=AttemptsPublic, responses=ERRORS)
def get_attempts(simulation_id: uuid.UUID, session: ReadSessionDep, owner: OwnerDep) -> Any:
    """Provenance of every attempt: the worker, when it started, scarcity's version and git
    commit, the torch and numpy versions, torch's thread count, the CPU kernels, the host."""
    return service.attempts(session, simulation_id, owner)


@router.get(
    "/events",
    status_code=200,
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
    return await events.open_stream(request.app.state.events, simulation_id, owner, last_event_id)


@router.get(
    "/clients",
    status_code=200,
    response_model=ClientsPublic,
    responses={
        **csv_table("Clients."),
        **ERRORS,
        406: NOT_ACCEPTABLE,
        **conflict("A large run not started yet."),
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
    return service.clients(
        session, simulation_id, owner, format=format, accept=request.headers.get("accept")
    )


_MODEL_ROUND = Query(ge=1, le=MAX_INT, description="The round after which the model is taken.")
_MODEL_CLIENT = Query(
    None, ge=0, le=MAX_INT, description="A client's experts instead of the global model."
)
_MODEL_ERRORS = {
    **ERRORS,
    **conflict(
        "No such model: the round has not run, the run has no global model (no FedAvg) or its "
        "clients no experts, or recomputing it is refused (too long, or not reproduced)."
    ),
}


@router.get(
    "/model",
    status_code=200,
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "safetensors (its metadata holds the architecture under "
            "`scarcity.architecture`) or a torch state dict (`torch.load(weights_only=True)`).",
        },
        **_MODEL_ERRORS,
    },
)
def get_model(
    simulation_id: uuid.UUID,
    session: ReadSessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    round: int = _MODEL_ROUND,
    client_id: int | None = _MODEL_CLIENT,
    format: str = Query("safetensors", pattern="^(safetensors|torch)$"),
) -> Response:
    """The global model (or a client's experts) after a round, recomputed from the run's
    seed and checked against the stored round: safetensors or a torch state dict."""
    return service.model(
        session,
        simulation_id,
        owner,
        settings,
        round=round,
        client_id=client_id,
        format="torch" if format == "torch" else "safetensors",
    )


@router.get(
    "/model/architecture",
    status_code=200,
    response_model=ModelArchitecturePublic,
    responses=_MODEL_ERRORS,
)
def get_model_architecture(
    simulation_id: uuid.UUID,
    session: ReadSessionDep,
    owner: OwnerDep,
    round: int = _MODEL_ROUND,
    client_id: int | None = _MODEL_CLIENT,
) -> ModelArchitecturePublic:
    """What `/model` sends for the same query: backbone, dimensions, every tensor's shape."""
    return service.model_architecture(
        session, simulation_id, owner, round=round, client_id=client_id
    )
