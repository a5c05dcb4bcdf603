"""Prometheus metrics of the job layer (prometheus_client), shared by both run modes.

In the embedded mode they live in the API process and `/metrics` serves them; a Celery worker
serves its own on `SCARCITY_WORKER_METRICS_PORT` (README, "Metrics"). Gauges that need the
database (simulations by status, queue depth) are collected by the API at scrape time.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
