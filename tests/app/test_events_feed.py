"""The shared wake-up of one simulation's event streams (`app.events.Feed`), without a server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app import events
from app.events import Feed


def test_subscribers_share_one_wake_ping_when_idle_and_leave_without_cancelling_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "PING_SECONDS", 0.2)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        feed = Feed(uuid.uuid4(), "", poll_seconds=30)  # its reader is not started
        try:
            start = loop.time()
            # nothing read for PING_SECONDS: every waiter is told it is time to ping
            pings = await asyncio.gather(*(feed.wait_past(0) for _ in range(3)))
            assert pings == [False] * 3
            assert 0.15 <= loop.time() - start < 1.0
            # a waiter that goes away leaves the shared wake-up to the others
            leaving = asyncio.create_task(feed.wait_past(0))
            staying = asyncio.create_task(feed.wait_past(0))
            await asyncio.sleep(0.01)
            leaving.cancel()
            await asyncio.sleep(0.01)
            assert not feed.changed.cancelled() and not staying.done()
            feed._bump()  # a read: every waiter wakes at once, with a new version
            assert await asyncio.wait_for(staying, 0.1) is True
            assert feed.version == 1 and await feed.wait_past(0) is True  # no wait when behind
            # the ping comes PING_SECONDS after the last wake, not sooner
            start = loop.time()
            assert await feed.wait_past(1) is False
            assert 0.15 <= loop.time() - start < 1.0
        finally:
            feed.close()

    asyncio.run(scenario())
