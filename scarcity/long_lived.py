"""The insights the server keeps, left out of the cyclic garbage collector's full scans.

At 1,000 clients a round adds about ten container objects per insight to what the server
keeps (`Server.memory`, up to 10,000 insights). CPython scans every tracked object in a full
collection, and starts one each time the long-lived objects have grown by a quarter: over a
long 1,000-client stage-7 run that was a fifth of the round's time (mean 37.8 ms a round
against 29.8 ms with the collector kept off them). Insights hold no reference cycles: they die
by reference counting when the memory drops them, so scanning them finds nothing.

`gc.freeze()` moves every object alive into a permanent generation that collections skip
(reference counting still frees them). This round's cyclic garbage is collected first (the
young generations only: cheap), so that none of it is kept; `release()` at the end of a run
hands the frozen objects back to the collector, so that whatever became cyclic garbage meanwhile
is collected then.
"""

from __future__ import annotations

import gc

#: Insights a round must keep before freezing is worth its young collection.
FREEZE_FROM = 1_000


class LongLivedInsights:
    """Freezes after a round whose server kept `FREEZE_FROM` insights or more."""

    def __init__(self) -> None:
        self.frozen = False

    def kept(self, insights: int) -> None:
        if insights < FREEZE_FROM:
            return
        gc.collect(1)
        gc.freeze()
        self.frozen = True

    def release(self) -> None:
        if self.frozen:
            gc.unfreeze()
            self.frozen = False
