"""Meters and districts whose rows PostgreSQL's indexes refuse: said once each, with what to do.

A meter's id and a district's name are keys of btree indexes (the alerts', the enquiries',
``vee_flags``' and ``reading_history``'s), and inside an alert's id (``leak/<meter id>/…``,
``burst/dma:<district>/…``); PostgreSQL refuses an index row over 2,704 bytes. ``aquami server
register-meters`` refuses an id over 64 characters and a district over 500 now, but a database
from before it may hold an id or a name of about 2,650 bytes or more. A meter id of 2,680 bytes
that do not compress is in ``meters`` and ``readings`` (their keys take it, with room for a time),
but not in an alert (its id is longer), a VEE flag (a rule's name beside the time) or a reading's
history (an id beside the time). Detection saves every other alert of its run
(:func:`collector.alert_store.save_what_fits`), VEE every other meter's work
(:func:`collector.vee.runner.run_vee`), and each leaves that meter's or district's out. Each
detection run finds them again (VEE's rounds leave out up front the meters it found:
:class:`RefusedMeters`); the log says so once per meter or district and process, not at every run
(every 15 minutes, every hour), naming it by its start and length, as errors quote a long value
(:mod:`aquami.excerpt`).

An alert refused is put down to the longer in UTF-8 of its meter's id and its district's name: the
index entry that failed holds one of them, and only one so long is past what an index takes. Before,
every refusal was put down to the district: a meter's id too long was said as its district ('D1', 2
bytes) "too long", and no later refusal in that district was said at all."""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Iterable

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH
from aquami.excerpt import quoted
from collector.detection.alerts import Alert

_SHORTER_ID = (
    f"register it again under an id of at most {IDENTIFIER_MAX_LENGTH} characters (aquami server register-meters)"
)
_METER_ALERTS = (
    "detection: meter %s, %d bytes, has an id too long for the database's indexes: its %d alert(s) of this run "
    f"are not saved, nor will be until its id is shorter (every other meter's are); {_SHORTER_ID}"
)
_DISTRICT_ALERTS = (
    "detection: district %s, %d bytes, is too long for the database's indexes: its %d alert(s) of this run are "
    "not saved, nor will be until it is shorter (every other district's are); register its meters again with a "
    "shorter district (aquami server register-meters)"
)
_METER_READS = (
    "vee: meter %s, %d bytes, has an id too long for the database's indexes: its reads are not validated nor "
    f"estimated, nor will be until its id is shorter (every other meter's are); {_SHORTER_ID}"
)


def culprit(alert: Alert) -> tuple[str, str]:
    """``("meter", id)`` or ``("district", name)``: what made the alert too long for an index."""
    if alert.meter_id is not None and len(alert.meter_id.encode()) >= len(alert.dma.encode()):
        return "meter", alert.meter_id
    return "district", alert.dma


class Unindexable:
    """Logs a warning the first time a meter's or a district's rows are refused, and never again for it."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._said: set[Hashable] = set()
        self._lock = threading.Lock()  # several collectors' schedulers in one process (tests)

    def _first(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._said:
                return False
            self._said.add(key)
            return True

    def alerts_refused(self, alerts: Iterable[Alert]) -> None:
        """Say, for each meter or district of ``alerts`` not said before, that its alerts were not saved."""
        counts: dict[tuple[str, str], int] = {}
        for alert in alerts:
            key = culprit(alert)
            counts[key] = counts.get(key, 0) + 1
        for (what, value), count in counts.items():
            if self._first((what, value)):
                message = _METER_ALERTS if what == "meter" else _DISTRICT_ALERTS
                self._log.warning(message, quoted(value), len(value.encode()), count)

    def reads_refused(self, meter_id: str) -> None:
        """Say, unless said before, that VEE's work on the meter's reads was not saved."""
        if self._first(("reads", meter_id)):
            self._log.warning(_METER_READS, quoted(meter_id), len(meter_id.encode()))


class RefusedMeters:
    """The meters whose VEE work a database's indexes refused, per database, for the life of the
    process: a round leaves them out up front, where it tried the whole batch again and halved it
    down to the meter (some 12 failed writes a round for a batch of 2,000 meters, every round).

    An index refuses the id itself (its bytes, as PostgreSQL compresses them, beside a time and a
    rule's name), so it refuses it again at every round until the meter is registered under a
    shorter id, which is another meter. Which ids are refused is not known before one is tried:
    whether an entry fits depends on how PostgreSQL compresses it."""

    def __init__(self) -> None:
        self._by_database: dict[str, set[str]] = {}
        self._lock = threading.Lock()  # several collectors' schedulers in one process (tests)

    def add(self, database: str, meter_id: str) -> None:
        """Remember that ``database``'s indexes refused the meter's work."""
        with self._lock:
            self._by_database.setdefault(database, set()).add(meter_id)

    def of(self, database: str) -> frozenset[str]:
        """The meters ``database``'s indexes refused in this process."""
        with self._lock:
            return frozenset(self._by_database.get(database, ()))
