"""Prometheus metrics of the job layer (prometheus_client), shared by both run modes.

In the embedded mode the engine process writes them to files (prometheus_client's
multiprocess mode) and the API's `/metrics` adds those to its own (`add_process_metrics`); a
Celery worker serves its own on `SCARCITY_WORKER_METRICS_PORT` (README, "Metrics"). Gauges that
need the database (simulations by status, queue depth) are collected by the API at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

CLAIMS = Counter(
    "scarcity_claims",
    "Simulations claimed by a worker (start: from round 0; resume: from a stored round).",
    ["kind"],
)
ROUNDS_WRITTEN = Counter("scarcity_rounds_written", "Rounds stored with their checkpoint.")
ROUND_DURATION = Histogram(
    "scarcity_round_duration_seconds",
    "Engine time of one round.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
FINISHED = Counter("scarcity_simulations_finished", "Runs ended by this process.", ["status"])
DB_ERRORS = Counter(
    "scarcity_db_errors",
    "Transient database errors a worker retried, by step (claim, round write, heartbeat …).",
    ["step"],
)
GIVE_UPS = Counter(
    "scarcity_db_give_ups",
    "Runs released because the database stayed unavailable past SCARCITY_DB_RETRY_SECONDS.",
)

JOB_METRICS = (CLAIMS, ROUNDS_WRITTEN, ROUND_DURATION, FINISHED, DB_ERRORS, GIVE_UPS)


class WithProcessMetrics(Collector):
    """The job-layer metrics of this process plus those other processes wrote to `path`:
    every counter and histogram sample is a sum, so the two add sample by sample."""

    def __init__(self, path: str) -> None:
        self._theirs = MultiProcessCollector(None, path)

    def collect(self) -> Iterator[Metric]:
        theirs = {family.name: family for family in self._theirs.collect()}
        for collector in JOB_METRICS:
            for family in collector.collect():
                other = theirs.get(family.name)
                if other is not None:
                    family.samples = _summed(family.samples, other.samples)
                yield family


def _summed(ours: list[Sample], theirs: list[Sample]) -> list[Sample]:
    """Our samples with their values added where theirs has the same name and labels, then
    theirs that we lack."""

    def key(sample: Sample) -> tuple[str, tuple[tuple[str, str], ...]]:
        return sample.name, tuple(sorted(sample.labels.items()))

    rest = {key(s): s for s in theirs}
    summed = [
        s._replace(value=s.value + rest.pop(key(s)).value) if key(s) in rest else s for s in ours
    ]
    return summed + list(rest.values())


def add_process_metrics(path: str) -> None:
    """Serve, with this process's job-layer metrics, those other processes write to `path`."""
    for collector in JOB_METRICS:
        REGISTRY.unregister(collector)
    REGISTRY.register(WithProcessMetrics(path))
