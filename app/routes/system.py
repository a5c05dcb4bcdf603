"""Presets, health and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.deps import OwnerDep
from app.schemas import (
    ErrorBody,
    Health,
    ModelPublic,
    PartitionPublic,
    PresetPublic,
    StrategyPublic,
)
from models.db import get_engine
from scarcity.backbones import BACKBONES
from scarcity.config import PRESETS, SimulationConfig, resolve_config
from scarcity.partitions import PARTITIONERS
from scarcity.strategies import STRATEGIES

router = APIRouter(tags=["system"])


@router.get(
    "/presets",
    response_model=list[PresetPublic],
    responses={401: {"model": ErrorBody, "description": "Missing or invalid API key."}},
)
async def list_presets(_: OwnerDep) -> list[PresetPublic]:  # CPU only, off the thread pool
    """Every preset with its description and fully resolved default config."""
    return [
        PresetPublic(
            name=p.name,
            description=p.description,
            config=resolve_config({"preset": p.name}).model_dump(),
        )
        for p in PRESETS.values()
    ]


@router.get(
    "/strategies",
    response_model=list[StrategyPublic],
    responses={401: {"model": ErrorBody, "description": "Missing or invalid API key."}},
)
async def list_strategies(_: OwnerDep) -> list[StrategyPublic]:  # CPU only, off the thread pool
    """Every federated strategy (`strategy` in a config) with its parameters and paper."""
    return [
        StrategyPublic(
            name=name, summary=cls.summary, paper=cls.paper, parameters=dict(cls.defaults)
        )
        for name, cls in STRATEGIES.items()
    ]


@router.get(
    "/partitions",
    response_model=list[PartitionPublic],
    responses={401: {"model": ErrorBody, "description": "Missing or invalid API key."}},
)
async def list_partitions(_: OwnerDep) -> list[PartitionPublic]:  # CPU only
    """Every split of a real data set (`partition` in a config), its parameters and the
    benchmark it mirrors."""
    fields = SimulationConfig.model_fields
    return [
        PartitionPublic(
            name=name,
            summary=p.summary,
            mirrors=p.mirrors,
            parameters={f: fields[f].default for f in p.parameters},
            by_label=p.by_label,
        )
        for name, p in PARTITIONERS.items()
    ]


@router.get(
    "/models",
    response_model=list[ModelPublic],
    responses={401: {"model": ErrorBody, "description": "Missing or invalid API key."}},
)
async def list_models(_: OwnerDep) -> list[ModelPublic]:  # CPU only
    """Every supervised model (`model` in a config) and the parameters it reads."""
    fields = SimulationConfig.model_fields
    return [
        ModelPublic(
            name=name,
            description=cls.description,
            parameters={f: fields[f].default for f in cls.parameters},
        )
        for name, (cls, _) in BACKBONES.items()
    ]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:  # no I/O: `async` keeps it off the thread pool
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> JSONResponse:
    """The database and the queue are reachable."""
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    checks["queue"] = request.app.state.queue_check()
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, include_in_schema=False)  # for Prometheus
async def metrics() -> Response:
    """Prometheus metrics: requests, simulations by status, queue depth, rounds, retries."""
    from app.metrics import render

    body, content_type = await run_in_threadpool(render)  # reads the database
    return Response(body, media_type=content_type)
