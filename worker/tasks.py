"""The simulation job: a thin adapter between the engine and the database.

Claim the row (fencing token `attempt`), resume from the stored checkpoint, write the rounds in
transactions of up to `SCARCITY_ROUND_WRITE_SECONDS` with a checkpoint at most every
`SCARCITY_CHECKPOINT_SECONDS`, stop on cancel, lease loss or time limit, finish the row.

Database errors are not engine failures (docs/reliability.md): every database step is retried
with a bounded backoff (`SCARCITY_DB_RETRY_SECONDS`); past the bound the worker releases the run,
which stays `running` with its last stored round and is resumed by the next claim. Only the
engine (or a stored config it cannot read) fails a run, and its error never carries SQL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from models import SimulationStatus, lease, results_repo, sweeps_repo
from models.db import describe_database_error, is_transient, session_scope
from models.settings import get_settings
from scarcity import RoundResult, Simulation, SimulationConfig
from scarcity.core.data import describe_clients
from scarcity.logging_setup import bind_log_context, log_context
from scarcity.provenance import environment
from worker.early_stop import median_stop

logger = logging.getLogger("worker.tasks")


def worker_name() -> str:
    """host:pid of the process running the job (taken at run time: Celery forks its pool)."""
    return f"{socket.gethostname()}:{os.getpid()}"


T = TypeVar("T")

RETRY_FIRST_DELAY_SECONDS = 0.1
RETRY_MAX_DELAY_SECONDS = 2.0
# After a give-up the release itself waits for the database, in the background, this long.
RELEASE_PATIENCE_SECONDS = 3600.0
# A claim that would fail a run for lost workers first waits this long: a worker that gave up
# retries its release at least every RETRY_MAX_DELAY_SECONDS, so once the database answers
# the claim it answers that release within a few seconds (models.lease.claim).
RELEASE_GRACE_SECONDS = 5 * RETRY_MAX_DELAY_SECONDS


class LeaseLost(Exception):
    """Another worker took the simulation over; this one must stop without writing."""


class Interrupted(Exception):
    """The job must hand its run back (its message says why: a shutdown, a lost broker
    connection); the row stays running and is resumed from its checkpoint."""


class DatabaseUnavailable(Exception):
    """A database step kept failing with transient errors for longer than its bound."""


def with_database(
    what: str,
    work: Callable[[Session], T],
    *,
    bound: float,
    simulation_id: uuid.UUID | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Run `work` in its own transaction; on a transient database error (docs/reliability.md)
    roll back and run it again after 0.1, 0.2, 0.4 … 2 s, for up to `bound` seconds (or until
    `stop` is set). Other errors, and `work`'s own exceptions, go to the caller at once."""
    from worker import metrics

    start, delay, tries = time.monotonic(), RETRY_FIRST_DELAY_SECONDS, 0
    while True:
        try:
            with session_scope() as session:
                return work(session)
        except Exception as exc:
            if not is_transient(exc):
                raise
            tries += 1
            metrics.DB_ERRORS.labels(step=what).inc()
            elapsed = time.monotonic() - start
            reason = describe_database_error(exc)
            if elapsed + delay > bound:
                raise DatabaseUnavailable(
                    f"{what}: database unavailable for {elapsed:.0f} s ({tries} tries, {reason})"
                ) from exc
            logger.warning(
                "simulation %s: %s hit a database error (%s); try %d again in %.1f s",
                simulation_id,
                what,
                reason,
                tries + 1,
                delay,
            )
            if stop is not None and stop.wait(delay):
                raise DatabaseUnavailable(f"{what}: stopped while retrying") from exc
            if stop is None:
                time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY_SECONDS)


def public_error(exc: BaseException) -> str:
    """What a user sees of an exception: the engine's message, but never SQL or parameters."""
    if isinstance(exc, SQLAlchemyError):
        reason = describe_database_error(exc)
        return f"database error ({reason}); the worker's log has the details"
    return f"{type(exc).__name__}: {exc}"


class _Heartbeat:
    """Renews the lease while a long round runs, so the reaper does not hand the job away."""

    def __init__(self, claim: lease.Claim, interval: float) -> None:
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
        from worker import metrics

        while not self._stop.wait(self._interval):
            try:
                with session_scope() as session:
                    if not lease.heartbeat(session, self._claim):
                        self.lost = True
                        return
            except Exception as exc:  # a blip must not kill the run; the next beat retries
                metrics.DB_ERRORS.labels(step="heartbeat").inc()
                logger.warning("heartbeat failed (%s)", describe_database_error(exc))


def configure_torch() -> None:
    """Once per worker process: tiny per-client ops run fastest single-threaded, and a fixed
    thread count keeps float results equal across machines' core counts."""
    import torch

    torch.set_num_threads(get_settings().torch_threads)


class _Job:
    """One claim's run: the engine round by round, every database step through the retries."""

    def __init__(self, claim: lease.Claim) -> None:
        settings = get_settings()
        self.claim = claim
        self.id = claim.simulation_id
        self.last_round = claim.rounds_completed
        self.bound = settings.db_retry_seconds
        self.checkpoint_seconds = settings.checkpoint_seconds
        self.round_write_seconds = settings.round_write_seconds
        # After a give-up: the background release, and whether it landed.
        self.why = ""
        self.settled = False
        self._stop_release = threading.Event()
        self._releaser: threading.Thread | None = None

    def db(self, what: str, work: Callable[[Session], T]) -> T:
        return with_database(what, work, bound=self.bound, simulation_id=self.id)

    def save_rounds(self, results: list[RoundResult], checkpoint: bytes | None) -> bool:
        """The engine's rounds as it yielded them: the repository stores their rows."""

        def work(session: Session) -> bool:
            cancel = lease.save_rounds(session, self.claim, results, checkpoint)
            if cancel is None:
                raise LeaseLost  # session_scope rolls the round back
            return cancel

        return self.db("round write", work)

    def record_attempt(self) -> None:
        """Provenance: this worker, its software and machine, for this attempt."""
        worker, env = worker_name(), environment()

        def work(session: Session) -> None:
            lease.record_attempt(session, self.claim, worker=worker, environment=env)

        self.db("attempt record", work)

    def save_client_data(self, simulation: Simulation) -> None:
        """What each client holds, from the data the run has just built: written once (the API
        writes it itself for a small run asked about before it starts)."""
        rows = [c.to_dict() for c in describe_clients(simulation.config, simulation.client_data)]
        self.db(
            "clients write", lambda session: results_repo.save_client_data(session, self.id, rows)
        )

    def stops_early(self, rule: dict[str, object], number: int) -> bool:
        """The sweep's median rule after round `number`; a stop is logged with its reason."""
        sweep_id = self.claim.sweep_id
        assert sweep_id is not None

        def work(session: Session) -> bool:
            series = sweeps_repo.sweep_metric_series(
                session, sweep_id, str(rule["metric"]), up_to=number
            )
            own = series.pop(self.id, [])
            reason = median_stop(own, list(series.values()), rule) if len(own) == number else None
            if reason is not None:
                results_repo.add_log(session, self.id, reason)
            return reason is not None

        return self.db("early stop", work)

    def release(self, why: str) -> bool:
        """Hand the run back uncharged (it stays running, lease lapsed); when someone took over
        meanwhile, give back the attempt that takeover charged. Whether the release landed."""
        return self.db("release", lambda session: self._release_in(session, why))

    def refund(self) -> None:
        def work(session: Session) -> None:
            if not lease.refund(session, self.claim):
                return  # fenced off without a takeover (cancelled, ended): nothing to give back
            results_repo.add_log(
                session,
                self.id,
                f"attempt {self.claim.attempt} was taken over while its worker lived on "
                "(frozen or cut off from the database): not charged",
                level="WARNING",
            )

        try:
            self.db("refund", work)
        except (DatabaseUnavailable, SQLAlchemyError):
            logger.warning("simulation %s: could not record the refund", self.id, exc_info=True)

    def give_up(self, exc: DatabaseUnavailable) -> None:
        """The database stayed away past the bound: stop, and release once it is back (in the
        background, so the worker can take other jobs meanwhile). Until that release lands,
        a claim of the same simulation in this process writes it first (`settle_before_claim`),
        so the worker never charges itself for its own give-up."""
        from worker import metrics

        metrics.GIVE_UPS.inc()
        logger.error("simulation %s: giving up (%s); releasing it", self.id, exc)
        self.why = f"gave up, {exc}"
        self.release_in_background()

    def release_in_background(self) -> None:
        self._stop_release = threading.Event()

        def release_later() -> None:
            try:
                with_database(
                    "release",
                    lambda session: self._release_in(session, self.why),
                    bound=RELEASE_PATIENCE_SECONDS,
                    simulation_id=self.id,
                    stop=self._stop_release,
                )
                self.settled = True
            except DatabaseUnavailable:
                pass  # stopped: the claim that stopped it writes the release
            except Exception:
                logger.exception("simulation %s: release after a give-up failed", self.id)
            finally:
                with _UNSETTLED_LOCK:
                    if _UNSETTLED.get(self.id) is self:
                        del _UNSETTLED[self.id]

        with _UNSETTLED_LOCK:
            _UNSETTLED[self.id] = self
        self._releaser = threading.Thread(target=release_later, daemon=True, name="release")
        self._releaser.start()

    def settle_before_claim(self) -> bool:
        """Stop the background release; True when it had not landed (the claim writes it)."""
        self._stop_release.set()
        if self._releaser is not None:
            self._releaser.join()
        return not self.settled

    def _release_in(self, session: Session, why: str) -> bool:
        if lease.release(session, self.claim):
            results_repo.add_log(
                session,
                self.id,
                f"attempt {self.claim.attempt} released after round {self.last_round}: {why}; "
                "not charged, the next claim resumes it",
                level="WARNING",
            )
            return True
        lease.refund(session, self.claim)
        return False

    def run(
        self,
        *,
        time_limit: float,
        heartbeat_interval: float,
        should_stop: Callable[[], str | None],
    ) -> tuple[SimulationStatus, str | None]:
        try:
            config = SimulationConfig.model_validate(self.claim.config)
        except ValidationError as exc:
            return SimulationStatus.failed, f"stored config is not valid for this engine: {exc}"
        self.record_attempt()
        if self.claim.checkpoint is not None:
            simulation = Simulation.restore(config, self.claim.checkpoint)
        else:
            simulation = Simulation(config)
            self.save_client_data(simulation)
        rule = None
        sweep_id = self.claim.sweep_id
        if sweep_id is not None:
            rule = self.db("early-stop rule", lambda s: sweeps_repo.sweep_early_stop(s, sweep_id))
        started = time.monotonic()
        deadline = started + time_limit
        # Rounds wait in `pending` until a write is due: every round_write_seconds, at the end,
        # and before any stop. The checkpoint goes with a write at most every
        # checkpoint_seconds, and always with the last one (a release or a stop resumes there);
        # a crash loses only rounds after the last checkpoint, which the resume recomputes
        # exactly (docs/reliability.md).
        pending: list[RoundResult] = []
        last_write = last_checkpoint = started
        with _Heartbeat(self.claim, heartbeat_interval) as beat:
            for result in simulation.rounds():
                if beat.lost:
                    raise LeaseLost
                pending.append(result)
                _observe_round(result.duration_seconds)
                last = result.round >= config.rounds
                stopping = None if last else should_stop()
                overdue = not last and time.monotonic() > deadline
                # The median rule reads the run's own stored rounds: each is written at once.
                judged = (
                    rule is not None and not last and result.round > self.claim.rounds_completed
                )
                now = time.monotonic()
                checkpoint_due = (
                    last or stopping is not None or now - last_checkpoint >= self.checkpoint_seconds
                )
                if not (
                    checkpoint_due
                    or judged
                    or overdue
                    or now - last_write >= self.round_write_seconds
                ):
                    continue
                cancel = self.save_rounds(
                    pending, simulation.checkpoint() if checkpoint_due else None
                )
                pending = []
                self.last_round = max(self.last_round, result.round)
                last_write = time.monotonic()
                if checkpoint_due:
                    last_checkpoint = last_write
                if cancel:
                    return SimulationStatus.cancelled, None
                if judged and rule is not None and self.stops_early(rule, result.round):
                    return SimulationStatus.cancelled, None
                if stopping is not None:
                    raise Interrupted(stopping)
                if overdue:
                    return (
                        SimulationStatus.failed,
                        f"time limit of {time_limit:g} s reached after round {result.round}",
                    )
        if pending:  # the engine ended before config.rounds: what it computed is stored
            self.save_rounds(pending, None)
        return SimulationStatus.succeeded, None


def _observe_round(duration_seconds: float) -> None:
    from worker import metrics

    metrics.ROUNDS_WRITTEN.inc()
    metrics.ROUND_DURATION.observe(duration_seconds)


# Jobs of this process that gave up and whose release has not landed yet, by simulation.
_UNSETTLED: dict[uuid.UUID, _Job] = {}
_UNSETTLED_LOCK = threading.Lock()


def _claim(simulation_id: uuid.UUID) -> lease.Claim | None:
    settings = get_settings()
    with _UNSETTLED_LOCK:
        pending = _UNSETTLED.pop(simulation_id, None)
    if pending is not None and not pending.settle_before_claim():
        pending = None

    def work(session: Session) -> lease.Claim | None:
        if pending is not None:  # our own give-up first: released, not charged
            pending._release_in(session, pending.why)
        claim = lease.claim(
            session,
            simulation_id,
            lease_seconds=settings.worker_lease_seconds,
            max_attempts=settings.max_attempts,
            release_grace_seconds=RELEASE_GRACE_SECONDS,
        )
        if claim is not None:
            results_repo.add_log(
                session,
                simulation_id,
                f"claimed by {worker_name()} (attempt {claim.attempt}), "
                f"resuming after round {claim.checkpoint_round}"
                + (
                    f" (its checkpoint; rounds up to {claim.rounds_completed} are stored "
                    "and recomputed identically)"
                    if claim.rounds_completed > claim.checkpoint_round
                    else ""
                ),
            )
        return claim

    try:
        return with_database(
            "claim", work, bound=settings.db_retry_seconds, simulation_id=simulation_id
        )
    except DatabaseUnavailable:
        if pending is not None:  # still not written: back to the background
            pending.release_in_background()
        raise


#: Sends jobs to the queue (Celery's publish_many, or the embedded worker's own).
Publish = Callable[[Sequence[uuid.UUID]], object]


def execute(
    simulation_id: uuid.UUID,
    should_stop: Callable[[], str | None] = lambda: None,
    publish: Publish | None = None,
) -> str | None:
    """Run (or resume) one simulation to its end. Returns the final status, None if not claimed
    or not finished here (lease lost, released at a shutdown or after database errors).

    `should_stop` is asked after each stored round: a reason releases the run there, and
    `publish` (when given) sends its job again so another worker resumes it at once. A run of a
    sweep frees a slot when it ends: in the same transaction the sweep's next pending runs are
    queued, and then handed to `publish` (else the reaper publishes them). Every log line
    meanwhile carries `simulation_id` and `attempt` (keys of their own in JSON logs)."""
    with log_context(simulation_id=str(simulation_id)):
        return _execute(simulation_id, should_stop, publish)


def _execute(
    simulation_id: uuid.UUID,
    should_stop: Callable[[], str | None],
    publish: Publish | None,
) -> str | None:
    from worker import metrics

    settings = get_settings()
    try:
        claim = _claim(simulation_id)
    except DatabaseUnavailable as exc:
        logger.error("simulation %s: not claimed (%s); the reaper re-sends it", simulation_id, exc)
        return None
    if claim is None:
        logger.info("simulation %s: not claimable (finished, cancelled or held)", simulation_id)
        return None
    bind_log_context(attempt=claim.attempt)
    metrics.CLAIMS.labels(kind="resume" if claim.rounds_completed else "start").inc()
    job = _Job(claim)
    try:
        status, error = job.run(
            time_limit=settings.simulation_time_limit_seconds,
            heartbeat_interval=settings.worker_lease_seconds / 3,
            should_stop=should_stop,
        )
    except LeaseLost:
        logger.warning("simulation %s: lease lost, another worker continues it", simulation_id)
        job.refund()
        return None
    except Interrupted as stop:
        logger.info(
            "simulation %s: stopped after round %d (%s); releasing it",
            simulation_id,
            job.last_round,
            stop,
        )
        try:
            job.release(str(stop))
        except DatabaseUnavailable as exc:
            job.give_up(exc)
            return None
        if publish is not None:
            publish([simulation_id])
        return None
    except DatabaseUnavailable as exc:
        job.give_up(exc)
        return None
    except Exception as exc:  # the engine failed: record it, never leave the row running
        logger.exception("simulation %s failed", simulation_id)
        status, error = SimulationStatus.failed, public_error(exc)
    released: list[uuid.UUID] = []

    def finish(session: Session) -> bool:
        if not lease.finish(session, claim, status, error):
            return False
        results_repo.add_log(
            session,
            simulation_id,
            f"finished: {status}" + (f" ({error})" if error else ""),
            level="ERROR" if status == SimulationStatus.failed else "INFO",
        )
        if claim.sweep_id is not None:  # a slot is free: the sweep's next pending runs
            released[:] = sweeps_repo.release_pending(
                session,
                claim.sweep_id,
                max_active_per_owner=settings.max_active_per_owner,
                lease_seconds=settings.worker_lease_seconds,
            )
        return True

    try:
        finished = job.db("finish", finish)
    except DatabaseUnavailable as exc:
        job.give_up(exc)
        return None
    if not finished:
        job.refund()
        return None
    metrics.FINISHED.labels(status=str(status)).inc()
    if released and publish is not None:
        publish(released)
    return status
