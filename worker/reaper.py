"""The reaper: re-publishes queued simulations and running ones whose lease expired.

It covers a lost message (Redis restarted without persistence, publish failed) and a dead
worker. Publishing twice is harmless: the claim lets exactly one worker run a simulation.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence

from models import lease, sweeps_repo
from models.db import session_scope
from models.settings import get_settings

logger = logging.getLogger("worker.reaper")


# A job waiting behind a long queue is re-sent after 1, 2, 4 ... leases, then at least hourly:
# a lost message is recovered without flooding the queue with copies of waiting ones.
MAX_REPUBLISH_BACKOFF_SECONDS = 3600.0


def reap_once(publish_many: Callable[[Sequence[uuid.UUID]], object]) -> list[uuid.UUID]:
    settings = get_settings()
    with session_scope() as session:
        ids = lease.take_due_for_republish(
            session,
            lease_seconds=settings.worker_lease_seconds,
            max_backoff_seconds=max(MAX_REPUBLISH_BACKOFF_SECONDS, settings.worker_lease_seconds),
        )
    # Sweeps whose runs could not all start (the owner's cap was full, a run was cancelled
    # while queued): start what fits now.
    for sweep_id in _sweeps_with_pending():
        with session_scope() as session:
            ids += sweeps_repo.release_pending(
                session,
                sweep_id,
                max_active_per_owner=settings.max_active_per_owner,
                lease_seconds=settings.worker_lease_seconds,
            )
    if ids:
        publish_many(ids)
        logger.info("reaper re-published %d simulation(s)", len(ids))
    return ids


def _sweeps_with_pending() -> list[uuid.UUID]:
    with session_scope(read_only=True) as session:
        return sweeps_repo.sweeps_with_pending(session)


def run_reaper(
    publish_many: Callable[[Sequence[uuid.UUID]], object], stop: threading.Event
) -> None:
    """At start-up and then every lease/2 until `stop` is set."""
    interval = get_settings().worker_lease_seconds / 2
    while True:
        try:
            reap_once(publish_many)
        except Exception as exc:  # the database may be restarting; try again next tick
            logger.warning(
                "reaper pass failed (%s)", type(getattr(exc, "orig", None) or exc).__name__
            )
        if stop.wait(interval):
            return
