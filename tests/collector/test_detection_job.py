"""Detection over the database: a leak becomes one open alert, and later runs update it, never duplicate it."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg import sql

import collector.detection_job as detection_job
from collector.alert_store import alerts_for, alerts_to_merge, dismiss_alert, save_changes
from collector.batch_parser import ReadingRow
from collector.detection.alerts import Alert, AlertKind, AlertSource, AlertStatus, make_alert_id
from collector.detection.common import new_alert
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.lifecycle import AlertChanges, merge_alerts
from collector.detection_job import DetectionJobConfig, DetectionScheduler, fetch_block, grid_end, run_detection_once
from collector.store import ReadingStore
from collector.vee.runner import run_vee
from server.meters.repository import register_meters
from simulators.events import Burst, Leak, ReverseFlow
from simulators.meter_model import MeterModel
from tests.collector.test_detection_households import add_flow, at_hour, business, registers
from tests.services import free_port

START = datetime(2026, 3, 2, tzinfo=UTC)
LEAK_START = START + timedelta(days=6, hours=3)
LEAKY = "DJ-007"


def fleet() -> list[MeterModel]:
    meters = [MeterModel(f"DJ-{i:03d}", installed=START - timedelta(days=1), seed=11, dma="D1") for i in range(20)]
    meters[7].inject(Leak(start=LEAK_START, rate_lph=25.0))
    return meters


def store_hours(
    database_url: str, meters: list[MeterModel], first: int, last: int, alarms: dict[str, range] | None = None
) -> None:
    """The meters' reads of hours [first, last); ``alarms``: a meter's ``leak`` bit on in those hours."""
    rows: list[ReadingRow] = []
    alarms = alarms or {}
    for meter in meters:
        for hour in range(first, last):
            reading = meter.read(START + timedelta(hours=hour))
            bits = ["leak"] if hour in alarms.get(meter.meter_id, ()) else []
            rows.append(
                (meter.meter_id, reading.ts.isoformat(), repr(reading.volume_m3), reading.flow_m3h, None,
                 bits, "gw-test", hour)
            )  # fmt: skip
    ReadingStore(database_url).write(rows)


@pytest.fixture
def leaky_database(migrated_database_url: str) -> str:
    meters = fleet()
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(migrated_database_url, meters, 0, 9 * 24)
    return migrated_database_url


def test_the_block_holds_each_meters_register_on_the_hour_grid(leaky_database):
    now = START + timedelta(days=9, minutes=30)
    with psycopg.connect(leaky_database) as conn:
        block = fetch_block(conn, now, _job_config())
    assert block.n_meters == 20
    assert block.time(block.n_intervals - 1) == grid_end(now, timedelta(hours=1)) == START + timedelta(days=9)
    row = list(block.meter_ids).index(LEAKY)
    hour_100 = list(block.timestamps).index(block.timestamps[0] + (START + timedelta(hours=100) - block.time(0)))
    assert block.volume_m3[row, hour_100] == fleet()[7].read(START + timedelta(hours=100)).volume_m3


@pytest.mark.parametrize(
    ("zone", "hours"),
    [("UTC", 0), ("Australia/Sydney", 10), ("Australia/Adelaide", 10), ("America/New_York", -5), ("Asia/Kolkata", 6)],
)
def test_the_block_s_days_are_the_utility_s_local_days(leaky_database, zone, hours):
    """Detection learns a household's nights and weekends by day: the block's days begin at the
    utility's standard-time midnight, to the nearest whole hour on hourly reads (Adelaide's +9:30,
    Kolkata's +5:30). They began at UTC midnight wherever the utility was."""
    with psycopg.connect(leaky_database, autocommit=True) as conn:
        conn.execute("SELECT set_utility_timezone(%s)", (zone,))
        block = fetch_block(conn, START + timedelta(days=9), _job_config())
    assert block.day_offset_s == hours * 3600


def test_a_leak_opens_one_alert_that_later_runs_update(leaky_database):
    first_run = START + timedelta(days=9)
    with psycopg.connect(leaky_database) as conn:
        changes = run_detection_once(conn, first_run, _job_config())
        opened = [a for a in changes.opened if a.kind is AlertKind.LEAK]
        assert [a.meter_id for a in opened] == [LEAKY]
        assert abs(opened[0].start - LEAK_START) <= timedelta(hours=2)
        assert 15 <= opened[0].rate_l_h <= 35

    store_hours(leaky_database, fleet(), 9 * 24, 9 * 24 + 2)  # the leak goes on, an hour later
    with psycopg.connect(leaky_database) as conn:
        later = run_detection_once(conn, first_run + timedelta(hours=1), _job_config())
        assert not [a for a in later.opened if a.kind is AlertKind.LEAK]
        leaks = [a for a in alerts_for(conn, LEAKY) if a.kind is AlertKind.LEAK]
        assert len(leaks) == 1
        assert leaks[0].alert_id == opened[0].alert_id
        assert leaks[0].status is AlertStatus.ONGOING
        assert leaks[0].last_seen > opened[0].last_seen
        assert leaks[0].volume_l > opened[0].volume_l
        others = conn.execute("SELECT count(*) FROM alerts WHERE kind = 'leak' AND meter_id <> %s", (LEAKY,))
        assert others.fetchone() == (0,)


def test_a_leak_on_a_meter_taken_out_resolves_at_the_removal_and_its_enquiry_says_so(leaky_database):
    first_run = START + timedelta(days=9)
    with psycopg.connect(leaky_database) as conn:
        (leak,) = [a for a in run_detection_once(conn, first_run, _job_config()).opened if a.kind is AlertKind.LEAK]
    taken_out = first_run + timedelta(minutes=20)
    with psycopg.connect(leaky_database, autocommit=True) as conn:
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP-DJ7', 'D1')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) VALUES "
            "('SP-DJ7', %s, %s, %s)",
            (LEAKY, START - timedelta(days=30), taken_out),
        )
        changes = run_detection_once(conn, first_run + timedelta(hours=1), _job_config())
        (resolved,) = [a for a in changes.resolved if a.alert_id == leak.alert_id]
        assert resolved.ended_at == resolved.resolved_at == taken_out
        (stored,) = [a for a in alerts_for(conn, LEAKY) if a.kind is AlertKind.LEAK]
        assert stored.status is AlertStatus.RESOLVED
        notes = conn.execute(
            "SELECT u.note FROM enquiry_updates u JOIN enquiries e USING (enquiry_id) WHERE e.alert_id = %s "
            "ORDER BY u.update_id",
            (leak.alert_id,),
        ).fetchall()
        assert notes[-1][0].startswith(f"alert resolved: meter {LEAKY} taken out (")
        # the others' alerts are the detectors' to resolve: "the flow stopped"
        assert not [a for a in changes.resolved if a.meter_id != LEAKY and a.kind is AlertKind.LEAK]


def test_a_meter_registered_as_bulk_is_one_in_the_block_and_its_continuous_flow_opens_no_leak(leaky_database):
    """Meterization registers the leaking meter as a bulk meter (a block of flats, whose flow never
    stops): the job's block says so, and its continuous flow is no leak."""
    with psycopg.connect(leaky_database, autocommit=True) as conn:
        register_meters(conn, [(m.meter_id, "D1", "customer") for m in fleet()], bulk={LEAKY})
    first_run = START + timedelta(days=9)
    with psycopg.connect(leaky_database) as conn:
        block = fetch_block(conn, first_run, _job_config())
        assert block.meter_ids[block.is_bulk].tolist() == [LEAKY]
        changes = run_detection_once(conn, first_run, _job_config())
    assert [a for a in changes.opened if a.meter_id == LEAKY] == []


def test_the_block_leaves_out_what_vee_estimated(leaky_database):
    """VEE fills a gap of missing reads with estimates for billing; the detectors see the gap as a gap
    (its flow spread evenly, no evidence of flow), so the block is the same before and after VEE ran."""
    now = START + timedelta(days=9)
    gap = (START + timedelta(hours=100), START + timedelta(hours=104))
    with psycopg.connect(leaky_database, autocommit=True) as conn:
        lost = conn.execute(
            "DELETE FROM readings WHERE meter_id IN ('DJ-003', 'DJ-007') AND ts >= %s AND ts <= %s", gap
        ).rowcount
        before = fetch_block(conn, now, _job_config())
        report = run_vee(conn, START, now, now=now)
        after = fetch_block(conn, now, _job_config())
    assert lost == 10 and report.estimates == 10  # every missing read was estimated
    cells = [list(before.timestamps).index(np.datetime64(t.replace(tzinfo=None), "s")) for t in gap]
    for meter in ("DJ-003", "DJ-007"):
        row = list(before.meter_ids).index(meter)
        assert np.isnan(after.volume_m3[row, cells[0] : cells[1] + 1]).all()
    np.testing.assert_array_equal(after.volume_m3, before.volume_m3)  # NaN where NaN


def test_the_block_takes_the_last_reading_of_each_interval_and_the_alarms_of_all_its_readings(
    migrated_database_url,
):
    """Off the grid, an interval (instant - step, instant] is stood for by its last reading, and an
    alarm is on there if any of its readings carried it: taken from the last reading only, a leak
    bit at :20 cleared at :50 was never raised (a 15-minute meter's tamper at :15 and :30, clear at
    :45, was stored in its readings and raised no alert). A reading on an instant is that
    interval's; readings of meters the database does not know, or from before the window, are left
    out."""
    now = START + timedelta(days=2)
    hour = timedelta(hours=1)
    readings = [  # (meter, when, register, alarms)
        ("OG-1", now - 3 * hour, "1.000", []),
        ("OG-1", now - 2 * hour - timedelta(minutes=40), "1.010", ["leak"]),
        ("OG-1", now - 2 * hour - timedelta(minutes=10), "1.020", []),
        ("OG-1", now - hour - timedelta(minutes=30), "1.030", ["tamper"]),
        ("OG-1", now, "1.040", ["dry", "burst"]),
        ("OG-1", now - timedelta(days=1, hours=1), "0.500", ["leak"]),  # the window's start: before it
        ("GHOST", now, "9.000", ["leak"]),
    ]
    rows: list[ReadingRow] = [
        (meter, at.isoformat(), volume, None, None, alarms, "gw-test", seq)
        for seq, (meter, at, volume, alarms) in enumerate(readings)
    ]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered, dma, role) VALUES ('OG-1', true, 'D1', 'customer')")
    ReadingStore(migrated_database_url).write(rows)
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("DELETE FROM meters WHERE meter_id = 'GHOST'")  # seen on the network, then removed
        block = fetch_block(conn, now, DetectionJobConfig(history_days=1))
    assert list(block.meter_ids) == ["OG-1"]
    assert block.time(0) == now - timedelta(days=1)
    t = block.n_intervals - 1
    assert block.volume_m3[0, t - 3 : t + 1].tolist() == [1.000, 1.020, 1.030, 1.040]
    assert np.isnan(block.volume_m3[0, : t - 3]).all()
    flagged = {name: np.flatnonzero(bits[0]).tolist() for name, bits in block.alarms.items() if bits[0].any()}
    assert flagged == {"leak": [t - 2], "tamper": [t - 1], "dry": [t], "burst": [t]}


def test_polls_on_the_hour_give_or_take_seconds_each_stand_for_their_own_hour(migrated_database_url):
    """A gateway polls each meter at its place before the hour; a busy bus puts some polls seconds
    after it. Each is its hour's read: taken strictly as (instant - step, instant], a poll 5 s late
    stood for the next hour, which then had two reads and the hour one gap. A read after the run's
    ``now`` is not used, whatever the allowance."""
    now = START + timedelta(days=2, seconds=30)
    offsets = [-360, 5, -2, 170, -90, 0, 12, -1, 60, -300, 3]  # seconds from each hour, oldest first
    rows: list[ReadingRow] = [
        ("PH-1", (now.replace(second=0) - timedelta(hours=len(offsets) - k, seconds=-off)).isoformat(),
         f"{1 + k / 100:.3f}", None, None, [], "gw-test", k)
        for k, off in enumerate(offsets)
    ]  # fmt: skip
    rows.append(("PH-1", (now + timedelta(seconds=1)).isoformat(), "9.000", None, None, [], "gw-test", 99))
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered, dma, role) VALUES ('PH-1', true, 'D1', 'customer')")
    ReadingStore(migrated_database_url).write(rows)
    with psycopg.connect(migrated_database_url) as conn:
        block = fetch_block(conn, now, DetectionJobConfig(history_days=1))
    t = block.n_intervals - 1
    assert block.volume_m3[0, t - len(offsets) : t].tolist() == [float(row[2]) for row in rows[:-1]]
    assert np.isnan(block.volume_m3[0, t])


def test_the_block_carries_backward_registers_and_reverse_flow_is_read_from_them(migrated_database_url):
    """Meters that report ``reverse_volume_m3`` have it in the block (NaN where a meter reports
    none), and a reverse flow is dated from it."""
    start = START + timedelta(days=5, hours=18, minutes=20)
    back = MeterModel("RV-001", installed=START - timedelta(days=1), seed=12, dma="D1")
    back.inject(ReverseFlow(start=start, end=start + timedelta(hours=6), rate_lph=40.0))
    plain = MeterModel("RV-002", installed=START - timedelta(days=1), seed=13, dma="D1")
    rows: list[ReadingRow] = []
    for hour in range(7 * 24):
        at = START + timedelta(hours=hour)
        for meter, keeps_backward in ((back, True), (plain, False)):
            r = meter.read(at)
            backward = repr(r.reverse_volume_m3) if keeps_backward else None
            rows.append((meter.meter_id, r.ts.isoformat(), repr(r.volume_m3), None, backward, [], "gw-test", hour))
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [("RV-001",), ("RV-002",)],
        )
    ReadingStore(migrated_database_url).write(rows)
    now = START + timedelta(days=7)
    with psycopg.connect(migrated_database_url) as conn:
        block = fetch_block(conn, now, DetectionJobConfig(history_days=6))
        assert block.reverse_m3 is not None
        row_back, row_plain = list(block.meter_ids).index("RV-001"), list(block.meter_ids).index("RV-002")
        assert np.isnan(block.reverse_m3[row_plain]).all()
        newest = block.n_intervals - 2  # the last hour stored
        assert block.time(newest) == now - timedelta(hours=1)
        assert block.reverse_m3[row_back, newest] == back.read(now - timedelta(hours=1)).reverse_volume_m3 > 0
        changes = run_detection_once(conn, now, DetectionJobConfig(history_days=6))
    (reverse,) = [a for a in changes.opened if a.kind is AlertKind.REVERSE_FLOW]
    assert reverse.meter_id == "RV-001"
    assert abs(reverse.start - start) <= timedelta(hours=1)
    assert reverse.rate_l_h == pytest.approx(40.0, rel=0.1)


def test_the_block_says_where_meterization_had_each_meter_in_its_place(migrated_database_url):
    """An interval (instant - step, instant] has the meter in place if any of it was: an exchange
    at 10:30 has the old meter and the new one both in place over 10:00-11:00. A meter taken out and
    put back has both stretches; one meterization never installed is in place throughout."""
    now = START + timedelta(days=2)
    hour = timedelta(hours=1)
    swap = now - 10 * hour - timedelta(minutes=30)
    out, back = now - 20 * hour, now - 15 * hour  # on the hour: out over the five intervals after the first
    installations = [
        ("SP-1", "EX-OLD", START - timedelta(days=30), swap),
        ("SP-1", "EX-NEW", swap, None),
        ("SP-2", "EX-BENCH", START - timedelta(days=30), out),
        ("SP-2", "EX-BENCH", back, None),
        ("SP-3", "EX-GONE", START - timedelta(days=400), START - timedelta(days=30)),  # long before the window
    ]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [("EX-OLD",), ("EX-NEW",), ("EX-BENCH",), ("EX-UNLISTED",), ("EX-GONE",)],
        )
        cur.executemany(
            "INSERT INTO service_points (service_point_id, dma, address) VALUES (%s, 'D1', 'Test Street')",
            [("SP-1",), ("SP-2",), ("SP-3",)],
        )
        cur.executemany(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
            "VALUES (%s, %s, %s, %s)",
            installations,
        )
        block = fetch_block(conn, now, DetectionJobConfig(history_days=1))
    assert block.installed is not None
    placed = dict(zip(block.meter_ids.tolist(), block.installed.tolist(), strict=True))
    t = block.n_intervals
    swap_col = t - 1 - 10  # the interval ending at 'now - 10 h', which the exchange falls in
    assert placed["EX-OLD"] == [True] * (swap_col + 1) + [False] * (t - swap_col - 1)
    assert placed["EX-NEW"] == [False] * swap_col + [True] * (t - swap_col)
    out_col, back_col = t - 1 - 20, t - 1 - 15  # the intervals ending at its removal and at its return
    assert placed["EX-BENCH"] == [True] * (out_col + 1) + [False] * (back_col - out_col) + [True] * (t - back_col - 1)
    assert placed["EX-UNLISTED"] == [True] * t
    assert "EX-GONE" not in placed  # taken out before the window, and not read in it


def test_a_dismissed_alert_stays_dismissed_with_who_and_why(leaky_database):
    now = START + timedelta(days=9)
    with psycopg.connect(leaky_database) as conn:
        alert = next(a for a in run_detection_once(conn, now, _job_config()).opened if a.meter_id == LEAKY)
        with conn.transaction():
            dismissed = dismiss_alert(conn, alert.alert_id, by="j.smith", reason="pool filling", now=now)
        assert dismissed is not None and dismissed.status is AlertStatus.DISMISSED
        run_detection_once(conn, now + timedelta(hours=1), _job_config())
        (stored,) = [a for a in alerts_for(conn, LEAKY) if a.kind is AlertKind.LEAK]
        assert (stored.status, stored.dismissed_by, stored.dismiss_reason) == (
            AlertStatus.DISMISSED, "j.smith", "pool filling",
        )  # fmt: skip


def _flow_alert(kind: AlertKind, source: AlertSource, detected: datetime, rate: float) -> Alert:
    """An alert on LEAKY's flow, begun an hour before it was raised and seen until three hours after."""
    start, seen = detected - timedelta(hours=1), detected + timedelta(hours=3)
    return Alert(
        alert_id=make_alert_id(kind, LEAKY, "D1", detected, source), kind=kind, meter_id=LEAKY, dma="D1",
        start=start, detected_at=detected, last_seen=seen, rate_l_h=rate, volume_l=rate * 4, confidence=0.9,
        evidence=((start, detected),), source=source, updated_at=seen,
    )  # fmt: skip


def test_a_run_that_read_a_meter_s_alarm_before_a_person_dismissed_it_leaves_their_dismissal(migrated_database_url):
    """A run loads the meter's leak alarm while it is open; customer care dismisses it ("plumber on
    site"); the run then folds the alarm into the detector's burst (dismissed by 'detection', "the
    same episode as alert …") and saves. The fold was let through (it keeps the alert dismissed) and
    replaced the person's who, when and why with the run's, while the enquiry carried the person's
    note. The person's dismissal stays; the run only follows the episode."""
    alarm = _flow_alert(AlertKind.LEAK, AlertSource.METER, START, 0.0)
    burst = _flow_alert(AlertKind.BURST, AlertSource.DETECTOR, START + timedelta(hours=1), 600.0)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[alarm]))
    with psycopg.connect(migrated_database_url) as run:
        loaded = alerts_to_merge(run, START - timedelta(days=9))
        assert [a.status for a in loaded] == [AlertStatus.OPEN]
        with psycopg.connect(migrated_database_url) as person:  # commits before the run saves
            dismissed_at = START + timedelta(hours=2)
            dismiss_alert(person, alarm.alert_id, by="alice", reason="plumber on site", now=dismissed_at)
        changes = merge_alerts(loaded, [burst, alarm], now=START + timedelta(hours=4))
        (folded,) = [a for a in changes.updated if a.alert_id == alarm.alert_id]
        assert (folded.status, folded.dismissed_by) == (AlertStatus.DISMISSED, "detection")  # the race is run
        save_changes(run, changes)
    with psycopg.connect(migrated_database_url) as conn:
        (stored,) = [a for a in alerts_for(conn, LEAKY) if a.alert_id == alarm.alert_id]
    assert (stored.status, stored.dismissed_by, stored.dismiss_reason, stored.dismissed_at) == (
        AlertStatus.DISMISSED, "alice", "plumber on site", dismissed_at,
    )  # fmt: skip


def test_a_leak_after_a_dismissed_leak_alarm_of_the_meter_opens_its_own_alert_and_enquiry(migrated_database_url):
    """The meter's own leak bit for four hours (a garden hose) is dismissed by customer care; four
    days later a real 25 L/h leak starts. The leak detector's finding matched the dismissed alarm
    (the same kind and meter, never given an end) and was absorbed into it: no alert, no enquiry."""
    meters = fleet()
    hose = range(2 * 24 + 10, 2 * 24 + 14)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(migrated_database_url, meters, 0, 9 * 24 + 1, alarms={LEAKY: hose})
    with psycopg.connect(migrated_database_url) as conn:
        at = START + timedelta(hours=hose[0] + 1)
        (alarm,) = [a for a in run_detection_once(conn, at, _job_config()).opened if a.meter_id == LEAKY]
        with conn.transaction():
            dismiss_alert(conn, alarm.alert_id, by="care.agent", reason="garden hose", now=at)
        run_detection_once(conn, START + timedelta(days=9), _job_config())
        stored = {a.alert_id: a for a in alerts_for(conn, LEAKY)}
        (leak,) = [a for a in stored.values() if a.source.value == "detector"]
        assert (leak.kind, leak.status) == (AlertKind.LEAK, AlertStatus.OPEN)
        assert abs(leak.start - LEAK_START) <= timedelta(hours=2)
        assert (stored[alarm.alert_id].status, stored[alarm.alert_id].ended_at) == (
            AlertStatus.DISMISSED, START + timedelta(hours=hose[-1] + 1),
        )  # fmt: skip
        enquiries = conn.execute("SELECT alert_id FROM enquiries WHERE meter_id = %s", (LEAKY,)).fetchall()
        assert sorted(enquiries) == sorted([(alarm.alert_id,), (leak.alert_id,)])


def test_a_leak_that_grows_to_a_burst_s_rate_is_one_enquiry_raised_to_urgent(migrated_database_url):
    """DJ-007's 25 L/h leak opens up by 575 L/h at day 9, 10:00; run hourly, the detectors raise a
    burst on top of the leak (two alerts, as they should be), and its enquiry was a second, urgent
    one beside the leak's 'high' one: two pieces of work for one meter's escaping water. The leak's
    enquiry is now the one piece of work, raised to urgent and told; the burst's is closed as its
    duplicate (server migration 0045)."""
    meters = fleet()
    meters[7].inject(Burst(start=START + timedelta(days=9, hours=10), rate_lph=575.0))
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(migrated_database_url, meters, 0, 9 * 24 + 15)
    with psycopg.connect(migrated_database_url) as conn:
        for hour in range(15):
            run_detection_once(conn, START + timedelta(days=9, hours=hour), _job_config())
        alerts = {a.kind: a for a in alerts_for(conn, LEAKY)}
        enquiries = conn.execute(
            "SELECT alert_id, enquiry_id, priority, status, duplicate_of FROM enquiries WHERE meter_id = %s", (LEAKY,)
        ).fetchall()
        notes = conn.execute(
            "SELECT e.alert_id, u.note FROM enquiry_updates u JOIN enquiries e USING (enquiry_id) "
            "WHERE e.meter_id = %s ORDER BY u.update_id",
            (LEAKY,),
        ).fetchall()
    assert set(alerts) == {AlertKind.LEAK, AlertKind.BURST}
    leak, burst = alerts[AlertKind.LEAK], alerts[AlertKind.BURST]
    assert burst.rate_l_h == pytest.approx(600.0, rel=0.05) and burst.status is not AlertStatus.RESOLVED
    by_alert = {row[0]: row[1:] for row in enquiries}
    (kept, _, _, _) = by_alert[leak.alert_id]
    assert by_alert == {
        leak.alert_id: (kept, "urgent", "open", None),
        burst.alert_id: (kept + 1, "urgent", "closed", kept),
    }
    assert notes[-2:] == [
        (burst.alert_id, f"a duplicate of enquiry {kept} (alert {leak.alert_id}), about the same flow at meter "
                         f"{LEAKY}; enquiry closed"),
        (leak.alert_id, f"the same flow is now also alert {burst.alert_id} (Suspected burst behind meter {LEAKY}: "
                        f"599.0 L/h since 2026-03-11 10:00 UTC), raised as enquiry {kept + 1} and closed as this "
                        "one's duplicate; priority high → urgent"),
    ]  # fmt: skip


def _job_config() -> DetectionJobConfig:
    return DetectionJobConfig(history_days=9)


def test_a_back_run_replays_the_period_as_live_runs_would(leaky_database):
    import json

    from typer.testing import CliRunner

    from aquami.cli import app

    result = CliRunner().invoke(
        app,
        ["collector", "detect", "--database-url", leaky_database, "--at", "2026-03-10T00:00:00",
         "--until", "2026-03-11T00:00:00", "--step", "360", "--history-days", "9"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = [json.loads(line) for line in result.output.splitlines()]
    every_six_hours = [("10", "00"), ("10", "06"), ("10", "12"), ("10", "18"), ("11", "00")]
    assert [r["at"] for r in runs] == [f"2026-03-{d}T{h}:00:00+00:00" for d, h in every_six_hours]
    opened = [alert_id for r in runs for alert_id in r["opened"] if alert_id.startswith(f"leak/{LEAKY}/")]
    assert len(opened) == 1  # opened by the first run that saw it, updated by the others
    with psycopg.connect(leaky_database) as conn:
        assert [a.alert_id for a in alerts_for(conn, LEAKY) if a.kind is AlertKind.LEAK] == opened


def test_a_back_run_before_the_latest_run_is_refused_and_its_dry_run_leaves_the_alerts_alone(leaky_database, tmp_path):
    """A back-run at a past instant merged what that window showed into the live alerts: an ongoing
    leak's last_seen and volume were wound back to the past instant (and a resolved burst reopened
    with its closed enquiry). Before the latest run it is refused; ``--out`` replays it as a dry run
    that writes the alerts it would raise to a file, and stores nothing."""
    import json

    from typer.testing import CliRunner

    from aquami.cli import app

    live = START + timedelta(days=9)
    with psycopg.connect(leaky_database) as conn:
        run_detection_once(conn, live, _job_config())
        stored = alerts_for(conn, LEAKY)
        (leak,) = [a for a in stored if a.kind is AlertKind.LEAK]
        with pytest.raises(detection_job.BackRun, match="would rewind the live alerts"):
            run_detection_once(conn, live - timedelta(days=1), _job_config())
        replayed: dict[str, Alert] = {}
        run_detection_once(conn, live - timedelta(days=1), _job_config(), dry_run=replayed)
        assert leak.alert_id in replayed and replayed[leak.alert_id].last_seen < leak.last_seen

    past = ["collector", "detect", "--database-url", leaky_database, "--at", "2026-03-10T00:00:00",
            "--until", "2026-03-10T12:00:00", "--step", "360", "--history-days", "9"]  # fmt: skip
    refused = CliRunner().invoke(app, past)
    assert refused.exit_code == 2 and "would rewind the live alerts" in refused.output
    out = tmp_path / "alerts.json"
    result = CliRunner().invoke(app, [*past, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["at"][:13] for line in result.output.splitlines()] == [
        "2026-03-10T00", "2026-03-10T06", "2026-03-10T12",
    ]  # fmt: skip
    written = {a["alert_id"]: a for a in json.loads(out.read_text())}
    assert written[leak.alert_id]["last_seen"].startswith("2026-03-10T12:00")
    with psycopg.connect(leaky_database) as conn:
        assert alerts_for(conn, LEAKY) == stored  # the live alerts as they were
        assert conn.execute("SELECT count(*) FROM detection_runs").fetchone() == (1,)


def test_a_burst_that_ends_at_closing_and_goes_on_as_a_leak_is_one_alert_running_again(migrated_database_url):
    """A busy shop (twice the households tests' shop) springs a 150 L/h leak at 09:42. Its busy hours
    on top of the leak raise a burst at noon; at closing the flow falls below half the level that
    raised it, and the burst is stored resolved. That night the flow shows as continuous, and the
    detectors raise the same alert as a leak. Run hour by hour, as the scheduler does: the leak is
    that one alert, running again (it was inserted a second time under the same id and dropped)."""
    leak_h = 16 * 24 + 9.7
    shop = registers(add_flow(2.0 * business(np.random.default_rng(13), 21), leak_h, 150.0)[None, :])[0]
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered, dma, role) VALUES ('SHOP', true, 'D1', 'customer')")
    ReadingStore(migrated_database_url).write(
        [("SHOP", at_hour(h).isoformat(), repr(float(v)), None, None, [], "gw-test", h) for h, v in enumerate(shop)]
    )
    seen = []
    with psycopg.connect(migrated_database_url) as conn:
        for hour in range(int(leak_h) + 1, 17 * 24 + 6):
            run_detection_once(conn, at_hour(hour), DetectionJobConfig(history_days=21))
            stored = alerts_for(conn, "SHOP")
            assert len(stored) <= 1  # one alert throughout
            seen += [(a.kind, a.status) for a in stored]
        (alert,) = stored
    assert (AlertKind.BURST, AlertStatus.RESOLVED) in seen  # the burst did end at closing
    assert seen[-1] == (AlertKind.LEAK, AlertStatus.ONGOING)
    assert alert.resolved_at is None and alert.ended_at is None
    assert alert.start <= at_hour(leak_h) + timedelta(hours=1)
    assert alert.rate_l_h == pytest.approx(150.0, rel=0.1)


def test_a_run_loads_the_active_alerts_and_those_whose_episodes_reach_into_its_window(migrated_database_url):
    """A main burst that ended inside the window is found again by every run whose window holds it,
    sometimes under an id the sliding window dated an hour later: it must be there to be matched, or
    the run would insert it a second time (and raise a second enquiry); so must one a person
    dismissed, or the dismissal would come back as a fresh alert. One that ended before the window,
    and the active ones however old, are as before."""
    since = START + timedelta(days=10)

    def burst(dma: str, detected: datetime, last_seen: datetime, status: AlertStatus) -> Alert:
        alert = new_alert(
            AlertKind.DMA_BURST, None, dma, start=detected - timedelta(hours=2), detected_at=detected,
            last_seen=last_seen, ended_at=None if status is AlertStatus.OPEN else last_seen, rate_l_h=2000.0,
            volume_l=1.0, confidence=0.9, evidence=((detected, detected),),
        )  # fmt: skip
        return alert.replace(status=status, resolved_at=alert.ended_at, updated_at=last_seen)

    alerts = [
        burst("OLD-OPEN", START, START + timedelta(days=1), AlertStatus.OPEN),
        burst("IN-WINDOW", START + timedelta(days=9), since + timedelta(hours=5), AlertStatus.RESOLVED),
        burst("BEFORE", START + timedelta(days=2), since - timedelta(hours=1), AlertStatus.RESOLVED),
        burst("DISMISSED", START + timedelta(days=9), since + timedelta(hours=2), AlertStatus.OPEN).replace(
            status=AlertStatus.DISMISSED, dismissed_at=since, dismissed_by="ana", dismiss_reason="valve test"
        ),
    ]
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=alerts))
        loaded = {a.dma for a in alerts_to_merge(conn, since)}
    assert loaded == {"OLD-OPEN", "IN-WINDOW", "DISMISSED"}


def test_what_a_run_opens_was_measured_on_whole_days_of_each_detector_s_history() -> None:
    """A run opens what it detects in its newest ``opens_within``. The detectors weigh an interval
    against whole days before its own (leak: 21), and the window begins at the hour of the run's
    ``now`` with a read that has no flow before it, so its first day is partial. Opening from the
    newest 7 days of 28, an episode detected on the zone's first day was measured against 20 days
    and a part: seed 19's day replay opened a 5.5 L/h leak dated six days back that a run with that
    day whole does not raise. At any hour of the day, the zone's first day has them all whole."""
    job = DetectionJobConfig()
    detection = job.detection
    for hour in range(24):
        last = START.replace(hour=hour)
        first = last - timedelta(days=job.history_days)  # the window's first read: no flow up to it
        zone_day = (last - job.opens_within).replace(hour=0)
        for days in (detection.leak_history_days, detection.burst_history_days, detection.dma_baseline_days):
            assert zone_day - timedelta(days=days) > first, (hour, days)


def test_a_run_opens_what_it_detects_in_the_newest_part_of_its_window_or_still_running(migrated_database_url):
    """A 900 L/h burst five days ago, repaired after three hours, and a leak begun three days ago and
    still running. A first run over nine days that opens only what it detected in its last two
    days (the older part being history) opens the leak, not the long-ended burst; one that opens
    what it detected in all nine opens both."""
    now = START + timedelta(days=9)
    meters = fleet()
    burst_at = now - timedelta(days=5)
    meters[3].inject(Burst(start=burst_at, end=burst_at + timedelta(hours=3), rate_lph=900.0))
    with psycopg.connect(migrated_database_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(migrated_database_url, meters, 0, 9 * 24 + 1)
    opened: dict[timedelta, set[tuple[str | None, AlertKind]]] = {}
    for opens_within in (timedelta(days=2), timedelta(days=9)):
        with psycopg.connect(migrated_database_url) as conn:
            with conn.transaction():
                conn.execute("DELETE FROM enquiry_updates; DELETE FROM enquiries; DELETE FROM alerts")
            config = DetectionJobConfig(history_days=9, opens_within=opens_within)
            changes = run_detection_once(conn, now, config)
        opened[opens_within] = {
            (a.meter_id, a.kind) for a in changes.opened if a.kind in (AlertKind.BURST, AlertKind.LEAK)
        }
    assert opened[timedelta(days=2)] == {(LEAKY, AlertKind.LEAK)}
    assert opened[timedelta(days=9)] == {(LEAKY, AlertKind.LEAK), (meters[3].meter_id, AlertKind.BURST)}


def test_a_scheduled_run_that_another_collector_s_later_run_came_before_is_no_failure(migrated_database_url):
    """Two collectors' schedules take turns on the lock: the one whose ``now`` is earlier may get it
    second, when its run would rewind the other's. It stores nothing, and that is no failure."""
    later = datetime.now(UTC) + timedelta(minutes=5)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO detection_runs (run_at, window_from, window_to, meters, opened, updated, resolved) "
            "VALUES (%s, %s, %s, 0, 0, 0, 0)",
            (later, later - timedelta(days=28), later),
        )
    job = DetectionScheduler(migrated_database_url, timedelta(hours=1))
    assert job.run_once() is True and (job.runs, job.failures) == (1, 0)
    assert not job.last_changes


def _six_days_arrived_in_their_own_time(url: str, meters: list[MeterModel]) -> DetectionJobConfig:
    """``meters`` registered as customers of D1 and their first six days stored, each reading
    received an hour after it was taken (in its own time, not late); the config of the tests of late
    arrivals: nine days of history, an ended episode opened only if detected in the last two."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO meters (meter_id, registered, dma, role) VALUES (%s, true, 'D1', 'customer')",
            [(m.meter_id,) for m in meters],
        )
    store_hours(url, meters, 0, 6 * 24 + 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE readings SET received_at = received_at - interval '1 hour'")
    return DetectionJobConfig(history_days=9, opens_within=timedelta(days=2))


def test_an_episode_whose_readings_arrive_late_opens_however_old_and_one_seen_in_time_does_not(migrated_database_url):
    """Detection ran at day 6; then nothing reached the database for three days (a collector down,
    a gateway's spool), and at day 9 all of it arrives: a 900 L/h burst on day 6, three hours long,
    detected more than ``opens_within`` (two days here) before the next run, and ended. No run
    could have raised it in its own time, and the ended-and-old rule dropped it for good (a week's
    outage lost any burst of its first day). A burst of day 3, in the data the day-6 run had and
    left as old, stays unopened."""
    meters = fleet()
    early, late = START + timedelta(days=3, hours=10), START + timedelta(days=6, hours=10)
    meters[3].inject(Burst(start=early, end=early + timedelta(hours=3), rate_lph=900.0))
    meters[5].inject(Burst(start=late, end=late + timedelta(hours=3), rate_lph=900.0))
    config = _six_days_arrived_in_their_own_time(migrated_database_url, meters)
    with psycopg.connect(migrated_database_url) as conn:
        first = run_detection_once(conn, START + timedelta(days=6), config)
        assert not [a for a in first.opened if a.kind is AlertKind.BURST]  # day 3's was old already
    store_hours(migrated_database_url, meters, 6 * 24 + 1, 9 * 24 + 1)
    with psycopg.connect(migrated_database_url) as conn:
        changes = run_detection_once(conn, START + timedelta(days=9), config)
    bursts = [a for a in changes.opened if a.kind is AlertKind.BURST]
    assert [(a.meter_id, a.status) for a in bursts] == [(meters[5].meter_id, AlertStatus.RESOLVED)]
    assert abs(bursts[0].start - late) <= timedelta(hours=1)
    assert bursts[0].detected_at < START + timedelta(days=7)  # older than opens_within


def test_readings_of_a_transaction_open_across_a_run_longer_than_the_old_margin_are_taken_as_arrived(
    migrated_database_url, monkeypatch
):
    """A gateway's spool of days 6 to 9 (a 900 L/h, three-hour burst on day 6) is written by an
    ingest transaction that begins before the day-9 run's predecessor reads the readings and commits
    after it: its readings' ``received_at`` (the transaction's start) is before that run. The run
    took as arrived only what was received after its predecessor's clock less a fixed margin (10
    minutes; 1 s here, the transaction held open 2 s), so the burst, older than ``opens_within`` and
    ended, was never opened. Now each run records the oldest open transaction's start as where the
    next run's arrivals begin, and the burst opens."""
    monkeypatch.setattr(detection_job, "_ARRIVAL_MARGIN", timedelta(seconds=1))
    meters = fleet()
    late = START + timedelta(days=6, hours=10)
    meters[5].inject(Burst(start=late, end=late + timedelta(hours=3), rate_lph=900.0))
    config = _six_days_arrived_in_their_own_time(migrated_database_url, meters)
    spool = [
        (m.meter_id, r.ts, r.volume_m3)
        for m in meters
        for r in (m.read(START + timedelta(hours=hour)) for hour in range(6 * 24 + 1, 9 * 24 + 1))
    ]
    with psycopg.connect(migrated_database_url) as writer:
        with writer.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for row in spool:
                copy.write_row(row)
        time.sleep(2)  # open longer than the margin
        with psycopg.connect(migrated_database_url) as conn:
            first = run_detection_once(conn, START + timedelta(days=6), config)
        assert not [a for a in first.opened if a.kind is AlertKind.BURST]
        writer.commit()
    with psycopg.connect(migrated_database_url) as conn:
        changes = run_detection_once(conn, START + timedelta(days=9), config)
    bursts = [a for a in changes.opened if a.kind is AlertKind.BURST]
    assert [(a.meter_id, a.status) for a in bursts] == [(meters[5].meter_id, AlertStatus.RESOLVED)]
    assert bursts[0].detected_at < START + timedelta(days=7)  # older than opens_within: opened as arrived


def test_the_first_run_after_a_run_recorded_without_arrivals_from_takes_its_clock_less_the_old_margin(
    migrated_database_url,
):
    """A run recorded before collector migration 0072 has only ``seen_at``, its clock when it read
    the readings: the run after it takes as arrived what was received up to the old 10 minutes
    before that, as it did then (a spool received 5 minutes before it is still taken)."""
    meters = fleet()
    late = START + timedelta(days=6, hours=10)
    meters[5].inject(Burst(start=late, end=late + timedelta(hours=3), rate_lph=900.0))
    config = _six_days_arrived_in_their_own_time(migrated_database_url, meters)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        run_detection_once(conn, START + timedelta(days=6), config)
    store_hours(migrated_database_url, meters, 6 * 24 + 1, 9 * 24 + 1)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE detection_runs SET arrivals_from = NULL,"
            " seen_at = (SELECT max(received_at) FROM readings) + interval '5 minutes'"
        )
        changes = run_detection_once(conn, START + timedelta(days=9), config)
    bursts = [a for a in changes.opened if a.kind is AlertKind.BURST]
    assert [(a.meter_id, a.status) for a in bursts] == [(meters[5].meter_id, AlertStatus.RESOLVED)]


def test_a_run_whose_arrivals_floor_cannot_see_every_session_is_refused_naming_the_grant(leaky_database):
    """open_transactions_floor() owned by a role that cannot see another role's sessions (migrations
    run by an unprivileged role): the run fails with one line naming the grant and records nothing,
    rather than a floor past a transaction it cannot see; the grant makes it run."""
    role = f"aquami_collector_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(leaky_database, autocommit=True) as admin:  # connected: a session of another role
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        try:
            admin.execute(sql.SQL("ALTER FUNCTION open_transactions_floor() OWNER TO {}").format(sql.Identifier(role)))
            refusal = pytest.raises(psycopg.errors.InsufficientPrivilege)
            with psycopg.connect(leaky_database) as conn, refusal as refused:
                run_detection_once(conn, START + timedelta(days=9), _job_config())
            said = refused.value.diag.message_primary or ""
            assert "\n" not in said and said.endswith(f"GRANT pg_read_all_stats TO {role}"), said
            assert admin.execute("SELECT count(*) FROM detection_runs").fetchone() == (0,)
            admin.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(role)))
            with psycopg.connect(leaky_database) as conn:
                run_detection_once(conn, START + timedelta(days=9), _job_config())
            assert admin.execute("SELECT count(*) FROM detection_runs").fetchone() == (1,)
        finally:
            admin.execute("ALTER FUNCTION open_transactions_floor() OWNER TO CURRENT_USER")
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_schedule_goes_on_after_a_run_fails(leaky_database, monkeypatch):
    """A run that fails is logged and the next one goes ahead: a database that cannot be reached,
    or a fault in detection itself (here the first run's detectors raise)."""
    away = DetectionScheduler(f"postgresql://aquami@127.0.0.1:{free_port()}/none?connect_timeout=2", timedelta(hours=1))
    assert away.run_once() is False
    assert (away.runs, away.failures) == (0, 1)

    detect = detection_job.detect
    calls = 0

    def faulty_the_first_time(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise FloatingPointError("a fault in a detector")
        return detect(*args, **kwargs)

    monkeypatch.setattr(detection_job, "detect", faulty_the_first_time)
    scheduler = DetectionScheduler(leaky_database, timedelta(milliseconds=50), _job_config())
    scheduler.start()
    deadline = time.monotonic() + 60
    while scheduler.runs < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert scheduler.failures == 1
    assert scheduler.runs >= 2


def test_after_vee_ran_the_job_sees_a_labelled_fleet_as_the_benchmark_scores_it(migrated_database_url):
    """The production path against the benchmarked one: a labelled fleet stored, VEE run over it (it
    estimates every gap of missing reads), and the job's block of the newest 28 days is the fleet's
    own registers there, gaps and all; the detectors raise the same alerts on both."""
    from benchmarks.bench_detection import block_of as fleet_block
    from benchmarks.bench_detection_fetch import load
    from simulators.fleet import FleetSpec, generate_fleet

    spec = FleetSpec(
        meters=400, days=30, seed=23, meters_per_dma=200, leak_fraction=0.05, burst_fraction=0.02,
        reverse_flow_fraction=0.01, stuck_fraction=0.01, dma_bursts=2, missing_read_fraction=0.02,
    )  # fmt: skip
    fleet = generate_fleet(spec)
    load(migrated_database_url, fleet)
    ours = fleet_block(fleet)
    now = ours.time(ours.n_intervals - 1)
    with psycopg.connect(migrated_database_url) as conn:
        report = run_vee(conn, ours.time(0), now + timedelta(hours=1), now=now)
        block = fetch_block(conn, now, DetectionJobConfig(history_days=28))
    assert report.estimates > 1000  # the gaps the job must not take for reads
    first = list(ours.timestamps).index(block.timestamps[0])
    rows = [list(ours.meter_ids).index(m) for m in block.meter_ids]
    expected = np.round(ours.volume_m3[rows, first:], 3)
    np.testing.assert_array_equal(block.volume_m3, expected)  # NaN where the fleet lost a read
    window = ours.take(np.array(rows)).since(block.time(0))
    window = type(window)(window.meter_ids, window.dma, window.role, window.timestamps, np.round(window.volume_m3, 3))
    found = {(a.kind, a.meter_id, a.dma, a.start) for a in detect(block, DetectionConfig())}
    assert found == {(a.kind, a.meter_id, a.dma, a.start) for a in detect(window, DetectionConfig())}
    assert len(found) >= 10


@pytest.mark.timeout(60)
def test_a_run_waiting_behind_a_hung_run_gives_up_at_its_statement_timeout(migrated_database_url):
    """Another collector's run holding the lock for ever (its host frozen) kept every scheduled run
    waiting on it, silently: detection stopped. A run now gives up at its statement timeout, with
    an error its scheduler logs, and the next one tries again."""
    outcome: dict[str, BaseException | None] = {}
    scheduler = DetectionScheduler(migrated_database_url, timedelta(hours=1), DetectionJobConfig(statement_timeout_s=1))

    def run() -> None:
        try:
            scheduler.work()
            outcome["error"] = None
        except BaseException as error:
            outcome["error"] = error

    with psycopg.connect(migrated_database_url, autocommit=True) as hung:
        hung.execute("SELECT pg_advisory_lock(%s)", (detection_job._LOCK_KEY,))
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(15)
        assert not thread.is_alive(), "the run is still waiting for the lock"
    assert isinstance(outcome["error"], psycopg.errors.QueryCanceled)
