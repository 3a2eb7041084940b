"""A bill line whose closing register may still change is not complete, and every line says when
the reads it rests on arrived (``as_of``), as each NEM12 day does (UpdateDateTime): a billing
system can see that a period it billed was revised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth import create_api_key
from tests.server.test_billing_vee_issues import _setup

START, NOV = datetime(2026, 9, 30, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
ARRIVED_LATE = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def _volume(t: datetime) -> Decimal:
    """10 L an hour, and 0.6 m³ of irrigation in October's last hour."""
    return (
        Decimal("100.000")
        + Decimal("0.010") * int((t - START) / timedelta(hours=1))
        + (Decimal("0.6") if t >= NOV else 0)
    )


def _store(url: str, times: list[datetime], received: datetime | None = None) -> None:
    """Reads, received a minute after their time unless said, and their consumption refreshed (as
    the VEE round after them does)."""
    with psycopg.connect(url) as conn:
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3, received_at) FROM STDIN") as copy:
            for t in times:
                copy.write_row(("M", t, _volume(t), received or t + timedelta(minutes=1)))
        conn.execute(
            "SELECT refresh_consumption(%s, %s)", (times[0] - timedelta(hours=1), times[-1] + timedelta(hours=1))
        )


def _nem12_stamps(text: str) -> dict[str, str]:
    return {f[1]: f[29] for f in (line.split(",") for line in text.splitlines()) if f[0] == "300"}


def test_a_period_is_complete_once_a_read_at_or_after_its_end_is_in_and_as_of_says_when(migrated_database_url):
    """October's reads to 23:00 are in at 00:30; the meter's 00:00 read is still in a gateway's spool
    and arrives at 02:00. Before, October at 00:30 was 7.430 m³ 'actual', complete, closing at
    23:00; at 02:30 8.040 m³ closing at 00:00, with nothing saying it had changed; November opened
    at 00:00, so October as billed plus November was 0.61 m³ short of the register."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 9, 1, tzinfo=UTC), None)])
    _store(url, [START + timedelta(hours=h) for h in range(int((NOV - START) / timedelta(hours=1)))])
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(url)) as client:

        def october() -> dict:
            return client.get("/billing/determinants?period=2026-10", headers=headers).json()["items"][0]

        def nem12() -> dict[str, str]:
            return _nem12_stamps(client.get("/billing/nem12?period=2026-10-31/2026-11-01", headers=headers).text)

        before, file_before = october(), nem12()
        _store(url, [NOV, NOV + timedelta(hours=1), NOV + timedelta(hours=2)], received=ARRIVED_LATE)
        after, file_after = october(), nem12()
        november = client.get("/billing/determinants?period=2026-11", headers=headers).json()["items"][0]
    line = before["lines"][0]
    assert (line["closing"]["ts"], line["complete"], line["issues"]) == (
        "2026-10-31T23:00:00Z",
        False,
        ["no_read_after_end"],
    )
    assert line["as_of"] == before["as_of"] == "2026-10-31T23:01:00Z"
    line = after["lines"][0]
    assert (line["closing"]["ts"], line["complete"], line["issues"]) == ("2026-11-01T00:00:00Z", True, [])
    assert line["as_of"] == after["as_of"] == "2026-11-01T02:00:00Z"
    assert after["consumption_m3"] == "8.040"
    billed = Decimal(after["consumption_m3"]) + Decimal(november["consumption_m3"])
    assert billed == _volume(NOV + timedelta(hours=2)) - _volume(datetime(2026, 10, 1, tzinfo=UTC))  # none lost
    assert file_before == {"20261031": "20261031230100"}  # the day's newest read, not the export's time
    assert file_after == {"20261031": "20261101020000"}
