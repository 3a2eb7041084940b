"""VEE against TimescaleDB: flags, register steps and estimates written; edits keep their history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import psycopg
import pytest

from collector.batch_parser import ReadingRow
from collector.store import ReadingStore
from collector.vee.config import VeeConfig
from collector.vee.editing import edit_reading, reading_history, substitute_reading
from collector.vee.runner import run_vee
from tests.collector.test_vee_rules import NOW, T0, fleet

START = datetime.fromtimestamp(T0, UTC)
END = datetime.fromtimestamp(NOW, UTC) + timedelta(days=1)


def load_fleet(url: str) -> dict:
    names, meters, labels = fleet()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", [(n,) for n in names])
        with cur.copy(
            "COPY readings (meter_id, ts, volume_m3, flow_m3h, reverse_volume_m3, received_at) FROM STDIN"
        ) as copy:
            for name in names:
                m = meters[name]
                received = m.received if m.received is not None else m.ts
                for t, v, f, r, rec in zip(m.ts, m.volume, m.flow, m.reverse, received, strict=True):
                    copy.write_row(
                        (
                            name,
                            datetime.fromtimestamp(t, UTC),
                            f"{v:.3f}",
                            float(f),
                            None if np.isnan(r) else f"{r:.3f}",
                            datetime.fromtimestamp(rec, UTC),
                        )
                    )
    return {"names": names, "meters": meters, "labels": labels}


def stored_flags(url: str) -> set[tuple[str, float, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT meter_id, ts, rule FROM vee_flags").fetchall()
    return {(m, ts.timestamp(), rule) for m, ts, rule in rows}


def test_vee_writes_each_fault_with_its_rule_and_estimates_the_gaps_it_may(migrated_database_url):
    url = migrated_database_url
    data = load_fleet(url)
    with psycopg.connect(url) as conn:
        report = run_vee(conn, START, END, VeeConfig(), now=datetime.fromtimestamp(NOW, UTC))
    assert stored_flags(url) == data["labels"]
    assert report.estimates == 39 and report.gaps_not_estimated == 1
    with psycopg.connect(url) as conn:
        steps = conn.execute("SELECT meter_id, kind FROM register_discontinuities ORDER BY 1").fetchall()
        estimated = conn.execute(
            "SELECT meter_id, quality_by, count(*) FROM readings WHERE quality = 'estimated' GROUP BY 1, 2 ORDER BY 3"
        ).fetchall()
        gap_rows = conn.execute("SELECT meter_id, detail FROM vee_flags WHERE rule = 'gap'").fetchall()
        gap_details: dict[str, str] = dict(gap_rows)
    assert steps == [("M1-rollover", "rollover"), ("M2-replaced", "replacement"), ("M3-reverse", "reverse_flow")]
    assert estimated == [("M5-gaps", "vee:linear", 3), ("M5-gaps", "vee:profile", 36)]
    assert "not estimated" in gap_details["M2-replaced"]

    # A rerun finds the gaps filled: nothing estimated twice, and the gaps still flagged, as
    # estimated (before, it deleted the flags of the gaps its estimates filled: no record was left
    # that the meter had missed those reads)
    with psycopg.connect(url) as conn:
        again = run_vee(conn, START, END, VeeConfig(), now=datetime.fromtimestamp(NOW, UTC))
        assert conn.execute("SELECT meter_id, detail FROM vee_flags WHERE rule = 'gap'").fetchall() == gap_rows
    assert again.estimates == 0 and again.flags["gap"] == report.flags["gap"]
    assert stored_flags(url) == data["labels"]


def test_conflicting_duplicates_are_flagged(migrated_database_url):
    url = migrated_database_url
    ts = "2026-02-03T05:00:00Z"
    store = ReadingStore(url)
    try:
        store.write([("C1", ts, "10.000", None, None, [], "gw", 1)])
        store.write([("C1", ts, "10.500", None, None, [], "gw", 2)])
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        report = run_vee(conn, START, END, now=datetime.fromtimestamp(NOW, UTC))
        flags = conn.execute("SELECT meter_id, ts, rule, detail FROM vee_flags").fetchall()
    assert report.flags["conflicting_duplicate"] == 1
    assert [(m, t.isoformat(), r) for m, t, r, _ in flags] == [
        ("C1", "2026-02-03T05:00:00+00:00", "conflicting_duplicate")
    ]


def test_an_edit_keeps_the_original_with_who_when_and_why(migrated_database_url):
    url = migrated_database_url
    ts = START + timedelta(hours=3)
    store = ReadingStore(url)
    try:
        store.write([("E1", ts.isoformat(), "41.250", 0.2, None, [], "gw", 1)])
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        edit_reading(conn, "E1", ts, Decimal("41.205"), by="j.smith", reason="digits transposed; photo 1187")
        conn.commit()
        edit_reading(conn, "E1", ts, Decimal("41.215"), by="a.jones", reason="second look at the photo")
        conn.commit()
        current = conn.execute("SELECT volume_m3, quality, quality_by, quality_reason FROM readings").fetchone()
        history = reading_history(conn, "E1", ts)
        with pytest.raises(ValueError, match="reason"):
            edit_reading(conn, "E1", ts, Decimal("1"), by="x", reason=" ")
        with pytest.raises(LookupError):
            edit_reading(conn, "E1", ts + timedelta(hours=1), Decimal("1"), by="x", reason="y")
        with pytest.raises(ValueError, match="edit it instead"):
            substitute_reading(conn, "E1", ts, Decimal("1"), by="x", reason="y")
    assert current == (Decimal("41.215"), "edited", "a.jones", "second look at the photo")
    assert [(h["volume_m3"], h["quality"], h["superseded_by"], h["superseded_quality"]) for h in history] == [
        (Decimal("41.250"), "actual", "j.smith", "edited"),
        (Decimal("41.205"), "edited", "a.jones", "edited"),
    ]
    assert history[0]["superseded_reason"] == "digits transposed; photo 1187"
    assert history[0]["superseded_at"] <= history[1]["superseded_at"]


def test_a_person_can_substitute_an_estimate_and_the_estimate_is_kept(migrated_database_url):
    url = migrated_database_url
    ts = START + timedelta(hours=7)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES ('S1')")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
            "VALUES ('S1', %s, 5.5, 'estimated', 'vee:linear', 'gap')",
            (ts,),
        )
        substitute_reading(conn, "S1", ts, Decimal("5.61"), by="field.crew.7", reason="site visit")
        conn.commit()
        row = conn.execute("SELECT volume_m3, quality, quality_by FROM readings").fetchone()
        history = reading_history(conn, "S1", ts)
    assert row == (Decimal("5.61"), "substituted", "field.crew.7")
    assert [(h["volume_m3"], h["quality"]) for h in history] == [(Decimal("5.5"), "estimated")]


@pytest.mark.parametrize("how", ["substituted", "edited"])
def test_a_person_s_value_in_an_estimated_gap_has_the_next_round_estimate_around_it(migrated_database_url, how):
    """Gap 00:00-06:00 (register 100 to 106), estimated 101 … 105. A site visit finds 105.5 at 03:00.
    The substitution kept the estimate's arrival time, so VEE never saw the gap's other estimates as
    stale: 104 and 105 stayed after 105.5, the register stepped back and the hours went unknown.
    An edit of a read three days old was not reached by the rounds (two days) at all."""
    from collector.vee.rounds import vee_round

    url = migrated_database_url
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    day = datetime(2026, 3, 7, tzinfo=UTC)  # older than a round's window
    store = ReadingStore(url)
    store.write([("P1", (day + timedelta(hours=h)).isoformat(), v, None, None, [], "gw", 1)
                 for h, v in ((0, "100"), (6, "106"), (7, "107"))])  # fmt: skip
    store.close()
    with psycopg.connect(url) as conn:
        run_vee(conn, day, day + timedelta(days=1), now=now)
        if how == "substituted":
            substitute_reading(conn, "P1", day + timedelta(hours=3), Decimal("105.5"), by="crew 7", reason="site visit")
        else:  # a read of the gap's: 03:00 came in after all, and a person corrects it
            conn.execute("DELETE FROM readings WHERE ts = %s", (day + timedelta(hours=3),))
            conn.execute("INSERT INTO readings (meter_id, ts, volume_m3, received_at) VALUES ('P1', %s, 103, %s)",
                         (day + timedelta(hours=3), day))  # fmt: skip
            conn.execute("DELETE FROM late_readings")
            edit_reading(conn, "P1", day + timedelta(hours=3), Decimal("105.5"), by="a.jones", reason="photo")
        conn.commit()
    assert vee_round(url, now) is not None  # the next round
    with psycopg.connect(url) as conn:
        registers = [v for (v,) in conn.execute("SELECT volume_m3 FROM readings ORDER BY ts").fetchall()]
        total = conn.execute("SELECT meter_consumption('P1', %s, %s)", (day, day + timedelta(hours=7))).fetchone()
        unknown = conn.execute("SELECT sum(unknown) FROM consumption_hourly").fetchone()
    assert registers == sorted(registers) and Decimal("105.5") in registers  # never a step back
    assert total == (Decimal("7"),) and unknown == (0,)


def test_the_command_line_runs_vee_and_refreshes_consumption(migrated_database_url, tmp_path):
    import json

    from typer.testing import CliRunner

    from aquami.cli import app

    load_fleet(migrated_database_url)
    settings = tmp_path / "vee.json"
    settings.write_text(json.dumps({"default_max_flow_m3h": 20}))  # the 12 m³ burst hour is now plausible
    result = CliRunner().invoke(
        app,
        ["collector", "vee", "--from", START.isoformat(), "--to", END.isoformat(), "--config", str(settings)],
        env={"AQUAMI_DATABASE_URL": migrated_database_url},
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["flags"]["over_max_flow"] == 0 and report["flags"]["rollover"] == 1
    assert report["estimates"] == 39 and report["consumption_hourly_rows"] > 0
    bad = CliRunner().invoke(
        app,
        [
            "collector",
            "vee",
            "--from",
            START.isoformat(),
            "--to",
            END.isoformat(),
            "--config",
            str(tmp_path / "missing.json"),
        ],
        env={"AQUAMI_DATABASE_URL": migrated_database_url},
    )
    assert bad.exit_code != 0


def _hourly_reads_with_a_gap(url: str, now: datetime) -> None:
    """Three days of hourly reads of one meter up to ``now``, without the three 20–22 hours before it."""
    hours = [now - timedelta(hours=h) for h in range(72, -1, -1)]
    gap = {now - timedelta(hours=h) for h in (20, 21, 22)}
    rows: list[ReadingRow] = [
        ("VR-1", t.isoformat(), repr(100.0 + 0.01 * i), None, None, [], "gw", i) for i, t in enumerate(hours)
    ]
    ReadingStore(url).write([r for r, t in zip(rows, hours, strict=True) if t not in gap])


def _estimated(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
    assert row is not None
    return int(row[0])


def test_a_vee_round_estimates_the_newest_gaps_in_one_collector_at_a_time(migrated_database_url):
    """``collector run`` runs a round every hour: the last two days' gaps are estimated and the
    consumption refreshed. While another collector's round holds the lock, a round is skipped."""
    from collector.vee.rounds import ROUND_LOCK_KEY, vee_round

    url = migrated_database_url
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    _hourly_reads_with_a_gap(url, now)
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ROUND_LOCK_KEY,))
        assert vee_round(url, now) is None
        assert _estimated(url) == 0
    done = vee_round(url, now)
    assert done is not None
    assert done["estimates"] == 3 and _estimated(url) == 3
    assert done["consumption_hourly_rows"] > 0
    assert vee_round(url, now) is not None  # the lock was given back


def test_the_vee_schedule_goes_on_after_a_round_fails(migrated_database_url, monkeypatch):
    """A fault in a round (here the first round's VEE raises) is counted and logged, the round's
    lock is given back, and the next round estimates the gaps. (Before, ``collector run`` ran the
    rounds in its main loop, and a fault other than the database's stopped the collector, ingest
    and detection included.)"""
    from collector.vee import rounds

    url = migrated_database_url
    _hourly_reads_with_a_gap(url, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    calls = 0

    def faulty_the_first_time(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ZeroDivisionError("a fault in an estimator")
        return run_vee(*args, **kwargs)

    monkeypatch.setattr(rounds, "run_vee", faulty_the_first_time)
    schedule = rounds.VeeScheduler(url, timedelta(milliseconds=50))
    schedule.start()
    deadline = time.monotonic() + 60
    while schedule.runs < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    schedule.stop()
    assert schedule.failures == 1 and schedule.runs >= 1
    assert schedule.last_report is not None, "the lock was not given back after the failed round"
    assert _estimated(url) == 3


def test_real_reads_arriving_late_inside_an_estimated_gap_replace_its_estimates(migrated_database_url):
    """Gateways time-stamp a read when they poll (here 7 s past the hour), so a late read lands
    beside VEE's on-the-hour estimates, not on their keys. The next round must drop the estimates
    of the gap the read fell in and estimate what is left of it: estimates kept beside the read
    make its register go backwards and the hours' consumption unknown."""
    from collector.vee.rounds import vee_round

    url = migrated_database_url
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    polls = [now - timedelta(hours=h) + timedelta(seconds=7) for h in range(12, 0, -1)]
    # 100 L in the hour after the last read before the outage, then 10 L an hour.
    volume = {t: 100.0 + 0.01 * i + (0.1 if i > 4 else 0.0) for i, t in enumerate(polls)}
    store = ReadingStore(url)

    def deliver(times: list[datetime]) -> None:
        store.write([("VL-1", t.isoformat(), repr(volume[t]), None, None, [], "gw", polls.index(t)) for t in times])

    def state() -> tuple[dict[str, int], list[str], tuple[Decimal, int]]:
        with psycopg.connect(url) as conn:
            qualities: dict[str, int] = dict(
                conn.execute("SELECT quality, count(*) FROM readings GROUP BY 1").fetchall()
            )
            flags = [rule for (rule,) in conn.execute("SELECT rule FROM vee_flags ORDER BY ts").fetchall()]
            total = conn.execute("SELECT sum(consumption_m3), sum(unknown) FROM consumption_hourly").fetchone()
        assert total is not None
        return qualities, flags, (total[0], int(total[1]))

    used = Decimal(repr(volume[polls[-1]])) - Decimal(repr(volume[polls[0]]))
    # the outage: polls 5 to 8 reach the collector after a round; one estimate for each (before, 5:
    # the last on the hour, 7 s before poll 9)
    deliver(polls[:5] + polls[9:])
    assert vee_round(url, now) is not None
    assert state() == ({"actual": 8, "estimated": 4}, ["gap"], (used, 0))

    deliver(polls[6:7])  # one of them: the gap is now two gaps, each estimated afresh (1 + 2 hours)
    assert vee_round(url, now) is not None
    assert state() == ({"actual": 9, "estimated": 3}, ["gap", "gap"], (used, 0))

    deliver(polls[5:9])  # all of them: no estimate is left, nothing is flagged
    assert vee_round(url, now) is not None
    assert state() == ({"actual": 12}, [], (used, 0))


def test_the_history_of_an_estimate_says_who_replaced_or_removed_it_and_why(migrated_database_url):
    """An actual read replacing VEE's estimate at its key left the estimate's history naming no one,
    for no reason; an estimate VEE removed (a read came in beside it) named the database role."""
    from collector.vee.rounds import vee_round

    url = migrated_database_url
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    hours = [now - timedelta(hours=h) for h in range(8, 0, -1)]
    store = ReadingStore(url)
    store.write([("H1", t.isoformat(), repr(100 + i / 100), None, None, [], "gw", i)
                 for i, t in enumerate(hours) if i not in (2, 3, 4)])  # fmt: skip
    assert vee_round(url, now) is not None  # estimates at the gap's three hours
    store.write([("H1", hours[3].isoformat(), "100.03", None, None, [], "gw", 9)])  # on an estimate's key
    store.write([("H1", (hours[2] + timedelta(seconds=7)).isoformat(), "100.02", None, None, [], "gw", 10)])
    assert vee_round(url, now) is not None  # the estimate beside the late read goes
    store.close()
    with psycopg.connect(url) as conn:
        history = conn.execute(
            "SELECT ts, quality, superseded_by, superseded_reason, superseded_quality FROM reading_history ORDER BY id"
        ).fetchall()
    by_key = {(ts, kind): (who, why) for ts, _, who, why, kind in history}
    assert by_key[(hours[3], "actual")] == ("ingest", "the actual reading arrived")
    assert by_key[(hours[2], "deleted")][0] == "vee:re-estimate"
    assert all(who and why for ts, quality, who, why, _ in history)


def test_a_vee_round_that_fails_leaves_the_collector_running_and_the_next_round_goes_ahead(
    migrated_database_url, mosquitto, monkeypatch
):
    """``collector run``: a fault in a VEE round (not the database's) is logged and the next round
    goes ahead, as for detection, instead of ending the process and the ingest with it."""
    import os
    import signal

    from typer.testing import CliRunner

    import collector.vee.rounds
    from aquami.cli import app

    calls: list[datetime] = []

    def failing_then_stopping(database_url: str, now: datetime, config=None, every=None) -> dict | None:
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("a fault in VEE itself")
        # what Ctrl-C does: the collector stops (sent to the process, as a terminal does, not to
        # this thread, the schedule's, where the main thread would not hear of it at once)
        os.kill(os.getpid(), signal.SIGINT)
        return None

    monkeypatch.setattr(collector.vee.rounds, "vee_round", failing_then_stopping)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(
            app,
            ["collector", "run", "--vee-every", "0.05", "--detect-every", "0", "--client-id", "vee-fault"],
            env={"AQUAMI_DATABASE_URL": migrated_database_url, "AQUAMI_MQTT_URL": mosquitto.url},
        )
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert result.exit_code == 0, repr(result.exception)
    assert len(calls) >= 2  # the round after the failed one went ahead (more may start before the stop)


def test_reads_older_than_a_round_s_window_are_counted_when_they_arrive_late(migrated_database_url):
    """A broker away for four days: the gateway spools, then delivers four days of reads at once.
    A round looks back two days, yet the reads older than that must reach consumption too (NEM12
    and the daily totals are made from it), not leave those hours empty for good."""
    from collector.vee.rounds import vee_round

    url = migrated_database_url
    # The spool's first read at a midnight: it closes the previous day's last hour, which counts too.
    spooled_from = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
    now = spooled_from + timedelta(hours=5 * 24 - 25)
    hours = [now - timedelta(hours=h) for h in range(5 * 24, -1, -1)]
    assert hours[25] == spooled_from
    rows: list[ReadingRow] = [
        ("VL-2", t.isoformat(), repr(100.0 + 0.01 * i), None, None, [], "gw", i) for i, t in enumerate(hours)
    ]
    store = ReadingStore(url)
    store.write(rows[:25])  # the first day, on time
    assert vee_round(url, hours[24]) is not None
    store.write(rows[25:])  # the spool, after the outage
    assert vee_round(url, now) is not None
    with psycopg.connect(url) as conn:
        total = conn.execute(
            "SELECT sum(consumption_m3), sum(intervals), sum(unknown) FROM consumption_hourly WHERE meter_id = 'VL-2'"
        ).fetchone()
    assert total == (Decimal(rows[-1][2]) - Decimal(rows[0][2]), 5 * 24, 0)


def test_reads_noted_late_from_long_ago_are_covered_back_to_the_reach_and_the_rest_is_logged(
    migrated_database_url, caplog
):
    """A gateway whose clock fell back after a power cut, or one away for months: its reads are
    noted late, but a round reaches back only ``LATE_REACH_DAYS`` (every round that found them
    would otherwise redo months of the whole fleet), says what it left, and clears the note."""
    from collector.vee.rounds import LATE_REACH_DAYS, vee_round

    url = migrated_database_url
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    days = LATE_REACH_DAYS + 10
    hours = [now - timedelta(hours=h) for h in range(days * 24, -1, -6)]
    ReadingStore(url).write(
        [("VL-3", t.isoformat(), repr(100.0 + 0.01 * i), None, None, [], "gw", i) for i, t in enumerate(hours)]
    )
    with caplog.at_level("WARNING", logger="collector.vee.rounds"):
        assert vee_round(url, now) is not None
    reach = now + timedelta(hours=1) - timedelta(days=LATE_REACH_DAYS)
    with psycopg.connect(url) as conn:
        first = conn.execute("SELECT min(hour) FROM consumption_hourly WHERE meter_id = 'VL-3'").fetchone()
        notes = conn.execute("SELECT count(*) FROM late_readings").fetchone()
    assert first is not None and first[0] is not None
    assert reach - timedelta(days=1) <= first[0] < reach + timedelta(days=1)  # whole local days from the reach
    assert notes == (0,)
    assert any("collector vee --from" in r.getMessage() for r in caplog.records)


def test_a_read_time_stamped_ahead_of_its_arrival_stays_flagged_once_its_time_has_come(migrated_database_url):
    """A meter's clock a day fast: its read is stored today with tomorrow's time. The round that
    first sees it flags it; the rounds after its time has come run the same period again and
    must not find it fine then: it was ahead of the collector's clock when it arrived."""
    from collector.vee.rounds import vee_round

    url = migrated_database_url
    arrived = datetime.now(UTC).replace(microsecond=0)
    ahead = arrived + timedelta(days=1)
    ReadingStore(url).write(
        [
            ("VF-1", (ahead - timedelta(hours=2)).isoformat(), "100.0", None, None, [], "gw", 1),
            ("VF-1", (ahead - timedelta(hours=1)).isoformat(), "100.01", None, None, [], "gw", 2),
            ("VF-1", ahead.isoformat(), "100.02", None, None, [], "gw", 3),
        ]
    )

    def flagged() -> list[tuple[str, datetime]]:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT rule, ts FROM vee_flags WHERE ts = %s", (ahead,)).fetchall()
        return [(rule, ts) for rule, ts in rows]

    assert vee_round(url, ahead - timedelta(minutes=30)) is not None
    assert flagged() == [("future_timestamp", ahead)]
    assert vee_round(url, ahead + timedelta(hours=1)) is not None
    assert flagged() == [("future_timestamp", ahead)]
