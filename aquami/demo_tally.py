"""The demo's last word on its readings: how many were polled, stored, and left in the gateway's spool.

The progress line printed as Ctrl-C came was the only count at stop, and it was taken while the
last readings were still on their way (``polled 955  stored 951  waiting in spool 0``): four
readings looked lost, and nothing said otherwise. The gateway drains its spool to the broker as it
stops; the demo now gives the collector a moment to store what the broker holds for it, stops it,
and says the counts then.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from collector.service import Collector
from gateway.service import Gateway

#: How long the collector is given to store what the gateway delivered before it is stopped.
CATCH_UP_S = 10.0
_LOOK_EVERY_S = 0.1


@dataclass(frozen=True)
class Tally:
    polled: int  # readings the gateway spooled in this run
    stored: int  # readings the collector stored in this run (not counting ones it already had)
    left: int  # readings still in the gateway's spool, not acknowledged by the broker

    def line(self, spool: Path, spool_kept: bool) -> str:
        said = (
            f"· at stop: {self.polled} readings polled, {self.stored} stored, {self.left} left in the gateway's spool"
        )
        if self.left and spool_kept:
            return f"{said} (kept in {spool}: the next run with this --data-dir sends them)"
        if self.left:
            return f"{said} (removed with the demo's temporary folder)"
        return said


def _delivered(gateway: Gateway) -> int:
    return gateway.readings_spooled - gateway.spool.depth()


def _taken(collector: Collector) -> int:
    """The readings the collector is done with: stored, found stored already, or refused (untimely,
    of a meter the gateway may not report: dead letters). Before, stored and duplicates only: with
    a reading refused the count never reached the gateway's, and the demo waited its whole
    ``CATCH_UP_S`` at every stop."""
    return collector.counters.snapshot()["readings_received"]


async def let_collector_catch_up(collector: Collector, gateway: Gateway, timeout_s: float = CATCH_UP_S) -> bool:
    """Wait (at most ``timeout_s``) until the collector has taken as many readings as the broker
    acknowledged to the gateway: the ones still on their way from the broker when the demo stops.
    Whether it did (False: ``timeout_s`` ran out first)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while _taken(collector) < _delivered(gateway):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_LOOK_EVERY_S)
    return True


def tally(collector: Collector, gateway: Gateway) -> Tally:
    return Tally(
        polled=gateway.readings_spooled,
        stored=collector.counters.snapshot()["readings_stored"],
        left=gateway.spool.depth(),
    )
