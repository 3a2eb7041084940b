"""The late-answer episodes of the polled buses (M-Bus, Modbus), kept across the transports a reload
makes anew.

A meter that answers after its bus's timeout is warned of once an episode (:mod:`gateway.late_answers`:
the episode lasts until an hour passes without a late answer from it). The episodes lived in the
bus's transport, which a reload of the gateway's configuration makes anew: with an operator's
automation pushing the file every 10 minutes, a meter answering late at every poll was warned of
again every 10 minutes (12 warnings in 2 hours in place of one). The gateway now holds them here, per
bus name, as it holds its polled meters' failure episodes (:mod:`gateway.poll_episodes`):

- an episode goes on across a reload while what its warning named is configured as it was: the
  meter (or the meters at the Modbus unit, or those an M-Bus E5h may be from) with the same entry,
  on the same bus with the same settings; one of a device no meter is configured with goes on while
  the bus's settings are the same;
- one whose meter's entry changed (a unit id, a primary or secondary address, a profile) or whose
  bus's settings changed (a timeout raised as the warning advised) is forgotten: if the meter still
  answers late its next late answer is warned of at once, naming the new address or timeout, not an
  hour later, as the operator who changed it waits to know (a late-answer episode has no end to
  say, so keeping it would only keep that warning back);
- so is one naming a meter no longer configured on the bus (configured again, or moved to another
  bus, its episode begins afresh), one of a Modbus unit whose meters changed (a meter configured at
  the unit of a device heard answering late is warned of by name), and a bus no longer configured.

The health status's ``late_answers`` counts are the health's, not these (every late answer counts,
as before). The times are the monotonic clock's; a restart begins afresh (the memory is the running
gateway's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from gateway.config import BusConfig, MeterConfig, WMBusBusConfig


def settings(bus: BusConfig) -> BusConfig:
    """``bus`` less its meters, poll interval and jitter (which change when it is polled, not what a
    late answer's warning says)."""
    return replace(bus, meters=(), poll_interval_s=0.0, jitter=0.0)


def entry(meter: MeterConfig) -> MeterConfig:
    """``meter``'s entry less its poll interval."""
    return replace(meter, poll_interval_s=None)


@dataclass(slots=True)
class _Episode:
    last: float  # its latest late answer, on the monotonic clock
    unit: int | None  # a Modbus unit's episode: the unit (its meters are ``named``)
    named: tuple[MeterConfig, ...]  # the meters its warning named, their entries as configured then


class BusLateEpisodes:
    """One bus's late-answer episodes, by what a warning is said of (:class:`LateAnswers`'s keys)."""

    def __init__(self) -> None:
        self._episodes: dict[object, _Episode] = {}
        self._settings: BusConfig | None = None

    def heard(self, key: object, now: float, named: Sequence[MeterConfig], unit: int | None = None) -> float | None:
        """A late answer of ``key``'s at ``now``, naming ``named`` (those at ``unit``, for a Modbus
        unit's): the time of its episode's last one before, or None if none was kept."""
        before = self._episodes.get(key)
        self._episodes[key] = _Episode(now, unit, tuple(entry(m) for m in named))
        return None if before is None else before.last

    def configured(self, bus: BusConfig) -> None:
        """``bus`` as now configured: forget every episode if its settings changed, else those that
        name a meter no longer configured as it was, and a Modbus unit's whose meters changed."""
        if self._settings is not None and settings(bus) != self._settings:
            self._episodes.clear()
        self._settings = settings(bus)
        entries = {m.meter_id: entry(m) for m in bus.meters}

        def still(episode: _Episode) -> bool:
            if any(entries.get(m.meter_id) != m for m in episode.named):
                return False
            return episode.unit is None or [m.meter_id for m in bus.meters if m.unit_id == episode.unit] == [
                m.meter_id for m in episode.named
            ]

        self._episodes = {key: episode for key, episode in self._episodes.items() if still(episode)}


class LateEpisodes:
    """Each polled bus's late-answer episodes, by bus name."""

    def __init__(self) -> None:
        self._buses: dict[str, BusLateEpisodes] = {}

    def configured(self, buses: Iterable[BusConfig]) -> None:
        """The buses of the configuration now taken (at start, at each reload): forget the buses no
        longer configured, and in the others the episodes whose warning no longer says what it said."""
        polled = {bus.name: bus for bus in buses if not isinstance(bus, WMBusBusConfig)}
        self._buses = {name: episodes for name, episodes in self._buses.items() if name in polled}
        for name, bus in polled.items():
            self._buses.setdefault(name, BusLateEpisodes()).configured(bus)

    def of_bus(self, name: str) -> BusLateEpisodes:
        """Bus ``name``'s episodes, going on since before the reload if it was configured then."""
        episodes = self._buses.get(name)
        if episodes is None:
            episodes = self._buses[name] = BusLateEpisodes()
        return episodes
