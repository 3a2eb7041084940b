"""The scenario of the one-moment tests of a meter's latest reading (get_meter, list_meters): a
database where SILENT was last read 30 days ago, and a gateway's delivery (this hour's reading with
one of the days its spool held back) stored between a request's statements.

Shared by tests/server/test_get_meter_in_one_moment.py and test_list_meters_in_one_moment.py, which
each asked the same database and delivery of their own copy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests.services import create_database, drop_database

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAY = timedelta(days=1)
#: The delivery stored while SILENT is looked for: a reading of this hour, and one from the days it held back.
DELIVERED = [(NOW - 10 * DAY, 7, "GW2"), (NOW - timedelta(hours=1), 8, "GW3")]


@contextmanager
def silent_meter_database(admin_url: str, template: str, never_read: bool = False) -> Iterator[str]:
    """A database of READ, read daily for 60 days up to now, and SILENT, read last 30 days ago (through
    GW1); with ``never_read``, NEVER too, registered and never read (listed first)."""
    url = create_database(admin_url, template)
    meters = ["('NEVER', true, false)"] if never_read else []
    meters += ["('READ', true, true)", "('SILENT', true, true)"]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO meters (meter_id, registered, has_readings) VALUES " + ", ".join(meters))
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, gateway_id)"
                " SELECT 'READ', %(now)s - d * interval '1 day', 100 - d, 'GW1' FROM generate_series(0, 59) d"
                " UNION ALL SELECT 'SILENT', %(now)s - interval '30 days', 5, 'GW1'",
                {"now": NOW},
            )
            conn.execute("ANALYZE")
        yield url
    finally:
        drop_database(admin_url, url)


def deliver(writer: psycopg.Connection[Any]) -> None:
    """SILENT's delivery, in one transaction, as the collector stores a batch."""
    with writer.transaction():
        for ts, volume, gateway in DELIVERED:
            writer.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, gateway_id) VALUES ('SILENT', %s, %s, %s)",
                (ts, volume, gateway),
            )


def undeliver(writer: psycopg.Connection[Any]) -> None:
    """SILENT's delivery taken away: the database as before it."""
    writer.execute("DELETE FROM readings WHERE meter_id = 'SILENT' AND ts > %s", (NOW - 20 * DAY,))
