"""The rig's pulse-counter module: a count that only rises, and wraps at 2**32 only."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from simulators.consumption import CustomerClass
from simulators.events import Burst, ReverseFlow
from simulators.meter_model import MeterModel
from simulators.rig.meters import COUNTER_MODULUS, PulseCounter

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def test_reverse_flow_takes_no_pulses_away() -> None:
    """Water running back turns the meter's register back; the module's count stands still meanwhile."""
    meter = MeterModel("P1", installed=T0, seed=3, initial_m3=50.0, customer_class=CustomerClass.COMMERCIAL)
    sunday_night = T0 + timedelta(days=6, hours=1)  # closed: only the reverse flow moves the meter
    meter.inject(ReverseFlow(start=sunday_night, end=sunday_night + timedelta(hours=2), rate_lph=600.0))
    counter = PulseCounter(5, meter, 10.0, T0)
    before = counter.pulses(sunday_night)
    during = [counter.pulses(sunday_night + timedelta(minutes=m)) for m in range(0, 121, 5)]
    assert meter.volume_m3(sunday_night + timedelta(hours=2)) < meter.volume_m3(sunday_night) - 1.0
    assert during == [before] * len(during)
    week = [counter.pulses(T0 + timedelta(hours=h)) for h in range(0, 8 * 24)]
    assert all(b >= a for a, b in itertools.pairwise(week))


def test_the_count_rises_through_the_meters_rollover_and_wraps_at_2_32() -> None:
    """Near its 100,000 m3 rollover, at 1 ml per pulse, a burst rolls the meter over within the hour
    and the module's 32-bit counter after some 4,300 m3: each only at its own modulus."""
    meter = MeterModel("P1", installed=T0, seed=4, initial_m3=99_000.0)
    meter.inject(Burst(start=T0, rate_lph=1_000_000.0))
    counter = PulseCounter(5, meter, 0.001, T0)
    times = [T0 + timedelta(minutes=m) for m in range(0, 6 * 60 + 1, 10)]
    pulses = [counter.pulses(t) for t in times]
    registers = [meter.volume_m3(t) for t in times]
    assert meter.rollovers(times[-1])  # the meter's register wrapped
    wraps = 0
    for i in range(1, len(times)):
        advance_l = (registers[i] - registers[i - 1]) % meter.modulus_m3 * 1000
        step = pulses[i] - pulses[i - 1]
        wraps += step < 0
        # one pulse per ml the register moved, which shows whole litres (1,000 pulses)
        assert abs(step % COUNTER_MODULUS - advance_l / 0.001) <= 1001
    assert wraps == 1
