"""An opening or closing read far from its line's boundary leaves water unmeasured: not complete.

Before, a meter silent since 20 February gave February a closing read nine days before the month's
end, and the determinant said complete=true, quality=actual; once reads resumed and VEE filled the
gap, the same month answered with more water.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from tests.server.test_billing_vee_issues import _setup

FEB, MAR = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)


def _reads(meter: str, start: datetime, end: datetime) -> list[tuple[str, datetime, Decimal]]:
    hours = int((end - start).total_seconds() // 3600)
    return [(meter, start + timedelta(hours=h), Decimal("100") + Decimal("0.01") * h) for h in range(hours + 1)]


def test_reads_more_than_an_hour_from_the_line_s_ends_make_it_incomplete_and_say_how_far(migrated_database_url):
    url = migrated_database_url
    since = datetime(2025, 1, 1, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        for meter in ("SILENT", "LATE", "ONTIME"):
            _setup(conn, meter, [(since, None)])
        rows = (
            _reads("SILENT", FEB - timedelta(days=1), datetime(2026, 2, 20, tzinfo=UTC))
            + _reads("LATE", datetime(2026, 2, 5, 6, tzinfo=UTC), MAR)  # first read four days in
            + _reads("ONTIME", FEB + timedelta(minutes=59), MAR + timedelta(hours=1))  # and one read after
        )
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    with TestClient(create_app(url)) as client:
        headers = {"Authorization": f"Bearer {key}"}
        body = client.get("/billing/determinants?period=2026-02", headers=headers).json()
        text = client.get("/billing/determinants?period=2026-02&format=csv", headers=headers).text
    by_account = {d["account_id"].removeprefix("A-"): d for d in body["items"]}
    silent = by_account["SILENT"]["lines"][0]
    assert (silent["complete"], silent["issues"]) == (False, ["closing_read_far", "no_read_after_end"])
    assert (silent["opening_distance_s"], silent["closing_distance_s"]) == (0, 9 * 86400)
    assert not by_account["SILENT"]["complete"] and by_account["SILENT"]["consumption_m3"] is not None
    late = by_account["LATE"]["lines"][0]
    assert (late["complete"], late["issues"], late["opening_distance_s"]) == (
        False,
        ["opening_read_far"],
        4 * 86400 + 6 * 3600,
    )
    ontime = by_account["ONTIME"]  # 59 min after the start, 1 min before the end (within an hour), a read after it
    assert ontime["complete"] and ontime["lines"][0]["issues"] == []
    assert "opening_distance_s,closing_distance_s,as_of" in text.splitlines()[0] and ",777600," in text


def test_a_daily_meter_s_reads_are_measured_against_its_own_interval(migrated_database_url):
    """A meter read daily at 06:00 UTC opens February with its read of 31 January 06:00, 18 hours
    before: with the fleet's hourly interval every daily meter's line was incomplete, every month.
    Once VEE has found its interval (86,400 s) that is its usual read; a daily meter silent since
    20 February is still far."""
    from collector.vee.runner import run_vee

    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "DAILY", [(datetime(2025, 1, 1, tzinfo=UTC), None)])
        _setup(conn, "DAILYSILENT", [(datetime(2025, 1, 1, tzinfo=UTC), None)])
        first = datetime(2026, 1, 1, 6, tzinfo=UTC)
        with conn.cursor() as cur, cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for d in range(60):
                at = first + timedelta(days=d)
                copy.write_row(("DAILY", at, Decimal("100") + Decimal("0.2") * d))
                if at < datetime(2026, 2, 20, tzinfo=UTC):
                    copy.write_row(("DAILYSILENT", at, Decimal("100") + Decimal("0.2") * d))
    with psycopg.connect(url) as conn:
        run_vee(conn, FEB, MAR, now=MAR)
    with TestClient(create_app(url)) as client:
        body = client.get("/billing/determinants?period=2026-02", headers={"Authorization": f"Bearer {key}"}).json()
    lines = {d["account_id"].removeprefix("A-"): d["lines"][0] for d in body["items"]}
    daily = lines["DAILY"]
    assert (daily["opening_distance_s"], daily["closing_distance_s"]) == (18 * 3600, 18 * 3600)
    assert (daily["complete"], daily["issues"]) == (True, [])
    assert lines["DAILYSILENT"]["issues"] == ["closing_read_far", "no_read_after_end"]
