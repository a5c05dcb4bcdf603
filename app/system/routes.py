"""Health, readiness and Prometheus metrics: what operators and orchestrators poll."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.schemas import Health
from app.system import service

router = APIRouter(tags=["system"])


@router.get("/healthz", status_code=200, response_model=Health)
async def healthz() -> Health:  # no I/O: `async` keeps it off the thread pool
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", status_code=200, response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> JSONResponse:
    """The database and the queue are reachable."""
    body = service.readiness(request.app.state.queue_check)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


@router.get(
    "/metrics", status_code=200, response_class=Response, include_in_schema=False
)  # for Prometheus
async def metrics() -> Response:
    """Prometheus metrics: requests, simulations by status, queue depth, rounds, retries."""
    body, content_type = await service.prometheus()
    return Response(body, media_type=content_type)
