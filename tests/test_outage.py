"""aquami.outage: an outage is one line at its start, a reminder at most every few minutes, one at its end;
a link that keeps coming back and dropping is one outage."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.outage import Outage, one_line

LOG = logging.getLogger("tests.outage")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []
        self.levels: list[int] = []
        self.now = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((self.now, record.getMessage()))
        self.levels.append(record.levelno)


class _Timers:
    """``Outage(after=…)`` on the test's clock: what is due runs as the test moves the clock on."""

    def __init__(self, lines: _Lines) -> None:
        self.lines = lines
        self.due: list[tuple[float, Callable[[], None]]] = []

    def after(self, seconds: float, then: Callable[[], None]) -> Callable[[], None]:
        timer = (self.lines.now + seconds, then)
        self.due.append(timer)
        return lambda: self.due.remove(timer) if timer in self.due else None

    def move_to(self, now: float) -> None:
        """The clock moves on to ``now``, running each timer at its own time on the way."""
        while ready := sorted((at, i) for i, (at, _) in enumerate(self.due) if at <= now):
            at, i = ready[0]
            self.lines.now = at
            self.due.pop(i)[1]()
        self.lines.now = now


@given(
    st.lists(
        st.tuples(st.floats(0, 200), st.sampled_from(["fail", "fail", "fail", "back"]), st.text(max_size=30)),
        max_size=60,
    )
)
def test_an_outage_says_its_start_then_at_most_a_reminder_every_300_s_and_its_end(
    events: list[tuple[float, str, str]],
) -> None:
    lines = _Lines()
    LOG.addHandler(lines)
    LOG.setLevel(logging.INFO)
    try:
        outage = Outage(LOG, "database", remind_every_s=300, clock=lambda: lines.now)
        outages = recoveries = 0
        for gap, event, reason in events:
            lines.now += gap
            if event == "fail":
                outages += not outage.ongoing
                outage.failed(f"connection failed\n\t{reason}")
            else:
                recoveries += outage.ongoing
                outage.recovered()
    finally:
        LOG.removeHandler(lines)
    said = [text for _, text in lines.lines]
    assert all("\n" not in text and "\t" not in text for text in said)
    assert sum(text.startswith("database unavailable (") for text in said) == outages
    assert sum(text.startswith("database available again after ") for text in said) == recoveries
    last: float | None = None  # when the ongoing outage was last said
    for at, text in lines.lines:
        if text.startswith("database still unavailable after "):
            assert last is not None and at - last >= 300
        last = None if "available again" in text else at


def test_a_two_minute_outage_of_a_failure_a_second_is_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    """The collector's writer logged 121 warnings, each two lines, in a 2-minute database outage."""
    now = [0.0]
    outage = Outage(LOG, "database", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=LOG.name):
        for second in range(121):
            now[0] = second
            outage.failed('connection to server at "127.0.0.1", port 5432 failed: Connection refused\n\tIs it up?')
        outage.recovered()
    assert [r.getMessage() for r in caplog.records if r.name == LOG.name] == [
        'database unavailable (connection to server at "127.0.0.1", port 5432 failed: Connection refused Is it up?)',
        "database available again after 120 s, 121 failures",
    ]
    # "it works again" at INFO: an operator alerting on WARNING is not paged again by a recovery
    assert [r.levelno for r in caplog.records if r.name == LOG.name] == [logging.WARNING, logging.INFO]


def _flapping_hour(settle_s: float) -> _Lines:
    """A broker link accepted and dropped every 10 s for an hour, then back for good."""
    lines = _Lines()
    timers = _Timers(lines)
    LOG.addHandler(lines)
    LOG.setLevel(logging.INFO)
    try:
        outage = Outage(LOG, "MQTT broker", clock=lambda: lines.now, settle_s=settle_s, after=timers.after)
        for drop in range(360):
            timers.move_to(drop * 10.0)
            outage.failed("connection lost: Unspecified error")
            timers.move_to(drop * 10.0 + 0.2)
            outage.recovered()
        timers.move_to(3600 + 1000)
    finally:
        LOG.removeHandler(lines)
    return lines


def test_a_link_dropped_every_10_s_for_an_hour_is_one_outage_reminded_every_5_minutes() -> None:
    """Before: an "unavailable" and an "available again" warning per drop, 720 lines an hour."""
    lines = _flapping_hour(settle_s=90)
    said = [text for _, text in lines.lines]
    assert said[0] == "MQTT broker unavailable (connection lost: Unspecified error)"
    reminders = said[1:-1]
    assert len(reminders) == 11 and all(m.startswith("MQTT broker still unavailable after ") for m in reminders)
    assert reminders[0] == (
        "MQTT broker still unavailable after 300 s, 31 failures, 30 drops (connection lost: Unspecified error)"
    )
    # said once it has stayed back 90 s: how long until it came back for good, and the drops meanwhile
    assert lines.lines[-1] == (3590.2 + 90, "MQTT broker available again after 3590 s, 360 failures, 359 drops")
    assert lines.levels == [logging.WARNING] * 12 + [logging.INFO]


def test_without_settling_each_drop_is_an_outage_of_its_own() -> None:
    """``settle_s`` 0 (the collector's database): back as soon as it answers, as before."""
    said = [text for _, text in _flapping_hour(settle_s=0).lines]
    assert len(said) == 720 and said[-1] == "MQTT broker available again after 0 s, 1 failures"


@given(
    st.lists(st.tuples(st.floats(0, 200), st.sampled_from(["fail", "fail", "back", "back"])), max_size=60),
    st.sampled_from([0.0, 1.0, 30.0, 90.0]),
)
def test_a_settling_outage_says_its_start_at_once_and_its_end_once_it_stayed_back(
    events: list[tuple[float, str]], settle_s: float
) -> None:
    lines = _Lines()
    timers = _Timers(lines)
    LOG.addHandler(lines)
    LOG.setLevel(logging.INFO)
    failed_at: list[float] = []
    failed_after: list[int] = []  # how many lines were said before each failure
    try:
        outage = Outage(LOG, "link", clock=lambda: lines.now, settle_s=settle_s, after=timers.after)
        for gap, event in events:
            timers.move_to(lines.now + gap)
            if event == "fail":
                failed_at.append(lines.now)
                quiet = not lines.lines or "available again" in lines.lines[-1][1]  # no outage going on, as said
                before = len(lines.lines)
                failed_after.append(before)
                outage.failed("cut")
                # a failure with no outage going on is said at once, whole; any other is not a start
                assert (lines.lines[before:][-1:] == [(lines.now, "link unavailable (cut)")]) == quiet
            else:
                outage.recovered()
        timers.move_to(lines.now + settle_s + 1)
    finally:
        LOG.removeHandler(lines)
    said = [text for _, text in lines.lines]
    starts = [text for text in said if text == "link unavailable (cut)"]
    ends = [(at, text) for at, text in lines.lines if text.startswith("link available again after ")]
    last_end = max((i for i, (_, text) in enumerate(lines.lines) if "available again" in text), default=-1)
    # starts and ends alternate, each outage ended once (the last may go on)
    assert [text.split()[1] for text in said if text.split()[1] in ("unavailable", "available")] == [
        "unavailable",
        "available",
    ] * len(ends) + ["unavailable"] * (len(starts) - len(ends))
    failures_said = 0
    for at, text in ends:
        # said once it had stayed back settle_s: no failure in the settle_s before (one at that very time comes after)
        assert not any(at - settle_s + 1e-6 < f < at for f in failed_at) or settle_s == 0, (events, lines.lines)
        counts = re.fullmatch(r"link available again after \d+ s, (\d+) failures(?:, (\d+) drops)?", text)
        assert counts is not None, text
        failures_said += int(counts[1])
    assert failures_said == sum(1 for before in failed_after if before <= last_end)
    assert lines.levels == [logging.INFO if "available again" in t else logging.WARNING for t in said]


def test_one_line() -> None:
    assert one_line("a\n\tb  c\n") == "a b c"


def test_a_stopped_outage_says_nothing_more() -> None:
    """A gateway stopped while its broker link was back but not yet settled: no "available again"
    from its timer afterwards, in the log of whatever runs next."""
    lines = _Lines()
    timers = _Timers(lines)
    LOG.addHandler(lines)
    LOG.setLevel(logging.INFO)
    try:
        outage = Outage(LOG, "link", clock=lambda: lines.now, settle_s=90, after=timers.after)
        outage.failed("cut")
        timers.move_to(5)
        outage.recovered()
        timers.move_to(10)
        outage.stop()
        timers.move_to(1000)
    finally:
        LOG.removeHandler(lines)
    assert [text for _, text in lines.lines] == ["link unavailable (cut)"]
    assert timers.due == [] and not outage.ongoing
