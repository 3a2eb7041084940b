"""Meters and districts whose alerts PostgreSQL's indexes refuse: said once each, with what to do.

A meter's id and a district's name are keys of the alerts' and enquiries' btree indexes, and inside
an alert's id (``leak/<meter id>/…``, ``burst/dma:<district>/…``); PostgreSQL refuses an index row
over 2,704 bytes. ``aquami server register-meters`` refuses an id over 64 characters and a district
over 500 now, but a database from before it may hold an id or a name of about 2,650 bytes or more:
detection saves every other alert of its run (:func:`collector.alert_store.save_what_fits`) and
leaves that meter's or district's out. Each run would find them again; the log says so once per
meter or district and process, not at every run (every 15 minutes), naming it by its start and
length, as errors quote a long value (:mod:`aquami.excerpt`).

An alert refused is put down to the longer in UTF-8 of its meter's id and its district's name: the
index entry that failed holds one of them, and only one so long is past what an index takes. Before,
every refusal was put down to the district: a meter's id too long was said as its district ('D1', 2
bytes) "too long", and no later refusal in that district was said at all."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH
from aquami.excerpt import quoted
from collector.detection.alerts import Alert

_METER = (
    "detection: meter %s, %d bytes, has an id too long for the database's indexes: its %d alert(s) of this run "
    "are not saved, nor will be until its id is shorter (every other meter's are); register it again under an id "
    f"of at most {IDENTIFIER_MAX_LENGTH} characters (aquami server register-meters)"
)
_DISTRICT = (
    "detection: district %s, %d bytes, is too long for the database's indexes: its %d alert(s) of this run are "
    "not saved, nor will be until it is shorter (every other district's are); register its meters again with a "
    "shorter district (aquami server register-meters)"
)


def culprit(alert: Alert) -> tuple[str, str]:
    """``("meter", id)`` or ``("district", name)``: what made the alert too long for an index."""
    if alert.meter_id is not None and len(alert.meter_id.encode()) >= len(alert.dma.encode()):
        return "meter", alert.meter_id
    return "district", alert.dma


class UnindexableAlerts:
    """Logs a warning the first time a meter's or a district's alerts are refused, and never again for it."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._said: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # several collectors' schedulers in one process (tests)

    def refused(self, alerts: Iterable[Alert]) -> None:
        """Say, for each meter or district of ``alerts`` not said before, that its alerts were not saved."""
        counts: dict[tuple[str, str], int] = {}
        for alert in alerts:
            key = culprit(alert)
            counts[key] = counts.get(key, 0) + 1
        for (what, value), count in counts.items():
            with self._lock:
                if (what, value) in self._said:
                    continue
                self._said.add((what, value))
            self._log.warning(_METER if what == "meter" else _DISTRICT, quoted(value), len(value.encode()), count)
