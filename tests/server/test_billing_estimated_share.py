"""A determinant line says how much of its consumption VEE estimated, and is ``estimated`` when a
material share is (10%), whatever its opening and closing reads.

Before, quality came from the opening and closing reads only: a meter silent 10 days in October,
its gap estimated by VEE (239 estimates), billed 2.420000 m³ ``actual``, 2.400 m³ of it in hours
VEE made up.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row, tuple_row

from collector.store import ReadingStore
from collector.vee.rounds import vee_round
from server.app import create_app
from server.auth import create_api_key
from server.billing import repository, service
from server.decimals import volume_m3
from tests.server.test_billing_vee_issues import _setup

START, STOP = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
BACK = STOP + timedelta(days=10)


def _write(url: str, reads: list[tuple[datetime, Decimal]], seq0: int) -> None:
    store = ReadingStore(url)
    store.write([("M", t.isoformat(), str(v), None, None, [], "gw1", seq0 + i) for i, (t, v) in enumerate(reads)])
    store.close()


def test_a_month_mostly_estimated_between_two_actual_reads_says_so(migrated_database_url: str) -> None:
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 7, 1, tzinfo=UTC), None)])
    hours = int((STOP - START) / timedelta(hours=1))
    _write(url, [(START + timedelta(hours=h), Decimal("100.000") + Decimal("0.010") * h) for h in range(hours + 1)], 1)
    with psycopg.connect(url, autocommit=True) as conn:  # on time, their days refreshed by the rounds of the time
        conn.execute("UPDATE readings SET received_at = ts + interval '1 minute'")
        conn.execute("DELETE FROM late_readings")
    at_stop = Decimal("100.000") + Decimal("0.010") * hours
    _write(url, [(BACK + timedelta(hours=k), at_stop + Decimal("0.010") * (240 + k)) for k in range(3)], 5000)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM late_readings")
    report = vee_round(url, BACK + timedelta(hours=2, minutes=30))
    assert report is not None and report["estimates"] == 239
    with TestClient(create_app(url)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        item = client.get("/billing/determinants?period=2026-10-01/2026-10-12", headers=headers).json()["items"][0]
        csv = client.get("/billing/determinants?period=2026-10-01/2026-10-12&format=csv", headers=headers).text
    (line,) = item["lines"]
    assert (line["opening"]["quality"], line["closing"]["quality"]) == ("actual", "actual")
    assert (line["consumption_m3"], line["estimated_m3"], line["actual_m3"]) == ("2.420000", "2.400000", "0.020")
    assert (line["estimated_share"], line["quality"], item["quality"]) == ("0.992", "estimated", "estimated")
    header, row = csv.strip().split("\r\n")
    assert header.endswith(",estimated_m3,estimated_share,line_quality")
    assert row.endswith(",2.400000,0.992,estimated")


@pytest.fixture
def meter_db(migrated_database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        _setup(conn, "M", [(START, None)])
    with psycopg.connect(migrated_database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn  # type: ignore[misc]  # a dict_row connection


reads = st.lists(
    st.tuples(st.integers(0, 50), st.booleans()),  # litres since the read before, estimated?
    min_size=2,
    max_size=30,
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reads=reads, first=st.integers(0, 10), hours=st.integers(1, 30))
def test_estimated_and_actual_water_sum_to_the_line_and_estimated_is_the_intervals_touching_an_estimate(
    meter_db: psycopg.Connection, reads: list[tuple[int, bool]], first: int, hours: int
) -> None:
    meter_db.execute("DELETE FROM readings")
    volume, rows = Decimal("50.000"), []
    for h, (litres, is_estimate) in enumerate(reads):
        volume += Decimal(litres) / 1000
        rows.append((START + timedelta(hours=h), volume, is_estimate))
    with meter_db.cursor().copy(
        "COPY readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) FROM STDIN"
    ) as copy:
        for ts, v, is_estimate in rows:
            copy.write_row(
                ("M", ts, v, *(("estimated", "vee:linear", "gap") if is_estimate else ("actual", None, None)))
            )
    start = START + timedelta(hours=first)
    (row,) = repository.determinant_lines(meter_db, start, start + timedelta(hours=hours), None, None, None)
    if row["consumption_m3"] is None:
        assert row["estimated_m3"] is None and row["actual_m3"] is None
        return
    assert row["estimated_m3"] + row["actual_m3"] == row["consumption_m3"]
    # the oracle: intervals (previous read, read] from the opening read to the closing one
    span = [r for r in rows if row["opening_ts"] <= r[0] <= row["closing_ts"]]
    expected = sum((b[1] - a[1] for a, b in pairwise(span) if a[2] or b[2]), Decimal(0))
    assert row["estimated_m3"] == expected
    share = service.estimated_share(row)
    assert share is None or Decimal(0) <= share <= 1
    material = bool(expected) and (share is None or share >= Decimal("0.1"))
    by_reads = service.weakest((row["opening_quality"], row["closing_quality"]))
    assert service.line_quality(row) == ("estimated" if material else by_reads)


steps = st.lists(  # litres since the read before (a drop when negative), and what VEE said of the step
    st.tuples(st.integers(-30, 50), st.sampled_from([None, "rollover", "unexplained", "bad_read"]), st.booleans()),
    min_size=2,
    max_size=20,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, first=st.integers(0, 6), hours=st.integers(1, 24))
def test_a_line_s_consumption_is_meter_consumption_between_its_reads(
    meter_db: psycopg.Connection, steps: list[tuple[int, str | None, bool]], first: int, hours: int
) -> None:
    """The line's consumption is summed from its split by estimate; it is what meter_consumption
    (collector migration 0015) says over the same reads, across drops VEE explained, did not, or
    found bad, and the two parts are null exactly when it is."""
    meter_db.execute("DELETE FROM readings")
    meter_db.execute("DELETE FROM register_discontinuities")
    volume = Decimal("50.000")
    for h, (litres, said, is_estimate) in enumerate(steps):
        volume = max(Decimal(0), volume + Decimal(litres) / 1000)
        ts = START + timedelta(hours=h)
        quality = ("estimated", "vee:linear", "gap") if is_estimate else ("actual", None, None)
        meter_db.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
            "VALUES ('M', %s, %s, %s, %s, %s)",
            (ts, volume, *quality),
        )
        if h and said is not None:
            known = Decimal(abs(litres)) / 1000 if said == "rollover" else None
            meter_db.execute(
                "INSERT INTO register_discontinuities (meter_id, ts, kind, consumption_m3) VALUES ('M', %s, %s, %s)",
                (ts, said, known),
            )
    start = START + timedelta(hours=first)
    (row,) = repository.determinant_lines(meter_db, start, start + timedelta(hours=hours), None, None, None)
    if row["closing_ts"] is None:
        assert row["consumption_m3"] is None
        return
    oracle = (
        meter_db.cursor(row_factory=tuple_row)
        .execute(
            "SELECT CASE WHEN %(o)s = %(c)s THEN 0 ELSE meter_consumption('M', %(o)s, %(c)s) END",
            {"o": row["opening_ts"], "c": row["closing_ts"]},
        )
        .fetchone()
    )
    assert oracle is not None and row["consumption_m3"] == oracle[0]
    if row["consumption_m3"] is None:
        assert (row["estimated_m3"], row["actual_m3"]) == (None, None)
    else:
        assert row["estimated_m3"] + row["actual_m3"] == row["consumption_m3"]


def test_no_estimated_water_is_written_to_the_litre_as_the_rest(migrated_database_url: str) -> None:
    """A line without an estimate wrote ``estimated_m3`` ``"0"`` (SQL's 0) beside ``actual_m3``
    ``"7.200"``, in the JSON and the CSV; it is ``"0.000"``, as every volume is to the litre."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 7, 1, tzinfo=UTC), None)])
    day = datetime(2026, 10, 1, tzinfo=UTC)
    _write(url, [(day + timedelta(hours=h), Decimal("100.000") + Decimal("0.300") * h) for h in range(26)], 1)
    with TestClient(create_app(url)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        item = client.get("/billing/determinants?period=2026-10-01/2026-10-02", headers=headers).json()["items"][0]
        csv = client.get("/billing/determinants?period=2026-10-01/2026-10-02&format=csv", headers=headers).text
    (line,) = item["lines"]
    assert (line["consumption_m3"], line["estimated_m3"], line["actual_m3"]) == ("7.200", "0.000", "7.200")
    assert (item["consumption_m3"], line["quality"]) == ("7.200", "actual")
    header, row = csv.strip().split("\r\n")
    assert header.endswith(",estimated_m3,estimated_share,line_quality")
    assert row.endswith(",0.000,0.000,actual"), row


@given(st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False, places=None))
def test_a_volume_is_written_with_at_least_the_litre_and_never_rounded(value: Decimal) -> None:
    written = volume_m3(value)
    assert written is not None and written == value
    exponent = written.as_tuple().exponent
    assert isinstance(exponent, int) and exponent <= min(-3, int(value.as_tuple().exponent))
