"""A meter installed long ago reads as it did, without walking its history through ``_day``.

Before its first reading, a meter worked out every day since its installation through
``MeterModel._day`` (all of the day's water, faults included): some 0.7 ms a day, 14 s of CPU for a
meter installed in 1970, before ``aquami simulate modbus-tcp --installed 1970-…`` answered. A day
with no fault that changes the water is the customer's use alone, and ``MeterModel._plain_use``
draws it for a fraction of that; ``_day`` draws the use of any other day the same way. These tests
prove the use, and the readings, the same, to the bit, as the consumption model and the walk
through ``_day`` gave them, and that the walk is no longer taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from simulators import consumption
from simulators.consumption import DAY_S, CustomerClass
from simulators.events import Burst, ClockDrift, Dry, Fault, Leak, Replacement, ReverseFlow, Stuck, Tamper
from simulators.meter_model import MeterModel, _Day


def _use_as_drawn_before(meter: MeterModel, d: int) -> np.ndarray:
    """Day ``d``'s use as ``_day`` drew it before: consumption.customer_use_m3 for the day's steps."""
    steps = d * DAY_S + meter.step_s * np.arange(DAY_S // meter.step_s, dtype=np.int64)
    rng = np.random.default_rng([meter.seed, meter._key, d])
    return consumption.customer_use_m3(rng, meter.customers, steps, meter.step_s)[0]


def _day_as_before(meter: MeterModel, d: int) -> _Day:
    """``MeterModel._day`` as it was before its fault terms were worked out apart (``_terms``) and
    combined with the use by ``_water``: the reference, kept here as it stood (6cf1cec)."""
    self = meter
    day = self._days.get(d)
    if day is not None:
        self._days.move_to_end(d)
        return day
    steps = d * DAY_S + self.step_s * np.arange(DAY_S // self.step_s, dtype=np.int64)
    use = self._use(d)
    live = np.clip((steps + self.step_s - self._install_s) / self.step_s, 0.0, 1.0)
    wet = 1.0 - self._share(Dry, steps)
    fwd_true = (use + self._flow(Leak, steps) + self._flow(Burst, steps)) * wet * live
    rev_true = self._flow(ReverseFlow, steps) * wet * live
    tampers = self._of(Tamper)
    counted = 1.0 - self._share(Stuck, steps)
    if tampers:
        lost = np.array([1.0 - f.size for f in tampers])[:, None] * self._shares(Tamper, steps)
        counted = counted * (1.0 - np.clip(lost.sum(axis=0), 0.0, 1.0))
    net = (fwd_true - rev_true) * counted
    fwd, rev = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    cnet = np.concatenate([[0.0], np.cumsum(fwd - rev)])
    crev = np.concatenate([[0.0], np.cumsum(rev)])
    true_net = fwd_true - rev_true
    day = _Day(fwd, rev, true_net, cnet, crev, np.concatenate([[0.0], np.cumsum(true_net)]))
    self._days[d] = day
    while len(self._days) > 4:
        self._days.popitem(last=False)
    return day


def _walked_through_day(meter: MeterModel) -> MeterModel:
    """``meter`` working out each day's totals through ``_day`` as it was, and each day's use with
    the consumption model, as the model did before."""

    def day_totals(first: int, last: int) -> Iterator[tuple[float, float, float]]:
        for d in range(first, last):
            day = meter._day(d)
            yield float(day.cnet[-1]), float(day.crev[-1]), float(day.ctrue[-1])

    meter._day_totals = day_totals  # type: ignore[method-assign]
    meter._day = lambda d: _day_as_before(meter, d)  # type: ignore[method-assign]
    meter._use = lambda d: _use_as_drawn_before(meter, d)  # type: ignore[method-assign]
    return meter


def _fault(kind: str, start: datetime, hours: int | None) -> Fault:
    return _fault_for(kind, start, None if hours is None else timedelta(hours=hours))


def _fault_for(kind: str, start: datetime, length: timedelta | None) -> Fault:
    end = None if length is None else start + length
    if kind == "leak":
        return Leak(start=start, end=end, rate_lph=30.0)
    if kind == "burst":
        return Burst(start=start, end=end, rate_lph=900.0)
    if kind == "reverse":
        return ReverseFlow(start=start, end=end, rate_lph=40.0)
    if kind == "tamper":
        return Tamper(start=start, end=end, registered_share=0.4)
    if kind == "stuck":
        return Stuck(start=start, end=end)
    if kind == "dry":
        return Dry(start=start, end=end)
    if kind == "replacement":
        return Replacement(start=start, new_register_m3=12.5)
    return ClockDrift(start=start, end=end, seconds_per_day=30.0)


KINDS = ["leak", "burst", "reverse", "tamper", "stuck", "dry", "replacement", "clock_drift"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    meter_id=st.text("WM-0123456789", min_size=1, max_size=8),
    klass=st.sampled_from([None, *CustomerClass]),
    installed_us=st.integers(0, 60 * 365 * DAY_S * 10**6),  # 1970 to 2029, to the microsecond
    read_after_s=st.integers(0, 80 * DAY_S),
    step_s=st.sampled_from([60, 60, 60, 30, 300, 900, 3600]),
    faults=st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(-2 * DAY_S, 80 * DAY_S), st.none() | st.integers(1, 72)),
        max_size=2,
    ),
)
@example(  # the last day of a leap year (day 365 of its year) and a year's turn: 2024-12-31
    seed=7, meter_id="WM-00001", klass=None, installed_us=(19_712 * DAY_S + 123) * 10**6,
    read_after_s=14 * DAY_S, step_s=60, faults=[],
)  # fmt: skip
@example(  # the 29th of February and the public holidays of 1 January and 25/26 December, irrigated
    seed=1, meter_id="M", klass=CustomerClass.IRRIGATION, installed_us=(724 * DAY_S) * 10**6,
    read_after_s=70 * DAY_S, step_s=60, faults=[],
)  # fmt: skip
@example(  # a household away from 05:17 on 18 March 1999 for 12 days: no use from mid-day on
    seed=23, meter_id="WM-9", klass=None, installed_us=920_265_420_000_000, read_after_s=45 * DAY_S, step_s=60,
    faults=[],
)  # fmt: skip
def test_the_register_at_any_time_is_the_walk_through_each_day(
    seed: int,
    meter_id: str,
    klass: CustomerClass | None,
    installed_us: int,
    read_after_s: int,
    step_s: int,
    faults: list[tuple[str, int, int | None]],
) -> None:
    installed = EPOCH + timedelta(microseconds=installed_us)
    at = installed + timedelta(seconds=read_after_s)
    injected = [_fault(kind, installed + timedelta(seconds=after), hours) for kind, after, hours in faults]

    def meter() -> MeterModel:
        built = MeterModel(meter_id, installed=installed, seed=seed, customer_class=klass, step_s=step_s)
        for fault in injected:
            built.inject(fault)
        return built

    fast, walked = meter(), _walked_through_day(meter())
    assert fast.read(at) == walked.read(at)  # register, reverse and forward registers, flow, alarms
    assert fast.true_volume_m3(at) == walked.true_volume_m3(at)
    assert fast._at_midnight == walked._at_midnight  # every day's totals since the installation


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    klass=st.sampled_from([None, *CustomerClass]),
    installed_us=st.integers(0, 60 * 365 * DAY_S * 10**6),
    read_after_days=st.integers(0, 400),
    step_s=st.sampled_from([60, 60, 30, 300, 3600]),
    faults=st.lists(
        st.tuples(
            st.sampled_from(KINDS[:6]),  # the faults that change the water
            st.integers(-2, 300),  # the day of the start, from the installation's
            st.just(0) | st.integers(0, DAY_S - 1),  # its second of that day: at midnight, or any
            st.none() | st.integers(1, 150).map(lambda n: n * DAY_S) | st.integers(1, 150 * DAY_S),  # seconds
        ),
        min_size=1,
        max_size=4,
    ),
)
@example(  # a leak from midnight that never ends, a register stuck for 60 whole days from midnight
    # in it, a dry spell of a day and a half: through 29 February and the turn of 2024 to 2025
    seed=3, klass=None, installed_us=(19_650 * DAY_S + 7_000) * 10**6, read_after_days=400, step_s=60,
    faults=[("leak", 5, 0, None), ("stuck", 30, 0, 60 * DAY_S), ("dry", 100, 43_200, 36 * 3600)],
)  # fmt: skip
@example(  # a reverse flow under a tamper, each from mid-day on, never ending, on an hourly meter
    seed=11, klass=CustomerClass.IRRIGATION, installed_us=(10_000 * DAY_S + 1) * 10**6, read_after_days=120,
    step_s=3600, faults=[("reverse", 2, 50_000, None), ("tamper", 3, 7, None)],
)  # fmt: skip
def test_days_under_faults_on_all_day_read_as_the_walk_through_each_day(
    seed: int,
    klass: CustomerClass | None,
    installed_us: int,
    read_after_days: int,
    step_s: int,
    faults: list[tuple[str, int, int, int | None]],
) -> None:
    """Faults that run for days, or never end, leave their whole days to ``_day_totals``, which
    works their terms out once for a run of days with the same faults on: every midnight total, the
    reading and the true volume are the walk through each day's ``_day`` as it was, to the bit."""
    installed = EPOCH + timedelta(microseconds=installed_us)
    midnight = EPOCH + timedelta(days=installed_us // (DAY_S * 10**6))
    at = installed + timedelta(days=read_after_days, seconds=seed % DAY_S)
    injected = [
        _fault_for(
            kind, midnight + timedelta(days=day, seconds=second), None if length is None else timedelta(seconds=length)
        )
        for kind, day, second, length in faults
    ]

    def meter() -> MeterModel:
        built = MeterModel("WM-00003", installed=installed, seed=seed, customer_class=klass, step_s=step_s)
        for fault in injected:
            built.inject(fault)
        return built

    fast, walked = meter(), _walked_through_day(meter())
    assert fast.read(at) == walked.read(at)
    assert fast.true_volume_m3(at) == walked.true_volume_m3(at)
    assert fast._at_midnight == walked._at_midnight


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    klass=st.sampled_from([None, *CustomerClass]),
    installed_day=st.integers(0, 60 * 365),
    day_after=st.integers(0, 400),
    step_s=st.sampled_from([60, 30, 300, 900, 3600]),
)
def test_each_step_s_use_is_the_consumption_model_s_to_the_bit(
    seed: int, klass: CustomerClass | None, installed_day: int, day_after: int, step_s: int
) -> None:
    """The use of every step of any day, as the model draws it now (the expected use per hour),
    is what consumption.customer_use_m3 gives for the day's steps, bit for bit."""
    installed = EPOCH + timedelta(days=installed_day, seconds=seed % DAY_S)
    meter = MeterModel("WM-7", installed=installed, seed=seed, customer_class=klass, step_s=step_s)
    d = installed_day + day_after
    assert meter._use(d).tobytes() == _use_as_drawn_before(meter, d).tobytes()


def _days_through_day(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    days: list[int] = []
    real = MeterModel._day

    def counted(self: MeterModel, d: int) -> Any:
        if d not in self._days:
            days.append(d)
        return real(self, d)

    monkeypatch.setattr(MeterModel, "_day", counted)
    return days


def test_a_meter_installed_in_1970_is_read_without_walking_each_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first reading of a meter installed in 1970 worked out each of its 20,000 days through
    ``_day``; now only the installation day, the days its faults touch and those the reading looks
    at are (a fault ended two days ago leaves yesterday to the fast way)."""
    now = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    meter = MeterModel("WM-00001", installed=datetime(1970, 1, 1, 0, 0, 30, tzinfo=UTC), seed=7)
    leak = Leak(start=now - timedelta(days=3, hours=2), end=now - timedelta(days=2), rate_lph=25.0)
    meter.inject(leak)
    days = _days_through_day(monkeypatch)
    meter.read(now)
    today = int(now.timestamp()) // DAY_S
    # the leak's days, yesterday and today (the alarms look back a day), and the installation day
    assert set(days) <= {0, *range(today - 3, today + 1)}, f"{len(days)} days worked out through _day"


def test_a_day_a_fault_touches_draws_its_use_per_hour_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter whose leak has run since its second month (as the demo fleet's third meter) walked
    each day through ``_day`` and drew its use with consumption.customer_use_m3, the expected use
    worked out for each step: 0.8 ms a day. Now ``_day`` draws it per hour as well."""
    installed = datetime(2024, 1, 1, tzinfo=UTC)
    meter = MeterModel("WM-00003", installed=installed, seed=7)
    meter.inject(Leak(start=installed + timedelta(days=49), rate_lph=25.0))
    drawn: list[int] = []
    real = consumption.customer_use_m3

    def counted(rng: np.random.Generator, customers: Any, steps: np.ndarray, step_s: int) -> np.ndarray:
        drawn.append(int(steps[0]) // DAY_S)
        return real(rng, customers, steps, step_s)

    monkeypatch.setattr(consumption, "customer_use_m3", counted)
    reading = meter.read(datetime(2026, 12, 5, tzinfo=UTC))
    assert drawn == [], f"{len(drawn)} days drawn step by step"
    assert "leak" in reading.alarms


def test_a_fault_that_never_ends_leaves_its_whole_days_to_the_fast_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A meter whose leak has run since its second month and never ended (the demo fleet's third
    meter, installed in 1970 by ``simulate modbus-tcp --installed``) walked each of its days since
    through ``_day``: 12-13 s of CPU before its first reading. Now only the leak's first day, the
    installation day and those the reading looks at are."""
    installed = datetime(2010, 1, 1, 0, 0, 30, tzinfo=UTC)
    now = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    meter = MeterModel("WM-00003", installed=installed, seed=7)
    leak = meter.inject(Leak(start=installed + timedelta(days=51, hours=7), rate_lph=25.0))
    days = _days_through_day(monkeypatch)
    reading = meter.read(now)
    today, leak_day = int(now.timestamp()) // DAY_S, int(leak.start.timestamp()) // DAY_S
    assert set(days) <= {int(installed.timestamp()) // DAY_S, leak_day, today - 1, today}, (
        f"{len(days)} days worked out through _day"
    )
    assert "leak" in reading.alarms
