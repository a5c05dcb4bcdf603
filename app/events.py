"""Live events fan-out: one database poller per simulation per process feeds every subscriber.

Before, every `GET /simulations/{id}/events` connection polled the database itself every
0.5 s: 100 subscribers of one run made 200 queries a second and slowed the run fourfold. Now
the subscribers of one simulation share a `Feed`: a single poller task reads the simulation and
its new rounds, keeps the latest rounds in a small buffer and wakes every subscriber. A
subscriber that is further behind (a `Last-Event-ID` older than the buffer, or joining a long
run) reads the rounds it missed from the database once, then follows the feed; the database
stays the source on every reconnect.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi.concurrency import run_in_threadpool
from prometheus_client import Counter, Gauge

from app import service
from app.schemas import MAX_INT, SimulationPublic
from models import FINISHED_STATUSES
from models.db import session_scope

POLL_SECONDS = 0.5
BUFFERED_ROUNDS = 32  # bounded memory: a round of 10,000 clients is ~200 KB of events
READS = Counter(
    "scarcity_event_reads",
    "Database reads for live events: a feed's polls, and catch-ups of subscribers behind it.",
    ["kind"],
)
SUBSCRIBERS = Gauge("scarcity_event_subscribers", "Open event streams in this process.")


def _read(
    simulation_id: uuid.UUID, owner: str, after_round: int, to_round: int | None = None
) -> tuple[SimulationPublic, list[dict[str, Any]]]:
    """The simulation and its rounds after `after_round` (up to `to_round`), in one session."""
    with session_scope(read_only=True) as session:
        simulation = service.get_simulation(session, simulation_id, owner)
        rows = service.metrics_rows(  # a Last-Event-ID of MAX_INT must not overflow INTEGER
            session,
            simulation_id,
            from_round=min(after_round + 1, MAX_INT),
            to_round=to_round,
            names=None,
        )
        return service.to_public(session, [simulation])[0], rows


PING_SECONDS = 15.0  # a comment line keeps idle proxies from closing the stream
PING = b": ping\r\n\r\n"


def encode(event: str, data: str, event_id: int | None = None) -> bytes:
    """One server-sent event; `data` is single-line JSON."""
    head = f"event: {event}\r\n" + (f"id: {event_id}\r\n" if event_id is not None else "")
    return f"{head}data: {data}\r\n\r\n".encode()


def round_event(row: dict[str, Any], simulation: SimulationPublic) -> bytes:
    data = json.dumps({**row, "rounds_total": simulation.progress.rounds_total})
    return encode("round", data, row["round"])


class Feed:
    """The shared state of one simulation's subscribers in this process."""

    def __init__(self, simulation_id: uuid.UUID, owner: str) -> None:
        self.id, self.owner = simulation_id, owner
        self.subscribers = 0
        self.version = 0  # bumped after every poll
        self.simulation: SimulationPublic | None = None
        self.last_round = 0
        # (round, its encoded event): serialized once here, sent as is to every subscriber
        self.buffer: deque[tuple[int, bytes]] = deque()
        self.end_event = b""
        self._chunks: dict[int, bytes] = {}  # this version's bytes after a round, shared
        self.error: BaseException | None = None
        self._changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.simulation is not None and self.simulation.status in FINISHED_STATUSES

    async def run(self) -> None:
        try:
            while True:
                simulation, rows = await run_in_threadpool(
                    _read, self.id, self.owner, self.last_round
                )
                READS.labels(kind="poll").inc()
                self.simulation = simulation
                if rows:
                    self.buffer.extend((row["round"], round_event(row, simulation)) for row in rows)
                    self.last_round = rows[-1]["round"]
                    # the last poll's rounds always stay: subscribers that kept up need them
                    while len(self.buffer) > max(BUFFERED_ROUNDS, len(rows)):
                        self.buffer.popleft()
                if self.finished:
                    self.end_event = encode("end", simulation.model_dump_json())
                self._chunks = {}
                await self._bump()
                if self.finished:
                    return
                await asyncio.sleep(POLL_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # deleted, or the database is down: the streams end
            self.error = exc
            await self._bump()

    async def _bump(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def wait_past(self, version: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > version)

    def buffered_after(self, sent: int) -> bytes | None:
        """The events of the rounds after `sent`, as one chunk (built once per poll for all the
        subscribers at `sent`); None when the buffer no longer has them all."""
        if sent >= self.last_round:
            return b""
        if not self.buffer or self.buffer[0][0] > sent + 1:
            return None
        chunk = self._chunks.get(sent)
        if chunk is None:
            chunk = self._chunks[sent] = b"".join(e for n, e in self.buffer if n > sent)
        return chunk


class EventHub:
    def __init__(self) -> None:
        self._feeds: dict[tuple[uuid.UUID, str], Feed] = {}

    @asynccontextmanager
    async def subscribe(self, simulation_id: uuid.UUID, owner: str) -> AsyncIterator[Feed]:
        key = (simulation_id, owner)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = Feed(simulation_id, owner)
            feed.task = asyncio.create_task(feed.run(), name=f"events-{simulation_id}")
        feed.subscribers += 1
        SUBSCRIBERS.inc()
        try:
            yield feed
        finally:
            SUBSCRIBERS.dec()
            feed.subscribers -= 1
            if feed.subscribers == 0:
                self._feeds.pop(key, None)
                if feed.task is not None and not feed.task.done():
                    feed.task.cancel()

    def feed(self, simulation_id: uuid.UUID, owner: str) -> Feed | None:
        return self._feeds.get((simulation_id, owner))


async def events(
    hub: EventHub, simulation_id: uuid.UUID, owner: str, last_event_id: int
) -> AsyncIterator[bytes]:
    """The server-sent event stream of one subscriber: `round` per stored round after
    `last_event_id`, then one `end` with the finished resource; a ping comment when idle."""
    async with hub.subscribe(simulation_id, owner) as feed:
        sent, seen = last_event_id, 0
        while True:
            try:
                await asyncio.wait_for(feed.wait_past(seen), PING_SECONDS)
            except TimeoutError:
                yield PING
                continue
            seen = feed.version
            if feed.error is not None or feed.simulation is None:
                return
            simulation, upto = feed.simulation, feed.last_round
            chunk = feed.buffered_after(sent)
            if chunk is None:  # behind the buffer: catch up from the database, once
                READS.labels(kind="catch_up").inc()
                _, rows = await run_in_threadpool(_read, simulation_id, owner, sent, upto)
                chunk = b"".join(round_event(row, simulation) for row in rows)
            sent = max(sent, upto)
            if feed.finished:
                yield chunk + feed.end_event
                return
            if chunk:
                yield chunk
