"""Billing across a meter exchange uses the registers written on the job cards, so no water goes unbilled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from server.billing import repository, service

START = datetime(2026, 5, 1, tzinfo=UTC)
SWAP = datetime(2026, 5, 10, 12, tzinfo=UTC)  # J1 out, J2 in
END = datetime(2026, 5, 20, tzinfo=UTC)


def _setup(url: str, final: Decimal | None, initial: Decimal | None) -> None:
    """J1 is read hourly on the hour, the last at 11:00, an hour before the swap; J2 from 12:40."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('J1', true), ('J2', true)")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('AJ', 'Job card')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SPJ')")
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) "
            "VALUES ('AJ', 'SPJ', '2026-01-01Z')"
        )
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at, "
            "final_register_m3, initial_register_m3) VALUES "
            "('SPJ', 'J1', '2026-01-01Z', %(swap)s, %(final)s, NULL), ('SPJ', 'J2', %(swap)s, NULL, NULL, %(initial)s)",
            {"swap": SWAP, "final": final, "initial": initial},
        )
        rows = []
        ts, volume = START - timedelta(hours=1), Decimal("250.000")
        while ts <= SWAP - timedelta(minutes=20):
            rows.append(("J1", ts, volume))
            ts, volume = ts + timedelta(hours=1), volume + Decimal("0.012")
        ts, volume = SWAP + timedelta(minutes=40), Decimal("3.020")
        while ts <= END + timedelta(hours=1):
            rows.append(("J2", ts, volume))
            ts, volume = ts + timedelta(hours=1), volume + Decimal("0.030")
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _lines(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return repository.determinant_lines(conn, START, END, "AJ", None, None)  # type: ignore[arg-type]


def _reads(url: str, meter: str, at_or_before: datetime) -> tuple[Decimal, Decimal]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT min(volume_m3) FILTER (WHERE ts >= %(s)s), max(volume_m3) FILTER (WHERE ts <= %(e)s) "
            "FROM readings WHERE meter_id = %(m)s",
            {"m": meter, "s": START, "e": at_or_before},
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_job_card_registers_close_and_open_the_lines(migrated_database_url: str) -> None:
    url = migrated_database_url
    _setup(url, final=Decimal("252.750"), initial=Decimal("3.000"))
    j1, j2 = _lines(url)
    assert (j1["meter_id"], j2["meter_id"]) == ("J1", "J2")
    assert j1["closing_ts"] == SWAP and j1["closing_volume_m3"] == Decimal("252.750")
    assert j1["closing_quality"] == "substituted" and j1["opening_quality"] == "actual"
    assert j2["opening_ts"] == SWAP and j2["opening_volume_m3"] == Decimal("3.000")
    assert j2["opening_quality"] == "substituted" and j2["closing_quality"] == "actual"
    j1_opening, _ = _reads(url, "J1", SWAP)
    _, j2_closing = _reads(url, "J2", END)
    # Every litre from J1's opening read to its removal card, and from J2's installation card on.
    assert j1["consumption_m3"] == Decimal("252.750") - j1_opening
    assert j2["consumption_m3"] == j2_closing - Decimal("3.000")
    (determinant,) = service.determinants([j1, j2])
    assert determinant.complete and determinant.quality == "substituted"
    assert determinant.consumption_m3 == j1["consumption_m3"] + j2["consumption_m3"]


def test_without_job_cards_the_lines_end_at_the_stored_reads(migrated_database_url: str) -> None:
    url = migrated_database_url
    _setup(url, final=None, initial=None)
    j1, j2 = _lines(url)
    _, j1_last = _reads(url, "J1", SWAP)
    assert j1["closing_ts"] == SWAP - timedelta(hours=1) and j1["closing_volume_m3"] == j1_last
    assert j2["opening_ts"] == SWAP + timedelta(minutes=40) and j2["opening_quality"] == "actual"
    assert j1["consumption_m3"] == j1_last - _reads(url, "J1", SWAP)[0]


def test_a_card_above_the_next_read_leaves_the_line_unknown_not_negative(migrated_database_url: str) -> None:
    url = migrated_database_url
    _setup(url, final=Decimal("252.750"), initial=Decimal("3.500"))  # J2's first read is 3.020
    j1, j2 = _lines(url)
    assert j2["consumption_m3"] is None and j1["consumption_m3"] is not None
    (determinant,) = service.determinants([j1, j2])
    assert not determinant.complete and determinant.consumption_m3 is None


def test_a_card_above_the_next_read_leaves_none_of_the_line_estimated(migrated_database_url: str) -> None:
    """Before, the line's estimated_m3 was VEE's share of the stored reads' water (0.300 m³ here)
    while its consumption and actual_m3 were null, and the line was called ``estimated``."""
    url = migrated_database_url
    _setup(url, final=Decimal("252.750"), initial=Decimal("3.500"))  # J2's first read is 3.020
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE readings SET quality = 'estimated', quality_by = 'vee', quality_reason = 'gap' "
            "WHERE meter_id = 'J2' AND ts > %s AND ts <= %s",
            (SWAP + timedelta(hours=2), SWAP + timedelta(hours=11)),
        )
    _, j2 = _lines(url)
    assert (j2["consumption_m3"], j2["estimated_m3"], j2["actual_m3"]) == (None, None, None)
    (determinant,) = service.determinants(_lines(url))
    line = determinant.lines[1]
    assert (line.meter_id, line.estimated_m3, line.actual_m3, line.estimated_share) == ("J2", None, None, None)
    assert line.quality == "substituted"  # the installation card's opening, the weaker of its two reads
