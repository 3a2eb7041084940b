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


def _recorded_before_the_reads(conn: psycopg.Connection) -> None:
    """The agreement and the installation, recorded by the test now, dated as recorded in September,
    before the reads (received in October and November here): a line's as_of takes when its
    membership was last recorded too."""
    conn.execute("UPDATE account_membership_changes SET recorded_at = '2026-09-01Z'")


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
        _recorded_before_the_reads(conn)
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


def test_a_move_out_dated_back_after_billing_moves_the_line_s_as_of(migrated_database_url):
    """October is billed on 5 November, the account's line whole: 8.040 m³. On 6 November the tenant's
    move-out on 20 October is recorded: October's line now ends there, 4.560 m³. Before, its
    as_of stayed at the newest read's arrival, so a billing system watching as_of for revisions
    billed the whole month to the tenant who left, and the water after the move-out to no one's bill.
    Now as_of is when the move-out was recorded, later than what was billed."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 9, 1, tzinfo=UTC), None)])
        _recorded_before_the_reads(conn)
    _store(url, [START + timedelta(hours=h) for h in range(int((NOV - START) / timedelta(hours=1)) + 1)])
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(url)) as client:
        billed = client.get("/billing/determinants?period=2026-10", headers=headers).json()["items"][0]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE service_agreements SET end_at = '2026-10-20Z' WHERE account_id = 'A-M'")
            row = conn.execute("SELECT max(recorded_at) FROM account_membership_changes").fetchone()
        revised = client.get("/billing/determinants?period=2026-10", headers=headers).json()["items"][0]
    assert (billed["consumption_m3"], billed["lines"][0]["end"]) == ("8.040", "2026-11-01T00:00:00Z")
    assert (revised["consumption_m3"], revised["lines"][0]["end"]) == ("4.560", "2026-10-20T00:00:00Z")
    assert billed["as_of"] == billed["lines"][0]["as_of"] == "2026-11-01T00:01:00Z"
    assert row is not None
    stamp = row[0].astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert revised["as_of"] == revised["lines"][0]["as_of"] == stamp
    assert revised["as_of"] > billed["as_of"]


def _last_recorded(conn: psycopg.Connection) -> str:
    """When the newest record of the membership log was made, as a NEM12 UpdateDateTime (UTC here)."""
    row = conn.execute("SELECT max(recorded_at) FROM account_membership_changes").fetchone()
    assert row is not None and row[0] is not None
    return f"{row[0].astimezone(UTC):%Y%m%d%H%M%S}"


def test_a_move_out_dated_back_after_a_nem12_download_moves_its_day_s_update_date_time(migrated_database_url):
    """The account's file for 19-21 October is downloaded; then the tenant's move-out at noon on
    20 October is recorded. Its 20 October now holds the morning only, the afternoon null, and
    21 October is in the file no more. Before, 20 October's UpdateDateTime stayed at its newest read's
    arrival (00:01 the next day), so an MDM re-importing the days whose UpdateDateTime moved kept the
    whole day billed to the tenant who left at noon. Now it is when the move-out was recorded."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 9, 1, tzinfo=UTC), None)])
        _recorded_before_the_reads(conn)
    _store(url, [START + timedelta(hours=h) for h in range(int((NOV - START) / timedelta(hours=1)) + 1)])
    headers = {"Authorization": f"Bearer {key}"}
    period = "/billing/nem12?period=2026-10-19/2026-10-22&account=A-M"
    with TestClient(create_app(url)) as client:
        billed = client.get(period, headers=headers)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE service_agreements SET end_at = '2026-10-20T12:00Z' WHERE account_id = 'A-M'")
            recorded = _last_recorded(conn)
        revised = client.get(period, headers=headers)
    assert billed.status_code == revised.status_code == 200, (billed.text, revised.text)
    # each day's newest read: the one at midnight after it, which closes its last hour
    assert _nem12_stamps(billed.text) == {
        "20261019": "20261020000100",
        "20261020": "20261021000100",
        "20261021": "20261022000100",
    }
    assert _nem12_stamps(revised.text) == {"20261019": "20261020000100", "20261020": recorded}
    assert recorded > "20261022000100"  # later than any day the first file gave
    day = next(line.split(",") for line in revised.text.splitlines() if line.startswith("300,20261020,"))
    assert day[2:14] == ["0.01"] * 12 and day[14:26] == ["0"] * 12 and day[26] == "V"  # the afternoon null


def test_a_meter_exchange_entered_late_moves_the_exchange_day_s_update_date_time(migrated_database_url):
    """The service point's file (no account) for 19-20 October is downloaded; then the exchange of
    its meter for N at noon on 19 October is entered. 19 October is now N's day, its afternoon null
    (N has sent nothing yet), in N's 200 record and no longer M's. Before, 19 October's UpdateDateTime stayed
    at M's newest read's arrival. Now it is when the exchange was entered."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 9, 1, tzinfo=UTC), None)])
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('N', true)")
        _recorded_before_the_reads(conn)
    _store(url, [START + timedelta(hours=h) for h in range(int((NOV - START) / timedelta(hours=1)) + 1)])
    headers = {"Authorization": f"Bearer {key}"}
    period = "/billing/nem12?period=2026-10-19/2026-10-21"
    with TestClient(create_app(url)) as client:
        before = client.get(period, headers=headers)
        with psycopg.connect(url) as conn:  # one transaction, as register-meters records an exchange
            conn.execute("UPDATE meter_installations SET removed_at = '2026-10-19T12:00Z' WHERE meter_id = 'M'")
            conn.execute(
                "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) "
                "VALUES ('SP-M', 'N', '2026-10-19T12:00Z')"
            )
            recorded = _last_recorded(conn)
        after = client.get(period, headers=headers)
    assert before.status_code == after.status_code == 200, (before.text, after.text)
    assert _nem12_stamps(before.text) == {"20261019": "20261020000100", "20261020": "20261021000100"}
    assert [line.split(",")[6] for line in after.text.splitlines() if line.startswith("200,")] == ["N"]
    stamps = _nem12_stamps(after.text)
    assert stamps["20261019"] == recorded
    assert stamps["20261020"] >= recorded  # a day without reads: the export's time, as before


def test_a_day_s_update_date_time_is_its_newest_read_s_arrival_when_two_windows_share_an_hour(
    migrated_database_url,
):
    """The meter removed at 12:15 on 19 October and fitted back at 12:18 (a technician's check): its
    two windows share the noon hour, each with that hour's newest read's arrival on its side. A read
    at 12:14, in the first window, arrived the next day at 02:00, the newest of the day's reads.
    Before, the hour kept the arrival of whichever window's row came last (the second's, 13:01), so
    the day's UpdateDateTime said 00:01 the next day and an MDM re-importing revised days missed it."""
    url = migrated_database_url
    noon = datetime(2026, 10, 19, 12, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        key = create_api_key(conn, "billing", ["billing"])
        _setup(conn, "M", [(datetime(2026, 9, 1, tzinfo=UTC), noon + timedelta(minutes=15))])
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP-M', 'M', %s)",
            (noon + timedelta(minutes=18),),
        )
        _recorded_before_the_reads(conn)
    hourly = [START + timedelta(hours=h) for h in range(int((NOV - START) / timedelta(hours=1)) + 1)]
    _store(url, sorted([*hourly, noon + timedelta(minutes=20)]))
    late = datetime(2026, 10, 20, 2, tzinfo=UTC)
    _store(url, [noon + timedelta(minutes=14)], received=late)
    with TestClient(create_app(url)) as client:
        got = client.get("/billing/nem12?period=2026-10-19/2026-10-20", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200, got.text
    assert _nem12_stamps(got.text) == {"20261019": f"{late:%Y%m%d%H%M%S}"}
