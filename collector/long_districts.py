"""Districts whose alerts PostgreSQL's indexes refuse: said once each, with what to do.

A district's name is a key of the alerts' and enquiries' btree indexes, and PostgreSQL refuses an
index row over 2,704 bytes. ``aquami server register-meters`` refuses a name over 500 characters
now, but a database from before it may hold a name of about 2,650 bytes or more: detection saves
every other alert of its run (:func:`collector.alert_store.save_what_fits`) and leaves that
district's out. Each run would find them again; the log says so once per district and process, not
at every run (every 15 minutes), naming the district by its start and length, as errors quote a
long value (:mod:`aquami.excerpt`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from aquami.excerpt import quoted
from collector.detection.alerts import Alert


class LongDistricts:
    """Logs a warning the first time a district's alerts are refused, and never again for it."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._said: set[str] = set()
        self._lock = threading.Lock()  # several collectors' schedulers in one process (tests)

    def refused(self, alerts: Iterable[Alert]) -> None:
        """Say, for each district of ``alerts`` not said before, that its alerts were not saved."""
        by_district: dict[str, int] = {}
        for alert in alerts:
            by_district[alert.dma] = by_district.get(alert.dma, 0) + 1
        for dma, count in by_district.items():
            with self._lock:
                if dma in self._said:
                    continue
                self._said.add(dma)
            self._log.warning(
                "detection: district %s, %d bytes, is too long for the database's indexes: its %d alert(s) "
                "of this run are not saved, nor will be until it is shorter (every other district's are); "
                "register its meters again with a shorter district (aquami server register-meters)",
                quoted(dma),
                len(dma.encode()),
                count,
            )
