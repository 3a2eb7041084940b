"""DMA water balance and main bursts, with customers' missing reads estimated rather than ignored."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.detection import district
from collector.detection.alerts import AlertKind
from collector.detection.balance import DmaBalance, estimated_customer_flow
from collector.detection.common import Clock
from collector.detection.config import DetectionConfig
from collector.detection.district_overlap import LaterSteps, Nest
from collector.detection.district_steps import nanquantile_last, rolling_median
from collector.detection.engine import run_detection
from collector.detection.flows import interval_flows
from collector.detection.series import SeriesBlock
from tests.collector.test_detection_households import (
    HOUR,
    add_flow,
    at_hour,
    away,
    block_of,
    business,
    heavy_household,
    household,
    irrigating_household,
)

DAYS = 21
PRESSURE = np.array(
    [
        1.15,
        1.18,
        1.2,
        1.2,
        1.18,
        1.1,
        1.0,
        0.9,
        0.85,
        0.88,
        0.92,
        0.95,
        0.95,
        0.95,
        0.95,
        0.95,
        0.93,
        0.9,
        0.85,
        0.85,
        0.9,
        0.98,
        1.05,
        1.1,
    ]
)


def _dma(rng: np.random.Generator, n: int = 200) -> dict[str, np.ndarray]:
    makers = [household, household, household, heavy_household, business, irrigating_household]
    return {f"C{i}": makers[i % len(makers)](rng, DAYS) for i in range(n)}


def _background(l_h: float) -> np.ndarray:
    return l_h * np.tile(PRESSURE, DAYS)


def _share_of_inflow(uses: dict[str, np.ndarray], share: float) -> float:
    """``share`` of a DMA's mean inflow (L/h): its customers' use and the 300 L/h background the
    mains lose (:func:`_background`)."""
    return share * float(np.stack(list(uses.values())).sum(axis=0).mean() + 300.0)


def _drop_reads(block, rng: np.random.Generator, share: float):
    volume = block.volume_m3.copy()
    customers = block.role == "customer"
    missing = (rng.random(volume.shape) < share) & customers[:, None]
    missing[:, 0] = False
    volume[missing] = np.nan
    return type(block)(block.meter_ids, block.dma, block.role, block.timestamps, volume)


def test_a_main_burst_of_3_percent_is_found_with_missing_reads_around() -> None:
    rng = np.random.default_rng(41)
    uses = _dma(rng)
    size = _share_of_inflow(uses, 0.03)
    start_h = 12 * 24 + 2.4
    losses = add_flow(_background(300.0), start_h, size, start_h + 4 * 24)
    block = _drop_reads(block_of(uses, inlet_extra_l=losses), rng, 0.01)
    result = run_detection(block)
    (alert,) = [a for a in result.alerts if a.kind is AlertKind.DMA_BURST]
    assert alert.meter_id is None and alert.dma == "D1"
    assert at_hour(start_h) < alert.detected_at <= at_hour(start_h + 24)
    assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 2 * 3600
    assert alert.rate_l_h == pytest.approx(size, rel=0.3)
    assert alert.ended_at is not None
    assert abs((alert.ended_at - at_hour(start_h + 96)).total_seconds()) <= 6 * 3600


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_a_small_main_burst_days_after_a_week_long_one_is_found(seed: int) -> None:
    """1,500 L/h for a week, then, five days after its repair, 4% of the inflow for three days. The
    week-long burst lifted the history the second is measured against (the quantile of the two
    weeks before as baseline, their median as the typical level), and the second stood below the
    bar (seed 16's 440 L/h, six days after 1,400-2,700 L/h; six such misses over seeds 11-19). The
    days after the first's quiet run are measured on the balance without its flow."""
    rng = np.random.default_rng(seed)
    uses = _dma(rng)
    size = _share_of_inflow(uses, 0.04)
    first_h, second_h = 4 * 24 + 9.5, 16 * 24 + 14.33
    losses = add_flow(_background(300.0), first_h, 1500.0, first_h + 7 * 24)
    losses = add_flow(losses, second_h, size, second_h + 3 * 24)
    block = _drop_reads(block_of(uses, inlet_extra_l=losses), rng, 0.01)
    alerts = sorted((a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST), key=lambda a: a.start)
    # nothing else: the days after the first, measured without it, raise nothing of their own
    # (nor does its tail, still inside the longer windows at midnight after its repair)
    first, second = alerts
    _assert_its_own(first, first_h, first_h + 7 * 24, 1500.0)
    assert at_hour(second_h) < second.detected_at <= at_hour(second_h + 24)
    assert abs((second.start - at_hour(second_h)).total_seconds()) <= 2 * 3600
    assert second.rate_l_h == pytest.approx(size, rel=0.2)
    # causal: raised the same (the same id: the same detection time) from the data up to then,
    # and by the hourly job's windows after, however far their start has moved on
    for until_h, since_h in ((0, 0), (5, 0), (30, 0), (30, 12), (50, 24)):
        window = block.until(second.detected_at + until_h * HOUR).since(at_hour(since_h))
        assert second.alert_id in {a.alert_id for a in run_detection(window).alerts}


@pytest.mark.parametrize("seed", [41, 42])
def test_a_small_main_burst_running_on_after_a_week_long_one_is_raised_at_its_repair(seed: int) -> None:
    """4% of the inflow beginning two days into a week of 1,500 L/h and running two days past its
    repair: hidden under it (a nested step must carry a quarter of what runs), then standing below
    the bar that week had lifted, it was never raised. Measured without the week's flow, it is
    raised within a day of that repair, dated from it (its flow before cannot be told from the
    week's), at its own rate, and ended at its own repair."""
    rng = np.random.default_rng(seed)
    uses = _dma(rng)
    size = _share_of_inflow(uses, 0.04)
    big_h, small_h = 4 * 24 + 9.5, 6 * 24 + 14.33
    repaired_h, small_end_h = big_h + 7 * 24, big_h + 9 * 24
    losses = add_flow(_background(300.0), big_h, 1500.0, repaired_h)
    losses = add_flow(losses, small_h, size, small_end_h)
    block = _drop_reads(block_of(uses, inlet_extra_l=losses), rng, 0.01)
    alerts = sorted((a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST), key=lambda a: a.start)
    big, small = alerts
    assert abs((big.start - at_hour(big_h)).total_seconds()) <= 3600
    assert big.ended_at is not None and abs((big.ended_at - at_hour(repaired_h)).total_seconds()) <= 2 * 3600
    assert at_hour(repaired_h) < small.detected_at <= at_hour(repaired_h + 24)
    assert abs((small.start - at_hour(repaired_h)).total_seconds()) <= 2 * 3600
    assert small.rate_l_h == pytest.approx(size, rel=0.2)
    assert small.ended_at is not None and abs((small.ended_at - at_hour(small_end_h)).total_seconds()) <= 2 * 3600


def test_a_long_burst_still_running_stays_in_the_history() -> None:
    """Only a burst that is over is taken out of the history: the days while it runs are measured
    as before (a step during it is the nest's to find, and a lasting change of the level becomes
    the new usual), and a run over the data up to any hour of it raises it once, as the same alert."""
    rng = np.random.default_rng(44)
    uses = _dma(rng)
    first_h = 4 * 24 + 9.5
    losses = add_flow(_background(300.0), first_h, 1500.0, (DAYS + 1) * 24)
    block = _drop_reads(block_of(uses, inlet_extra_l=losses), rng, 0.01)
    (alert,) = [a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST]
    assert alert.ended_at is None and alert.rate_l_h == pytest.approx(1500.0, rel=0.1)
    for hours in (8 * 24 + 3, 14 * 24 + 17, 19 * 24):
        earlier = [a for a in run_detection(block.until(at_hour(hours))).alerts if a.kind is AlertKind.DMA_BURST]
        assert [a.alert_id for a in earlier] == [alert.alert_id]


def _dma_alerts(rng: np.random.Generator, losses: np.ndarray) -> list:
    block = _drop_reads(block_of(_dma(rng), inlet_extra_l=losses), rng, 0.01)
    alerts = [a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST]
    return sorted(alerts, key=lambda a: a.start)


def test_a_second_main_burst_during_the_first_gets_its_own_rate_and_end() -> None:
    """Two overlapping bursts: each alert's rate is its own, not the sum the balance shows while
    both run, and the first ends when it is repaired though the second still flows."""
    first_h, second_h = 12 * 24 + 3.5, 13 * 24 + 16.25
    first_end_h, second_end_h = 15 * 24 + 8.75, 17 * 24 + 2.0
    losses = add_flow(_background(300.0), first_h, 400.0, first_end_h)
    losses = add_flow(losses, second_h, 600.0, second_end_h)
    first, second = _dma_alerts(np.random.default_rng(44), losses)
    for alert, start_h, end_h, rate in ((first, first_h, first_end_h, 400.0), (second, second_h, second_end_h, 600.0)):
        _assert_its_own(alert, start_h, end_h, rate)
        assert alert.volume_l == pytest.approx(rate * (end_h - start_h), rel=0.1)


@pytest.mark.parametrize("seed", [45, 46, 47])
@pytest.mark.parametrize("hours_before", [4.0, 10.5, 20.0])
def test_a_small_main_burst_begun_under_a_large_one_is_dated_from_its_own_start(seed: int, hours_before: float) -> None:
    """400 L/h beginning ``hours_before`` the repair of a 2,000 L/h burst, under a quarter of it:
    not searched for while the large one runs, it is found at its repair, the balance staying up.
    Its start was searched for only from that repair on, so it was dated there, hours late, and its
    volume fell short by as many hours of its flow (the benchmark's seeds 22 and 23). Searched for
    under the large one's measured flow, it is dated from its own start."""
    first_h, repaired_h = 12 * 24 + 3.5, 15 * 24 + 8.75
    second_h, second_end_h = repaired_h - hours_before, 18 * 24 + 2.0
    losses = add_flow(_background(300.0), first_h, 2000.0, repaired_h)
    losses = add_flow(losses, second_h, 400.0, second_end_h)
    first, second = _dma_alerts(np.random.default_rng(seed), losses)
    _assert_its_own(first, first_h, repaired_h, 2000.0)
    _assert_its_own(second, second_h, second_end_h, 400.0)
    assert second.volume_l == pytest.approx(400.0 * (second_end_h - second_h), rel=0.1)


def _assert_its_own(alert, start_h: float, end_h: float, rate: float) -> None:
    """The alert has its own burst's start (within an hour), rate (10%) and end (two hours)."""
    assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 3600
    assert alert.rate_l_h == pytest.approx(rate, rel=0.1)
    assert alert.ended_at is not None
    assert abs((alert.ended_at - at_hour(end_h)).total_seconds()) <= 2 * 3600


@pytest.mark.parametrize(
    ("first", "second", "seed"),
    [
        ((5 * 24 + 19.0, 9 * 24 + 11.0, 500.0), (7 * 24 + 7.0, 15 * 24 + 18.75, 1250.0), 52),
        ((10 * 24 + 16.5, 15 * 24 + 13.4, 850.0), (15 * 24 + 16.8, 17 * 24 + 20.1, 3250.0), 53),
    ],
    ids=["repaired-days-before-the-other-is", "repaired-hours-before-the-next-begins"],
)
def test_a_main_burst_repaired_apart_from_another_is_ended_at_its_own_repair(
    first: tuple[float, float, float], second: tuple[float, float, float], seed: int
) -> None:
    """(start hour, end hour, L/h) of two main bursts. 500 L/h for three and a half days under
    1,250 L/h for six: the first one's own series never fell while the second ran, so it was ended
    with the second and the two rates split the balance (about 500 and 780 L/h). 850 L/h repaired
    three hours before 3,250 L/h began: a median over six hours never fell, so the first ran on to
    the second's repair and the second's rate was the difference (2,400 L/h)."""
    losses = _background(300.0)
    for start_h, end_h, rate in (first, second):
        losses = add_flow(losses, start_h, rate, end_h)
    alerts = _dma_alerts(np.random.default_rng(seed), losses)
    assert len(alerts) == 2
    for alert, (start_h, end_h, rate) in zip(alerts, (first, second), strict=True):
        _assert_its_own(alert, start_h, end_h, rate)


@pytest.mark.parametrize("seed", [60, 61, 62])
def test_a_main_burst_running_on_after_another_s_repair_is_raised_once(seed: int) -> None:
    """900 L/h from 10:06, 450 L/h more from 13:06; the first is repaired 20 hours later and the
    second runs on to the data's end. While searching, the second was taken to end at the first's
    repair (its series fell by the first's rate there); measured once both were found, it runs on.
    The search went on from the end it had taken, and the rest of the second's flow was raised as
    a new burst half a day later: a second enquiry about one burst (seed 17's DMA016 in the
    benchmark)."""
    first_h = (DAYS - 3) * 24 + 10.1
    second_h, first_end_h = first_h + 3.0, first_h + 20.0
    losses = add_flow(_background(300.0), first_h, 900.0, first_end_h)
    losses = add_flow(losses, second_h, 450.0)
    first, second = [a for a in _dma_alerts(np.random.default_rng(seed), losses) if a.start > at_hour(first_h - 2)]
    _assert_its_own(first, first_h, first_end_h, 900.0)
    assert abs((second.start - at_hour(second_h)).total_seconds()) <= 3600
    assert second.rate_l_h == pytest.approx(450.0, rel=0.1)
    assert second.ended_at is None


@pytest.mark.parametrize("seed", [62, 63, 64])
@pytest.mark.parametrize("after_h", [3.0, 5.0, 8.0])
def test_a_main_burst_soon_after_a_repair_while_another_runs_on_is_raised(seed: int, after_h: float) -> None:
    """900 L/h from 10:06, 450 L/h more from 13:36; the first is repaired 30 hours in, the second
    runs on, and 600 L/h more begins ``after_h`` hours after the repair (a main burst often follows
    a repair, the pressure coming back). While searching, the second's series fell at the repair
    and the repair was taken for its own: the first stayed held at 900 L/h, the second's 450 L/h
    and the third's 600 L/h beside it looked like the first running on, and the third was never
    raised; the first was measured open at 1,050 L/h. Now the repair is the first's, whose end
    leaves what the bursts hold nearest the balance after it. And once its quiet run is over, the
    first holds nothing from its repair on: held through that run, it hid a burst beginning within
    it (3 hours after), which was dated to the run's end and measured at a quarter of its rate."""
    first_h = (DAYS - 3) * 24 + 10.1
    second_h, repaired_h = first_h + 3.5, first_h + 30.0
    third_h = repaired_h + after_h
    losses = add_flow(_background(300.0), first_h, 900.0, repaired_h)
    losses = add_flow(losses, second_h, 450.0)
    losses = add_flow(losses, third_h, 600.0)
    alerts = _dma_alerts(np.random.default_rng(seed), losses)
    first, second, third = [a for a in alerts if a.start > at_hour(first_h - 2)]
    _assert_its_own(first, first_h, repaired_h, 900.0)
    for alert, start_h, rate in ((second, second_h, 450.0), (third, third_h, 600.0)):
        assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 3600
        assert alert.rate_l_h == pytest.approx(rate, rel=0.1)
        assert alert.ended_at is None


def _under_a_burst_the_noise_ended(second_h: float) -> tuple[float, list]:
    """(the first burst's start hour, the DMA's alerts): 400 L/h for six days on a noisy balance
    (120 L/h from hour to hour), ended a few hours early by the noise, and 2,000 L/h more from
    ``second_h`` for 30 hours. (The noise drawn is one that ends the first early; the draw used
    before no longer did once the noise was measured per time of day, so the tests check that the
    search resumed after the first's taken end, :func:`_resumed_searches`.)"""
    first_h = (DAYS - 6) * 24 + 9.5
    noise = np.random.default_rng(1051).normal(0.0, 120.0, DAYS * 24)
    losses = add_flow(_background(300.0) + noise, first_h, 400.0, first_h + 6 * 24)
    losses = add_flow(losses, second_h, 2000.0, second_h + 30)
    return first_h, _dma_alerts(np.random.default_rng(74), losses)


def _resumed_searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The episodes found each time the search resumed after a nest (where :func:`_running_on`
    looks whether the first is an ended one running on), and how many of them it took as such."""
    resumed: list[int] = []
    running_on = district._running_on

    def counting(alerts: list, found: list, after: np.ndarray, clock: Clock) -> list:
        kept = running_on(alerts, found, after, clock)
        resumed.append(len(found) - len(kept))
        return kept

    monkeypatch.setattr(district, "_running_on", counting)
    return resumed


@pytest.mark.parametrize("fraction", [0.15, 0.5])
def test_a_large_main_burst_is_raised_while_the_balance_stays_above_its_baseline(
    fraction: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 L/h from about noon on day 19 under a 400 L/h burst the noise ended a few hours early,
    while the longer windows still held it: the balance never fell below the detector's trigger,
    so the second burst had no rise of its own to start from, and the search after the first
    looked only at the hour after it. The 2,000 L/h burst was never raised."""
    resumed = _resumed_searches(monkeypatch)
    second_h = (DAYS - 2) * 24 + 12 + fraction
    _, alerts = _under_a_burst_the_noise_ended(second_h)
    assert resumed  # the search resumed after the first's taken end
    (second,) = [a for a in alerts if abs((a.start - at_hour(second_h)).total_seconds()) <= 3600]
    # its rate may hold the first's flow too, which the detector took to have ended
    assert second.rate_l_h == pytest.approx(2000.0, rel=0.25)


def test_a_main_burst_found_again_just_after_its_taken_end_is_the_same_alert_running_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As above, the second burst from 12:51: the search, resumed after the first's taken end,
    found the first's flow an hour later and raised it again, a second alert about one burst (and
    the first said its flow had stopped). That is the first running on."""
    resumed = _resumed_searches(monkeypatch)
    second_h = (DAYS - 2) * 24 + 12.85
    first_h, alerts = _under_a_burst_the_noise_ended(second_h)
    assert sum(resumed) == 1  # one episode found on resuming was the first running on
    first, second = [a for a in alerts if a.start > at_hour(first_h - 3)]
    assert abs((first.start - at_hour(first_h)).total_seconds()) <= 3600
    assert first.ended_at is None  # it runs on past the data's end, as the burst does
    assert first.rate_l_h == pytest.approx(400.0, rel=0.25)
    # found as a step inside the first's flow: dated within two hours (70 minutes late here)
    assert abs((second.start - at_hour(second_h)).total_seconds()) <= 2 * 3600


@pytest.mark.parametrize("seed", [80, 81, 82])
@pytest.mark.parametrize("gap_h", [4.3, 5.0])
def test_a_main_burst_hours_after_another_s_repair_at_about_its_rate_is_raised_on_its_own(
    seed: int, gap_h: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """460 L/h repaired, and 440 L/h beginning ``gap_h`` hours later (seed 27's DMA020). The longer
    windows still held the first, so the second had no rise of its own; the search resumed after
    the first found it, and it began within six hours of the first's end at about its rate: taken
    for the first running on after a lull, one alert covered both (volume 164% over) and the
    second was never raised. The balance between stood at its level before, not at a lull's:
    two alerts, each with its own start, rate and end."""
    resumed = _resumed_searches(monkeypatch)
    first_h, first_end_h = (DAYS - 7) * 24 + 11.4, (DAYS - 5) * 24 + 5.9
    second_h, second_end_h = first_end_h + gap_h, (DAYS - 1) * 24 + 5.1
    losses = add_flow(_background(300.0), first_h, 460.0, first_end_h)
    losses = add_flow(losses, second_h, 440.0, second_end_h)
    alerts = [a for a in _dma_alerts(np.random.default_rng(seed), losses) if a.start > at_hour(first_h - 3)]
    assert resumed  # the second was found where the search resumed after the first
    first, second = alerts
    _assert_its_own(first, first_h, first_end_h, 460.0)
    _assert_its_own(second, second_h, second_end_h, 440.0)


def test_a_later_main_burst_found_on_its_rising_edge_is_taken_at_its_own_rate() -> None:
    """The search for a later burst looks at the median of six intervals, which holds only part of
    a large step when it first clears the bar: 2,000 L/h from 50.8 h on top of 400 L/h was found
    at 52 h as a step of 258 L/h. Taken at that rate, the step was dated by a change point with a
    bar of half of it, which the balance's noise before it cleared (seed 16 of the benchmark:
    dated 09:35 for 12:50), and the nest held too little of it for hours, so the rest of its flow
    was found as yet another burst. Its latest intervals, all in the step, give its rate."""
    t = 120
    timestamps = np.datetime64("2026-01-05T00:00:00") + np.arange(t) * np.timedelta64(1, "h")
    after = np.random.default_rng(5).normal(0.0, 40.0, t)
    after[10:] += 400.0
    after[50] += 0.2 * 2000.0  # the step's partial first interval
    after[51:100] += 2000.0
    nothing = np.zeros((1, t))
    balance = DmaBalance(
        dmas=np.array(["D1"]), timestamps=timestamps, interval_s=3600, inlet_l_h=after[None, :].copy(),
        customers_l_h=nothing, estimated_l_h=nothing, known_idx=np.arange(t)[None, :],
        n_customers=np.array([100]), still_l_h=nothing,
    )  # fmt: skip
    config = DetectionConfig()
    nest = Nest(balance, 0, after, Clock(timestamps, 3600), config)
    busy_until = nest.add(12, 9, 400.0, 1.0)
    overall = rolling_median(after[None, :], 6)[0]
    rose = np.full(t, np.nan)
    rose[6:] = overall[6:] - overall[:-6]
    later = LaterSteps(rose=rose, hidden=np.zeros(t), need=np.full(t, 150.0), window=6, not_before=13, quiet_from=0)
    later.add_to(nest, 18, busy_until, config)
    assert len(nest.found) == 2
    j, start_col, rate, _ = nest.found[1]
    assert j <= 53 and start_col in (50, 51)
    assert rate == pytest.approx(2000.0, rel=0.1)


def test_a_larger_main_burst_hours_after_a_smaller_one_gets_its_own_rate() -> None:
    """500 L/h from 09:15, then 1,100 L/h from 15:30, both still running when the data end. The
    first's median so far soon took the second's flow for its own, and over their common hours
    any split of the sum fits: the six hours the first ran alone fix its rate, and the second's is
    the rest. (Before: the first was ended when the second began, and the second's rate was the
    sum, 1,607 L/h.)"""
    first_h, second_h = (DAYS - 3) * 24 + 9.25, (DAYS - 3) * 24 + 15.5
    losses = add_flow(_background(300.0), first_h, 500.0)
    losses = add_flow(losses, second_h, 1100.0)
    first, second = _dma_alerts(np.random.default_rng(48), losses)
    for alert, start_h, rate in ((first, first_h, 500.0), (second, second_h, 1100.0)):
        assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 3600
        assert alert.rate_l_h == pytest.approx(rate, rel=0.1)
        assert alert.ended_at is None


def test_a_main_burst_four_hours_into_another_is_found_as_its_own() -> None:
    """1,500 L/h from 01:00, then 1,000 L/h from 05:15, for three days: the second is raised as
    its own burst with its own rate (before: the first's median so far took the second's flow
    for its own within four hours, before the search for a second step began, and one alert
    said 2,500 L/h)."""
    first_h, second_h = 12 * 24 + 1.0, 12 * 24 + 5.25
    losses = add_flow(_background(300.0), first_h, 1500.0, first_h + 72)
    losses = add_flow(losses, second_h, 1000.0, second_h + 72)
    first, second = _dma_alerts(np.random.default_rng(49), losses)
    for alert, start_h, rate in ((first, first_h, 1500.0), (second, second_h, 1000.0)):
        assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 3600
        assert alert.rate_l_h == pytest.approx(rate, rel=0.1)


def test_a_small_main_burst_under_a_large_one_is_found() -> None:
    """350 L/h more while a 1,000 L/h burst runs: a third of what the balance already carries, a
    step well clear of the noise."""
    first_h, second_h = 11 * 24 + 4.0, 13 * 24 + 10.5
    losses = add_flow(_background(300.0), first_h, 1000.0, 17 * 24)
    losses = add_flow(losses, second_h, 350.0, 16 * 24)
    first, second = _dma_alerts(np.random.default_rng(47), losses)
    assert abs((second.start - at_hour(second_h)).total_seconds()) <= 3600
    assert second.rate_l_h == pytest.approx(350.0, rel=0.15)
    assert first.rate_l_h == pytest.approx(1000.0, rel=0.1)


def test_a_main_burst_soon_after_another_is_dated_from_its_own_start() -> None:
    """The second burst begins 14 hours after the first was repaired: its start is not drawn
    back into the first (whose excess would weigh in a change point searched two days back)."""
    first_h, first_end_h, second_h = 11 * 24 + 2.0, 13 * 24 + 6.0, 13 * 24 + 20.5
    losses = add_flow(_background(300.0), first_h, 900.0, first_end_h)
    losses = add_flow(losses, second_h, 500.0, second_h + 48.0)
    first, second = _dma_alerts(np.random.default_rng(45), losses)
    assert abs((second.start - at_hour(second_h)).total_seconds()) <= 3600
    assert second.rate_l_h == pytest.approx(500.0, rel=0.1)
    assert first.ended_at is not None and first.ended_at <= second.start


def test_the_balance_back_at_its_level_after_a_week_long_burst_is_no_new_burst() -> None:
    """A main burst runs for seven and a half days, half the baseline's fortnight: for a week after
    its repair the baseline's days hold it as often as not, and when they no longer do, the balance
    at its own level must not read as a step up (with the median as the baseline it did: a second
    alert of rate 0 a fortnight after the burst began)."""
    start_h, end_h = 3 * 24 + 3.0, 10 * 24 + 14.5
    losses = add_flow(_background(300.0), start_h, 700.0, end_h)
    (alert,) = _dma_alerts(np.random.default_rng(46), losses)
    assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 3600
    assert alert.ended_at is not None
    assert abs((alert.ended_at - at_hour(end_h)).total_seconds()) <= 2 * 3600


def _since_the_data_began(seed: int, third_h: float | None) -> tuple[float, list]:
    """(the third burst's rate, the DMA's alerts): the data begin with 3,500 L/h running (from hour
    4.5) and 2,300 L/h more from day 4, repaired on days 6 and 8 (seed 23's DMA015); ``third_h``:
    5% of the inflow from then on for 60 hours."""
    rng = np.random.default_rng(seed)
    size = _share_of_inflow(_dma(np.random.default_rng(seed)), 0.05)
    losses = add_flow(_background(300.0), 4.5, 3500.0, 6 * 24 + 12.6)
    losses = add_flow(losses, 4 * 24 + 3.3, 2300.0, 8 * 24 + 21.1)
    if third_h is not None:
        losses = add_flow(losses, third_h, size, third_h + 60)
    return size, _dma_alerts(rng, losses)


@pytest.mark.parametrize("seed", [41, 42, 43])
@pytest.mark.parametrize("third_h", [None, 15 * 24 + 2.3, 17 * 24 + 13.7])
def test_the_balance_at_its_level_after_bursts_running_since_the_data_began_is_no_main_burst(
    seed: int, third_h: float | None
) -> None:
    """Bursts running since the data began are the history's usual level; once repaired, the days
    after stand far under their baseline. Once the baseline (the fortnight's 30th percentile) has
    come back down, the typical level of the excess over it was still that of those days, far
    under 0, and lowered the bar below the baseline itself: the balance back at its own level
    stood over it for days, and each window was raised as a main burst measured at 0-46 L/h (5 to
    8 alerts a run; 5% of this DMA's inflow is about 165 L/h). A burst in those days is still
    raised, at its start and rate."""
    size, alerts = _since_the_data_began(seed, third_h)
    later = [a for a in alerts if a.start > at_hour(9 * 24)]
    if third_h is None:
        assert later == []
    else:
        (third,) = later
        assert abs((third.start - at_hour(third_h)).total_seconds()) <= 3600
        assert third.rate_l_h == pytest.approx(size, rel=0.1)


@pytest.mark.parametrize("seed", [41, 42])
@pytest.mark.parametrize("third_h", [12 * 24 + 14.3, 13 * 24 + 14.3])
def test_a_main_burst_days_after_bursts_running_since_the_data_began_is_raised_at_its_start(
    seed: int, third_h: float
) -> None:
    """As above, with 5% of the inflow from four or five days after the last repair. The history
    the days after were measured against still held the bursts running since the data began (they
    never stood over the bar, so they were never taken out as a burst of days is): that burst was
    missed, or raised 8-10 hours late as two to four bursts. Those bursts show in their
    repairs, the balance falling below the level of the data's first days, and are now taken out
    of the history from two days after; the burst is one alert, from its start, at its rate."""
    size, alerts = _since_the_data_began(seed, third_h)
    (third,) = [a for a in alerts if a.start > at_hour(9 * 24)]
    assert abs((third.start - at_hour(third_h)).total_seconds()) <= 3600
    assert third.rate_l_h == pytest.approx(size, rel=0.1)
    assert third.detected_at <= at_hour(third_h + 6)


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=20), min_size=1, max_size=5
    ),
    q=st.floats(0.0, 1.0),
)
def test_nanquantile_last_is_numpy_s_nanquantile(rows: list[list[float | None]], q: float) -> None:
    width = max(len(r) for r in rows)
    x = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        x[i, : len(r)] = [np.nan if v is None else v for v in r]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        expected = np.nanquantile(x, q, axis=-1)
    assert np.allclose(nanquantile_last(x, q), expected, equal_nan=True, rtol=1e-9, atol=1e-6)


def test_no_burst_no_alert_and_the_balance_counts_estimated_reads() -> None:
    rng = np.random.default_rng(42)
    uses = _dma(rng)
    block = _drop_reads(block_of(uses, inlet_extra_l=_background(300.0)), rng, 0.02)
    result = run_detection(block)
    assert not [a for a in result.alerts if a.kind is AlertKind.DMA_BURST]
    balance = result.balance
    assert balance.estimated_l_h[0, 48:].sum() > 0  # missing reads were filled in …
    losses = balance.losses_l_h[0, 3 * 24 :]
    truth = _background(300.0)[3 * 24 - 1 :]
    # … so the balance shows the mains' losses, not the missing reads (which would add ~2% of use)
    assert np.mean(losses) == pytest.approx(np.mean(truth), rel=0.1)
    (row,) = balance.summary()
    assert row["dma"] == "D1" and row["customers"] == len(uses)


def test_estimates_use_only_earlier_days() -> None:
    rng = np.random.default_rng(43)
    block = _drop_reads(block_of({"A": household(rng, DAYS)}), rng, 0.05)
    config = DetectionConfig()
    filled, estimated = estimated_customer_flow(block, interval_flows(block, config), config)
    later = block.until(at_hour(10 * 24))
    filled_then, _ = estimated_customer_flow(later, interval_flows(later, config), config)
    t = later.n_intervals
    usable = ~np.isnan(filled_then)
    # an estimate made with data up to hour 240 is the estimate made with all the data, save the last
    # interval (whose gap may be closed by a later read)
    assert np.allclose(filled_then[:, : t - 2][usable[:, : t - 2]], filled[:, : t - 2][usable[:, : t - 2]])
    assert np.all(estimated[:, :24] == 0)  # no history, no guess


def test_a_large_user_switching_on_while_the_inlet_s_reads_are_missing_is_no_main_burst() -> None:
    """Over a gap in the inlet's reads only its total is known. Spread evenly, a factory switching on
    at the gap's end put a quarter of its flow into the balance for three hours before it (and took
    it back after): a main burst and its repair, to the detector. The gap's losses are now spread
    evenly and the customers' own flow gives the inlet its shape."""
    rng = np.random.default_rng(44)
    uses = _dma(rng)
    hours = np.arange(DAYS * 24)
    factory = np.where((hours % 24 >= 6) & (hours % 24 < 18), 40_000.0, 0.0)  # 40 m³/h from 06:00 to 18:00
    uses["FACTORY"] = factory
    block = _drop_reads(block_of(uses, inlet_extra_l=_background(300.0)), rng, 0.01)
    volume = block.volume_m3.copy()
    inlet = int(np.flatnonzero(block.role == "inlet")[0])
    gap = [d * 24 + h for d in (12, 15) for h in (4, 5, 6)]  # the reads at 04:00-06:00, two days
    volume[inlet, gap] = np.nan
    gappy = type(block)(block.meter_ids, block.dma, block.role, block.timestamps, volume)
    result = run_detection(gappy)
    assert not [a for a in result.alerts if a.kind is AlertKind.DMA_BURST]
    losses = result.balance.losses_l_h[0]
    for d in (12, 15):
        closing = d * 24 + 7  # the interval closing the gap: 06:00-07:00, the factory's first hour
        span = slice(closing - 3, closing + 1)  # 03:00-07:00
        # the gap's losses, spread evenly, are what the mains lost over it
        assert np.allclose(losses[span], losses[span].mean())
        assert losses[span].mean() == pytest.approx(_background(300.0)[closing - 4 : closing].mean(), rel=0.25)


def _shop_stuck_at_closing(rng: np.random.Generator, stuck_day: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A DMA with a large shop (600 L/h while open, ± 25% hour to hour) whose register stops at
    19:30 on ``stuck_day``: (true uses, registers with the shop's frozen)."""
    from tests.collector.test_detection_households import registers

    uses = _dma(rng)
    open_hours = business(rng, DAYS) > 0
    uses["SHOP"] = np.where(open_hours, rng.gamma(16.0, 600.0 / 16.0, open_hours.size), 0.0)
    volume = registers(np.stack(list(uses.values())))
    frozen_from = stuck_day * 24 + 20  # the read at 20:00 is the first that no longer moves
    volume[-1, frozen_from:] = volume[-1, frozen_from - 1]
    return uses, volume


def test_a_shop_whose_register_stops_at_closing_time_is_no_main_burst_next_morning() -> None:
    """The shop's day of use appears in the balance when it would open. Until the register counts
    as stalled (two days) and is estimated, what it may hide (half as much again as its usual flow
    at that hour on earlier weekdays) explains the step; after, its estimate (per weekday, Saturday,
    Sunday: the shop opens on Saturdays) carries it, give or take half."""
    rng = np.random.default_rng(45)
    uses, volume = _shop_stuck_at_closing(rng, stuck_day=15)  # a Tuesday
    block = block_of(uses, inlet_extra_l=_background(300.0), volume=volume)
    result = run_detection(block)
    assert not [a for a in result.alerts if a.kind is AlertKind.DMA_BURST]
    still = result.balance.still_l_h[0]
    opening = 16 * 24 + 8  # Wednesday 07:00-08:00: the shop's first hour without its register
    assert still[opening] > 300.0  # the shop's usual flow then, from earlier weekdays
    tuesday_open = slice(15 * 24 + 9, 15 * 24 + 20)  # the day it stopped, while the shop's register moved
    assert still[tuesday_open].max() < 300.0  # households explain little


def test_a_main_burst_while_a_shop_s_register_is_newly_still_is_still_raised() -> None:
    """The shop explains its own hours only: a main burst the night after is raised within hours,
    and the shop's hours the next day neither end it nor make a second one."""
    rng = np.random.default_rng(46)
    uses, volume = _shop_stuck_at_closing(rng, stuck_day=15)
    start_h = 16 * 24 + 1.5  # 01:30 the night after: the shop explains nothing at night
    losses = add_flow(_background(300.0), start_h, 900.0, start_h + 3 * 24)
    block = block_of(uses, inlet_extra_l=losses, volume=volume)
    (alert,) = [a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST]
    assert at_hour(start_h) < alert.detected_at <= at_hour(start_h + 6)
    assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 3600
    assert alert.ended_at is not None and abs(alert.ended_at - at_hour(start_h + 72)) <= 2 * HOUR
    assert alert.rate_l_h == pytest.approx(900.0, rel=0.1)


def test_a_register_stuck_for_weeks_is_estimated_from_its_last_days_of_use() -> None:
    """The estimate looks back as far as it takes; it used to stop at four weeks, and from then on
    a stuck shop's use came back into the balance as losses (a main burst every morning)."""
    from collector.detection.balance import estimated_customer_flow

    rng = np.random.default_rng(47)
    days = 40
    use = business(rng, days)
    use[5 * 24 :] = 0.0  # shown as stuck: the register stands still from day 5
    block = block_of({"SHOP": use})
    config = DetectionConfig()
    filled, estimated = estimated_customer_flow(block, interval_flows(block, config), config)
    ten_am = [d * 24 + 11 for d in (10, 17, 38)]  # the interval 10:00-11:00 on three Thursdays
    assert estimated[0, ten_am[0]] > 0
    assert np.allclose(estimated[0, ten_am], estimated[0, ten_am[0]])
    assert np.allclose(filled[0, ten_am], estimated[0, ten_am])


def test_a_house_left_empty_after_a_burst_is_estimated_at_its_usual_use_not_the_burst_s() -> None:
    """A household's 2,500 L/h burst for a day and a half, then the house empty for eleven days.
    Its still register is estimated from its earlier days, which held the burst: about 450 L/h of
    phantom use, lowering the balance until the register moved again, when the balance stepped up
    by as much, a main burst (seed 19's job fleet: a different one in each hourly window). The
    intervals of the meter's raised bursts are not its usual use."""
    rng = np.random.default_rng(48)
    uses = _dma(rng)
    burst_h, empty_day, back_day = 6 * 24 + 3.8, 8, 19
    uses["BURSTY"] = away(add_flow(household(rng, DAYS), burst_h, 2500.0, burst_h + 40.0), empty_day, back_day)
    block = _drop_reads(block_of(uses, inlet_extra_l=_background(300.0)), rng, 0.01)
    result = run_detection(block)
    (burst,) = [a for a in result.alerts if a.meter_id == "BURSTY"]
    assert burst.kind is AlertKind.BURST and burst.ended_at is not None
    assert not [a for a in result.alerts if a.kind is AlertKind.DMA_BURST]
    # stalled from two days into the empty spell: estimated at a household's use (the DMA's
    # estimates besides are its customers' missing reads, 1%: tens of litres an hour all told)
    stalled = slice((empty_day + 2) * 24 + 1, back_day * 24)
    assert 0.0 < result.balance.estimated_l_h[0, stalled].mean() < 100.0
    losses = result.balance.losses_l_h[0, stalled]
    assert np.mean(losses) == pytest.approx(np.mean(_background(300.0)[stalled.start - 1 : stalled.stop - 1]), rel=0.1)


@pytest.mark.parametrize("seed", [49, 50])
def test_a_main_burst_at_night_days_after_a_customer_s_night_burst_is_raised_within_hours(seed: int) -> None:
    """A household's 2,500 L/h burst through one night; four days later a main burst of 4% of the
    inflow at 01:30. Still for hours at night, the household's register may be hiding its usual flow
    at that hour, half as much again, and that usual flow held the burst's night: 250 L/h, so it
    might hide 375 L/h, and a step up to twice that was taken as explained until the household's
    register moved in the morning (the main burst raised at 09:00 or 10:00)."""
    rng = np.random.default_rng(seed)
    uses = _dma(rng)
    size = _share_of_inflow(uses, 0.04)
    night_burst_h = 6 * 24 + 22.0  # a Sunday 22:00 to Monday 06:00
    uses["BURSTY"] = add_flow(household(rng, DAYS), night_burst_h, 2500.0, night_burst_h + 8.0)
    start_h = 10 * 24 + 1.5  # Thursday 01:30
    losses = add_flow(_background(300.0), start_h, size, start_h + 2 * 24)
    block = _drop_reads(block_of(uses, inlet_extra_l=losses), rng, 0.01)
    alerts = run_detection(block).alerts
    assert [a.kind for a in alerts if a.meter_id == "BURSTY"] == [AlertKind.BURST]
    (main,) = [a for a in alerts if a.kind is AlertKind.DMA_BURST]
    assert at_hour(start_h) < main.detected_at <= at_hour(start_h + 4)
    assert abs((main.start - at_hour(start_h)).total_seconds()) <= 3600


def _with_morning_swings(seed: int, burst_h: float | None = None) -> list:
    """A DMA's main-burst alerts when its balance swings by ±100 L/h (one sigma) from hour to hour
    from 06:00 to 09:00 and is steady otherwise, as the inflow's morning rise makes it; with a 4%
    main burst for a day from ``burst_h``."""
    rng = np.random.default_rng(seed)
    uses = _dma(rng)
    hours = np.arange(DAYS * 24)
    morning = (hours % 24 >= 6) & (hours % 24 < 9)
    losses = _background(300.0) + np.where(morning, rng.normal(0.0, 100.0, hours.size), 0.0)
    if burst_h is not None:
        size = _share_of_inflow(uses, 0.04)
        losses = add_flow(losses, burst_h, size, burst_h + 24)
    block = _drop_reads(block_of(uses, inlet_extra_l=losses), rng, 0.01)
    return [a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST]


def test_the_balance_s_morning_swings_are_measured_against_the_morning_s_own_noise() -> None:
    """Measured against the noise of the whole day, two of a short window's three morning hours
    lifted by the swings were a main burst: 33 false main bursts over these eight DMAs of three
    weeks. Against that time of day's own noise, where larger, 4; a main burst at night is still
    raised within hours."""
    false_bursts = sum(len(_with_morning_swings(seed)) for seed in range(51, 59))
    assert false_bursts <= 6
    start_h = 15 * 24 + 1.5
    (burst,) = [a for a in _with_morning_swings(51, start_h) if a.start >= at_hour(start_h - 2)]
    assert at_hour(start_h) < burst.detected_at <= at_hour(start_h + 4)
    assert abs((burst.start - at_hour(start_h)).total_seconds()) <= 3600


def _rollout(seed: int, losses: np.ndarray, *, recorded: bool) -> SeriesBlock:
    """The DMA of :func:`_dma` with 30% of its customer meters exchanged for new ones on days 8-14
    (an AMI rollout): each old meter's reads stop at its exchange, its replacement's begin there
    from 0 m³. ``recorded``: meterization's installations and removals are in the block."""
    rng = np.random.default_rng(seed)
    uses = _dma(rng)
    block = block_of(uses, inlet_extra_l=losses)
    m, t = block.volume_m3.shape
    old = rng.choice(np.flatnonzero(block.role == "customer"), int(0.3 * len(uses)), replace=False)
    at = rng.integers(8 * 24, 14 * 24, size=old.size)
    volume = np.vstack([block.volume_m3, np.full((old.size, t), np.nan)])
    installed = np.ones((m + old.size, t), dtype=bool)
    for k, (row, hour) in enumerate(zip(old.tolist(), at.tolist(), strict=True)):
        volume[m + k, hour:] = volume[row, hour:] - volume[row, hour]
        volume[row, hour + 1 :] = np.nan
        installed[row, hour + 1 :] = False
        installed[m + k, : hour + 1] = False
    return SeriesBlock(
        meter_ids=np.r_[block.meter_ids, [f"NEW-{k}" for k in range(old.size)]],
        dma=np.full(m + old.size, "D1"),
        role=np.r_[block.role, ["customer"] * old.size],
        timestamps=block.timestamps,
        volume_m3=volume,
        installed=installed if recorded else None,
    )


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_meters_exchanged_for_new_ones_are_not_estimated_on_beside_them(seed: int) -> None:
    """An exchanged meter's reads stop. Estimated on as a missing read, its household's use was
    counted twice, beside its replacement's reads: with 30% of the meters exchanged the balance
    fell from the mains' 300 L/h to -450 to -630 L/h, and a false main burst was raised where the
    estimates ran out. Where meterization says the meter was removed, it passed no water."""
    truth = _background(300.0)
    result = run_detection(_rollout(seed, truth, recorded=True))
    assert not [a for a in result.alerts if a.kind is AlertKind.DMA_BURST]
    after = slice(15 * 24, None)  # every exchange done
    assert np.mean(result.balance.losses_l_h[0, after]) == pytest.approx(np.mean(truth[after]), rel=0.05)
    unrecorded = run_detection(_rollout(seed, truth, recorded=False)).balance
    assert np.mean(unrecorded.losses_l_h[0, after]) < 0  # the same reads, without meterization's word


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_a_main_burst_during_a_meter_rollout_is_found_at_its_rate(seed: int) -> None:
    size = _share_of_inflow(_dma(np.random.default_rng(seed)), 0.04)
    start_h = 16 * 24 + 3.3
    losses = add_flow(_background(300.0), start_h, size, start_h + 72)
    (alert,) = [a for a in run_detection(_rollout(seed, losses, recorded=True)).alerts if a.kind is AlertKind.DMA_BURST]
    assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 2 * 3600
    assert alert.rate_l_h == pytest.approx(size, rel=0.1)


def test_a_read_where_meterization_says_the_meter_was_not_in_place_still_counts() -> None:
    """Job cards' dates are typed by people; a meter's read is what it measured."""
    rng = np.random.default_rng(45)
    block = block_of({"A": household(rng, DAYS)})
    config = DetectionConfig()
    not_yet = np.ones(block.volume_m3.shape, dtype=bool)
    not_yet[:, : 5 * 24] = False  # recorded as installed on day 5, read from day 0
    recorded = SeriesBlock(block.meter_ids, block.dma, block.role, block.timestamps, block.volume_m3, installed=not_yet)
    flows = interval_flows(recorded, config)
    filled, estimated = estimated_customer_flow(recorded, flows, config)
    np.testing.assert_array_equal(filled[:, 1:], flows.flow_l_h[:, 1:])
    assert filled[0, 0] == 0 and estimated.sum() == 0  # before the first read: not in place, nothing


def test_an_inlet_meter_exchanged_for_another_keeps_its_dma_s_inflow_known() -> None:
    """A DMA's inflow is unknown where any of its inlets' is; the old inlet, unread after its
    exchange, made it unknown from then on, and the DMA was no longer watched."""
    rng = np.random.default_rng(46)
    uses = _dma(rng)
    start_h = 15 * 24 + 2.5
    size = _share_of_inflow(uses, 0.04)
    block = block_of(uses, inlet_extra_l=add_flow(_background(300.0), start_h, size, start_h + 72))
    inlet = int(np.flatnonzero(block.role == "inlet")[0])
    swap = 10 * 24
    volume = np.vstack([block.volume_m3, np.full(block.n_intervals, np.nan)])
    volume[-1, swap:] = volume[inlet, swap:] - volume[inlet, swap]
    volume[inlet, swap + 1 :] = np.nan
    installed = np.ones(volume.shape, dtype=bool)
    installed[inlet, swap + 1 :] = False
    installed[-1, : swap + 1] = False
    exchanged = SeriesBlock(
        meter_ids=np.r_[block.meter_ids, ["D1-INLET-NEW"]],
        dma=np.full(volume.shape[0], "D1"),
        role=np.r_[block.role, ["inlet"]],
        timestamps=block.timestamps,
        volume_m3=volume,
        installed=installed,
    )
    result = run_detection(exchanged)
    assert not np.isnan(result.balance.inlet_l_h[0, swap + 1 :]).any()
    (alert,) = [a for a in result.alerts if a.kind is AlertKind.DMA_BURST]
    assert abs((alert.start - at_hour(start_h)).total_seconds()) <= 2 * 3600
    assert alert.rate_l_h == pytest.approx(size, rel=0.1)


def test_detection_warns_nothing_and_leaves_the_process_s_warning_filters_alone(monkeypatch) -> None:
    """NaN is meant where a slice has no value, and numpy warns there. ``warnings.catch_warnings``
    silenced it by swapping the process's warning filters, which is not thread-safe before Python
    3.14: detection runs in threads beside VEE, and "RuntimeWarning: Mean of empty slice" reached
    the demo's console. Here with every warning an error and the swap forbidden: a DMA with a main
    burst, meters exchanged, and the inlet's first day unread."""

    def swapping(*args: object, **kwargs: object) -> None:
        raise AssertionError("warnings.catch_warnings swaps the process's filters: not thread-safe")

    size = _share_of_inflow(_dma(np.random.default_rng(41)), 0.04)
    start_h = 16 * 24 + 3.3
    block = _rollout(41, add_flow(_background(300.0), start_h, size, start_h + 72), recorded=True)
    volume = block.volume_m3.copy()
    volume[block.role == "inlet", 1:24] = np.nan
    block = dataclasses.replace(block, volume_m3=volume)
    with warnings.catch_warnings(), monkeypatch.context() as forbidden:  # the test's own swap, first
        warnings.simplefilter("error")
        forbidden.setattr(warnings, "catch_warnings", swapping)
        result = run_detection(block)
        result.balance.minimum_night_flow_l_h()
    assert [a.kind for a in result.alerts].count(AlertKind.DMA_BURST) == 1


def test_a_second_inlet_as_large_as_the_first_raises_no_main_burst_of_no_flow(tmp_path) -> None:
    """The reviewer's fleet (100 meters, 21 days, seed 3) with DMA001's inlet read twice, as a second
    inlet carrying as much as the first: the inflow doubles. A step the nest measured at no flow
    above the level before it was raised as a main burst of 0.0 L/h and 0.0 L beside the real
    excess (1,106.5 L/h); every main burst raised now carries flow."""
    from collector.detection.files.grid import build_block
    from collector.detection.files.meters import read_meters_csv
    from collector.detection.files.readings import read_readings_csv
    from simulators.fleet import FleetSpec, generate_fleet

    spec = FleetSpec(meters=100, days=21, seed=3, meters_per_dma=50, leak_fraction=0.05, burst_fraction=0.02)
    fleet = generate_fleet(spec)
    fleet.write_readings_csv(tmp_path / "r.csv")
    fleet.write_meters_csv(tmp_path / "m.csv")
    rows = (tmp_path / "r.csv").read_text().splitlines()
    second = [row.replace("DMA001-INLET", "DMA001-INLET2") for row in rows if row.startswith("DMA001-INLET,")]
    (tmp_path / "r.csv").write_text("\n".join(rows + second) + "\n")
    with (tmp_path / "m.csv").open("a") as meters:
        meters.write("DMA001-INLET2,DMA001,inlet\n")
    block, dropped = build_block(read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv"))
    assert dropped == 0
    bursts = [a for a in run_detection(block).alerts if a.kind is AlertKind.DMA_BURST and a.dma == "DMA001"]
    assert bursts and all(a.rate_l_h >= 1.0 and a.volume_l > 0.0 for a in bursts), bursts
