"""Health: what the gateway knows about its buses and meters, and the events when a meter goes quiet.

A meter is ``offline`` after ``offline_after`` consecutive failed polls (each poll counting once,
however many retries it took); the transition raises one ``meter_offline`` event, and the first good
read after it one ``meter_online``. The status snapshot (uptime, per-bus success rate and Modbus
answers heard after their attempt gave up (``late_answers``: gateway.late_answers), per-meter last
good read, consecutive failures and last error, spool depth) is published on
``{root}/{gateway_id}/status/health``. A meter's ``last_error`` is its last failed poll's reason and
time (``{"ts": …, "message": …}``: "no answer from unit 5", "cannot open /dev/ttyUSB0", "line never quiet"), null
once a poll succeeds (and for a wireless meter not heard, which has no reason to give).
``uptime_s`` is counted on the monotonic clock: a gateway without a battery-backed clock starts at
1970 and NTP steps its wall clock later (56 years of uptime), or steps it back (a negative one);
``started_at`` is the wall clock's start, for display.

What the events depend on outlives a restart: each meter's last good read, consecutive failures
and ``offline_since`` (set exactly when its ``meter_offline`` was spooled) are kept in the spool's
database (:class:`MeterHealthStore`). A meter's changes go there with its offline or online event, in
the same transaction, and the others' at each status publication and at stop; a meter is loaded
from there when first tracked. Before, a restart forgot them: a meter offline before it got no
``meter_online`` when it answered again, and one still silent a second ``meter_offline`` with
``last_good: null`` ("never answered"). A power cut loses at most the last status interval's
changes of meters without an event: their ``last_good`` is then that much older, never invented
(null for a meter first heard in that interval).
Meters no longer configured keep their stored state but are never tracked, so it raises nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from aquami.clock import Clock, utc_now
from aquami.contracts.reads import utc_iso

#: the gateway's link as its health status says it: ``offline`` in the last one, at a clean stop
LinkState = Literal["online", "offline"]

# A meter's state that outlives a restart, as stored: meter_id, last_good and offline_since (ISO 8601
# UTC, or None), consecutive_failures.
SavedMeter = tuple[str, str | None, str | None, int]
# The same, as loaded for one meter: last_good, offline_since, consecutive_failures.
StoredMeter = tuple[str | None, str | None, int]


class MeterHealthStore(Protocol):
    def load_meter_health(self, meter_id: str) -> StoredMeter | None: ...

    def save_meter_health(self, rows: Iterable[SavedMeter]) -> None: ...


@dataclass(slots=True)
class MeterHealth:
    bus: str
    polls: int = 0
    failed_polls: int = 0
    consecutive_failures: int = 0
    last_good: datetime | None = None
    offline_since: datetime | None = None
    last_error: tuple[datetime, str] | None = None  # the last failed poll's time and reason


@dataclass(slots=True)
class BusHealth:
    attempts: int = 0  # transactions on the wire, retries included
    successes: int = 0
    polls_skipped: int = 0  # polls not made (spool full under stop_polling, or the bus fell behind)
    telegrams_replayed: int = 0  # wireless M-Bus: telegrams refused as replays (gateway.wmbus_replay)
    late_answers: int = 0  # Modbus and M-Bus: answers heard after their attempt gave up (gateway.late_answers)
    #: wireless M-Bus: distinct senders heard that no meter is configured with (neighbours' meters, or a
    #: configured meter's id typed wrong), up to gateway.wmbus_unconfigured.MAX_REMEMBERED; None on other buses
    unconfigured_ids_heard: int | None = None

    @property
    def success_rate(self) -> float | None:
        return None if self.attempts == 0 else self.successes / self.attempts


class Health:
    def __init__(
        self,
        gateway_id: str,
        offline_after: int,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        store: MeterHealthStore | None = None,
    ):
        self.gateway_id = gateway_id
        self.store = store
        self.offline_after = offline_after
        self.clock = clock
        self.monotonic = monotonic
        self.started_at = clock()
        self._started_monotonic = monotonic()
        self.meters: dict[str, MeterHealth] = {}
        self.buses: dict[str, BusHealth] = {}
        self._unsaved: set[str] = set()  # meters whose stored state is behind

    def track(self, bus: str, meter_ids: Iterable[str], stored: Mapping[str, StoredMeter | None] | None = None) -> None:
        """Track the bus and its meters; a meter not tracked yet is loaded from ``stored`` (read ahead
        by :meth:`read_stored`) if it is there, else from the store."""
        self.buses.setdefault(bus, BusHealth())
        for meter_id in meter_ids:
            self._meter(meter_id, bus, stored or {})

    def untracked(self, meter_ids: Iterable[str]) -> list[str]:
        """Those of ``meter_ids`` not tracked yet: the ones :meth:`track` would load from the store."""
        return [meter_id for meter_id in meter_ids if meter_id not in self.meters]

    def read_stored(self, meter_ids: Iterable[str]) -> dict[str, StoredMeter | None]:
        """The meters' states as stored, for :meth:`track`. Reads the store and nothing else of this
        object, so that it can run in a thread (the gateway's: SQLite, off its event loop) while the
        loop goes on with the meters tracked."""
        return {
            meter_id: None if self.store is None else self.store.load_meter_health(meter_id) for meter_id in meter_ids
        }

    def _meter(self, meter_id: str, bus: str, read: Mapping[str, StoredMeter | None] | None = None) -> MeterHealth:
        """The meter's health, loaded the first time (a restart's): from ``read`` if it holds the
        meter, else from the store."""
        meter = self.meters.get(meter_id)
        if meter is None:
            meter = self.meters[meter_id] = MeterHealth(bus)
            if read is not None and meter_id in read:
                stored = read[meter_id]
            else:
                stored = None if self.store is None else self.store.load_meter_health(meter_id)
            if stored is not None:
                last_good, offline_since, meter.consecutive_failures = stored
                meter.last_good = None if last_good is None else datetime.fromisoformat(last_good)
                meter.offline_since = None if offline_since is None else datetime.fromisoformat(offline_since)
        return meter

    def forget_missing(self, meter_ids: set[str], buses: set[str]) -> None:
        """After a reload: drop meters and buses no longer configured (save what is unsaved first:
        a meter configured again is loaded from the store)."""
        for meter_id in list(self.meters):
            if meter_id not in meter_ids:
                del self.meters[meter_id]
                self._unsaved.discard(meter_id)
        for bus in list(self.buses):
            if bus not in buses:
                del self.buses[bus]

    def attempt(self, bus: str, ok: bool) -> None:
        counts = self.buses.setdefault(bus, BusHealth())
        counts.attempts += 1
        counts.successes += ok

    def skipped(self, bus: str) -> None:
        self.buses.setdefault(bus, BusHealth()).polls_skipped += 1

    def replayed(self, bus: str) -> None:
        self.buses.setdefault(bus, BusHealth()).telegrams_replayed += 1

    def unconfigured_heard(self, bus: str, count: int) -> None:
        self.buses.setdefault(bus, BusHealth()).unconfigured_ids_heard = count

    def late_answer(self, bus: str) -> None:
        self.buses.setdefault(bus, BusHealth()).late_answers += 1

    def poll_done(
        self, meter_id: str, ok: bool, at: datetime | None = None, error: str | None = None
    ) -> dict[str, Any] | None:
        """Record one poll's outcome (``error``: why it failed); returns the event it raises, if any.
        A meter not tracked is tracked here (bus ""), its stored state loaded from the store in the
        caller's thread: the gateway never asks it of one (:meth:`gateway.service.Gateway._on_heard`
        leaves out the outcome of a meter a reload dropped while it was polled), so it never reads
        the spool on its event loop here."""
        at = at or self.clock()
        meter = self._meter(meter_id, bus="")
        self._unsaved.add(meter_id)
        meter.polls += 1
        meter.last_error = None if ok or error is None else (at, error)
        if ok:
            meter.last_good = at
            meter.consecutive_failures = 0
            if meter.offline_since is not None:
                since, meter.offline_since = meter.offline_since, None
                return self._event("meter_online", meter_id, meter, at, offline_since=utc_iso(since))
            return None
        meter.failed_polls += 1
        meter.consecutive_failures += 1
        if meter.offline_since is None and meter.consecutive_failures >= self.offline_after:
            meter.offline_since = at
            return self._event("meter_offline", meter_id, meter, at)
        return None

    def take_unsaved(self, meter_ids: Iterable[str] | None = None) -> list[SavedMeter]:
        """The stored state of the meters (``meter_ids``, or all) changed since last saved, now
        counted as saved: the caller stores it, or hands it back (:meth:`unsaved_again`)."""
        wanted = self._unsaved if meter_ids is None else self._unsaved.intersection(meter_ids)
        rows = [self._saved(meter_id) for meter_id in sorted(wanted) if meter_id in self.meters]
        self._unsaved -= set(wanted)
        return rows

    def unsaved_again(self, rows: Iterable[SavedMeter]) -> None:
        """``rows`` (from :meth:`take_unsaved`) could not be stored: take them again next time."""
        self._unsaved.update(meter_id for meter_id, *_ in rows if meter_id in self.meters)

    def save(self) -> int:
        """Store every meter's unsaved state (one transaction), if there is a store: how many meters'
        states were stored (0: none to store, and the store not asked)."""
        if self.store is None:
            return 0
        rows = self.take_unsaved()
        if rows:
            try:
                self.store.save_meter_health(rows)
            except BaseException:
                self.unsaved_again(rows)
                raise
        return len(rows)

    def _saved(self, meter_id: str) -> SavedMeter:
        meter = self.meters[meter_id]
        last_good = None if meter.last_good is None else utc_iso(meter.last_good)
        offline_since = None if meter.offline_since is None else utc_iso(meter.offline_since)
        return (meter_id, last_good, offline_since, meter.consecutive_failures)

    def _event(self, name: str, meter_id: str, meter: MeterHealth, at: datetime, **extra: Any) -> dict[str, Any]:
        event = {
            "gateway_id": self.gateway_id,
            "event": name,
            "ts": utc_iso(at),
            "meter_id": meter_id,
            "bus": meter.bus,
            "consecutive_failures": meter.consecutive_failures,
            "last_good": None if meter.last_good is None else utc_iso(meter.last_good),
        }
        event.update(extra)
        return event

    def gateway_event(self, name: str, **detail: Any) -> dict[str, Any]:
        return {"gateway_id": self.gateway_id, "event": name, "ts": utc_iso(self.clock()), **detail}

    def snapshot(
        self, spool_depth: int, extra: dict[str, Any] | None = None, state: LinkState = "online"
    ) -> dict[str, Any]:
        """The health status; ``state`` is ``offline`` in the last one, sent as the gateway stops."""
        now = self.clock()
        return {
            "gateway_id": self.gateway_id,
            "state": state,
            "ts": utc_iso(now),
            "started_at": utc_iso(self.started_at),
            "uptime_s": round(self.monotonic() - self._started_monotonic, 3),
            "spool_depth": spool_depth,
            "buses": {
                name: {
                    "attempts": b.attempts,
                    "successes": b.successes,
                    "success_rate": None if b.success_rate is None else round(b.success_rate, 4),
                    "polls_skipped": b.polls_skipped,
                    "telegrams_replayed": b.telegrams_replayed,
                    "late_answers": b.late_answers,
                    **(
                        {} if b.unconfigured_ids_heard is None else {"unconfigured_ids_heard": b.unconfigured_ids_heard}
                    ),
                }
                for name, b in self.buses.items()
            },
            "meters": {
                meter_id: {
                    "bus": m.bus,
                    "last_good": None if m.last_good is None else utc_iso(m.last_good),
                    "consecutive_failures": m.consecutive_failures,
                    "offline": m.offline_since is not None,
                    "last_error": None
                    if m.last_error is None
                    else {"ts": utc_iso(m.last_error[0]), "message": m.last_error[1]},
                }
                for meter_id, m in self.meters.items()
            },
            **(extra or {}),
        }
