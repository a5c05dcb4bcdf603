"""Admission of new simulations: group commit of `POST /simulations`, publishing off the request.

Submissions that arrive while a batch is being written wait and form the next batch, so under
load one transaction (one count per owner, one multi-row INSERT, one commit) serves many
requests, and an idle service writes each request alone: nothing waits for a timer.

A request is answered once its row is committed: the job is durable from then on. Its message
is published afterwards by one publisher thread, many to a broker connection. A message lost
between the two (the process died, the broker was down) is the reaper's case: it publishes
queued rows again (docs/reliability.md: Redis is only a doorbell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from sqlalchemy.orm import Session

from app.errors import Conflict
from models import Simulation, simulations_repo
from models.db import session_scope

logger = logging.getLogger("app.admission")

PublishMany = Callable[[Sequence[uuid.UUID]], object]
# (owner, resolved config, the run's other columns: name, tags, notes)
Submission = tuple[str, dict[str, Any], Mapping[str, Any]]


class ActiveCounts:
    """Each owner's queued + running count for the cap, counted again only when it could refuse.

    A count scans the owner's active rows, so with a long queue counting on every batch made
    every submission slower. A count at most `max_age` seconds old, plus what this process
    admitted since, is trusted to *admit*; a refusal always rests on a fresh count, so a run
    that just finished frees its slot at once. What other API processes admit meanwhile is not
    seen: with several processes the cap may be overshot by their admissions of the last
    `max_age` seconds (it was soft across processes anyway: their batches count concurrently).
    Used by one writer thread at a time.
    """

    def __init__(self, cap: int, max_age: float = 1.0) -> None:
        self._cap, self._max_age = cap, max_age
        self._known: dict[str, tuple[int, float]] = {}  # owner → (count, when counted)

    def room(self, session: Session, owner: str, wanted: int) -> int:
        """How many more active simulations `owner` may have now."""
        now = time.monotonic()
        known = self._known.get(owner)
        if known is not None and now - known[1] < self._max_age and known[0] + wanted <= self._cap:
            return self._cap - known[0]
        if len(self._known) > 10_000:  # forget owners not seen lately
            self._known = {o: k for o, k in self._known.items() if now - k[1] < self._max_age}
        count = simulations_repo.count_active(session, owner, up_to=self._cap)
        self._known[owner] = (count, now)
        return self._cap - count

    def admitted(self, owner: str, n: int) -> None:
        if owner in self._known:  # else forgotten meanwhile: the next batch counts afresh
            count, counted_at = self._known[owner]
            self._known[owner] = (count + n, counted_at)


class Admission:
    """The API process's one writer of new simulations (see the module docstring)."""

    def __init__(
        self, publish_many: PublishMany, *, database_url: str, max_active_per_owner: int
    ) -> None:
        self._publish_many = publish_many
        self._database_url = database_url
        self._max_active = max_active_per_owner
        self._active = ActiveCounts(max_active_per_owner)
        self._pending: list[tuple[Submission, asyncio.Future[Simulation]]] = []
        self._wake = asyncio.Event()
        self._outbox: queue.SimpleQueue[list[uuid.UUID] | None] = queue.SimpleQueue()
        self._publisher = threading.Thread(target=self._publish_loop, daemon=True, name="publisher")
        self._writer: asyncio.Task[None] | None = None

    async def submit(
        self, owner: str, config: dict[str, Any], attrs: Mapping[str, Any] | None = None
    ) -> Simulation:
        """The committed, queued row; `Conflict` when the owner is at the cap of active runs."""
        if self._writer is None or self._writer.done():
            raise RuntimeError("admission is not running (the server is starting or stopping)")
        future: asyncio.Future[Simulation] = asyncio.get_running_loop().create_future()
        self._pending.append(((owner, config, attrs or {}), future))
        self._wake.set()
        return await future

    def publish(self, simulation_ids: Sequence[uuid.UUID]) -> None:
        """Publish rows committed elsewhere (a sweep's first runs) from the publisher thread."""
        if simulation_ids:
            self._outbox.put(list(simulation_ids))

    def start(self) -> None:
        self._publisher.start()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop writing, then let the publisher send what is committed (bounded)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._outbox.put(None)
        await anyio.to_thread.run_sync(self._publisher.join, timeout)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)

    async def _write(self, batch: list[tuple[Submission, asyncio.Future[Simulation]]]) -> None:
        try:
            outcomes = await anyio.to_thread.run_sync(self._commit, [s for s, _ in batch])
        except Exception as exc:  # the database is down: every request of the batch says so
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self._outbox.put([row.id for row in outcomes if row is not None])
        for (_, future), row in zip(batch, outcomes, strict=True):
            if future.done():  # the client went away; its row is queued all the same
                continue
            if row is None:
                future.set_exception(
                    Conflict(
                        f"too many active simulations: limit {self._max_active} queued or "
                        "running per owner (SCARCITY_MAX_ACTIVE_PER_OWNER)"
                    )
                )
            else:
                future.set_result(row)

    def _commit(self, submissions: list[Submission]) -> list[Simulation | None]:
        wanted = Counter(owner for owner, _, _ in submissions)
        with session_scope(self._database_url) as session:
            room = {owner: self._active.room(session, owner, n) for owner, n in wanted.items()}
            outcomes = simulations_repo.admit(session, submissions, room=room)
        for owner, n in Counter(row.owner for row in outcomes if row is not None).items():
            self._active.admitted(owner, n)
        return outcomes

    def _publish_loop(self) -> None:
        while True:
            # Whatever has been committed meanwhile goes out together on one connection.
            taken = [self._outbox.get()]
            with contextlib.suppress(queue.Empty):
                while taken[-1] is not None:
                    taken.append(self._outbox.get_nowait())
            ids = [simulation_id for batch in taken if batch for simulation_id in batch]
            if ids:
                try:
                    self._publish_many(ids)
                except Exception:  # keep the thread alive: the reaper republishes queued rows
                    logger.warning("could not publish %d simulation(s)", len(ids), exc_info=True)
            if taken[-1] is None:
                return
