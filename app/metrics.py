"""Prometheus metrics of the API at `GET /metrics` (prometheus_client's text format).

Request latency by route template, plus, read from the database at scrape time, simulations
by status and the queue depth (queued rows: the database is the queue, Redis only the
doorbell). In the embedded mode the job layer's counters (`worker/metrics.py`: claims, rounds
written, round duration, database retries) appear here too: this process's own plus those its
engine process writes to files (`worker.metrics.add_process_metrics`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models import SimulationStatus, simulations_repo
from models.db import session_scope

logger = logging.getLogger("app.metrics")

REQUEST_LATENCY = Histogram(
    "scarcity_http_request_duration_seconds",
    "Time to the end of the response, by method, route template and status code.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RequestMetrics:
    """Times every HTTP request; the route is the template (`/simulations/{simulation_id}`),
    so ids do not make a label each."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUEST_LATENCY.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - start
            )


class StoreCollector(Collector):
    """Gauges read from the database when Prometheus scrapes; none while it is down."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with session_scope(read_only=True) as session:
                counts = simulations_repo.count_by_status(session)
        except Exception as exc:
            logger.warning("metrics: database unavailable (%s)", type(exc).__name__)
            return
        by_status = GaugeMetricFamily(
            "scarcity_simulations", "Simulations by status (all owners).", labels=["status"]
        )
        for status in SimulationStatus:
            by_status.add_metric([str(status)], counts.get(str(status), 0))
        yield by_status
        yield GaugeMetricFamily(
            "scarcity_queue_depth",
            "Simulations queued and waiting for a worker.",
            value=counts.get(str(SimulationStatus.queued), 0),
        )


_collector = StoreCollector()
REGISTRY.register(_collector)


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
