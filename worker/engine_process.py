"""The embedded mode's engine process: runs `worker.tasks.execute` for the ids the API sends.

The engine is Python-heavy (small tensors, many ops), so in the API's own process it held the
interpreter lock most of the time and every request and event stream waited for it; in a
process of its own it has a core to itself and the API stays responsive. What crosses the
boundary (`EmbeddedWorker` is the other end):

- in: simulation ids on `jobs` (None: stop), and `stop`, an event asked after every stored
  round (the run is released there and resumes at the next start);
- out, on `outbox`: ("taken", id) when a job leaves the queue, ("publish", ids) for runs this
  one queues (a sweep's next runs, its own resumption after a stop), and ("note", payload) for
  every committed change notification, which the API hands to its event feeds as its own;
- the job layer's Prometheus counters go to files in `PROMETHEUS_MULTIPROC_DIR` (set by the
  API for this process), which the API's `/metrics` adds to its own.

The process dies with the API: on Linux the kernel kills it when its parent dies (even by
SIGKILL), elsewhere a watchdog thread notices within a second. Ctrl-C, which a terminal sends
to the whole process group, is left to the API, which stops this process at a round boundary;
SIGTERM sent to this process alone stops it there too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

logger = logging.getLogger("worker.engine_process")

PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:  # the parent died (also before prctl took effect)
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(
    jobs: Queue[str | None],
    outbox: Queue[tuple[str, Any]],
    stop: Event,
    parent_pid: int,
    log_like_the_service: bool,
) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if log_like_the_service:
        from worker.service_logging import configure_service_logging

        configure_service_logging()

    from models import notify
    from worker.tasks import configure_torch, execute, worker_name  # torch loads here

    notify.subscribe(lambda note: outbox.put(("note", note.payload())))
    configure_torch()

    def publish(simulation_ids: Any) -> int:
        ids = [str(simulation_id) for simulation_id in simulation_ids]
        outbox.put(("publish", ids))
        return len(ids)

    def stopping() -> str | None:
        return f"{worker_name()} is shutting down" if stop.is_set() else None

    while not stop.is_set():
        try:
            item = jobs.get(timeout=0.5)
        except queue.Empty:
            continue
        if item is None:
            break
        outbox.put(("taken", item))
        try:
            # A run stopped at shutdown resumes at the next start.
            execute(uuid.UUID(item), should_stop=stopping, publish=publish)
        except Exception:
            logger.exception("embedded worker: simulation %s crashed", item)
