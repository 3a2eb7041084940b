"""The failure episodes of the polled buses' meters (M-Bus, Modbus), kept across the schedulers a
reload makes anew.

A meter's failed polls are said once an episode (:mod:`gateway.episodes`): the first with its
reason, a reminder every hour, its answering again with how long it lasted. The episodes lived in
the bus's scheduler, which a reload of the gateway's configuration makes anew: with an operator's
automation pushing the file every 10 minutes, a dead meter's first warning was said again every
10 minutes (12 in 2 hours in place of one and a reminder), and its end ("answers again after …,
… polls failed") told only the time since the last reload. The gateway now holds them here, per
bus name and meter id, as it holds a wireless M-Bus receiver's (:mod:`gateway.wmbus_said`):

- a meter's episode goes on across a reload while the meter is configured on the same bus;
- one whose entry, or its bus's settings, changed (a primary address, unit id, profile, timeout
  corrected) keeps its episode too: if the change mended it, its next answer ends the episode with
  the whole of it (2 hours unread are 2 hours, whatever the cause), where forgetting it would end it
  unsaid; if it did not, its next failure is said at once (a reminder, with the new address in its
  reason), not an hour later, as the operator who changed it waits to know;
- a meter no longer configured on the bus is forgotten (configured again, or moved to another bus,
  its episode begins afresh), and so is a bus no longer configured;
- the bus's reminder interval and settle time are the scheduler's of the moment (a change applies).

The times are the monotonic clock's; a restart begins afresh (the memory is the running gateway's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from aquami.clock import Clock, utc_now
from gateway.config import BusConfig, MeterConfig, WMBusBusConfig
from gateway.episodes import Episodes

#: What decides how a meter is asked: its entry and its bus's settings, but for when it is polled.
Where = tuple[object, object]


def where(bus: BusConfig, meter: MeterConfig) -> Where:
    """``meter``'s entry and ``bus``'s settings, less its poll interval and the bus's meters,
    interval and jitter (which change when it is asked, not what it is asked or where)."""
    return replace(bus, meters=(), poll_interval_s=0.0, jitter=0.0), replace(meter, poll_interval_s=None)


class PolledEpisodes:
    """Each polled bus's meters' failure episodes, by bus name then meter id, and where each meter
    was asked. ``monotonic`` and ``clock``: the real ones but in a test."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, clock: Clock = utc_now) -> None:
        self.monotonic = monotonic
        self.clock = clock
        self._buses: dict[str, Episodes[str]] = {}
        self._where: dict[tuple[str, str], Where] = {}

    def configured(self, buses: Iterable[BusConfig]) -> None:
        """The buses of the configuration now taken (at start, at each reload): forget the buses and
        meters no longer configured, and have the next failure of a meter whose entry or bus's
        settings changed said at once."""
        polled = [bus for bus in buses if not isinstance(bus, WMBusBusConfig)]
        now = {(bus.name, meter.meter_id): where(bus, meter) for bus in polled for meter in bus.meters}
        self._buses = {name: episodes for name, episodes in self._buses.items() if name in {b.name for b in polled}}
        for bus in polled:
            episodes = self._buses.get(bus.name)
            if episodes is None:
                continue
            episodes.keep_only(meter.meter_id for meter in bus.meters)
            for meter in bus.meters:
                before = self._where.get((bus.name, meter.meter_id))
                if before is not None and before != now[(bus.name, meter.meter_id)]:
                    episodes.say_next_failure(meter.meter_id)
        self._where = now

    def of_bus(self, name: str) -> Episodes[str]:
        """Bus ``name``'s episodes, going on since before the reload if it was configured then."""
        episodes = self._buses.get(name)
        if episodes is None:
            episodes = self._buses[name] = Episodes(monotonic=self.monotonic, clock=self.clock)
        return episodes
