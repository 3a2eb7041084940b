"""GET /meters/{id}'s meter (server.meters.repository.get_meter) is the truth of one moment.

A meter not read within 7 days has its latest reading looked for further back, in spans, a query each
(server.meters.repository: bounds known when each is planned). Before, those queries ran each in its
own moment after the meter's row's: a gateway's spool delivering a reading of this hour with ones of the
days it held back, stored between them, answered a latest reading from those days, the latest at no
moment. Now they run in one read-only REPEATABLE READ transaction (server.snapshot), or in the caller's
(the meter page's one moment). The oracle is the old one look at all of a meter's readings
(benchmarks.bench_meter_page_plans.UNBOUNDED), asked before and after the delivery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from benchmarks.bench_meter_page_plans import UNBOUNDED
from server.meters import repository
from server.snapshot import one_moment
from tests.services import create_database, drop_database

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
#: The delivery stored while SILENT is looked for: a reading of this hour, and one from the days it held back.
DELIVERED = [(NOW - 10 * DAY, 7, "GW2"), (NOW - timedelta(hours=1), 8, "GW3")]


@pytest.fixture(scope="module")
def url(timescale_admin_url: str, migrated_template: str) -> Iterator[str]:
    """READ read daily for 60 days up to now, and SILENT read last 30 days ago (through GW1)."""
    url = create_database(timescale_admin_url, migrated_template)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO meters (meter_id, registered, has_readings)"
                " VALUES ('READ', true, true), ('SILENT', true, true)"
            )
            conn.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, gateway_id)"
                " SELECT 'READ', %(now)s - d * interval '1 day', 100 - d, 'GW1' FROM generate_series(0, 59) d"
                " UNION ALL SELECT 'SILENT', %(now)s - interval '30 days', 5, 'GW1'",
                {"now": NOW},
            )
            conn.execute("ANALYZE")
        yield url
    finally:
        drop_database(timescale_admin_url, url)


@pytest.fixture
def conn(url: str) -> Iterator[psycopg.Connection[Any]]:
    """Autocommit, rows as dicts, as the server's pool lends them."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def deliver(writer: psycopg.Connection[Any]) -> None:
    """SILENT's delivery, in one transaction, as the collector stores a batch."""
    with writer.transaction():
        for ts, volume, gateway in DELIVERED:
            writer.execute(
                "INSERT INTO readings (meter_id, ts, volume_m3, gateway_id) VALUES ('SILENT', %s, %s, %s)",
                (ts, volume, gateway),
            )


def undeliver(writer: psycopg.Connection[Any]) -> None:
    writer.execute("DELETE FROM readings WHERE meter_id = 'SILENT' AND ts > %s", (NOW - 20 * DAY,))


@contextmanager
def after_statement(conn: psycopg.Connection[Any], n: int, then: Callable[[], None]) -> Iterator[list[int]]:
    """``then()`` run once the ``n``-th statement ``conn`` runs inside the block has its answer; yields
    the statements' count so far."""
    execute = psycopg.Cursor.execute
    run = [0]

    def counting(self: psycopg.Cursor[Any], query: Any, params: Any = None, **kwargs: Any) -> Any:
        result = execute(self, query, params, **kwargs)
        if self.connection is conn:
            run[0] += 1
            if run[0] == n:
                then()
        return result

    setattr(psycopg.Cursor, "execute", counting)  # noqa: B010 (mypy: a method is not assignable)
    try:
        yield run
    finally:
        setattr(psycopg.Cursor, "execute", execute)  # noqa: B010


@pytest.mark.parametrize("within", ["alone", "a page's moment"])
def test_a_delivery_stored_while_the_meter_is_read_shows_wholly_or_not_at_all(
    url: str, conn: psycopg.Connection[Any], within: str
) -> None:
    """Whichever of get_meter's statements the delivery is stored after, the meter is as it was before
    it (latest 30 days ago, through GW1) or after it (this hour's, through GW3). Before, stored after the
    first, it was the held-back reading of 10 days ago (through GW2): the latest at no moment."""
    with psycopg.connect(url, autocommit=True) as writer:
        before = UNBOUNDED["get_meter"](conn, "SILENT")
        deliver(writer)
        after = UNBOUNDED["get_meter"](conn, "SILENT")
        undeliver(writer)
        assert (before["latest_ts"], after["latest_ts"]) == (NOW - 30 * DAY, DELIVERED[-1][0])
        n = 1
        while True:
            moment = one_moment(conn) if within != "alone" else nullcontext()
            with after_statement(conn, n, lambda: deliver(writer)) as run, moment:
                found = repository.get_meter(conn, "SILENT")
            undeliver(writer)
            assert found in (before, after), f"delivered after statement {n} of {run[0]}: {found}"
            if run[0] <= n:  # (the last statement: every place tried)
                break
            n += 1
    assert n >= 3
