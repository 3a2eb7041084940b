"""A meter stored before register-meters bounded its id (64 characters), too long for VEE's
indexes, costs VEE that meter's work only, and the log names the meter once.

A meter id of 2,680 bytes that do not compress is in ``meters`` and ``readings`` (their keys take
it beside a time), but a VEE flag of its reads is not (vee_flags_pkey: the rule's name too).
Before, a round with such a meter failed with ``ProgramLimitExceeded`` at every run: no flag nor
estimate for any meter of its batch (2,000 meters), nor the round's consumption for any meter."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from aquami.excerpt import quoted
from collector.vee.rounds import vee_round
from tests.collector.test_detection_long_meter_id import LONG_ID

T0 = datetime(2026, 11, 1, tzinfo=UTC)
#: One batch (2,000 meters a batch), halved down to the long id: four meters' work is saved beside it.
METERS = ["M1", "M2", "M3", "M4", LONG_ID]


def _reads(meter_id: str) -> list[tuple[str, datetime, str]]:
    """Three days of hourly reads, 10 L an hour, with a 4-hour gap and one glitch (a bad_read)."""
    return [
        (meter_id, T0 + timedelta(hours=h), f"{100 + 0.01 * h + (500 if h == 50 else 0):.3f}")
        for h in range(72)
        if not 30 <= h < 34
    ]


def test_a_meter_id_too_long_for_vee_s_indexes_loses_its_own_work_only_and_is_named_once(
    migrated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:  # as stored before ids were checked
        cur.executemany("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", [(m,) for m in METERS])
        cur.executemany(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)", [r for m in METERS for r in _reads(m)]
        )
    now = T0 + timedelta(days=3)

    with caplog.at_level(logging.WARNING, logger="collector"):
        done = vee_round(url, now)
    assert done is not None and done["estimates"] == 4 * 4, done  # each short meter's gap
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("collector")]
    assert len(said) == 1, said
    assert said[0].startswith(f"vee: meter {quoted(LONG_ID)}, 2680 bytes, has an id too long"), said
    assert "(670 characters)" in said[0] and "register-meters" in said[0] and "\n" not in said[0]
    with psycopg.connect(url) as conn:
        flags = conn.execute("SELECT meter_id, rule FROM vee_flags ORDER BY 1, 2").fetchall()
        assert flags == [(m, rule) for m in METERS[:4] for rule in ("bad_read", "gap")]
        estimated = "SELECT meter_id, count(*) FROM readings WHERE quality = 'estimated' GROUP BY 1 ORDER BY 1"
        assert conn.execute(estimated).fetchall() == [(m, 4) for m in METERS[:4]]
        consumption = conn.execute("SELECT DISTINCT meter_id FROM consumption_hourly ORDER BY 1").fetchall()
        assert {m for (m,) in consumption} >= set(METERS[:4])  # the round's consumption refreshed

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="collector"):
        assert vee_round(url, now + timedelta(hours=1)) is not None
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("collector")] == []


#: Counts, outside any transaction (a sequence), each time a write of VEE's flags reaches a row of a
#: meter id over 64 characters: the write the index then refuses, rolled back with its whole batch.
_COUNT_LONG_ID_FLAG_WRITES = """
CREATE SEQUENCE long_id_flag_writes;
CREATE FUNCTION count_long_id_flag_write() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM nextval('long_id_flag_writes'); RETURN NEW; END $$;
CREATE TRIGGER count_long_id_flag_writes BEFORE INSERT ON vee_flags
FOR EACH ROW WHEN (length(NEW.meter_id) > 64) EXECUTE FUNCTION count_long_id_flag_write();
"""


def _long_id_flag_writes(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT last_value, is_called FROM long_id_flag_writes").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def test_a_meter_id_refused_once_is_left_out_of_later_rounds_without_a_failed_write(
    migrated_database_url: str,
) -> None:
    """Before, each round halved its batch down to the long id again: 4 failed writes of the 5
    meters' batch (12 for 2,000 meters), every round, for the life of the collector."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO meters (meter_id, registered) VALUES (%s, true)", [(m,) for m in METERS])
        cur.executemany(
            "INSERT INTO readings (meter_id, ts, volume_m3) VALUES (%s, %s, %s)", [r for m in METERS for r in _reads(m)]
        )
        cur.execute(_COUNT_LONG_ID_FLAG_WRITES)
    now = T0 + timedelta(days=3)

    assert vee_round(url, now) is not None
    # the batch of 5, then [M3, M4, long] and [M4, long] after their first halves, then the long id
    assert _long_id_flag_writes(url) == 4
    with psycopg.connect(url, autocommit=True) as conn:  # the next round has its work to redo
        conn.execute("DELETE FROM vee_flags")
    for hours in (1, 2):
        done = vee_round(url, now + timedelta(hours=hours))
        assert done is not None and done["flags"]["bad_read"] == 4, done  # (the four short meters' glitches)
        assert _long_id_flag_writes(url) == 4, f"round {hours + 1} tried the long id again"
    with psycopg.connect(url) as conn:
        flags = conn.execute("SELECT meter_id, rule FROM vee_flags ORDER BY 1, 2").fetchall()
    assert flags == [(m, rule) for m in METERS[:4] for rule in ("bad_read", "gap")]
