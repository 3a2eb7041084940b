"""The hours a round began with, over which it left a batch undone (rolled back for a conflict at each
of its runs), are taken by the next round: no read of the left meters is never validated. On the
real database, with real serialization failures (a trigger on the left meter's flags), and rounds
run as the collector runs them (:func:`collector.vee.rounds.vee_round`).

A round covers the last two days. A read stored less than a day after its time (a gateway's spool
after a short outage) is noted nowhere for a later round (``late_readings`` takes reads over a day
late): the rounds of the next day validate it as they slide past it. Before, a round that left the
read's meter undone kept only the late-read notes it found, and the next round began an hour (a
``--vee-every``) later: should the meter be left by every round until the read fell out of their
window (rounds every 12 h, one left batch; hourly rounds, a conflict lasting a day), the read was
never validated. Here it closes a 5-hour gap: never flagged, its 4 hours never estimated, a hole in
billing's validated reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from collector.vee.config import VeeConfig
from collector.vee.rounds import vee_round

#: the first round here (at half past: the spooled read falls between two 12-hourly rounds' windows)
NOW = datetime(2026, 11, 3, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
METER = "LH-B"
#: the meter's first read; it reads on the hour
FIRST = datetime(2026, 10, 24, tzinfo=UTC)
#: late enough to be noted for a round (collector.store.LATE_AFTER, a day) it is not
SPOOLED_FOR = timedelta(hours=23, minutes=45)


def _read(conn: psycopg.Connection, ts: datetime, received: datetime) -> None:
    """The meter's read at ``ts`` (0.010 m³ an hour since FIRST), stored at ``received``."""
    volume = 100 + (ts - FIRST) / HOUR * 0.01
    conn.execute(
        "INSERT INTO readings (meter_id, ts, volume_m3, received_at) VALUES (%s, %s, %s, %s)",
        (METER, ts, f"{volume:.3f}", received),
    )


def _seed(url: str, gap_closing: datetime, conflict: bool = True) -> None:
    """An hourly meter (its interval found by earlier rounds), reading on time up to 5 h
    before ``gap_closing``; its reads from ``gap_closing`` on came together, SPOOLED_FOR after it,
    those of the 4 h before it lost for good. A flag in every round's window that a trigger refuses
    to delete (SQLSTATE 40001), as a conflict with another transaction would (unless not ``conflict``)."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered, read_interval_s) VALUES (%s, true, 3600)", (METER,))
        ts = FIRST
        while ts <= gap_closing - 5 * HOUR:
            _read(conn, ts, ts)
            ts += HOUR
        spooled = gap_closing + SPOOLED_FOR
        ts = gap_closing
        while ts <= spooled:
            _read(conn, ts, spooled)
            ts += HOUR
        if not conflict:
            return
        conn.execute(
            "INSERT INTO vee_flags (meter_id, ts, rule, detail) VALUES (%s, %s, 'stuck_register', 'an old flag')",
            (METER, NOW - 2 * HOUR),
        )
        conn.execute(
            "CREATE FUNCTION conflict_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not serialize access due to concurrent update' "
            "USING ERRCODE = 'serialization_failure'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER conflict_on_delete BEFORE DELETE ON vee_flags FOR EACH ROW "
            f"WHEN (OLD.meter_id = '{METER}') EXECUTE FUNCTION conflict_on_delete()"
        )


def _round(url: str, at: datetime, every: timedelta | None = None) -> dict[str, object]:
    """The reads the meter sent on time up to ``at``, then a round at ``at`` (of rounds run every ``every``)."""
    with psycopg.connect(url) as conn:
        newest = conn.execute("SELECT max(ts) FROM readings WHERE meter_id = %s", (METER,)).fetchone()
        assert newest is not None and newest[0] is not None
        ts = newest[0] + HOUR
        while ts <= at:
            _read(conn, ts, ts)
            ts += HOUR
    report = vee_round(url, at, VeeConfig(), every=every)
    assert report is not None
    return report


@pytest.mark.parametrize(
    ("every", "left_rounds", "gap_closing"),
    [
        # rounds every 12 h (--vee-every 43200), one left batch; the read 35.5 h old at the next round
        (12 * HOUR, 1, NOW - timedelta(hours=35, minutes=30)),
        # hourly rounds, the meter's batch left by each for a day; the read 24.5 h old at the first after
        (HOUR, 23, NOW - timedelta(hours=24, minutes=30)),
    ],
    ids=["12-hourly-rounds-one-left", "hourly-rounds-left-for-a-day"],
)
def test_the_hours_a_left_round_began_with_are_validated_by_the_next_round(
    migrated_database_url: str, every: timedelta, left_rounds: int, gap_closing: datetime
) -> None:
    """The spooled reads arrive between two rounds; the rounds from NOW leave the meter's batch
    (``left_rounds`` of them), then the conflict ends: the next round flags the gap the first
    spooled read closes and estimates its 4 hours, though it lies before that round's own two days."""
    url = migrated_database_url
    _seed(url, gap_closing)
    assert NOW - every < gap_closing + SPOOLED_FOR < NOW  # stored after the round before NOW's
    for k in range(left_rounds):
        assert _round(url, NOW + k * every)["batches_left"] == 1
    with psycopg.connect(url) as conn:
        # one note, however many rounds left the batch: the first's start, where each began since
        noted = conn.execute("SELECT since FROM late_readings").fetchall()
        conn.execute("DROP TRIGGER conflict_on_delete ON vee_flags")
    assert noted == [(NOW + HOUR - timedelta(days=2),)]
    after = NOW + left_rounds * every
    assert after + HOUR - timedelta(days=2) > gap_closing  # outside the round's own window
    assert _round(url, after)["batches_left"] == 0
    assert _gap_estimated(url, gap_closing) == (
        ("5.0 h since the previous read; estimated",),
        [gap_closing - k * HOUR for k in (4, 3, 2, 1)],
    )
    with psycopg.connect(url) as conn:
        notes = conn.execute("SELECT count(*) FROM late_readings").fetchone()
    assert notes == (0,)  # the round that left nothing deleted the notes it covered


def _gap_estimated(url: str, gap_closing: datetime) -> tuple[object, list[datetime]]:
    """The gap flag on the read at ``gap_closing``, and the meter's estimated reads' times."""
    with psycopg.connect(url) as conn:
        flag = conn.execute(
            "SELECT detail FROM vee_flags WHERE meter_id = %s AND ts = %s AND rule = 'gap'", (METER, gap_closing)
        ).fetchone()
        estimated = conn.execute(
            "SELECT ts FROM readings WHERE meter_id = %s AND quality = 'estimated' ORDER BY ts", (METER,)
        ).fetchall()
    return flag, [ts for (ts,) in estimated]


def test_rounds_more_than_a_day_apart_reach_the_reads_stored_between_them(migrated_database_url: str) -> None:
    """``--vee-every`` 36 h (the option takes up to a year): the spooled reads are stored 23 h 45 min
    late, between two rounds, and noted nowhere (not a day late). Before, the next round looked back
    its two days only, which end 11 h after the first spooled read: the gap it closes was never
    flagged nor estimated. Now a round reaches back over the interval since the round before and a
    day."""
    url, every = migrated_database_url, timedelta(hours=36)
    gap_closing = NOW - timedelta(hours=20, minutes=30)
    _seed(url, gap_closing, conflict=False)
    assert NOW < gap_closing + SPOOLED_FOR < NOW + every  # stored between the two rounds
    assert _round(url, NOW - timedelta(hours=24), every)["batches_left"] == 0  # the round before (no spooled read yet)
    assert _round(url, NOW + every, every)["batches_left"] == 0
    assert NOW + every + HOUR - timedelta(days=2) > gap_closing  # outside a two-day window
    assert _gap_estimated(url, gap_closing) == (
        ("5.0 h since the previous read; estimated",),
        [gap_closing - k * HOUR for k in (4, 3, 2, 1)],
    )
