"""The database's clock, which judges every lease (docs/reliability.md, "Leases").

A lease is a heartbeat timestamp that other workers compare with "now". Were "now" each
worker's own clock, a worker whose clock runs 30 s ahead would find every live run's lease
expired and take it over, and one running behind would write heartbeats that look stale. So
every lease timestamp is written and compared in the database's time: PostgreSQL's
`clock_timestamp()`. A SQLite file is written only by processes on its own host, which share
that host's clock, so there the local clock is the database's.

A worker whose own clock is off by more than `SKEW_WARNING_SECONDS` says so in its log (at most
once a minute), so that an operator can fix the host's time.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from sqlalchemy import DateTime, func, select
from sqlalchemy.orm import Session

from models.base import utcnow

logger = logging.getLogger("models.clock")

#: Differences below this are the round trip to the database and ordinary clock jitter.
SKEW_WARNING_SECONDS = 1.0
_WARN_EVERY_SECONDS = 60.0
_last_warning = -_WARN_EVERY_SECONDS


def database_now(session: Session) -> datetime:
    """The database server's current time (aware; on SQLite the local clock)."""
    now, skew = read_clock(session)
    if abs(skew) > SKEW_WARNING_SECONDS:
        _warn(skew)
    return now


def read_clock(session: Session) -> tuple[datetime, float]:
    """(the database's time, seconds this process's clock is ahead of it: negative when behind,
    0 when the two agree to within the round trip)."""
    if session.get_bind().dialect.name != "postgresql":
        return utcnow(), 0.0
    before = utcnow()
    now = session.execute(select(func.clock_timestamp(type_=DateTime(timezone=True)))).scalar_one()
    after = utcnow()
    # The server read its clock between `before` and `after` of ours.
    if before > now:
        return now, (before - now).total_seconds()
    if after < now:
        return now, -(now - after).total_seconds()
    return now, 0.0


def describe_skew(seconds: float) -> str:
    """'31.2 s ahead of' / '5.0 s behind' (the database's clock)."""
    return f"{abs(seconds):.1f} s {'ahead of' if seconds > 0 else 'behind'}"


def _warn(skew: float) -> None:
    global _last_warning
    if time.monotonic() - _last_warning < _WARN_EVERY_SECONDS:
        return
    _last_warning = time.monotonic()
    logger.warning(
        "this worker's clock is %s the database's; leases are judged by the database's clock, "
        "but fix the host's time (NTP)",
        describe_skew(skew),
    )
