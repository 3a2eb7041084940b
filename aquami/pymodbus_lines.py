"""pymodbus's log lines that aquami says in its own words, dropped, and its ``Repeating....`` of them.

pymodbus 3.16 logs everything through one logger. The gateway and the simulators each drop the
lines they say better themselves (a bus that will not open, a meter's silence, a request for a unit
with no meter, a port already in use), unless that logger is at DEBUG (``--verbose``), where every
line is one of the frames asked for.

pymodbus logs a line the same as the one before it as ``Repeating....``. Such a stand-in must go as
the line it stands for went, so :class:`DropPymodbusLines` remembers whether it dropped its last
line. pymodbus's own record of the last text (``Log.last_log_text``) cannot say it: once an ERROR
line has had its frames appended, that text is the last frame's (``send: 0x5 0x4 …``), of whichever
bus (one history a process), and a silent meter's ``Repeating....`` judged by it reached the log at
ERROR every poll.

Several such filters on the logger stay right: a ``Repeating....`` passes the first one only if the
line before passed it, so each filter after it has seen that line too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

PYMODBUS_LOGGER = "pymodbus.logging"  # pymodbus 3.16 logs everything through this one logger
REPEATING = "Repeating...."  # pymodbus's stand-in for a line the same as the one before it


def pymodbus_at_debug() -> bool:
    """Whether pymodbus's logger is at DEBUG: every line of its is then asked for."""
    return logging.getLogger(PYMODBUS_LOGGER).isEnabledFor(logging.DEBUG)


class DropPymodbusLines(logging.Filter):
    """Drops pymodbus's lines ``said_elsewhere`` picks (given the line's text), and each
    ``Repeating....`` of a line dropped."""

    def __init__(self, said_elsewhere: Callable[[str], bool]) -> None:
        super().__init__()
        self.said_elsewhere = said_elsewhere
        self.dropped_last = False  # whether the last line it judged (not a Repeating) was dropped

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(REPEATING):  # the line it stands for is dropped or kept alike
            return not self.dropped_last
        self.dropped_last = self.said_elsewhere(message)
        return not self.dropped_last


def drop_pymodbus_lines(said_elsewhere: Callable[[str], bool]) -> DropPymodbusLines:
    """A :class:`DropPymodbusLines` put on pymodbus's logger, first, so that it sees every line
    (behind a filter that drops one, it would judge that line's Repeating by the line before it)."""
    dropper = DropPymodbusLines(said_elsewhere)
    logging.getLogger(PYMODBUS_LOGGER).filters.insert(0, dropper)
    return dropper
