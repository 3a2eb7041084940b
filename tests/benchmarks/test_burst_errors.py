"""The burst error report runs the leak and burst detectors alone, and must give the full benchmark's figures."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_detection import block_of, labelled_fleet_spec, score_fleet
from benchmarks.burst_errors import _Deviations, config_with, event_lines, late, look_alike_lines, run_seed
from collector.detection.alerts import Alert
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from collector.detection.flows import DayLayout, interval_flows
from simulators.fleet import generate_fleet

SEED, METERS, DAYS = 12, 2_000, 16


def _id(alert: Alert) -> str:
    return alert.alert_id


def test_the_detectors_alone_give_the_benchmarks_burst_alerts_and_figures() -> None:
    config = DetectionConfig()
    run = run_seed(SEED, meters=METERS, days=DAYS, config=config)
    fleet = generate_fleet(labelled_fleet_spec(METERS, DAYS, SEED))
    engine = run_detection(block_of(fleet), config).alerts
    assert sorted(run.alerts, key=_id) == sorted((a for a in engine if a.kind.value == "burst"), key=_id)
    [row] = [r for r in score_fleet(fleet, engine, config) if r.label.startswith("customer burst")]
    assert len(run.matches) >= 5, "too few bursts after the warm-up to compare anything"
    assert (len(run.matches), run.found) == (row.score.events, row.score.detected)
    assert len(run.false) == row.score.false_alarms


def test_the_bursts_listed_are_those_raised_late_or_not_at_all() -> None:
    """With the time-of-day rules off (``--set``, a threshold tried), a burst of the small fleet is
    raised late: it, and only the bursts raised late, are listed, four lines each."""
    off = config_with(["burst_slot_factor=0", "burst_z=0", "burst_pair_z=0"])
    assert (off.burst_slot_factor, off.burst_z, off.burst_pair_z) == (0.0, 0.0, 0.0)
    run = run_seed(SEED, meters=METERS, days=DAYS, config=off)
    missed = [
        m for m, due in zip(run.matches, run.deadlines, strict=True) if m.alert is None or m.alert.detected_at > due
    ]
    assert missed, "the time-of-day rules catch a burst in time that nothing else does"
    assert [run.matches[i] for i in late(run)] == missed
    lines = event_lines(run, off)
    heads = [line for line in lines if line.startswith("  M")]
    assert [line.split()[0] for line in heads] == [str(m.event.meter_id) for m in missed]
    assert len(lines) == 4 * len(missed)
    alike = look_alike_lines(run, off)
    assert [line.split()[0] for line in alike] == [str(m.event.meter_id) for m in missed]
    assert all("ordinary meter-days alike: " in line and "; by deviations (" in line for line in alike)


def test_an_ordinary_interval_is_alike_by_deviations_to_itself_and_to_no_fewer_than_one_further_up() -> None:
    """The deviations look-alikes of an ordinary meter's interval above ``burst_min_l_h``, taken as a
    burst's first whole interval: it counts itself, and one at least as far above its time of day,
    its window before at least as far above its own, has no more of them."""
    config = DetectionConfig()
    run = run_seed(SEED, meters=METERS, days=DAYS, config=config)
    block = run.customers
    flows = interval_flows(block, config)
    f = flows.flow_l_h.copy()
    f[flows.spread] = np.nan
    ordinary = np.array([m not in run.faulty for m in block.meter_ids.tolist()])
    days = DayLayout.of(block).to_days(f, fill=np.nan).shape[1]
    deviations = _Deviations(block, flows.flow_l_h, f, np.repeat(ordinary[:, None], days, axis=1), config, 1)
    picked = [int(i) for i in np.argsort(deviations.z)[-20:] if np.isfinite(deviations.z_before[i])]
    assert len(picked) >= 10, "too few ordinary intervals above the burst floor to compare"
    measured = []
    for i in picked:
        z, z_before, alike = deviations.alike(
            int(deviations.rows[i]), int(deviations.days[i]), int(deviations.slots[i])
        )
        assert (z, z_before) == (deviations.z[i], deviations.z_before[i])
        assert alike is not None and alike >= 1  # itself
        measured.append((z, z_before, alike))
    for z, z_before, alike in measured:
        for z2, z2_before, alike2 in measured:
            if z2 >= z and z2_before >= z_before:
                assert alike2 <= alike
