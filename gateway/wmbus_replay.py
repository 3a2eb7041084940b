"""Replayed wireless M-Bus telegrams: recorded off the air and sent again later, to pass an old
reading off as a new one.

* Security mode 7 carries the AFL message counter (EN 13757-7:2018 6.3.5), which the meter counts
  up with every message and the AFL MAC authenticates; OMS Vol. 2 has the receiver accept a counter
  only if it is greater than the last one it accepted from that meter. So does this guard.
* Mode 5 and an ELL encrypted with AES-CTR carry no message counter (mode 5's access number wraps
  after 256 telegrams). A telegram that carries the meter's own clock (the date-time record, VIF
  6Dh, storage 0, encrypted with the rest) is refused if that time is earlier than the last one
  accepted; equal is accepted, a type F clock counting whole minutes. The clock is compared at
  standard time: a meter keeping summer time marks it with the record's SU bit (EN 13757-3
  Annex A), and its clock going back an hour in autumn is no replay (taken at face value, every
  telegram of that hour was refused). A telegram without a clock cannot be told from a replay.

What was last accepted from each meter is kept in the spool's database (:class:`FreshnessStore`),
per configured meter and radio identification (a replaced meter starts afresh), so a restart does
not open the door to every telegram recorded before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class FreshnessStore(Protocol):
    def load_freshness(self, meter_id: str, device: str) -> tuple[int | None, str | None]: ...

    def save_freshness(
        self, meter_id: str, device: str, message_counter: int | None, meter_time: str | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Freshness:
    """What tells a telegram's age: its AFL message counter, or the meter's clock (ISO 8601 as decoded)."""

    message_counter: int | None = None
    meter_time: str | None = None


def freshness_of(decoded: dict[str, Any]) -> Freshness:
    """The message counter and meter clock of a decoded telegram (its trusted records only)."""
    counter = (decoded.get("afl") or {}).get("message_counter")
    return Freshness(counter, _meter_time(decoded["records"]))


def _meter_time(records: Iterable[dict[str, Any]]) -> str | None:
    """The current date-time record's value at the meter's standard time (an hour earlier where its
    SU bit says summer time)."""
    for record in records:
        if (
            record["quantity"] in ("datetime", "datetime_s")
            and record["storage"] == 0
            and record["tariff"] == 0
            and record.get("subunit", 0) == 0
            and record["function"] == "instantaneous"
            and isinstance(record["value"], str)
        ):
            moment = _instant(record["value"])
            if moment is None:
                continue
            if record.get("summer_time") is True:
                return (moment - _SUMMER_SHIFT).isoformat()
            return str(record["value"])
    return None


_SUMMER_SHIFT = timedelta(hours=1)


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


class ReplayGuard:
    """The last accepted message counter and meter time per meter, and the test against them."""

    def __init__(self, store: FreshnessStore | None = None):
        self.store = store
        self._last: dict[tuple[str, str], Freshness] = {}

    def last(self, meter_id: str, device: str) -> Freshness:
        key = (meter_id, device)
        if key not in self._last:
            loaded = self.store.load_freshness(meter_id, device) if self.store is not None else (None, None)
            self._last[key] = Freshness(*loaded)
        return self._last[key]

    def known(self, meter_id: str, device: str) -> bool:
        """Whether what was last accepted from the meter is in memory: else :meth:`last` reads the
        spool (the listener asks for it in a thread, off the event loop)."""
        return (meter_id, device) in self._last

    def why_replayed(self, meter_id: str, device: str, heard: Freshness) -> str | None:
        """Why a telegram heard now is a replay, or None if it may be new."""
        last = self.last(meter_id, device)
        if heard.message_counter is not None:
            if last.message_counter is not None and heard.message_counter <= last.message_counter:
                return (
                    f"AFL message counter {heard.message_counter} is not above the last accepted {last.message_counter}"
                )
            return None
        if heard.meter_time is None or last.meter_time is None:
            return None
        now, before = _instant(heard.meter_time), _instant(last.meter_time)
        if now is not None and before is not None and now < before:
            return f"meter time {heard.meter_time} is before the last accepted {last.meter_time}"
        return None

    def accept(self, meter_id: str, device: str, heard: Freshness) -> None:
        """Remember (and store) a telegram taken as a reading."""
        last = self.last(meter_id, device)
        new = Freshness(
            heard.message_counter if heard.message_counter is not None else last.message_counter,
            heard.meter_time if heard.meter_time is not None else last.meter_time,
        )
        if new == last:
            return
        if self.store is not None:
            self.store.save_freshness(meter_id, device, new.message_counter, new.meter_time)
        self._last[meter_id, device] = new
