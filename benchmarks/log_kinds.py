"""Log lines counted by kind, for the measurements of what a link that keeps dropping makes a part
say (``flapping_broker_log_lines``, ``collector_flapping_broker_log_lines``,
``collector_flapping_database_log_lines``): each script names the kinds its part says, the outage's
three (:data:`OUTAGE_KINDS`, :mod:`aquami.outage`) among them; and log lines kept as they were said,
for the measurements that read them whole (:class:`LinesSaid`)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence

#: A kind of line: its name, and whether a message is one.
Kind = tuple[str, Callable[[str], bool]]

#: What :class:`aquami.outage.Outage` says: a reminder, the outage's first line, its end. In this order:
#: a reminder's words hold the first line's.
OUTAGE_KINDS: tuple[Kind, ...] = (
    ("still unavailable", lambda message: " still unavailable " in message),
    ("unavailable", lambda message: " unavailable (" in message),
    ("available again", lambda message: " available again " in message),
)


class LinesByKind(logging.Handler):
    """Counts each line by the first of ``kinds`` it is (paho's own lines by their level, whatever
    their words; the rest as "other (LEVEL)"), and those at WARNING or above apart."""

    def __init__(self, kinds: Sequence[Kind]) -> None:
        super().__init__(logging.INFO)
        self.kinds_told = tuple(kinds)
        self.kinds: Counter[str] = Counter()
        self.warning_or_above: Counter[str] = Counter()  # of those kinds, lines at WARNING or above

    def emit(self, record: logging.LogRecord) -> None:
        level = logging.getLevelName(record.levelno)
        if record.name.startswith("paho"):
            kind = f"paho's {level}"
        else:
            message = record.getMessage()
            kind = next((name for name, told in self.kinds_told if told(message)), f"other ({level})")
        self.kinds[kind] += 1
        if record.levelno >= logging.WARNING:
            self.warning_or_above[kind] += 1


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    """Until ``condition()`` holds, or ``timeout`` seconds (the run goes on either way: it counts lines)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def warnings_an_hour(
    warning_or_above: Counter[str], drops: int, drop_every_s: float, every_5_minutes: Collection[str]
) -> int:
    """Lines at WARNING or above in an hour of a link dropped every ``drop_every_s``, from a run of
    ``drops`` drops: a kind said at half the drops or more scaled to the hour, the others once, and
    each of ``every_5_minutes`` (reminders, whose 5 minutes are real time, not scaled) 12 times."""
    per_hour = 3600 / drop_every_s
    counts = [n for kind, n in warning_or_above.items() if kind not in every_5_minutes]
    scaled = sum(n * per_hour / drops if n >= drops / 2 else n for n in counts)
    return round(scaled) + 12 * len(every_5_minutes)


class LinesSaid(logging.Handler):
    """Every line at INFO or above, with its level, in the order said (``wmbus_reload_log_lines``,
    ``polled_reload_log_lines``)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))
