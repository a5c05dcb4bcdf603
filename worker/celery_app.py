"""Celery application for the distributed mode, with the reliability policy in one place.

Redis is only a doorbell (docs/reliability.md): the task argument is a simulation id, status and
results live in our database, and a lost message is re-published by the reaper.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.exceptions import CPendingDeprecationWarning
from celery.signals import (
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from celery.worker.consumer import Consumer

from models.db import dispose_engines
from models.settings import export_datasets_dir, get_settings

logger = logging.getLogger("worker.celery")
TASK_NAME = "scarcity.run_simulation"


def make_celery() -> Celery:
    settings = get_settings()
    export_datasets_dir(settings)  # uploads: the engine in the pool processes reads the store
    app = Celery("scarcity", broker=settings.broker_url or "redis://127.0.0.1:6379/0")
    timeout = settings.publish_timeout_seconds
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        # A lost broker connection must not terminate running jobs: that would leave their
        # runs leased as if their worker had died, and charge an attempt. The consumer below
        # has them release their runs at the next round boundary instead.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_consumer="worker.celery_app:ReleasingConsumer",
        broker_connection_retry_on_startup=True,
        worker_soft_shutdown_timeout=10,
        worker_hijack_root_logger=False,
        # Standard Celery tooling (`celery events`, Flower, `inspect`) sees the tasks.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue="simulations",
        # A publish must never hang the API: bounded sockets and a small retry policy.
        broker_transport_options={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # Longer than any lease: redelivery of a live job is the reaper's business, not Redis's.
            "visibility_timeout": max(3600, int(settings.simulation_time_limit_seconds) + 600),
        },
        broker_connection_timeout=timeout,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": timeout / 4,
            "interval_max": timeout / 2,
        },
    )
    return app


celery_app = make_celery()


# Set in the main process when a warm shutdown (SIGTERM) begins; created before the pool forks,
# so the pool's children see it: their running simulation stops at its next round boundary.
_shutting_down = multiprocessing.Event()
# How often the consumer lost its broker connection; created before the pool forks, like the
# event above. A job that sees it change releases its run at its next round boundary: its
# message can no longer be acknowledged, and the released run goes out in a new one.
_broker_losses = multiprocessing.Value("i", 0)


class ReleasingConsumer(Consumer):
    """Celery's consumer, counting broker connection losses for the running jobs instead of
    having Celery terminate them (a terminated job's run would wait out its lease and be
    charged an attempt, though no worker died)."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        with _broker_losses.get_lock():
            _broker_losses.value += 1
        # Celery then warns that it will cancel such jobs by default one day: this app chose
        # not to. Set here, after Celery's logging setup turned its own warnings on.
        warnings.filterwarnings(
            "ignore", message=r"\s*In Celery 5\.1", category=CPendingDeprecationWarning
        )
        super().on_connection_error_after_connected(exc)


@celery_app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_simulation_task(simulation_id: str) -> str | None:
    from worker.tasks import execute, worker_name  # imports torch; keep the API's light

    losses_at_start = _broker_losses.value

    def stop_reason() -> str | None:
        if _shutting_down.is_set():
            return f"{worker_name()} is shutting down"
        if _broker_losses.value != losses_at_start:
            return f"{worker_name()} lost the broker connection"
        return None

    return execute(uuid.UUID(simulation_id), should_stop=stop_reason, publish=publish_many)


@worker_shutting_down.connect
def _stop_at_round_boundary(**_: Any) -> None:
    _shutting_down.set()


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    dispose_engines()  # pooled sockets must not be shared with the parent (celery#1564)
    from worker.tasks import configure_torch

    configure_torch()
    port = get_settings().worker_metrics_port
    if port:  # each pool process has its own counters: process i serves them on port + i
        from billiard.process import current_process
        from prometheus_client import start_http_server

        index = getattr(current_process(), "index", 0) or 0
        try:
            start_http_server(port + index, addr=get_settings().host)
        except OSError as exc:
            logger.warning("worker metrics: cannot listen on port %d (%s)", port + index, exc)


_reaper_stop = threading.Event()


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    from worker.reaper import run_reaper

    threading.Thread(
        target=run_reaper, args=(publish_many, _reaper_stop), daemon=True, name="reaper"
    ).start()


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    _reaper_stop.set()


def publish_many(simulation_ids: Sequence[uuid.UUID]) -> int:
    """Publish jobs over one producer (one connection); how many went out. A failure is logged
    and stops the batch: the rows stay queued and the reaper publishes them later."""
    sent = 0
    try:
        with celery_app.producer_or_acquire() as producer:
            for simulation_id in simulation_ids:
                run_simulation_task.apply_async(
                    args=[str(simulation_id)], producer=producer, retry=True
                )
                sent += 1
    except Exception:
        logger.warning(
            "could not publish %d simulation(s); the reaper will",
            len(simulation_ids) - sent,
            exc_info=True,
        )
    return sent
