"""aquami.outage: an outage is one line at its start, a reminder at most every few minutes, one at its end."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.outage import Outage, one_line

LOG = logging.getLogger("tests.outage")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []
        self.now = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((self.now, record.getMessage()))


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


def test_one_line() -> None:
    assert one_line("a\n\tb  c\n") == "a b c"
