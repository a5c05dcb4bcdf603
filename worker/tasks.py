"""The simulation job: a thin adapter between the engine and the database.

Claim the row (fencing token `attempt`), resume from the stored checkpoint, write each round
with its checkpoint in one transaction, stop on cancel, lease loss or time limit, finish the row.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from models import SimulationStatus, store
from models.db import session_scope
from models.settings import get_settings
from scarcity import Simulation, SimulationConfig
from worker.early_stop import median_stop

logger = logging.getLogger("worker.tasks")
WORKER_NAME = f"{socket.gethostname()}:{threading.get_native_id()}"


class LeaseLost(Exception):
    """Another worker took the simulation over; this one must stop without writing."""


class Interrupted(Exception):
    """The process is shutting down; the row stays running and is resumed from its checkpoint."""


class _Heartbeat:
    """Renews the lease while a long round runs, so the reaper does not hand the job away."""

    def __init__(self, claim: store.Claim, interval: float) -> None:
        self._claim, self._interval = claim, interval
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with session_scope() as session:
                    if not store.heartbeat(session, self._claim):
                        self.lost = True
                        return
            except Exception:  # a blip must not kill the run; the next round retries
                logger.warning("heartbeat failed", exc_info=True)


def configure_torch() -> None:
    """Once per worker process: tiny per-client ops run fastest single-threaded, and a fixed
    thread count keeps float results equal across machines' core counts."""
    import torch

    torch.set_num_threads(get_settings().torch_threads)


Publish = Callable[[Sequence[uuid.UUID]], object]


def execute(
    simulation_id: uuid.UUID,
    should_stop: Callable[[], bool] = lambda: False,
    publish: Publish | None = None,
) -> str | None:
    """Run (or resume) one simulation to its end. Returns the final status, None if not claimed.

    A run of a sweep frees a slot when it ends: in the same transaction the sweep's next pending
    runs are queued, and then handed to `publish` (else the reaper publishes them).
    """
    settings = get_settings()
    with session_scope() as session:
        claim = store.claim(
            session,
            simulation_id,
            lease_seconds=settings.worker_lease_seconds,
            max_attempts=settings.max_attempts,
        )
        if claim is not None:
            store.add_log(
                session,
                simulation_id,
                f"claimed by {WORKER_NAME} (attempt {claim.attempt}), "
                f"resuming after round {claim.rounds_completed}",
            )
    if claim is None:
        logger.info("simulation %s: not claimable (finished, cancelled or held)", simulation_id)
        return None
    try:
        status, error = _run(
            claim,
            time_limit=settings.simulation_time_limit_seconds,
            heartbeat_interval=settings.worker_lease_seconds / 3,
            should_stop=should_stop,
        )
    except LeaseLost:
        logger.warning("simulation %s: lease lost, another worker continues it", simulation_id)
        return None
    except Interrupted:
        logger.info("simulation %s: interrupted by shutdown, resumes later", simulation_id)
        return None
    except Exception as exc:  # the engine failed: record it, never leave the row running
        logger.exception("simulation %s failed", simulation_id)
        status, error = SimulationStatus.failed, f"{type(exc).__name__}: {exc}"
    released: list[uuid.UUID] = []
    with session_scope() as session:
        if not store.finish(session, claim, status, error):
            return None
        store.add_log(
            session,
            simulation_id,
            f"finished: {status}" + (f" ({error})" if error else ""),
            level="ERROR" if status == SimulationStatus.failed else "INFO",
        )
        if claim.sweep_id is not None:
            released = store.release_pending(
                session,
                claim.sweep_id,
                max_active_per_owner=settings.max_active_per_owner,
                lease_seconds=settings.worker_lease_seconds,
            )
    if released and publish is not None:
        publish(released)
    return status


def _stops_early(claim: store.Claim, rule: dict[str, object], number: int) -> bool:
    """The sweep's median rule after round `number`; a stop is logged with its reason."""
    assert claim.sweep_id is not None
    with session_scope() as session:
        series = store.sweep_metric_series(
            session, claim.sweep_id, str(rule["metric"]), up_to=number
        )
        own = series.pop(claim.simulation_id, [])
        reason = median_stop(own, list(series.values()), rule) if len(own) == number else None
        if reason is not None:
            store.add_log(session, claim.simulation_id, reason)
    return reason is not None


def _run(
    claim: store.Claim,
    *,
    time_limit: float,
    heartbeat_interval: float,
    should_stop: Callable[[], bool],
) -> tuple[SimulationStatus, str | None]:
    try:
        config = SimulationConfig.model_validate(claim.config)
    except ValidationError as exc:
        return SimulationStatus.failed, f"stored config is not valid for this engine: {exc}"
    if claim.checkpoint is not None:
        simulation = Simulation.restore(config, claim.checkpoint)
    else:
        simulation = Simulation(config)
    rule = None
    if claim.sweep_id is not None:
        with session_scope(read_only=True) as session:
            rule = store.sweep_early_stop(session, claim.sweep_id)
    deadline = time.monotonic() + time_limit
    with _Heartbeat(claim, heartbeat_interval) as beat:
        for result in simulation.rounds():
            if beat.lost:
                raise LeaseLost
            with session_scope() as session:
                cancel = store.save_round(session, claim, result.to_dict(), simulation.checkpoint())
                if cancel is None:
                    raise LeaseLost  # session_scope rolls the round back
            if cancel:
                return SimulationStatus.cancelled, None
            if (
                rule is not None
                and result.round < config.rounds
                and _stops_early(claim, rule, result.round)
            ):
                return SimulationStatus.cancelled, None
            if should_stop() and result.round < config.rounds:
                raise Interrupted
            if time.monotonic() > deadline and result.round < config.rounds:
                return (
                    SimulationStatus.failed,
                    f"time limit of {time_limit:g} s reached after round {result.round}",
                )
    return SimulationStatus.succeeded, None
