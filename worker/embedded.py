"""Embedded mode: the API starts its own engine process and feeds it an in-process queue.

No Redis, no second command: `make run` needs nothing but SQLite. The jobs run in one child
process (`worker/engine_process.py`), one after another, so the engine never holds the API's
interpreter lock; its change notifications come back to this process's event feeds and its
counters into this process's `/metrics`. Simulations that were queued or running when the
previous process stopped are queued again at start-up. An engine process that dies (killed,
out of memory) is started again; the run it held resumes once its lease expires, as after a
lost Celery worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from models import lease, notify
from models.db import session_scope
from scarcity.logging_setup import is_configured
from worker import engine_process
from worker.reaper import run_reaper

logger = logging.getLogger("worker.embedded")

RESTART_SECONDS = 1.0  # between an engine process's death and the next one's start


class _EngineProcess:
    """One engine process with its own queues: a process killed while holding a queue's lock
    leaves that queue unusable, so each process gets fresh ones."""

    def __init__(self, context: Any, metrics_dir: str) -> None:
        self.jobs = context.Queue()
        self.outbox = context.Queue()
        self.stop = context.Event()
        self.process: BaseProcess = context.Process(
            target=engine_process.main,
            args=(self.jobs, self.outbox, self.stop, os.getpid(), is_configured()),
            name="scarcity-engine",
            daemon=True,
        )
        # prometheus_client picks its storage when imported: the child imports it afresh.
        saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            self.process.start()
        finally:
            if saved is None:
                del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            else:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved

    def close(self) -> None:
        for channel in (self.jobs, self.outbox):
            channel.close()
            channel.join_thread()
        self.process.close()


class EmbeddedWorker:
    """The engine process, its supervisor and the reaper, behind `publish`."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")  # fork would copy our threads' locks
        self._pending: list[uuid.UUID] = []  # published, not yet taken, in order
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._engine: _EngineProcess | None = None
        self._metrics_dir = ""

    def publish(self, simulation_id: uuid.UUID) -> bool:
        with self._lock:
            if simulation_id in self._pending:
                return True  # already waiting; the reaper may publish the same id again
            self._pending.append(simulation_id)
            if self._engine is not None:
                self._engine.jobs.put(str(simulation_id))
        return True

    def publish_many(self, simulation_ids: Sequence[uuid.UUID]) -> int:
        return sum(self.publish(simulation_id) for simulation_id in simulation_ids)

    def start(self) -> None:
        with session_scope() as session:
            orphans = lease.requeue_running(session)
            waiting = lease.waiting_simulations(session)
        if orphans:
            logger.info("re-queued %d simulation(s) interrupted by the last shutdown", orphans)
        from worker import metrics

        self._metrics_dir = tempfile.mkdtemp(prefix="scarcity-engine-metrics-")
        metrics.add_process_metrics(self._metrics_dir)
        for simulation_id in waiting:
            self.publish(simulation_id)
        self._start_engine()
        self._threads = [
            threading.Thread(target=self._supervise, daemon=True, name="engine-supervisor"),
            threading.Thread(
                target=run_reaper, args=(self.publish_many, self._stop), daemon=True, name="reaper"
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current round's transaction; an unfinished run resumes next start."""
        self._stop.set()
        engine = self._engine
        if engine is not None:
            engine.stop.set()
            engine.jobs.put(None)
            engine.process.join(timeout)
            if engine.process.is_alive():  # a long round: its run resumes at the next start
                logger.warning("engine process still in a round after %.0f s: killed", timeout)
                engine.process.kill()
                engine.process.join()
            engine.outbox.put(None)  # ends the supervisor's read
        for thread in self._threads:
            thread.join(timeout)
        if engine is not None:
            engine.close()
            self._engine = None  # its queues' semaphores go with it, not at interpreter exit
        shutil.rmtree(self._metrics_dir, ignore_errors=True)

    @property
    def alive(self) -> bool:
        engine = self._engine
        return (
            engine is not None
            and engine.process.is_alive()
            and bool(self._threads)
            and all(t.is_alive() for t in self._threads)
        )

    def _start_engine(self) -> None:
        with self._lock:
            self._engine = _EngineProcess(self._context, self._metrics_dir)
            for simulation_id in self._pending:
                self._engine.jobs.put(str(simulation_id))

    def _supervise(self) -> None:
        """Relay the engine process's messages until it exits, then start another unless
        stopping."""
        while True:
            engine = self._engine
            assert engine is not None
            self._relay(engine)
            if self._stop.is_set():
                return
            logger.error(
                "engine process died (exit code %s); starting another in %.0f s",
                engine.process.exitcode,
                RESTART_SECONDS,
            )
            if self._stop.wait(RESTART_SECONDS):
                return
            self._start_engine()

    def _relay(self, engine: _EngineProcess) -> None:
        while True:
            try:
                message = engine.outbox.get(timeout=1.0)
            except Exception:  # queue.Empty, or a message cut short by the process's death
                if engine.process.is_alive():
                    continue
                return
            if message is None:  # stop() is done with this process
                return
            kind, value = message
            if kind == "note":
                notify.dispatch(notify.Note.parse(value))
            elif kind == "taken":
                with self._lock:
                    taken = uuid.UUID(value)
                    if taken in self._pending:
                        self._pending.remove(taken)
            elif kind == "publish":
                self.publish_many([uuid.UUID(v) for v in value])
