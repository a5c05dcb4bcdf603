"""Embedded mode: the API process runs the job code itself, fed by an in-process queue.

No Redis, no separate process: `make run` needs nothing but SQLite. Simulations that were
queued or running when the previous process stopped are queued again at start-up.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Sequence

from models import lease
from models.db import session_scope
from worker.reaper import run_reaper

logger = logging.getLogger("worker.embedded")


class EmbeddedWorker:
    """One background thread running `worker.tasks.execute` for each published id, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[uuid.UUID | None] = queue.Queue()
        self._pending: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def publish(self, simulation_id: uuid.UUID) -> bool:
        with self._lock:
            if simulation_id in self._pending:
                return True  # already waiting; the reaper may publish the same id again
            self._pending.add(simulation_id)
        self._queue.put(simulation_id)
        return True

    def publish_many(self, simulation_ids: Sequence[uuid.UUID]) -> int:
        return sum(self.publish(simulation_id) for simulation_id in simulation_ids)

    def start(self) -> None:
        with session_scope() as session:
            orphans = lease.requeue_running(session)
            waiting = lease.waiting_simulations(session)
        if orphans:
            logger.info("re-queued %d simulation(s) interrupted by the last shutdown", orphans)
        for simulation_id in waiting:
            self.publish(simulation_id)
        self._threads = [
            threading.Thread(target=self._consume, daemon=True, name="embedded-worker"),
            threading.Thread(
                target=run_reaper, args=(self.publish_many, self._stop), daemon=True, name="reaper"
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current round's transaction; an unfinished run resumes next start."""
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _consume(self) -> None:
        from worker.tasks import configure_torch, execute  # torch loads here, not at import

        configure_torch()
        while not self._stop.is_set():
            simulation_id = self._queue.get()
            if simulation_id is None:
                return
            with self._lock:
                self._pending.discard(simulation_id)
            try:
                # A run stopped at shutdown resumes at the next start.
                execute(simulation_id, should_stop=self._stop.is_set, publish=self.publish_many)
            except Exception:
                logger.exception("embedded worker: simulation %s crashed", simulation_id)
