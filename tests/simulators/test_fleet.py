"""The fleet generator's contract: shapes and names, the inlet balance, registers, ground truth, files."""

from __future__ import annotations

import csv
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulators.fleet import Fleet, FleetSpec, generate_fleet
from simulators.ground_truth import GroundTruthEvent, read_ground_truth

EVENTFUL: dict[str, Any] = dict(
    leak_fraction=0.05,
    burst_fraction=0.02,
    reverse_flow_fraction=0.02,
    stuck_fraction=0.02,
    tamper_fraction=0.02,
    replacement_fraction=0.02,
    rollover_fraction=0.02,
    clock_drift_fraction=0.02,
)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(
        FleetSpec(meters=450, days=21, meters_per_dma=200, dma_bursts=3, seed=11, keep_components=True, **EVENTFUL)
    )


def index_of(fleet: Fleet, meter_id: str) -> int:
    return int(np.flatnonzero(fleet.meter_ids == meter_id)[0])


def ts_index(fleet: Fleet, t: datetime) -> int:
    """First reading at or after ``t``."""
    return int(np.searchsorted(fleet.timestamps, np.datetime64(t.replace(tzinfo=None), "s")))


def explained_falls(fleet: Fleet) -> set[str | None]:
    """Meters whose register may fall: reverse flow, replacement, rollover, and the inlet of a DMA
    where water flowed back (in a tiny DMA it can outweigh the demand)."""
    meters = {e.meter_id for e in fleet.ground_truth if e.event in ("reverse_flow", "replacement", "rollover")}
    inlets = {f"{e.dma}-INLET" for e in fleet.ground_truth if e.event == "reverse_flow"}
    return meters | inlets


def test_names_shapes_and_roles(fleet: Fleet) -> None:
    assert fleet.volume_m3.shape == (453, 21 * 24)
    assert fleet.meter_ids[0] == "M000001" and fleet.meter_ids[449] == "M000450"
    assert list(fleet.meter_ids[450:]) == ["DMA001-INLET", "DMA002-INLET", "DMA003-INLET"]
    assert list(fleet.role[448:]) == ["customer", "customer", "inlet", "inlet", "inlet"]
    assert fleet.dma[0] == "DMA001" and fleet.dma[200] == "DMA002" and fleet.dma[449] == "DMA003"
    assert list(fleet.dma[450:]) == ["DMA001", "DMA002", "DMA003"]
    assert fleet.timestamps.dtype == np.dtype("datetime64[s]")
    assert fleet.timestamps[0] == np.datetime64("2026-01-05T00:00:00")
    assert set(np.diff(fleet.timestamps).astype(int)) == {3600}


def test_registers_are_quantized(fleet: Fleet) -> None:
    counts = fleet.volume_m3 * 1000
    assert np.all(np.abs(counts - np.round(counts)) < 1e-6)


def test_inlet_minus_customers_is_leakage_plus_bursts(fleet: Fleet) -> None:
    comp = fleet.components
    assert comp is not None
    for d, dma in enumerate(comp.dma_names):
        inlet = fleet.volume_m3[index_of(fleet, f"{dma}-INLET")]
        customers = comp.customer_m3[fleet.dma[: comp.customer_m3.shape[0]] == dma].sum(axis=0)
        network = np.cumsum(comp.leakage_m3[d] + comp.dma_burst_m3[d])
        # The inlet's register advance, less what its customers really took, is what the mains lost,
        # to within the inlet register's resolution.
        lost = (inlet[1:] - inlet[0]) - np.cumsum(customers)
        assert np.all(np.abs(lost - network) <= 0.001 + 1e-6)
        assert np.all(comp.leakage_m3[d] > 0)


def test_dma_bursts_are_in_the_network_flow_from_their_start(fleet: Fleet) -> None:
    comp = fleet.components
    assert comp is not None
    bursts = [e for e in fleet.ground_truth if e.event == "dma_burst"]
    assert len(bursts) == 3
    for e in bursts:
        assert e.meter_id is None
        d = int(np.flatnonzero(comp.dma_names == e.dma)[0])
        k = ts_index(fleet, e.start)
        end = len(fleet.timestamps) - 1 if e.end is None else ts_index(fleet, e.end) - 1
        if end > k + 1:
            assert np.all(comp.dma_burst_m3[d, k : end - 1] >= e.size / 1000.0 * (1 - 1e-9))
        inlet_mean_m3h = np.diff(fleet.volume_m3[index_of(fleet, f"{e.dma}-INLET")]).mean()
        assert e.size / 1000.0 >= 0.03 * inlet_mean_m3h * 0.9


def test_registers_are_monotonic_except_where_the_ground_truth_says(fleet: Fleet) -> None:
    steps = np.diff(fleet.volume_m3, axis=1)
    falling = set(fleet.meter_ids[np.unique(np.nonzero(steps < 0)[0])].tolist())
    assert falling <= explained_falls(fleet)
    assert falling  # the fleet does have such events, and they show


def test_leaks_hold_the_register_up_every_hour(fleet: Fleet) -> None:
    leaks = [e for e in fleet.ground_truth if e.event == "leak"]
    assert len(leaks) == round(0.05 * 450)
    assert all(2.0 <= e.size <= 200.0 for e in leaks)
    for e in leaks:
        i = index_of(fleet, e.meter_id or "")
        k = ts_index(fleet, e.start)
        end = len(fleet.timestamps) if e.end is None else ts_index(fleet, e.end)
        hourly = np.diff(fleet.volume_m3[i, k:end])
        assert np.all(hourly >= e.size / 1000.0 - 0.001 - 1e-9)


def test_stuck_registers_do_not_move(fleet: Fleet) -> None:
    for e in (e for e in fleet.ground_truth if e.event == "stuck"):
        row = fleet.volume_m3[index_of(fleet, e.meter_id or ""), ts_index(fleet, e.start) :]
        assert np.all(row == row[0])


def test_replacements_and_rollovers_drop_the_register_at_their_time(fleet: Fleet) -> None:
    for e in (e for e in fleet.ground_truth if e.event in ("replacement", "rollover")):
        assert e.end == e.start
        i, k = index_of(fleet, e.meter_id or ""), ts_index(fleet, e.start)
        before, after = fleet.volume_m3[i, k - 1], fleet.volume_m3[i, k]
        assert after < before
        if e.event == "rollover":
            assert e.size == 100_000.0 and before > 99_000.0 and after < 1_000.0


def test_ground_truth_is_within_the_data_and_complete(fleet: Fleet) -> None:
    first = datetime(2026, 1, 5, tzinfo=UTC)
    last = first + timedelta(days=21) - timedelta(hours=1)
    kinds = {e.event for e in fleet.ground_truth}
    assert kinds == {
        "leak",
        "burst",
        "reverse_flow",
        "stuck",
        "tamper",
        "replacement",
        "rollover",
        "clock_drift",
        "dma_burst",
    }
    for e in fleet.ground_truth:
        assert first <= e.start <= last
        assert e.end is None or e.start <= e.end <= last
    assert [e.start for e in fleet.ground_truth] == sorted(e.start for e in fleet.ground_truth)


def test_distractors_are_there(fleet: Fleet) -> None:
    assert fleet.customer_class is not None
    use = np.diff(fleet.volume_m3, axis=1)
    faulty = {e.meter_id for e in fleet.ground_truth}
    clean = np.array([m not in faulty for m in fleet.meter_ids]) & (fleet.role == "customer")
    sunday = (fleet.timestamps[:-1].astype("datetime64[D]").astype(int) + 3) % 7 == 6
    commercial = clean & (fleet.customer_class == "commercial")
    assert commercial.sum() > 0
    assert np.all(use[np.ix_(commercial, sunday)] == 0)  # closed on Sundays
    irrigation = clean & (fleet.customer_class == "irrigation")
    hour = fleet.timestamps[:-1].astype("datetime64[h]").astype(int) % 24
    at5 = use[np.ix_(irrigation, hour == 5)]
    assert (at5 > 0.15).mean() > 0.2  # irrigation mornings: large, regular flows
    daily = use[clean].sum(axis=1) / 21
    assert daily.max() > 4 * np.median(daily)  # heavy users
    zero_days = (use[clean][:, : 20 * 24].reshape(clean.sum(), 20, 24).sum(axis=2) == 0).sum(axis=1)
    residential = fleet.customer_class[clean] != "commercial"
    assert np.any(zero_days[residential] >= 4)  # a household away on holiday


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    spec = FleetSpec(meters=120, days=3, meters_per_dma=50, seed=3, dma_bursts=1, **EVENTFUL)
    a, b = generate_fleet(spec), generate_fleet(spec)
    np.testing.assert_array_equal(a.volume_m3, b.volume_m3)
    assert a.ground_truth == b.ground_truth
    c = generate_fleet(FleetSpec(meters=120, days=3, meters_per_dma=50, seed=4, dma_bursts=1, **EVENTFUL))
    assert not np.array_equal(a.volume_m3, c.volume_m3)


def test_missing_reads_are_nan_and_left_out_of_the_csv(tmp_path: Path) -> None:
    f = generate_fleet(FleetSpec(meters=60, days=2, interval_minutes=15, missing_read_fraction=0.1, seed=2))
    missing = np.isnan(f.volume_m3)
    assert 0.05 < missing.mean() < 0.15
    f.write_readings_csv(tmp_path / "r.csv")
    with (tmp_path / "r.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == (~missing).sum()
    assert rows[0]["ts"] == "2026-01-05T00:00:00Z" or rows[0]["ts"].endswith("Z")
    first = rows[0]
    i = index_of(f, first["meter_id"])
    k = ts_index(f, datetime.fromisoformat(first["ts"].replace("Z", "+00:00")))
    assert float(first["volume_m3"]) == f.volume_m3[i, k]


def test_backward_registers_count_reverse_flow_while_the_household_is_not_drawing(tmp_path: Path) -> None:
    """The backward register moves only in reverse-flow events, never faster than the flow, at the
    full flow in intervals without use; and having it changes nothing else in the fleet."""
    spec = FleetSpec(meters=300, days=7, meters_per_dma=150, seed=7, missing_read_fraction=0.02, **EVENTFUL)
    with_backward = generate_fleet(dataclasses.replace(spec, reverse_registers=True, keep_components=True))
    plain = generate_fleet(spec)
    np.testing.assert_array_equal(plain.volume_m3, with_backward.volume_m3)
    assert plain.reverse_m3 is None and with_backward.reverse_m3 is not None
    back = with_backward.reverse_m3
    np.testing.assert_array_equal(np.isnan(back[: spec.meters]), np.isnan(with_backward.volume_m3[: spec.meters]))
    assert np.isnan(back[spec.meters :]).all()  # inlets keep none
    step_l = np.diff(back, axis=1) * 1000.0
    assert np.nanmin(step_l) > -1e-6  # never falls
    reverse = {e.meter_id: e for e in with_backward.ground_truth if e.event == "reverse_flow"}
    assert reverse
    moving = {str(m) for m in with_backward.meter_ids[np.flatnonzero(np.nansum(step_l, axis=1) > 0)]}
    assert moving <= set(reverse)
    components = with_backward.components
    assert components is not None
    hours = (with_backward.timestamps - with_backward.timestamps[0]).astype(np.int64) / 3600.0
    idle_checked = 0
    for meter_id, event in reverse.items():
        row = index_of(with_backward, str(meter_id))
        t0 = (np.datetime64(event.start.replace(tzinfo=None), "s") - with_backward.timestamps[0]).astype(
            np.int64
        ) / 3600
        t1 = (
            hours[-1]
            if event.end is None
            else (np.datetime64(event.end.replace(tzinfo=None), "s") - with_backward.timestamps[0]).astype(np.int64)
            / 3600
        )
        overlap = np.clip(np.minimum(hours[1:], t1) - np.maximum(hours[:-1], t0), 0.0, 1.0)
        flow_l = event.size * overlap
        known = ~np.isnan(step_l[row])
        assert np.all(step_l[row][known] <= flow_l[known] + 1.0 + 1e-6)  # a 1-litre register step
        use_l = components.customer_m3[row] * 1000.0 + flow_l  # the true net plus what went back
        idle = known & (use_l < 1e-9) & (overlap == 1.0)
        assert np.all(np.abs(step_l[row][idle] - flow_l[idle]) <= 1.0 + 1e-6)
        idle_checked += int(idle.sum())
    assert idle_checked > 10
    with pytest.raises(ValueError, match="use_flow_lph"):
        FleetSpec(meters=1, days=1, use_flow_lph=0.0)
    with_backward.write_readings_csv(tmp_path / "r.csv")
    with (tmp_path / "r.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    first = next(r for r in rows if r["meter_id"] == next(iter(reverse)) and float(r["reverse_volume_m3"] or 0) > 0)
    i = index_of(with_backward, first["meter_id"])
    k = ts_index(with_backward, datetime.fromisoformat(first["ts"].replace("Z", "+00:00")))
    assert float(first["reverse_volume_m3"]) == back[i, k]
    assert all(r["reverse_volume_m3"] == "" for r in rows if r["meter_id"].endswith("-INLET"))


def test_meters_and_ground_truth_files(tmp_path: Path, fleet: Fleet) -> None:
    fleet.write_meters_csv(tmp_path / "m.csv")
    with (tmp_path / "m.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["meter_id", "dma", "role"]
    assert rows[-1] == ["DMA003-INLET", "DMA003", "inlet"]
    fleet.write_ground_truth(tmp_path / "gt.json")
    raw = json.loads((tmp_path / "gt.json").read_text())
    assert set(raw[0]) == {"event", "meter_id", "dma", "start", "end", "size"}
    assert raw[0]["start"].endswith("Z")
    assert read_ground_truth(tmp_path / "gt.json") == fleet.ground_truth


def test_ground_truth_event_validates() -> None:
    t = datetime(2026, 1, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        GroundTruthEvent("flood", "M1", "DMA001", t, None, 0.0)
    with pytest.raises(ValueError):
        GroundTruthEvent("dma_burst", "M1", "DMA001", t, None, 1.0)
    with pytest.raises(ValueError):
        GroundTruthEvent("leak", "M1", "DMA001", t, t - timedelta(1), 1.0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    meters=st.integers(1, 150),
    days=st.integers(1, 4),
    interval=st.sampled_from([5, 15, 30, 60, 120, 1440]),
    per_dma=st.integers(1, 80),
    seed=st.integers(0, 2**31),
    bursts=st.integers(0, 3),
)
def test_fleet_properties(meters, days, interval, per_dma, seed, bursts):
    assume(days * 1440 // interval >= 2)
    spec = FleetSpec(
        meters=meters,
        days=days,
        interval_minutes=interval,
        meters_per_dma=per_dma,
        seed=seed,
        dma_bursts=bursts,
        keep_components=True,
        **EVENTFUL,
    )
    f = generate_fleet(spec)
    n_dma = -(-meters // per_dma)
    assert f.volume_m3.shape == (meters + n_dma, days * 1440 // interval)
    comp = f.components
    assert comp is not None
    inlets = f.volume_m3[meters:]
    customers = np.stack([comp.customer_m3[f.dma[:meters] == d].sum(axis=0) for d in comp.dma_names])
    lost = (inlets[:, 1:] - inlets[:, :1]) - np.cumsum(customers, axis=1)
    np.testing.assert_allclose(lost, np.cumsum(comp.leakage_m3 + comp.dma_burst_m3, axis=1), atol=0.001 + 1e-6)
    falling = set(f.meter_ids[np.unique(np.nonzero(np.diff(f.volume_m3, axis=1) < 0)[0])].tolist())
    assert falling <= explained_falls(f)
    assert sum(e.event == "dma_burst" for e in f.ground_truth) == bursts
