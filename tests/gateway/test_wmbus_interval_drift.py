"""A wireless meter's send intervals follow its telegrams: they do not drift through its send times.

Before, each interval began at the check that ended the last, late by up to a check period, so the
boundaries walked through the meter's send times; a meter whose send times stray a little (OMS asks
it to: the simulator's ±2 % a send, its phase a random walk) had an interval holding no telegram, a
failed poll, whenever a boundary crossed one (8 in 1,000 intervals, checks each interval;
``benchmarks/wmbus_interval_drift.py``). Now each interval begins at the meter's last telegram and
ends a grace (a quarter interval) after its length. The listener is driven on a monotonic clock the
test moves: its telegrams handed to it at their send times, its checks at theirs (the benchmark's
``listener_rule``, so the two measure the same listener).
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.wmbus_interval_drift import INTERVAL_S, listener_rule
from gateway.wmbus_intervals import GRACE
from simulators.wmbus_receiver import SEND_JITTER, next_send


def _checks(every_s: float, until: float, late_s: float = 0.0) -> list[float]:
    """The listener's checks: at its start, then ``every_s`` (and ``late_s``) after each."""
    count = int(until // (every_s + late_s)) + 1
    return [n * (every_s + late_s) for n in range(count)]


def test_a_meter_sending_as_the_simulator_does_is_never_counted_silent() -> None:
    """1,000 intervals of a meter sending as the receiver simulator's meters do, checked each interval
    (1 ms late each time, for the event loop): no failed poll. Before: 11, each where a boundary
    crossed a send time."""
    rng = random.Random(7)
    sends = [rng.uniform(0.0, INTERVAL_S)]
    while sends[-1] < 1000 * INTERVAL_S:
        sends.append(next_send(sends[-1], INTERVAL_S, rng))
    assert listener_rule(sends, _checks(INTERVAL_S, sends[-1], late_s=0.001)) == []


@settings(max_examples=60, deadline=None)
@given(
    phase=st.floats(0.0, INTERVAL_S, exclude_max=True),  # its first telegram within its first interval
    gaps=st.lists(st.floats(INTERVAL_S * (1 - SEND_JITTER), INTERVAL_S * (1 + GRACE) - 0.01), min_size=3, max_size=40),
    every_s=st.sampled_from([60.0, 300.0, INTERVAL_S]),
)
def test_a_meter_sending_once_per_interval_late_by_less_than_the_grace_is_never_silent(
    phase: float, gaps: list[float], every_s: float
) -> None:
    """Whatever the phase of its sends against the checks, and each send up to a quarter interval
    late after the one before: not a single failed poll while it sends. (Its first interval, from
    the listener's first check, has no grace: the meter's phase is unknown there.)"""
    sends = [phase]
    for gap in gaps:
        sends.append(sends[-1] + gap)
    assert listener_rule(sends, _checks(every_s, sends[-1])) == []


@settings(max_examples=60, deadline=None)
@given(
    phase=st.floats(0.0, INTERVAL_S, exclude_max=True),  # its first telegram within its first interval
    gaps=st.lists(st.floats(INTERVAL_S * (1 - SEND_JITTER), INTERVAL_S * (1 + SEND_JITTER)), min_size=0, max_size=10),
    every_s=st.sampled_from([60.0, 300.0, INTERVAL_S]),
)
def test_a_meter_that_stops_is_counted_silent_within_an_interval_and_a_check_of_its_next_telegram(
    phase: float, gaps: list[float], every_s: float
) -> None:
    """A meter that stops after its last telegram is counted silent at most one interval and one
    check period after its next telegram was due, and then once each interval, not a check later
    each time (the next interval begins where the silent one ended, not at its check)."""
    sends = [phase]
    for gap in gaps:
        sends.append(sends[-1] + gap)
    last = sends[-1]
    failed = listener_rule(sends, _checks(every_s, last + 6 * INTERVAL_S))
    due = last + INTERVAL_S
    assert failed and failed[0] <= due + INTERVAL_S + every_s
    assert all(at > last for at in failed)
    deadlines = [due + GRACE * INTERVAL_S + n * INTERVAL_S for n in range(len(failed))]
    assert all(deadline <= at < deadline + every_s for at, deadline in zip(failed, deadlines, strict=True))
