"""Requests for Modbus units a simulator has no meter at: one summary line, not a record each.

pymodbus 3.16's server logs an ERROR for every request to a unit it has no device for (``requested
device id does not exist: 7``, with the frames received and sent), before answering it with
exception 0Bh. A technician's ``aquami gateway scan`` of units 1..247 on the rig's Modbus TCP
transport, which has two meters, wrote 245 of them, three lines each, over the rig's table. The
simulator says them itself instead (:class:`AbsentUnits`): once the requests stop for a moment,
one line with the units asked and how many requests were answered so; a gateway polling a unit
that is not there is said at most once a minute. Only those records of pymodbus's are dropped (a
filter on its logger, unless it is at DEBUG): any other error it logs (a meter whose registers
fail) still shows. Tied to pymodbus 3.16's texts (pinned <3.17).
"""

from __future__ import annotations

import asyncio
import logging

from aquami.pymodbus_lines import drop_pymodbus_lines, pymodbus_at_debug

NO_SUCH_UNIT = "requested device id does not exist"  # pymodbus 3.16's ServerRequestHandler.handle_request

log = logging.getLogger(__name__)


def _an_absent_unit(message: str) -> bool:
    """pymodbus's record of a request for a unit with no device (its ``Repeating....`` goes with it:
    aquami.pymodbus_lines), unless its logger is at DEBUG."""
    return not pymodbus_at_debug() and message.startswith(NO_SUCH_UNIT)


drop_pymodbus_lines(_an_absent_unit)


def unit_ranges(units: list[int]) -> str:
    """``2..9, 11, 13..247``: sorted units, runs joined."""
    runs: list[list[int]] = []
    for unit in sorted(set(units)):
        if runs and unit == runs[-1][1] + 1:
            runs[-1][1] = unit
        else:
            runs.append([unit, unit])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


class AbsentUnits:
    """The requests to units without a meter, said in one line once none has come for ``quiet_s``
    (a scan's whole sweep), or ``at_most_s`` after the first (a gateway that keeps asking)."""

    def __init__(self, where: str, quiet_s: float = 2.0, at_most_s: float = 60.0):
        self.where = where
        self.quiet_s = quiet_s
        self.at_most_s = at_most_s
        self._asked: dict[int, int] = {}  # unit id -> requests since the last line
        self._first = self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def note(self, unit_id: int) -> None:
        """A request for ``unit_id``, which has no meter (called on the server's event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: nothing to wait with, so said at once
            self._asked[unit_id] = self._asked.get(unit_id, 0) + 1
            self.flush()
            return
        now = loop.time()
        if not self._asked:
            self._first = now
        self._last = now
        self._asked[unit_id] = self._asked.get(unit_id, 0) + 1
        if self._timer is None:
            self._timer = loop.call_later(self.quiet_s, self._due)

    def _due(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        wake = min(self._last + self.quiet_s, self._first + self.at_most_s)
        if wake > now:
            self._timer = loop.call_later(wake - now, self._due)
            return
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Say what has been asked since the last line, if anything (also at the simulator's stop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._asked:
            return
        units, requests = list(self._asked), sum(self._asked.values())
        self._asked.clear()
        log.warning(
            "%s: no meter at unit%s %s: %d request%s answered with exception 0Bh (gateway target device "
            "failed to respond)",
            self.where,
            "s" if len(units) > 1 else "",
            unit_ranges(units),
            requests,
            "s" if requests > 1 else "",
        )
