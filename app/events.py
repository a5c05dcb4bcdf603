"""Live events fan-out: one reader per simulation per process feeds every subscriber.

The subscribers of one simulation share a `Feed`: a single task reads the simulation and its
new rounds, keeps the latest rounds in a small buffer and wakes every subscriber through one
shared future (no timer per subscriber: the feed's own timer wakes them to send a ping when it
stayed idle), so a read costs each subscriber one wake-up and one send. It reads when
a change notification says the run stored a round or changed status (`models/notify.py`:
from the embedded engine process, relayed by this one, or PostgreSQL's NOTIFY from any
worker), so an event goes out moments after its round commits; and every
`SCARCITY_EVENT_POLL_SECONDS` without one, in case a notification was lost (the database is
the record, notes are only doorbells). A burst of notes (short rounds) is read at most once
per `MIN_READ_SECONDS`, so fast runs cost a bounded number of reads and sends.

A subscriber that is further behind (a `Last-Event-ID` older than the buffer, or joining a long
run) reads the rounds it missed from the database once, then follows the feed; the database
stays the source on every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from prometheus_client import Counter, Gauge

from app.results.service import metrics_rows
from app.schemas import MAX_INT, SimulationPublic
from app.simulations.service import get_simulation, to_public
from models import FINISHED_STATUSES, notify
from models.db import session_scope

logger = logging.getLogger("app.events")

# A burst of notes is read at most this often: a run of 20 ms rounds would otherwise cost a
# read and a send to every subscriber per round. A lone note is read at once.
MIN_READ_SECONDS = 0.25
BUFFERED_ROUNDS = 32  # bounded memory: a round of 10,000 clients is ~200 KB of events
READS = Counter(
    "scarcity_event_reads",
    "Database reads for live events: a feed's reads on a change notification (notified) or "
    "without one (poll), and catch-ups of subscribers behind it.",
    ["kind"],
)
SUBSCRIBERS = Gauge("scarcity_event_subscribers", "Open event streams in this process.")


def _read(
    simulation_id: uuid.UUID, owner: str, after_round: int, to_round: int | None = None
) -> tuple[SimulationPublic, list[dict[str, Any]]]:
    """The simulation and its rounds after `after_round` (up to `to_round`), in one session."""
    with session_scope(read_only=True) as session:
        simulation = get_simulation(session, simulation_id, owner)
        rows = metrics_rows(  # a Last-Event-ID of MAX_INT must not overflow INTEGER
            session,
            simulation_id,
            from_round=min(after_round + 1, MAX_INT),
            to_round=to_round,
            names=None,
        )
        return to_public(session, [simulation])[0], rows


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

    def __init__(self, simulation_id: uuid.UUID, owner: str, poll_seconds: float) -> None:
        self.id, self.owner = simulation_id, owner
        self.poll_seconds = poll_seconds
        self.subscribers = 0
        self.version = 0  # bumped after every read
        self.simulation: SimulationPublic | None = None
        self.last_round = 0
        # (round, its encoded event): serialized once here, sent as is to every subscriber
        self.buffer: deque[tuple[int, bytes]] = deque()
        self.end_event = b""
        self._chunks: dict[int, bytes] = {}  # this version's bytes after a round, shared
        self.error: BaseException | None = None
        loop = asyncio.get_running_loop()
        # resolved (and replaced) at every read, and when the feed was idle for PING_SECONDS:
        # one future wakes every subscriber, without a timer of each subscriber's own
        self.changed: asyncio.Future[None] = loop.create_future()
        self._changed_at = loop.time()
        self._ping_timer = loop.call_later(PING_SECONDS, self._ping)
        self._woken = asyncio.Event()  # a change notification since the last read
        self.task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.simulation is not None and self.simulation.status in FINISHED_STATUSES

    def wake(self) -> None:
        self._woken.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        kind = "poll"
        try:
            while True:
                self._woken.clear()  # a note from now on means a change this read may miss
                read_at = loop.time()
                simulation, rows = await run_in_threadpool(
                    _read, self.id, self.owner, self.last_round
                )
                READS.labels(kind=kind).inc()
                self.simulation = simulation
                if rows:
                    self.buffer.extend((row["round"], round_event(row, simulation)) for row in rows)
                    self.last_round = rows[-1]["round"]
                    # the last read's rounds always stay: subscribers that kept up need them
                    while len(self.buffer) > max(BUFFERED_ROUNDS, len(rows)):
                        self.buffer.popleft()
                if self.finished:
                    self.end_event = encode("end", simulation.model_dump_json())
                self._chunks = {}
                self._bump()
                if self.finished:
                    return
                kind = await self._next_read(read_at, loop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # deleted, or the database is down: the streams end
            self.error = exc
            self._bump()

    async def _next_read(self, last_read_at: float, loop: asyncio.AbstractEventLoop) -> str:
        """Wait for a note, or the fallback poll; what the next read is for."""
        try:
            await asyncio.wait_for(self._woken.wait(), self.poll_seconds)
        except TimeoutError:
            return "poll"
        gap = last_read_at + MIN_READ_SECONDS - loop.time()
        if gap > 0:  # the notes meanwhile are read together
            await asyncio.sleep(gap)
        return "notified"

    def _bump(self) -> None:
        self.version += 1
        self._resolve()

    def _resolve(self) -> None:
        loop = asyncio.get_running_loop()
        changed, self.changed = self.changed, loop.create_future()
        self._changed_at = loop.time()
        changed.set_result(None)

    def _ping(self) -> None:
        """Wake the subscribers without a new version when the feed was idle for PING_SECONDS
        (they send a ping); the next check comes PING_SECONDS after the last wake."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._changed_at >= PING_SECONDS * 0.99:  # timers may fire early
            self._resolve()
        self._ping_timer = loop.call_later(
            self._changed_at + PING_SECONDS - loop.time(), self._ping
        )

    def close(self) -> None:
        """The last subscriber left: stop reading and pinging."""
        self._ping_timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def wait_past(self, version: int) -> bool:
        """Whether the feed read again after `version`; False after PING_SECONDS without a
        read (time to send a ping)."""
        if self.version == version:
            # shielded: a subscriber that goes away must not cancel the shared future
            await asyncio.shield(self.changed)
        return self.version != version

    def buffered_after(self, sent: int) -> bytes | None:
        """The events of the rounds after `sent`, as one chunk (built once per read for all the
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
    """This process's feeds, woken by change notifications (`models/notify.py`)."""

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._feeds: dict[tuple[uuid.UUID, str], Feed] = {}
        self._checks: dict[tuple[uuid.UUID, str], asyncio.Future[None]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self, database_url: str, *, listen_timeout: float = 5.0) -> None:
        """Take this process's notes (the API's own commits, those the embedded engine process
        relays) and, on PostgreSQL, every process's through one LISTEN connection; on
        PostgreSQL, wait (up to `listen_timeout`) until it listens, so the first streams miss no
        note."""
        loop = asyncio.get_running_loop()

        def from_any_thread(note: notify.Note) -> None:
            try:
                loop.call_soon_threadsafe(self.wake, note.simulation_id)
            except RuntimeError:  # the loop is closed: the server is stopping
                pass

        self._unsubscribe = notify.subscribe(from_any_thread)
        if not database_url.startswith("postgresql"):
            return
        listening = asyncio.Event()

        def connected() -> None:
            listening.set()
            self.wake_all()  # notes sent while nothing listened are lost: read again

        self._listener = asyncio.create_task(
            notify.listen(database_url, lambda note: self.wake(note.simulation_id), connected),
            name="events-listener",
        )
        try:
            await asyncio.wait_for(listening.wait(), listen_timeout)
        except TimeoutError:
            logger.warning("change notifications: not listening yet; events poll meanwhile")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    def wake(self, simulation_id: uuid.UUID) -> None:
        for (feed_simulation, _), feed in self._feeds.items():
            if feed_simulation == simulation_id:
                feed.wake()

    def wake_all(self) -> None:
        for feed in self._feeds.values():
            feed.wake()

    @asynccontextmanager
    async def subscribe(self, simulation_id: uuid.UUID, owner: str) -> AsyncIterator[Feed]:
        key = (simulation_id, owner)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = Feed(simulation_id, owner, self.poll_seconds)
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
                feed.close()

    async def check(
        self, simulation_id: uuid.UUID, owner: str, exists: Callable[[uuid.UUID, str], None]
    ) -> None:
        """Raise `exists`' error (a 404) before a stream opens. A live feed of this owner's run
        proves it; subscribers arriving together share one database read."""
        key = (simulation_id, owner)
        if key in self._feeds:
            return
        pending = self._checks.get(key)
        if pending is None:
            pending = self._checks[key] = asyncio.ensure_future(
                run_in_threadpool(exists, simulation_id, owner)
            )
            pending.add_done_callback(lambda _: self._checks.pop(key, None))
        await asyncio.shield(pending)


async def events(
    hub: EventHub, simulation_id: uuid.UUID, owner: str, last_event_id: int
) -> AsyncIterator[bytes]:
    """The server-sent event stream of one subscriber: `round` per stored round after
    `last_event_id`, then one `end` with the finished resource; a ping comment when idle."""
    async with hub.subscribe(simulation_id, owner) as feed:
        sent, seen = last_event_id, 0
        while True:
            if not await feed.wait_past(seen):
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


def _exists(simulation_id: uuid.UUID, owner: str) -> None:
    with session_scope(read_only=True) as session:
        get_simulation(session, simulation_id, owner)


async def open_stream(
    hub: EventHub, simulation_id: uuid.UUID, owner: str, last_event_id: int
) -> StreamingResponse:
    """The `GET /simulations/{id}/events` response: 404 before the stream opens, then
    `events()` as server-sent events, never cached nor buffered by a proxy."""
    await hub.check(simulation_id, owner, _exists)
    return StreamingResponse(
        events(hub, simulation_id, owner, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
