"""The rig's mode 7 radio meter's AFL message counter never goes back across a restart of the rig.

A gateway refuses a counter that does not rise (gateway.wmbus_replay). Before, the counter was the
larger of one above the last sent and the whole seconds since the rig's ``installed``, and nothing
of it was kept: a meter sending more often than once a second ran ahead of that clock, and one
whose rig file's ``installed`` was moved later counted from nearer, so after a restart either sent
counters below the ones the gateway had taken, and the gateway refused the meter. Now the floor is
the whole seconds since 1970, and the rig reserves counters ahead in its state file.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.meter_model import MeterModel
from simulators.rig.config import parse_rig_text
from simulators.rig.runner import Rig
from simulators.wmbus_meter import COUNTER_EPOCH, WMBusMeter
from simulators.wmbus_receiver import WMBusReceiverSimulator

T0 = datetime(2026, 2, 1, 12, 0, 20, tzinfo=UTC)
KEY = "F0E1D2C3B4A5968778695A4B3C2D1E0F"


def _rig_text(installed: str = "2026-01-01T00:00:00Z", interval_s: float = 0.1) -> str:
    return f"""
[rig]
seed = 7
installed = "{installed}"

[[transport]]
name = "radio"
protocol = "wmbus"

[[meter]]
id = "W000002"
kind = "wmbus_oms"
transport = "radio"
secondary = "77000002"
key = "{KEY}"
security_mode = 7
interval_s = {interval_s}
"""


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _radio(rig: Rig) -> WMBusMeter:
    (receiver,) = [line for line in rig._lines if isinstance(line, WMBusReceiverSimulator)]
    (radio,) = receiver.meters
    return radio


def _run(text: str, clock: FixedClock, state: Path, telegrams: int) -> int:
    """The rig started from ``text`` and ``state``, until its meter has sent ``telegrams``: the last
    counter it sent."""
    rig = Rig(parse_rig_text(text, now=clock.now), clock=clock, state_path=state)
    asyncio.run(rig.start())
    try:
        radio = _radio(rig)
        deadline = time.monotonic() + 30
        while radio.access_no < telegrams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert radio.access_no >= telegrams, "the rig's meter did not send"
        return radio.message_counter
    finally:
        asyncio.run(rig.stop())


def test_a_meter_sending_ten_times_a_second_counts_on_after_a_restart(tmp_path: Path) -> None:
    """Ten telegrams a second while the clock stands still (as it nearly does for them): the counter
    runs ahead of the clock; the rig restarted a second later goes on above it."""
    state = tmp_path / "rig.state.json"
    clock = FixedClock(T0)
    last = _run(_rig_text(), clock, state, telegrams=12)
    clock.now = T0 + timedelta(seconds=1)
    first_after = _run(_rig_text(), clock, state, telegrams=1)
    assert first_after > last
    kept = json.loads(state.read_text(encoding="utf-8"))["message_counters"]
    assert kept["W000002"] >= first_after  # reserved before it was sent


def test_a_restart_with_installed_moved_later_counts_on(tmp_path: Path) -> None:
    """``installed`` moved a month later: the state file belongs to other water and is moved away,
    as the rig says; restarted 16 s later, its meter still counts on above what it sent."""
    clock = FixedClock(T0)
    last = _run(_rig_text(interval_s=0.5), clock, tmp_path / "before.json", telegrams=2)
    clock.now = T0 + timedelta(seconds=16)
    after = _run(_rig_text(installed="2026-02-01T00:00:00Z", interval_s=0.5), clock, tmp_path / "after.json", 1)
    assert after > last


@settings(max_examples=30, deadline=None)
@given(
    installed_before=st.datetimes(
        min_value=datetime(2025, 11, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
    ),
    installed_after=st.datetimes(
        min_value=datetime(2025, 11, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
    ),
    gaps_s=st.lists(st.floats(min_value=1.0, max_value=86_400.0), min_size=1, max_size=20),
    restart_after_s=st.floats(min_value=1.0, max_value=86_400.0),
)
def test_a_meter_counts_on_whatever_installed_says_at_a_second_or_more(
    installed_before: datetime, installed_after: datetime, gaps_s: list[float], restart_after_s: float
) -> None:
    """Without its reservation (no state file), sending once a second or less often: the counter
    after a restart is above the last one before, whatever installation date either run had."""
    at = datetime(2026, 6, 1, tzinfo=UTC)
    before = WMBusMeter(MeterModel("W1", installed=installed_before, seed=1), "77000002", bytes(16), security_mode=7)
    for gap in gaps_s:
        at += timedelta(seconds=gap)
        before.telegram(at)
    after = WMBusMeter(MeterModel("W1", installed=installed_after, seed=1), "77000002", bytes(16), security_mode=7)
    after.telegram(at + timedelta(seconds=restart_after_s))
    assert after.message_counter > before.message_counter


def test_the_access_number_moves_only_once_the_counter_it_goes_with_is_set() -> None:
    """The rig's threads and its tests take a moved access number for a telegram sent, and read its
    counter. Before, the access number moved first and the counter only after its reservation was
    written to the state file: one who looked between saw a telegram sent with counter 0 (CI saw
    ``0 > 1769947221`` fail). The reservation is where that window was widest."""
    seen: list[tuple[int, int]] = []
    model = MeterModel("W1", installed=datetime(2026, 1, 1, tzinfo=UTC), seed=1)
    meter = WMBusMeter(model, "77000002", bytes(16), security_mode=7)

    def reserve(counter: int) -> int:
        seen.append((meter.access_no, meter.message_counter))
        return counter + 256

    meter.reserve = reserve
    meter.telegram(T0)
    assert seen == [(0, 0)], "the access number moved before the counter was set"
    assert (meter.access_no, meter.message_counter) == (1, int((T0 - COUNTER_EPOCH).total_seconds()))
