"""NEM12 with ``account=``: a tenancy change splits the hour it falls in as the determinants do.

The determinants split a change of tenant at the last read at or before it (the outgoing tenant's
closing read is the incoming one's opening read, as at a billing period's end): with a read at the
change (a special read, or a meter read every 15 minutes) each side has its own part of the hour;
without one, the interval the change falls in is the incoming tenant's. Each account's NEM12 file gave
the change's whole hour to the outgoing tenant instead (its hours up to the one the agreement ended in,
the incoming tenant's from the next): a move-out at 10:30 with hourly reads was 0.11 m³ in the
outgoing tenant's file against its determinant's 0.100, and 0.13 in the incoming one's against 0.140.
Now each account's file holds the water its determinant bills.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from server.billing import repository
from server.billing.nem12 import nem12_file

DAY = datetime(2026, 11, 2, tzinfo=UTC)
RATE = Decimal("0.010")  # m³ an hour


def _moved(url: str, move: datetime, every: int, read_at_move: bool) -> dict[datetime, Decimal]:
    """Meter M at SP, read every ``every`` minutes; OUT's agreement ends at ``move``, IN's starts."""
    reads: dict[datetime, Decimal] = {}
    ts = DAY - timedelta(days=1)
    while ts <= DAY + timedelta(days=2):
        reads[ts] = Decimal(100) + RATE * Decimal((ts - DAY).total_seconds()) / 3600
        ts += timedelta(minutes=every)
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('M', true)")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('OUT', 'Out'), ('IN', 'In')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) VALUES ('SP', 'M', %s)",
            (DAY - timedelta(days=30),),
        )
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) "
            "VALUES ('OUT', 'SP', %(a)s, %(m)s), ('IN', 'SP', %(m)s, NULL)",
            {"a": DAY - timedelta(days=30), "m": move},
        )
        with conn.cursor().copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN") as copy:
            for ts, volume in reads.items():
                copy.write_row(("M", ts, volume))
        if read_at_move and move not in reads:  # the move-out read a person took
            reads[move] = Decimal(100) + RATE * Decimal((move - DAY).total_seconds()) / 3600
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, quality, quality_by, quality_reason) "
                "VALUES ('M', %s, %s, 'substituted', 'desk', 'move-out read')",
                (move, reads[move]),
            )
            # the read after it, closing the incoming tenant's side of the hour, corrected by a person
            conn.execute(
                "UPDATE readings SET quality = 'edited', quality_by = 'desk', quality_reason = 'read again' "
                "WHERE meter_id = 'M' AND ts = %s",
                (min(ts for ts in reads if ts > move),),
            )
        conn.execute("SELECT refresh_consumption(%s, %s)", (DAY - timedelta(days=1), DAY + timedelta(days=2)))
    return reads


def _in_file(url: str, account: str) -> tuple[Decimal, list[str]]:
    """The account's file's water (each day's E1 less its B1) and the E1 flags of 10:00-11:00."""
    with psycopg.connect(url) as conn:
        text = nem12_file(conn, DAY, DAY + timedelta(days=1), account=account)
    water, sign, flags = Decimal(0), 1, []
    for fields in (line.split(",") for line in text.splitlines()):
        if fields[0] == "200":
            sign = 1 if fields[4] == "E1" else -1
        elif fields[0] == "300":
            water += sign * sum(Decimal(v) for v in fields[2:26])
        elif fields[0] == "400" and sign == 1 and int(fields[1]) <= 11 <= int(fields[2]):
            flags = fields[3:6]
    return water, flags


@pytest.mark.parametrize(
    ("every", "minute", "read_at_move"),
    [(60, 30, False), (60, 30, True), (15, 30, False), (15, 50, False), (60, 0, False), (60, 50, True)],
    ids=["hourly", "hourly-move-read", "quarterly", "quarterly-10:50", "on-the-hour", "hourly-10:50-move-read"],
)
def test_each_account_s_file_holds_what_its_determinant_bills(
    migrated_database_url: str, every: int, minute: int, read_at_move: bool
) -> None:
    url = migrated_database_url
    move = DAY + timedelta(hours=10, minutes=minute)
    reads = _moved(url, move, every, read_at_move)
    billed = {}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for account in ("OUT", "IN"):
            (line,) = repository.determinant_lines(conn, DAY, DAY + timedelta(days=1), account, None, None)  # type: ignore[arg-type]
            billed[account] = line["consumption_m3"]
    split = max(ts for ts in reads if ts <= move)  # the determinants split at the last read at or before it
    assert billed == {"OUT": reads[split] - reads[DAY], "IN": reads[DAY + timedelta(days=1)] - reads[split]}
    files = {account: _in_file(url, account) for account in billed}
    assert {account: water for account, (water, _) in files.items()} == billed
    if read_at_move:  # the hour the move-out read splits holds it on both sides: substituted (weaker than
        # the edited read closing the incoming side), with its reason
        assert files["OUT"][1] == files["IN"][1] == ["S18", "0", "move-out read"]
