"""VEE rules on labelled data: every injected fault is flagged with the right rule, and nothing else.

``fleet()`` builds ten meters' hourly reads over three weeks from a diurnal use profile and injects
one kind of fault per meter at a known place; ``LABELS`` says which rule must flag which read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

import numpy as np
import pytest

from collector.vee.config import VeeConfig
from collector.vee.estimation import estimate
from collector.vee.intervals import read_intervals
from collector.vee.rules import validate
from collector.vee.series import Series

T0 = datetime(2026, 2, 2, tzinfo=UTC).timestamp()  # a Monday
HOURS = 21 * 24
NOW = T0 + (HOURS - 1) * 3600.0  # the last regular read
SHAPE = np.array(
    [
        0.3,
        0.3,
        0.3,
        0.3,
        0.4,
        0.8,
        1.8,
        2.2,
        1.6,
        1.0,
        0.8,
        0.8,
        0.9,
        0.8,
        0.7,
        0.7,
        0.8,
        1.2,
        1.9,
        2.0,
        1.5,
        1.0,
        0.6,
        0.4,
    ]
)


@dataclass
class Meter:
    ts: np.ndarray
    volume: np.ndarray
    flow: np.ndarray
    reverse: np.ndarray = field(default_factory=lambda: np.full(0, np.nan))
    received: np.ndarray | None = None
    hidden: dict[float, float] = field(default_factory=dict)  # true register at reads removed (gaps)


def _clean(base_m3h: float, start_m3: float) -> Meter:
    ts = T0 + np.arange(HOURS) * 3600.0
    hour = ((ts - 1) // 3600 % 24).astype(int)  # the hour each read closes
    rate = base_m3h * SHAPE[hour]
    volume = np.round(start_m3 + np.cumsum(rate), 3)
    return Meter(ts, volume, np.round(rate, 4), np.full(HOURS, np.nan))


def _drop(m: Meter, indices: range | list[int]) -> Meter:
    keep = np.ones(len(m.ts), bool)
    keep[list(indices)] = False
    hidden = {float(m.ts[i]): float(m.volume[i]) for i in indices}
    return Meter(m.ts[keep], m.volume[keep], m.flow[keep], m.reverse[keep], None, hidden)


def fleet() -> tuple[list[str], dict[str, Meter], set[tuple[str, float, str]]]:
    meters: dict[str, Meter] = {}
    labels: set[tuple[str, float, str]] = set()
    at = lambda i: T0 + i * 3600.0  # noqa: E731

    meters["M0-clean"] = _clean(0.03, 120.0)

    m = _clean(0.03, 0.0)  # M1: a 5-digit register rolls over at read 200
    m.volume = np.round((m.volume + 100_000 - m.volume[199] - 0.01) % 100_000, 3)
    meters["M1-rollover"] = m
    labels.add(("M1-rollover", at(200), "rollover"))

    m = _clean(0.03, 340.0)  # M2: meter replaced at read 300; the three reads before it are missing
    m.volume[300:] = np.round(m.volume[300:] - m.volume[299] + 0.004, 3)
    m = _drop(m, range(297, 300))
    meters["M2-replaced"] = m
    labels |= {("M2-replaced", at(300), "replacement"), ("M2-replaced", at(300), "gap")}

    m = _clean(0.03, 50.0)  # M3: water flows back through the meter during hour 150
    m.reverse = np.zeros(HOURS)
    m.reverse[150:] = 0.2
    m.volume[150:] = np.round(m.volume[150:] - m.volume[150] + m.volume[149] - 0.2, 3)
    m.flow[150] = -0.2
    meters["M3-reverse"] = m
    labels.add(("M3-reverse", at(150), "reverse_flow"))

    m = _clean(0.03, 70.0)  # M4: 12 m³ in one hour: above a DN15's maximum flow
    m.volume[100:] = np.round(m.volume[100:] + 12.0, 3)
    meters["M4-burst"] = m
    labels.add(("M4-burst", at(100), "over_max_flow"))

    # M5: a 4 h gap (linear) and a 37 h gap (profile)
    m = _drop(_clean(0.03, 90.0), [*range(50, 53), *range(250, 286)])
    meters["M5-gaps"] = m
    labels |= {("M5-gaps", at(53), "gap"), ("M5-gaps", at(286), "gap")}

    m = _clean(0.03, 200.0)  # M6: register stuck for six reads while the meter reports flow
    m.volume[400:406] = m.volume[399]
    meters["M6-stuck"] = m
    labels |= {("M6-stuck", at(i), "stuck_register") for i in range(400, 406)}

    m = _clean(0.03, 10.0)  # M7: a read an hour in the future of the collector's clock
    m.ts = np.append(m.ts, NOW + 3600)
    m.volume = np.append(m.volume, m.volume[-1] + 0.02)
    m.flow = np.append(m.flow, 0.02)
    m.reverse = np.append(m.reverse, np.nan)
    meters["M7-future"] = m
    labels.add(("M7-future", NOW + 3600, "future_timestamp"))

    m = _clean(0.03, 15.0)  # M8: a read that arrived 500 days after its timestamp
    m.received = m.ts.copy()
    m.received[10] += 500 * 86400
    meters["M8-late"] = m
    labels.add(("M8-late", at(10), "far_past_timestamp"))

    meters["M9-clean-heavy"] = _clean(0.4, 3000.0)
    return sorted(meters), meters, labels


def as_series(names: list[str], meters: dict[str, Meter], config: VeeConfig) -> Series:
    code = np.concatenate([np.full(len(meters[n].ts), i) for i, n in enumerate(names)])

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([getattr(meters[n], attr) for n in names])

    received = np.concatenate([meters[n].received if meters[n].received is not None else meters[n].ts for n in names])
    return Series.from_arrays(
        names, code, cat("ts"), cat("volume"), config, flow=cat("flow"), reverse=cat("reverse"), received=received
    )


def flags(series: Series, config: VeeConfig) -> set[tuple[str, float, str]]:
    validation = validate(series, config, NOW)
    return {
        (series.meter_ids[series.meter[i]], float(series.ts[i]), rule)
        for rule, mask in validation.masks.items()
        for i in np.flatnonzero(mask)
    }


def test_each_injected_fault_is_flagged_by_its_rule_and_nothing_else_is():
    config = VeeConfig()
    names, meters, labels = fleet()
    assert flags(as_series(names, meters, config), config) == labels


def test_the_result_does_not_depend_on_the_order_of_the_input():
    config = VeeConfig()
    names, meters, labels = fleet()
    series = as_series(names, meters, config)
    shuffled = np.random.default_rng(5).permutation(len(series))
    again = Series.from_arrays(
        names,
        series.meter[shuffled],
        series.ts[shuffled],
        series.volume[shuffled],
        config,
        flow=series.flow[shuffled],
        reverse=series.reverse[shuffled],
        received=series.received[shuffled],
    )
    assert flags(again, config) == labels


def test_consumption_across_a_rollover_and_a_replacement_is_what_the_meter_measured():
    config = VeeConfig()
    names, meters, _ = fleet()
    series = as_series(names, meters, config)
    v = validate(series, config, NOW)

    def used(name: str) -> float:
        return float(np.nansum(v.interval_consumption[series.meter == names.index(name)]))

    clean = _clean(0.03, 0.0).volume
    assert used("M1-rollover") == pytest.approx(clean[-1] - clean[0], abs=0.002)  # not -100 000
    reverse = meters["M3-reverse"].volume
    assert used("M3-reverse") == pytest.approx(reverse[-1] - reverse[0], abs=1e-9)  # net: the 0.2 m³ back counts
    assert used("M3-reverse") < clean[-1] - clean[0] - 0.2
    replaced = series.meter == names.index("M2-replaced")
    step = np.flatnonzero(replaced & (v.step_kind == "replacement"))
    assert len(step) == 1 and v.step_consumption[step[0]] == pytest.approx(series.volume[step[0]])


def test_thresholds_are_configuration():
    config = VeeConfig(default_max_flow_m3h=20.0)  # a bigger meter: the 12 m³ hour is plausible
    names, meters, labels = fleet()
    assert flags(as_series(names, meters, config), config) == labels - {("M4-burst", T0 + 100 * 3600, "over_max_flow")}
    with pytest.raises(ValueError, match="unknown VEE setting"):
        VeeConfig.from_mapping({"max_flow": 3})
    assert VeeConfig.from_mapping({"gap_factor": "2.5"}).gap_factor == 2.5


def test_estimates_fill_gaps_linear_when_short_by_profile_when_long_never_across_a_replacement():
    config = VeeConfig()
    names, meters, _ = fleet()
    series = as_series(names, meters, config)
    est = estimate(series, validate(series, config, NOW), config)
    by_meter = {names[c] for c in np.unique(est.meter)}
    assert by_meter == {"M5-gaps"}  # M2's gap ends at its replacement: left for a person
    assert len(est.not_estimated) == 1 and series.meter_ids[series.meter[est.not_estimated[0]]] == "M2-replaced"
    hidden = meters["M5-gaps"].hidden
    assert sorted(est.ts.tolist()) == sorted(hidden)
    linear, profile = est.method == "linear", est.method == "profile"
    assert linear.sum() == 3 and profile.sum() == 36
    assert np.all(np.diff(est.volume[profile]) >= 0)  # a register never goes back inside a gap
    truth = np.array([hidden[t] for t in est.ts])
    t0, t1 = est.gap_start[profile][0], est.gap_end[profile][0]
    gappy = meters["M5-gaps"]
    v0, v1 = gappy.volume[gappy.ts == t0][0], gappy.volume[gappy.ts == t1][0]
    straight_line = v0 + (v1 - v0) * (est.ts[profile] - t0) / (t1 - t0)
    # The meter's own diurnal profile follows its use far better than a straight line.
    assert np.abs(est.volume[profile] - truth[profile]).mean() < 0.5 * np.abs(straight_line - truth[profile]).mean()
    assert np.abs(est.volume[linear] - truth[linear]).max() < 0.05


def test_an_estimate_written_long_after_its_time_is_not_a_late_arrival():
    config = VeeConfig()
    ts = T0 + np.arange(3, dtype=np.float64) * 3600.0
    late = ts + 500.0 * 86400
    quality = np.array(["actual", "estimated", "actual"])
    series = Series.from_arrays(
        ["M"],
        np.zeros(3, np.int64),
        ts,
        np.array([1.0, 1.01, 1.02]),
        config,
        flow=np.full(3, 0.01),
        received=late,
        quality=quality,
    )
    flagged = validate(series, config, NOW).masks["far_past_timestamp"]
    assert flagged.tolist() == [True, False, True]


def test_profile_estimates_keep_local_hours_across_a_change_to_summer_time():
    """A household in London uses water by its local clock. Three weeks of history in winter (UTC
    +0), then a long gap in the first days of summer time (UTC +1): the profile estimate follows
    the local hours, where one keyed by UTC hours put the morning peak an hour late."""
    from zoneinfo import ZoneInfo

    london = ZoneInfo("Europe/London")
    config = VeeConfig()
    start = datetime(2026, 3, 7, tzinfo=UTC).timestamp()  # three weeks before 29 March, 01:00 UTC
    ts = (start + np.arange(26 * 24) * 3600.0).astype(np.float64)
    local_hour = np.array([datetime.fromtimestamp(t - 1, london).hour for t in ts])
    volume = np.round(100.0 + np.cumsum(0.05 * SHAPE[local_hour]), 3)
    gap = (ts > datetime(2026, 3, 30, 2, tzinfo=UTC).timestamp()) & (
        ts < datetime(2026, 3, 31, 20, tzinfo=UTC).timestamp()
    )
    keep = ~gap
    series = Series.from_arrays(
        ["HOUSE"],
        np.zeros(int(keep.sum()), np.int64),
        ts[keep],
        volume[keep],
        config,
        flow=np.full(int(keep.sum()), 0.05),
    )
    validation = validate(series, config, float(ts[-1]))
    truth = dict(zip(ts[gap].tolist(), volume[gap].tolist(), strict=True))

    def error(zone: tzinfo) -> float:
        est = estimate(series, validation, config, zone)
        assert (est.method == "profile").all() and sorted(est.ts.tolist()) == sorted(truth)
        return float(np.abs(est.volume - np.array([truth[t] for t in est.ts])).mean())

    local, by_utc = error(london), error(UTC)
    assert local < 0.002  # within two litres on average: the shape itself, rounded to the litre
    assert by_utc > 5 * local


def _one_meter(volume: list[float], *, hours: list[float] | None = None, flow: list[float] | None = None,
               alarms_reverse: list[bool] | None = None, quality: list[str] | None = None) -> Series:  # fmt: skip
    n = len(volume)
    ts = T0 + np.array(hours if hours is not None else range(n), dtype=np.float64) * 3600.0
    return Series.from_arrays(
        ["M"], np.zeros(n, np.int64), ts, np.array(volume), VeeConfig(),
        flow=np.array(flow if flow is not None else [0.01] * n),
        reverse_alarm=np.array(alarms_reverse if alarms_reverse is not None else [False] * n),
        quality=np.array(quality if quality is not None else ["actual"] * n),
    )  # fmt: skip


def test_a_gap_closed_by_a_read_ahead_of_the_clock_is_not_estimated_up_to_it():
    """A meter's clock ten hours fast: the gap before its read was estimated up to the false time,
    nine estimates after the round's 'now'."""
    series = _one_meter([1.0, 1.01, 1.1], hours=[0, 1, 12])
    now = T0 + 2 * 3600.0
    hourly = read_intervals(series, VeeConfig(), stored=np.array([3600.0]))  # as earlier rounds found it
    validation = validate(series, VeeConfig(), now, intervals=hourly)
    assert validation.masks["future_timestamp"].tolist() == [False, False, True]
    estimates = estimate(series, validation, VeeConfig())
    assert estimates.ts.size == 0 and estimates.not_estimated.tolist() == [2]


def test_a_gap_opened_by_a_read_long_before_its_arrival_is_not_estimated_from_it():
    """The read opening the gap arrived 500 days after its timestamp (far_past_timestamp): its time
    is wrong, so it anchors no estimate, as a read ahead of the clock closing a gap does not."""
    config = VeeConfig()
    hours = np.array([0, 1, 2, 3, 4, 5, 10, 11], dtype=np.float64)
    ts = T0 + hours * 3600.0
    received = ts.copy()
    received[5] += 500 * 86400.0
    series = Series.from_arrays(
        ["M"], np.zeros(8, np.int64), ts, 100.0 + hours * 0.01, config, flow=np.full(8, 0.01), received=received
    )
    validation = validate(series, config, float(received.max()) + 60)
    assert validation.flagged("far_past_timestamp").tolist() == [5]
    assert validation.flagged("gap").tolist() == [6]  # 05:00 to 10:00, opened by the mistimed read
    estimates = estimate(series, validation, config)
    assert estimates.ts.size == 0 and estimates.not_estimated.tolist() == [6]
    timely = Series.from_arrays(
        ["M"], np.zeros(8, np.int64), ts, 100.0 + hours * 0.01, config, flow=np.full(8, 0.01), received=ts
    )
    assert estimate(timely, validate(timely, config, float(ts[-1])), config).ts.size == 4  # 06:00 … 09:00


def test_a_step_back_no_flow_could_make_in_the_time_is_no_reverse_flow():
    """A 400 m³ step back in an hour with the meter's reverse alarm on (a replacement whose register
    starts at 100 m³) was taken for reverse flow: -400 m³ of consumption, flagged nowhere."""
    series = _one_meter([500.0, 500.01, 100.0], alarms_reverse=[False, False, True])
    validation = validate(series, VeeConfig(), NOW)
    assert not validation.masks["reverse_flow"][2] and validation.masks["register_backwards"][2]
    small = _one_meter([500.0, 500.01, 500.0], alarms_reverse=[False, False, True])  # 10 L back: it is
    assert validate(small, VeeConfig(), NOW).masks["reverse_flow"][2]


def test_a_drop_of_the_tolerance_itself_is_within_it_whatever_the_register():
    """In float, 100.0005 - 100.0000 is a hair over 0.0005: VEE flagged the drop the database counts
    as within the tolerance, and the day went unknown; at 12.3455 the same drop passed."""
    for high, low in ((100.0005, 100.0), (12.3455, 12.345)):
        validation = validate(_one_meter([high - 0.001, high, low, low + 0.001]), VeeConfig(), NOW)
        assert not validation.masks["register_backwards"].any(), (high, low)


def test_vee_s_own_estimate_is_not_flagged_over_the_meter_s_maximum_flow():
    """A profile puts a gap's use into its busy hours: the rerun flagged the estimate it had written."""
    series = _one_meter([1.0, 7.5, 8.0], quality=["actual", "estimated", "actual"])
    assert not validate(series, VeeConfig(), NOW).masks["over_max_flow"].any()
    measured = _one_meter([1.0, 7.5, 8.0])
    assert validate(measured, VeeConfig(), NOW).masks["over_max_flow"][1]


@pytest.mark.parametrize("flow", [0.0, np.nan], ids=["zero", "not_reported"])
def test_a_flat_register_without_flow_is_a_vacant_property_not_a_stuck_register(flow):
    """Twelve hours at one register with the meter reporting no flow: nobody uses water there (a
    vacant property), which is no fault. With flow reported the same register is stuck."""
    config = VeeConfig()
    vacant = _one_meter([250.0] * 12, flow=[flow] * 12)
    assert not validate(vacant, config, NOW).masks["stuck_register"].any()
    flowing = _one_meter([250.0] * 12, flow=[0.02] * 12)
    assert validate(flowing, config, NOW).masks["stuck_register"][1:].all()


def test_a_drop_from_the_top_of_the_register_to_near_zero_faster_than_the_meter_flows_is_a_replacement():
    """99 990.02 m³ to 0.5 m³ in an hour: as a rollover of the 5-digit register it would be 10.48 m³
    in the hour, over the meter's maximum flow (5 m³/h); a new meter reading 0.5 m³ explains it.
    The same drop over three hours fits the maximum flow: a rollover."""
    config = VeeConfig()
    swapped = validate(_one_meter([99_990.0, 99_990.02, 0.5, 0.52]), config, NOW)
    assert swapped.step_kind.tolist() == ["", "", "replacement", ""]
    assert swapped.step_consumption[2] == pytest.approx(0.5)
    assert not swapped.masks["rollover"].any() and swapped.masks["replacement"].tolist() == [False, False, True, False]
    rolled = validate(_one_meter([99_990.0, 99_990.02, 0.5, 0.52], hours=[0, 1, 4, 5]), config, NOW)
    assert rolled.step_kind.tolist() == ["", "", "rollover", ""]
    assert rolled.step_consumption[2] == pytest.approx(10.48)
