"""Continuous flow (leak) at customer meters, against the distractors that also run long."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from collector.detection.alerts import AlertKind
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.leak import floor_held, floor_tolerance, lowest_floor, weight_tables
from collector.detection.leak_onset import likeliest_onset
from tests.collector.test_detection_households import (
    add_flow,
    at_hour,
    away,
    block_of,
    business,
    flats,
    heavy_household,
    household,
    irrigating_household,
    night_owl_household,
    steady_shop,
)

DAYS = 21


def _leaks(alerts: list, meter: str) -> list:
    return [a for a in alerts if a.kind is AlertKind.LEAK and a.meter_id == meter]


def _one_leak_on_each(uses: dict[str, np.ndarray]) -> list:
    """The leak alerts raised on ``uses``, checked to be one on every meter."""
    leaks = [a for a in detect(block_of(uses)) if a.kind is AlertKind.LEAK]
    assert sorted(str(a.meter_id) for a in leaks) == sorted(uses)
    return leaks


@pytest.mark.parametrize(("rate", "deadline_h"), [(3.0, 72), (12.0, 30), (60.0, 30)])
def test_a_leak_is_found_with_its_rate_start_and_volume(rate: float, deadline_h: float) -> None:
    rng = np.random.default_rng(7)
    start_h = 10 * 24 + 2.5  # day 10, 02:30: nobody up, so the start shows
    uses = {f"H{i}": household(rng, DAYS) for i in range(20)}
    uses["LEAK"] = add_flow(household(rng, DAYS), start_h, rate)
    alerts = detect(block_of(uses))
    found = _leaks(alerts, "LEAK")
    assert len(found) == 1
    leak = found[0]
    delay_h = (leak.detected_at - at_hour(start_h)).total_seconds() / 3600
    assert 0 < delay_h <= deadline_h
    assert leak.rate_l_h == pytest.approx(rate, rel=0.15)
    assert abs((leak.start - at_hour(start_h)).total_seconds()) <= 3600
    true_volume = rate * (leak.last_seen - at_hour(start_h)).total_seconds() / 3600
    assert leak.volume_l == pytest.approx(true_volume, rel=0.15)
    assert leak.ended_at is None and 0.5 <= leak.confidence <= 1.0
    assert not [a for a in alerts if a.meter_id != "LEAK" and a.kind is AlertKind.LEAK]


def test_a_leak_starting_among_evening_use_is_dated_no_later_than_it_began() -> None:
    """Evening use hides when the leak began: the estimate may be early, never late."""
    rng = np.random.default_rng(11)
    start_h = 10 * 24 + 20.5
    uses = {"LEAK": add_flow(household(rng, DAYS), start_h, 4.0)}
    (leak,) = _leaks(detect(block_of(uses)), "LEAK")
    early_h = (at_hour(start_h) - leak.start).total_seconds() / 3600
    assert -1.0 <= early_h <= 8.0


def test_a_repaired_leak_ends_when_the_flow_stops() -> None:
    rng = np.random.default_rng(8)
    uses = {"LEAK": add_flow(household(rng, DAYS), 5 * 24 + 1.0, 8.0, 9 * 24 + 14.0)}
    (leak,) = _leaks(detect(block_of(uses)), "LEAK")
    assert leak.ended_at is not None
    assert abs((leak.ended_at - at_hour(9 * 24 + 14.0)).total_seconds()) <= 2 * 3600


def test_distractors_raise_no_leak() -> None:
    rng = np.random.default_rng(9)
    uses = {}
    for i in range(15):
        uses[f"heavy{i}"] = heavy_household(rng, DAYS)
        uses[f"shop{i}"] = business(rng, DAYS)
        uses[f"garden{i}"] = irrigating_household(rng, DAYS)
        uses[f"away{i}"] = away(household(rng, DAYS), 4 + i % 5, 9 + i % 5)
    alerts = detect(block_of(uses))
    assert not [a for a in alerts if a.kind is AlertKind.LEAK]


def test_a_meter_that_always_flows_at_some_hour_gains_no_evidence_there() -> None:
    """A business running a cooling tower every night is busy at night by habit, not by leak."""
    rng = np.random.default_rng(10)
    use = household(rng, DAYS)
    hours = np.arange(use.size) % 24
    use = use + np.where((hours >= 1) & (hours < 5), 20.0, 0.0)  # every night, 01–05, for weeks
    alerts = detect(block_of({"TOWER": use}))
    assert not _leaks(alerts, "TOWER")


@pytest.mark.parametrize(
    ("rate", "start_h"), [(40.0, 9 * 24 + 7 + 40 / 60), (120.0, 11 * 24 + 19.25), (15.0, 10 * 24 + 3.6)]
)
def test_a_repaired_leak_s_start_rate_and_volume_are_those_billing_needs(rate: float, start_h: float) -> None:
    """Billing's leak adjustment takes the alert's start and volume: start within an hour, volume
    within 10%, also when the leak began among the household's use and ended while it went on."""
    rng = np.random.default_rng(8)
    end_h = start_h + 50.3
    uses = {f"H{i}": household(rng, DAYS) for i in range(10)}
    uses["LEAK"] = add_flow(household(rng, DAYS), start_h, rate, end_h)
    (leak,) = _leaks(detect(block_of(uses)), "LEAK")
    assert abs((leak.start - at_hour(start_h)).total_seconds()) <= 3600
    assert leak.rate_l_h == pytest.approx(rate, rel=0.1)
    assert leak.volume_l == pytest.approx(rate * (end_h - start_h), rel=0.1)


def test_a_day_of_use_from_dawn_to_late_evening_is_no_leak() -> None:
    """Visitors: the register moves every hour from 04:00 until 23:00, a few litres at least, and
    the house sleeps again at night. The hours at dawn, usually idle, weigh as a leak's would; at
    the register's step, where any use counts as flow, it takes more than that day to be a leak."""
    rng = np.random.default_rng(12)
    uses = {}
    for i in range(12):
        use = household(rng, DAYS)
        day = (14 + i % 4) * 24
        use[day + 4 : day + 23] = np.maximum(use[day + 4 : day + 23], 3.0 + rng.gamma(2.0, 2.0, 19))
        uses[f"busy{i}"] = use
    assert not [a for a in detect(block_of(uses)) if a.kind is AlertKind.LEAK]


def test_a_20_litre_leak_in_busy_households_is_found_within_a_day() -> None:
    """20 L/h from 07:30 behind heavy households, whose days rarely fall below 8 L/h and often
    reach 30: at 16 L/h their days still gather evidence, so no leak waits for a second night."""
    rng = np.random.default_rng(13)
    start_h = 12 * 24 + 7.5
    uses = {f"L{i}": add_flow(heavy_household(rng, DAYS), start_h, 20.0) for i in range(10)}
    leaks = _one_leak_on_each(uses)
    assert max(a.detected_at for a in leaks) <= at_hour(start_h + 24)


def test_a_day_of_use_without_a_floor_is_no_leak() -> None:
    """Every hour from 06:00 to midnight moves the register, at levels the households rarely reach
    in those hours (guests, cleaning, a bath after the garden): the evidence alone calls that a
    leak, as it did the benchmark's false leaks raised in the evening whose flow stopped at night.
    A leak would show one floor in its quietest hours; these hours each carry their own amount (a
    shuffled ladder of levels 13% and at least 3 litres apart, so that no two share a floor even
    on a register whose step reads as 2 litres)."""
    rng = np.random.default_rng(21)
    ladder = 25.0 * 1.13 ** np.arange(18)
    uses = {}
    for i in range(12):
        use = household(rng, DAYS)
        first = (12 + i % 5) * 24 + 6
        use[first : first + ladder.size] = rng.permutation(ladder)
        uses[f"busy{i}"] = use
    block = block_of(uses)
    without_rule = [a for a in detect(block, DetectionConfig(leak_floor_intervals=0)) if a.kind is AlertKind.LEAK]
    assert len(without_rule) >= 6, "the case must be one the evidence alone calls a leak"
    assert not [a for a in detect(block) if a.kind is AlertKind.LEAK]


def test_a_leak_whose_rate_follows_the_pressure_still_shows_its_floor() -> None:
    """A leak's flow rises with the night's higher pressure (here ± 8% around its mean, highest at
    03:00): its idle hours still sit on one floor, within the rule's tolerance."""
    rng = np.random.default_rng(22)
    start_h = 10 * 24 + 2.5
    hours = np.arange(DAYS * 24)
    swing = 1.0 + 0.08 * np.cos(2 * np.pi * (hours % 24 - 3) / 24)
    uses = {}
    for i, rate in enumerate((12.0, 40.0, 120.0)):
        leak = add_flow(np.zeros(DAYS * 24), start_h, rate) * swing
        uses[f"L{i}"] = household(rng, DAYS) + leak
    leaks = _one_leak_on_each(uses)
    assert max(a.detected_at for a in leaks) <= at_hour(start_h + 30)


def test_leaks_whose_hourly_flow_wanders_by_a_tenth_are_still_raised_overnight() -> None:
    """The floor rule asks for three intervals within 10% of one floor; a leak whose hourly flow
    wanders at random by 10% (one standard deviation) around its rate still shows one in its idle
    hours: every one of ten, 12 to 150 L/h from 02:30, is raised within 15 hours, as the
    evidence alone raises them (7.5 to 14.5 h with the rule off)."""
    rng = np.random.default_rng(31)
    start_h = 10 * 24 + 2.5
    uses = {}
    for i, rate in enumerate((12.0, 25.0, 40.0, 80.0, 150.0) * 2):
        wander = np.clip(1 + 0.1 * rng.standard_normal(DAYS * 24), 0.3, None)
        uses[f"L{i}"] = household(rng, DAYS) + add_flow(np.zeros(DAYS * 24), start_h, rate) * wander
    leaks = _one_leak_on_each(uses)
    assert max(a.detected_at for a in leaks) <= at_hour(start_h + 15)


@pytest.mark.parametrize(("wander", "within"), [(0.05, 0.1), (0.1, 0.15)])
def test_a_wandering_leak_s_rate_and_volume_are_those_billing_needs(wander: float, within: float) -> None:
    """Billing's leak adjustment takes the alert's volume. A leak whose hourly flow wanders with
    the pressure (5% or 10%, one standard deviation) has lulls: its least flow sits well below its
    rate, and a lull is no repair. Before, the rate was the mean of the least flows and the leak's
    volume ended at its first lull: a 150 L/h leak wandering by 5% read 9,100 L of 39,200."""
    rng = np.random.default_rng(31)
    start_h = 10 * 24 + 2.5
    rates = {}
    uses = {}
    for i, rate in enumerate((12.0, 25.0, 40.0, 80.0, 150.0) * 2):
        noise = np.clip(1 + wander * rng.standard_normal(DAYS * 24), 0.3, None)
        uses[f"L{i}"] = household(rng, DAYS) + add_flow(np.zeros(DAYS * 24), start_h, rate) * noise
        rates[f"L{i}"] = rate
    for leak in _one_leak_on_each(uses):
        rate = rates[str(leak.meter_id)]
        assert leak.rate_l_h == pytest.approx(rate, rel=within)
        true_volume = rate * (leak.last_seen - at_hour(start_h)).total_seconds() / 3600
        assert leak.volume_l == pytest.approx(true_volume, rel=within)


@given(
    floor=st.floats(min_value=2.0, max_value=500.0),
    use=st.lists(st.floats(min_value=0.0, max_value=400.0), min_size=3, max_size=60),
    idle_every=st.integers(min_value=1, max_value=6),
)
def test_a_floor_under_the_use_is_held_by_the_third_idle_interval(
    floor: float, use: list[float], idle_every: int
) -> None:
    """A leak of rate ``floor`` under any use, idle every ``idle_every`` intervals: held at the
    third interval that carries the leak alone, or earlier (use may sit on the floor by chance)."""
    flows = np.array(use) + floor
    flows[::idle_every] = floor
    idle = np.flatnonzero(np.arange(flows.size) % idle_every == 0)
    assume(idle.size >= 3)
    held = floor_held(flows, 1.0, 0.1, 3, 0)
    assert held is not None and held <= idle[2]
    assert lowest_floor(flows, 1.0, 0.1, 3) == floor  # the leak's rate, under all the use


@given(
    flows=st.lists(st.one_of(st.floats(min_value=0.0, max_value=1e4), st.just(math.nan)), max_size=40),
    need=st.integers(min_value=2, max_value=5),
    first=st.integers(min_value=0, max_value=40),
)
def test_the_floor_is_causal(flows: list[float], need: int, first: int) -> None:
    """The answer by an index depends only on the flows up to it: cut after the answer, the same."""
    series = np.array(flows, dtype=np.float64)
    held = floor_held(series, 1.0, 0.1, need, first)
    if held is not None:
        assert first <= held < series.size and not np.isnan(series[held])
        assert floor_held(series[: held + 1], 1.0, 0.1, need, first) == held
        assert floor_held(series[:held], 1.0, 0.1, need, first) is None


@given(start=st.floats(min_value=20.0, max_value=100.0), n=st.integers(min_value=2, max_value=30))
def test_flows_that_never_repeat_a_level_hold_no_floor(start: float, n: int) -> None:
    """Rising by a fifth each interval, or falling by a sixth, from 20 L/h up (more than the
    tolerance of a 1 L/h step's one and a half): no two flows share a floor."""
    rising = start * 1.2 ** np.arange(n)
    falling = rising[::-1]
    assert floor_held(rising, 1.0, 0.1, 2, 0) is None
    assert floor_held(falling, 1.0, 0.1, 2, 0) is None
    assert lowest_floor(rising, 1.0, 0.1, 2) is None


def test_a_large_leak_begun_in_the_morning_is_raised_by_early_afternoon() -> None:
    """80 L/h from 07:30 on a weekday, behind households with weeks of history: at 60 L/h, a level
    their hours rarely reach, each hour of the leak weighs nearly the most an hour can, so it is
    raised within about six hours, not in the evening (with 30 L/h as the highest level: up to
    8.5 h)."""
    rng = np.random.default_rng(23)
    start_h = 17 * 24 + 7.5
    uses = {f"L{i}": add_flow(household(rng, DAYS), start_h, 80.0) for i in range(10)}
    leaks = _one_leak_on_each(uses)
    assert max(a.detected_at for a in leaks) <= at_hour(start_h + 6.5)


def test_a_leak_begun_just_after_busy_hours_is_dated_and_sized_from_its_own_floor() -> None:
    """100 L/h from 10:30, after three busy hours of 80, 75 and 70 litres: each more than half the
    leak's rate, less than its floor. The onset is the last interval clearly below the floor the
    leak's idle hours show, and the rate that floor (before: three of six were dated 07:00, at 50
    L/h, the partial first interval taken for the floor and the busy hours for the leak's)."""
    rng = np.random.default_rng(24)
    start_h = 10 * 24 + 10.5
    uses = {}
    for i in range(6):
        use = household(rng, DAYS)
        use[10 * 24 + 6 : 10 * 24 + 11] = [0.0, 80.0, 75.0, 70.0, 0.0]  # 06–07 … 10–11
        uses[f"L{i}"] = add_flow(use, start_h, 100.0)
    leaks = _one_leak_on_each(uses)
    for leak in leaks:
        assert abs((leak.start - at_hour(start_h)).total_seconds()) <= 0.25 * 3600
        assert leak.rate_l_h == pytest.approx(100.0, rel=0.05)
        true_volume = 100.0 * (leak.last_seen - at_hour(start_h)).total_seconds() / 3600
        assert leak.volume_l == pytest.approx(true_volume, rel=0.05)


def test_a_small_leak_is_found_on_a_household_that_never_draws_less_than_a_flush() -> None:
    """2.5 L/h on a 1-litre register, behind a household whose every hour of use draws at least a
    6-litre flush: the register's step is 1 L, not the 6 L of its smallest advance (which took
    half a step, 3 L/h, as "any flow at all", so the leak's hours counted as idle and it was
    never raised)."""
    rng = np.random.default_rng(31)
    start_h = 10 * 24 + 2.5
    use = household(rng, DAYS)
    use = np.where(use > 0, np.maximum(use, 6.0), 0.0)
    (leak,) = _leaks(detect(block_of({"LEAK": add_flow(use, start_h, 2.5)})), "LEAK")
    assert leak.detected_at <= at_hour(start_h + 72)
    assert leak.rate_l_h == pytest.approx(2.5, rel=0.15)


def test_a_leak_begun_in_a_shop_s_busy_hours_is_dated_from_its_usual_use_at_those_hours() -> None:
    """100 L/h from 10:30 on a Wednesday, in a shop busy every hour from 07:00 to 19:00: most
    hours from opening to closing carry more than the leak, so the last one below it is hours
    before. Against the shop's own hours on earlier days, its busy hours before 10:00 show nothing
    more and those after show the leak's 100 L/h. The shop's hours vary by about 30 L from day to
    day, so the partial first hour's share is a guess to a quarter of an hour or so either way:
    each start within an hour, and half an hour on average (before: up to 1.23 h early, 0.68 h on
    average; with the register's step read from its smallest advance, two of the six 3.5 h early)."""
    rng = np.random.default_rng(32)
    start_h = 16 * 24 + 10.5  # a Wednesday
    uses = {f"S{i}": add_flow(business(rng, DAYS), start_h, 100.0) for i in range(6)}
    errors_h = []
    for leak in _one_leak_on_each(uses):
        errors_h.append(abs((leak.start - at_hour(start_h)).total_seconds()) / 3600)
        true_volume = 100.0 * (leak.last_seen - at_hour(start_h)).total_seconds() / 3600
        assert leak.volume_l == pytest.approx(true_volume, rel=0.1)
    assert max(errors_h) <= 1.0
    assert sum(errors_h) / len(errors_h) <= 0.5


@given(
    rate=st.floats(min_value=30.0, max_value=100.0),
    start_hour=st.floats(min_value=8.0, max_value=17.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_leak_begun_in_any_busy_hour_of_a_steady_shop_is_dated_within_an_hour(
    rate: float, start_hour: float, seed: int
) -> None:
    """A shop open 07:00–19:00 whose every hour draws its own usual amount (30–150 L) give or
    take 5%, and a leak of 30–100 L/h (four times that day-to-day variation or more) from any time
    of a Wednesday's opening hours: busy hours carry more than the leak, so only the shop's usual
    use at those hours dates it. (Above about 100 L/h, a steady shop's hours lifted by a leak are a
    burst to the burst rules.)"""
    use = steady_shop(np.random.default_rng(seed), DAYS)
    start_h = 16 * 24 + start_hour
    (leak,) = _leaks(detect(block_of({"SHOP": add_flow(use, start_h, rate)})), "SHOP")
    assert abs((leak.start - at_hour(start_h)).total_seconds()) <= 3600


def test_a_small_leak_behind_a_household_busy_all_day_and_often_at_night_is_found_within_72_h() -> None:
    """2.5 L/h from 12:30, behind households that draw water every hour of the day and in a third
    of their night hours: each night adds only a few nats of evidence. The leak's run goes on for
    days, and it was held to its own evidence of the days before (each day's bar the day before's
    evidence plus the margin), so it never caught up: 0 of these 8 were found within 72 h. Now a
    run of more than a day is held to the runs that ended. Their 8 neighbours without a leak raise
    nothing.

    The leaks begin on a Saturday, and a weekend's busy hours now weigh as the weekdays' do (see
    ``leak.weight_tables``: a meter never idle at an hour on its recent days): they are raised 4-16
    hours later than before, 59-75 h after they began, one past 72 h (the issue's target for leaks
    of 2-10 L/h is 0.8 found within 72 h)."""
    rng = np.random.default_rng(51)
    start_h = 12 * 24 + 12.5
    assert at_hour(start_h).strftime("%a %H:%M") == "Sat 12:30"
    uses = {f"LEAK{i}": add_flow(night_owl_household(rng, DAYS), start_h, 2.5) for i in range(8)}
    uses.update({f"OWL{i}": night_owl_household(rng, DAYS) for i in range(8)})
    leaks = [a for a in detect(block_of(uses)) if a.kind is AlertKind.LEAK]
    assert sorted(str(a.meter_id) for a in leaks) == [f"LEAK{i}" for i in range(8)]
    assert sum(leak.detected_at <= at_hour(start_h + 72) for leak in leaks) >= 7
    for leak in leaks:
        assert leak.detected_at <= at_hour(start_h + 80)
        assert leak.rate_l_h == pytest.approx(2.5, rel=0.15)


def test_a_leak_repaired_by_day_while_the_household_goes_on_drawing_keeps_its_own_rate() -> None:
    """120 L/h from 00:03 to 18:27, repaired while the household is still up: its evening use keeps
    the run going past the repair. The leak's floor was the least flow of the run, so the evening's
    use became the floor, the leak never fell below it, and its rate came from hours with and
    without it (before: 15-120 L/h on these ten, volumes down to 16% of the true one). The floor is
    now the lowest one the leak's flows sat on. And the leak ended at the repair, not when the
    household went to bed (the alert is resolved then, the first read showing no flow at all)."""
    start_h, end_h = 14 * 24 + 0.05, 14 * 24 + 18.45
    for seed in range(10):
        use = add_flow(household(np.random.default_rng(seed), DAYS), start_h, 120.0, end_h)
        (leak,) = _leaks(detect(block_of({"M": use})), "M")
        assert leak.rate_l_h == pytest.approx(120.0, rel=0.05)
        assert leak.volume_l == pytest.approx(120.0 * (end_h - start_h), rel=0.05)
        assert leak.ended_at is not None
        assert abs((leak.ended_at - at_hour(end_h)).total_seconds()) <= 3600
        assert leak.last_seen <= at_hour(end_h + 1)


def test_billings_span_of_a_leak_carries_the_alerts_volume() -> None:
    """Billing's leak adjustment is the alert's rate from its start to its end, or to the last read
    showing it while it runs (``server/billing/repository.py``): that must be the alert's volume.
    Before, an ended leak's end was the first read with no flow at all, hours after a repair the
    household's use ran past, and billing's figure was up to 77% over the alert's (38 of 204 leak
    alerts on a labelled fleet). Leaks repaired by day at 8-150 L/h on ten households, one left
    running."""
    for seed in range(10):
        rate = 8.0 * (150.0 / 8.0) ** (seed / 9)
        end_h = None if seed == 9 else 15 * 24 + 9.6 + seed
        use = add_flow(household(np.random.default_rng(seed), DAYS), 13 * 24 + 2.2, rate, end_h)
        (leak,) = _leaks(detect(block_of({"M": use})), "M")
        assert (leak.ended_at is None) == (end_h is None)
        span_h = ((leak.ended_at or leak.last_seen) - leak.start).total_seconds() / 3600
        assert leak.volume_l == pytest.approx(leak.rate_l_h * span_h, rel=0.01)


def test_a_block_of_flats_never_idle_raises_its_continuous_flow_once_in_its_first_days() -> None:
    """Blocks of flats: 80 or 250 households, a shop and the common parts' few litres an hour, on
    one meter that never stands still from its first read. A flow that never stopped since the data
    began is raised once, in the first week (for a household, a leak older than the data; for a
    block, its ordinary flow, dismissed once), and nothing after it: the run never ends, and one
    alert covers it."""
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        blocks = {f"F{n}": flats(rng, DAYS, n) + business(rng, DAYS) + common for n, common in ((80, 5.0), (250, 20.0))}
        leaks = [a for a in detect(block_of(blocks)) if a.kind is AlertKind.LEAK]
        assert all(leak.detected_at < at_hour(7 * 24) for leak in leaks), leaks


def test_a_weekend_borrows_the_share_of_days_a_meter_was_below_a_level_where_it_nearly_never_was() -> None:
    """The weight of a weekend interval above a level, with no weekend of its own history yet
    (``leak.weight_tables``): where the meter was below that level on none of its last 20 days (a
    block of flats at any hour; a household at its busiest), it borrows that share, about 0.02, as
    where it was below on all 20 it borrows theirs. Under the flat prior (0.25) each such hour of a
    block's ordinary flow weighed 13 times as much: on the WNTR benchmark's blocks, 5-35 false
    leaks and bursts a day from their second week, 0-4 now."""
    config = DetectionConfig()
    table, codes, n_priors, _ = weight_tables(config)
    n = config.leak_history_days + 1

    def weekend_weight(low_all: int, seen_all: int) -> float:
        code = int(codes[low_all * n + seen_all])
        return float(table[(0 * n + 0) * n_priors + code])  # 0 of 0 weekend days of its own

    def borrowed(low_all: int, seen_all: int) -> float:
        p = (low_all + config.leak_prior_p0 * config.leak_prior_days) / (seen_all + config.leak_prior_days)
        return float(-np.log1p(-min(p, config.leak_p0_max)))

    assert weekend_weight(0, 20) == pytest.approx(borrowed(0, 20), rel=1e-5)
    assert weekend_weight(20, 20) == pytest.approx(borrowed(20, 20), rel=1e-5)
    assert weekend_weight(10, 20) == pytest.approx(-np.log1p(-config.leak_prior_p0), rel=1e-5)  # a mixed hour
    assert weekend_weight(0, 20) < weekend_weight(10, 20) / 10


def test_leaks_begun_during_a_household_s_morning_use_are_mostly_dated_within_an_hour() -> None:
    """200 households, each with a leak of 10–60 L/h begun at a random instant of day 16's
    morning use (06:00–09:00): the hours around it carry the household's use too, so only its use
    at those hours on the days before tells when. The likeliest start given that use
    (``leak_onset.likeliest_onset``) dates 190 of them within an hour and 199 within two; the step
    fitted to each hour's excess over its median dated 180 and 194 (a household's erratic hours
    barely moved it from the last hour below the leak)."""
    rng = np.random.default_rng(2026)
    starts = {f"H{i:03d}": 16 * 24 + rng.uniform(6.0, 9.0) for i in range(200)}
    uses = {m: add_flow(household(rng, DAYS), start_h, rng.uniform(10.0, 60.0)) for m, start_h in starts.items()}
    errors_h = [
        abs((leak.start - at_hour(starts[str(leak.meter_id)])).total_seconds()) / 3600
        for leak in detect(block_of(uses))
        if leak.kind is AlertKind.LEAK and leak.detected_at > at_hour(starts[str(leak.meter_id)])
    ]
    assert len(errors_h) == 200
    assert np.mean(np.array(errors_h) <= 1.0) >= 0.93
    assert np.mean(np.array(errors_h) <= 2.0) >= 0.99


def test_leaks_begun_in_a_steady_shop_s_opening_hours_are_dated_within_a_quarter_hour() -> None:
    """200 shops whose every open hour draws its own usual amount give or take 5% (closed on
    Sundays), each with a leak of 120–240 L/h (below a burst's rate) from a random instant of a
    Wednesday's opening hours. Read with the shop's own spread at each hour, on weekdays alone,
    every start is within an hour and 95% within a quarter hour (all of them, 0.11 h at most).
    With a kernel a quarter of the flow wide over all days (the rule first tried), 99 of 200 were
    within a quarter hour and one 1.16 h off: onsets an hour apart weighed nearly alike, and the
    Sundays' closed hours made an hour without use look likely."""
    rng = np.random.default_rng(2026)
    starts = {f"S{i:03d}": 16 * 24 + rng.uniform(8.0, 17.0) for i in range(200)}
    uses = {m: add_flow(steady_shop(rng, DAYS), start_h, rng.uniform(120.0, 240.0)) for m, start_h in starts.items()}
    errors_h = np.array(
        [
            abs((leak.start - at_hour(starts[str(leak.meter_id)])).total_seconds()) / 3600
            for leak in _one_leak_on_each(uses)
        ]
    )
    assert np.all(errors_h <= 1.0)
    assert np.mean(errors_h <= 0.25) >= 0.95


@given(
    usual=st.lists(st.floats(min_value=30.0, max_value=150.0), min_size=8, max_size=8),
    wander=st.floats(min_value=0.0, max_value=0.05),
    rate=st.floats(min_value=120.0, max_value=240.0),
    onset=st.floats(min_value=1.0, max_value=6.99),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_leak_among_steady_use_is_dated_to_a_fraction_of_an_hour(
    usual: list[float], wander: float, rate: float, onset: float, seed: int
) -> None:
    """``likeliest_onset`` on eight busy hours (the first the last one below the leak), each
    drawing its own usual level give or take ``wander`` (up to 5%) on 18 earlier weekdays and
    nothing on 3 Sundays, with a leak of 120–240 L/h from ``onset`` hours into them (instants
    count in intervals from the first one's end): its start is found within a fifth of an hour.
    On 3,000 random draws: none more than 0.1 h off. With a kernel a quarter of the flow wide over
    all days (the rule first tried), 1,715 were more than 0.2 h off and 21 more than an hour (up to
    3.5 h); with each share of the first hour read as exact, a leak begun on a read was 0.23 h off
    (the use it leaves sat between two shares, both unlikely against a spread of a few litres)."""
    rng = np.random.default_rng(seed)
    level = np.array(usual)
    past = np.concatenate([level[:, None] * rng.uniform(1.0 - wander, 1.0 + wander, (8, 18)), np.zeros((8, 3))], axis=1)
    same_kind = np.r_[np.ones(18, dtype=bool), np.zeros(3, dtype=bool)][None, :].repeat(8, axis=0)
    edges = np.arange(9.0) - 1.0  # row 0 ends at 0: an instant is in intervals from its end
    ran = np.clip(edges[1:] - np.maximum(edges[:-1], onset - 1.0), 0.0, 1.0)
    seen = level * rng.uniform(1.0 - wander, 1.0 + wander, 8) + rate * ran
    found = likeliest_onset(seen, past, same_kind, rate, 1.0, floor_tolerance(rate, 1.0, 0.1).item(), 1.0)
    assert abs(found - (onset - 1.0)) <= 0.2


@pytest.mark.parametrize("seed", [3, 16])
def test_a_small_leak_raised_after_hours_of_use_is_dated_at_detection_as_later(seed: int) -> None:
    """A 2–8 L/h leak behind a heavy household, raised at the end of hours of its use: the data cut
    at its ``detected_at`` give the start the whole data give (issue #6: causal). The onset was the
    last interval of the run below half the least flow of every interval after it; at the cut
    those were the last hours of use alone, so an hour of the leak alone (2.5 L/h) was taken for
    the interval before it, and the leak dated 30 h late (seed 3, begun 05:41: 04:00 from the whole
    data, with the quiet hours after; 11:37 the next day from the cut). An interval on
    the leak's own floor (the lowest its flows sat on, known at the cut) is now no onset. Of 40
    such draws, 2 (these) were dated more than an hour apart, none now."""
    rng = np.random.default_rng(seed)
    rate = float(rng.uniform(2.0, 8.0))
    start_h = 14 * 24 + float(rng.uniform(0.0, 24.0))
    block = block_of({"L": add_flow(heavy_household(rng, DAYS), start_h, rate)})
    (leak,) = _leaks(detect(block), "L")
    (again,) = [a for a in _leaks(detect(block.until(leak.detected_at)), "L") if a.detected_at == leak.detected_at]
    assert abs((again.start - leak.start).total_seconds()) <= 3600
    assert again.start <= at_hour(start_h + 1.0)
    assert again.rate_l_h == pytest.approx(rate, rel=0.25)


def test_a_large_leak_begun_after_a_morning_of_light_use_is_dated_at_detection_as_later() -> None:
    """192 L/h from 11:47 after a morning whose use sat three times on 9–10 L/h (seed 22's
    M009857): that morning's floor is the household's, not the leak's, and does not hold the
    onset back. The data cut at its ``detected_at`` date it as the whole data do (when the floor
    that capped the onset was any the run held: from 06:00; M009857 from 05:00 at 10 L/h)."""
    rng = np.random.default_rng(22)
    use = household(rng, DAYS)
    day = 14 * 24
    use[day : day + 12] = [18.0, 20.0, 0.0, 0.0, 0.0, 0.0, 9.0, 12.0, 27.0, 10.0, 9.0, 43.0]
    block = block_of({"L": add_flow(use, day + 11 + 47 / 60, 192.0)})
    (leak,) = _leaks(detect(block), "L")
    (again,) = [a for a in _leaks(detect(block.until(leak.detected_at)), "L") if a.detected_at == leak.detected_at]
    assert abs((again.start - leak.start).total_seconds()) <= 3600
    assert abs((again.start - at_hour(day + 11 + 47 / 60)).total_seconds()) <= 3600
