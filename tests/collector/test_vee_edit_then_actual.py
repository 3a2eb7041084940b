"""A person's edit of VEE's estimate, then the meter's own read for that time: the meter's read wins,
and the edit is kept in the reading's history. An edit of a read the meter sent stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from collector.store import ReadingStore
from collector.vee.editing import edit_reading, reading_history
from collector.vee.runner import run_vee

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
HOURS = [NOW - timedelta(hours=h) for h in range(30, 0, -1)]
X = HOURS[20]


def _stored(url: str) -> tuple[tuple[Decimal, str], list[tuple[Decimal, str, str | None]], int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT volume_m3, quality FROM readings WHERE meter_id = 'E1' AND ts = %s", (X,)).fetchone()
        history = [(h["volume_m3"], h["quality"], h["quality_by"]) for h in reading_history(conn, "E1", X)]
        conflicts = conn.execute("SELECT count(*) FROM reading_conflicts").fetchone()
    assert row is not None and conflicts is not None
    return (row[0], row[1]), history, conflicts[0]


def test_the_meter_s_read_replaces_a_person_s_edit_of_an_estimate_and_the_edit_is_kept(migrated_database_url):
    """VEE estimated the missing hour X, a clerk corrected the estimate to 100.150 (the customer
    phoned), then the meter's own read for X arrived from a gateway's spool: 100.200. Before, the
    clerk's guess stayed for good, the meter's read waited in reading_conflicts, and X was flagged
    register_backwards (100.190 → 100.150) and conflicting_duplicate."""
    url = migrated_database_url
    store = ReadingStore(url)
    store.write([("E1", t.isoformat(), f"{100 + 0.01 * i:.3f}", None, None, [], "gw", i)
                 for i, t in enumerate(HOURS) if t != X])  # fmt: skip
    with psycopg.connect(url) as conn:
        run_vee(conn, HOURS[0], NOW, now=NOW)
        # below the read before it (100.190): a guess the clerk confirms (collector.vee.register_order)
        edit_reading(
            conn, "E1", X, Decimal("100.150"), by="clerk", reason="customer phoned", out_of_sequence_confirmed=True
        )
        conn.commit()
    store.write([("E1", X.isoformat(), "100.200", None, None, [], "gw", 99)])  # the meter's real read
    store.close()
    reading, history, conflicts = _stored(url)
    assert reading == (Decimal("100.200"), "actual") and conflicts == 0
    assert [(quality, by) for _, quality, by in history] == [("estimated", "vee:linear"), ("edited", "clerk")]
    with psycopg.connect(url) as conn:
        run_vee(conn, HOURS[0], NOW, now=NOW)
        flags = conn.execute("SELECT rule FROM vee_flags WHERE ts = %s", (X,)).fetchall()
    assert flags == []


def test_the_meter_s_read_replacing_an_edit_keeps_no_key_and_the_history_keeps_the_edit_s(migrated_database_url):
    """The key id an edit recorded (server migration 0047) is the edit's: the meter's read that
    replaces it is nobody's, and the edit's key goes to the history with it."""
    url = migrated_database_url
    store = ReadingStore(url)
    store.write([("E1", t.isoformat(), f"{100 + 0.01 * i:.3f}", None, None, [], "gw", i)
                 for i, t in enumerate(HOURS) if t != X])  # fmt: skip
    with psycopg.connect(url) as conn:
        run_vee(conn, HOURS[0], NOW, now=NOW)
        edit_reading(
            conn, "E1", X, Decimal("100.150"), by="clerk", by_key_id="k1", reason="customer phoned",
            out_of_sequence_confirmed=True,
        )  # fmt: skip
        conn.commit()
    store.write([("E1", X.isoformat(), "100.200", None, None, [], "gw", 99)])
    store.close()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT quality, quality_by_key_id FROM readings WHERE meter_id = 'E1' AND ts = %s", (X,))
        assert row.fetchone() == ("actual", None)
        history = [
            (h["quality"], h["quality_by_key_id"], h["superseded_by_key_id"]) for h in reading_history(conn, "E1", X)
        ]
    assert history == [("estimated", None, "k1"), ("edited", "k1", None)]


def test_an_edit_of_the_meter_s_own_read_stays_when_the_read_arrives_again(migrated_database_url):
    """A gateway redelivers a read a person has corrected: the correction stays (the redelivery is
    the value corrected, no conflict); a different value for that time is kept for VEE as before."""
    url = migrated_database_url
    store = ReadingStore(url)
    store.write([("E1", t.isoformat(), f"{100 + 0.01 * i:.3f}", None, None, [], "gw", i) for i, t in enumerate(HOURS)])
    with psycopg.connect(url) as conn:
        edit_reading(conn, "E1", X, Decimal("100.205"), by="clerk", reason="photo of the register")
        conn.commit()
    store.write([("E1", X.isoformat(), "100.200", None, None, [], "gw", 20)])  # the same read again
    assert _stored(url)[0] == (Decimal("100.205"), "edited") and _stored(url)[2] == 0
    store.write([("E1", X.isoformat(), "100.300", None, None, [], "gw", 21)])  # another value for X
    store.close()
    assert _stored(url)[0] == (Decimal("100.205"), "edited") and _stored(url)[2] == 1


T7 = datetime(2026, 11, 2, 0, 0, 7, tzinfo=UTC)  # an hourly meter the gateway stamps at :07


def _read(h: int, seq: int) -> tuple[str, str, str, None, None, list[str], str, int]:
    """The meter's read of hour ``h`` (10 L an hour from 100.720 m³), as the gateway sends it."""
    return (
        "S1",
        (T7 + timedelta(hours=h)).isoformat(),
        str(Decimal("100.720") + Decimal("0.010") * h),
        None,
        None,
        [],
        "gw",
        seq,
    )


def _hourly_at_07(url: str, missing: set[int]) -> ReadingStore:
    store = ReadingStore(url)
    store.write([_read(h, h) for h in range(13) if h not in missing])
    return store


@pytest.mark.parametrize("edit", ["100.825", "100.805", "100.700", "105.000"])
def test_a_meter_s_read_seconds_after_an_edited_estimate_replaces_the_edit(migrated_database_url, edit):
    """The reads at 09:00:07 and 10:00:07 are missing; VEE estimates the gap on the hour, a clerk
    corrects the 10:00:00 estimate, then the meter's own reads arrive. Before, the edit stayed
    (the meter's read replaced it only at the very same key) and the read 7 s after it was judged
    against it: after 100.825 a bad_read, after 100.805 register_backwards and the bill line's
    consumption unknown, though the meter's reads give exactly 0.120 m³. Now the edit gives way
    (kept in history) and the gap is estimated again around the meter's reads: none is left."""
    url = migrated_database_url
    store = _hourly_at_07(url, {9, 10})
    now = T7 + timedelta(hours=12, minutes=30)
    at = datetime(2026, 11, 2, 10, tzinfo=UTC)
    with psycopg.connect(url) as conn:
        run_vee(conn, T7, now, now=now)
        # 100.700 and 105.000 are out of order with the reads either side: the clerk confirms them
        edit_reading(
            conn, "S1", at, Decimal(edit), by="clerk", reason="customer phoned", out_of_sequence_confirmed=True
        )
        conn.commit()
    store.write([_read(9, 59), _read(10, 60)])
    store.close()
    with psycopg.connect(url) as conn:
        run_vee(conn, T7, now + timedelta(minutes=15), now=now + timedelta(minutes=15))
        rows = conn.execute("SELECT ts, quality FROM readings WHERE meter_id = 'S1' ORDER BY ts").fetchall()
        flags = conn.execute("SELECT rule FROM vee_flags WHERE rule <> 'gap'").fetchall()
        used = conn.execute("SELECT meter_consumption('S1', %s, %s)", (T7, T7 + timedelta(hours=12))).fetchone()
        history = [(h["quality"], h["quality_by"]) for h in reading_history(conn, "S1", at)]
    assert rows == [(T7 + timedelta(hours=h), "actual") for h in range(13)]
    assert flags == []
    assert used == (Decimal("0.120"),)
    assert history[-1] == ("edited", "clerk")


def test_an_edited_estimate_stays_beside_reads_of_other_slots(migrated_database_url):
    """The edit gives way only to a read of its own slot: with 10:00:07 still missing, the reads at
    09:00:07 (3593 s before the 10:00 edit, within an interval but the 09:00 slot's) and 11:00:07 leave
    the person's correction in place."""
    url = migrated_database_url
    store = _hourly_at_07(url, {9, 10})
    now = T7 + timedelta(hours=12, minutes=30)
    at = datetime(2026, 11, 2, 10, tzinfo=UTC)
    with psycopg.connect(url) as conn:
        run_vee(conn, T7, now, now=now)
        edit_reading(conn, "S1", at, Decimal("100.815"), by="clerk", reason="customer phoned")
        conn.commit()
    store.write([("S1", (T7 + timedelta(hours=9)).isoformat(), "100.810", None, None, [], "gw", 60)])
    store.close()
    with psycopg.connect(url) as conn:
        run_vee(conn, T7, now + timedelta(minutes=15), now=now + timedelta(minutes=15))
        row = conn.execute(
            "SELECT volume_m3, quality FROM readings WHERE meter_id = 'S1' AND ts = %s", (at,)
        ).fetchone()
    assert row == (Decimal("100.815"), "edited")
