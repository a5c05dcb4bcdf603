"""The reaper: re-publishes queued simulations and running ones whose lease expired.

It covers a lost message (Redis restarted without persistence, publish failed) and a dead
worker. Publishing twice is harmless: the claim lets exactly one worker run a simulation.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from models import store
from models.db import session_scope
from models.settings import get_settings

logger = logging.getLogger("worker.reaper")


def reap_once(publish: Callable[[uuid.UUID], object]) -> list[uuid.UUID]:
    settings = get_settings()
    with session_scope(read_only=True) as session:
        ids = store.simulations_to_enqueue(session, settings.worker_lease_seconds)
    for simulation_id in ids:
        publish(simulation_id)
    if ids:
        logger.info("reaper re-published %d simulation(s)", len(ids))
    return ids


def run_reaper(publish: Callable[[uuid.UUID], object], stop: threading.Event) -> None:
    """At start-up and then every lease/2 until `stop` is set."""
    interval = get_settings().worker_lease_seconds / 2
    while True:
        try:
            reap_once(publish)
        except Exception:  # the database may be restarting; try again next tick
            logger.warning("reaper pass failed", exc_info=True)
        if stop.wait(interval):
            return
