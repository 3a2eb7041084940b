"""GET /meters' list (server.meters.repository.list_meters) is the truth of one moment.

A listed meter not read within 7 days has its latest reading looked for further back, in spans, a query
each for all such meters (server.meters.repository: bounds known when each is planned). Before, those
queries ran each in its own moment after the list's rows': a gateway's spool delivering a reading of this
hour with ones of the days it held back, stored between them, listed a latest reading from those days, the
latest at no moment. Now they run in one read-only REPEATABLE READ transaction (server.snapshot), or in
the caller's (the meters page's one moment), as get_meter's do (tests/server/test_get_meter_in_one_moment.py;
the database and the delivery are both tests', tests/server/delivery_between_statements.py). The oracle
is the old one look at all of each meter's readings (benchmarks.bench_meters_list_plans.unbounded_list_meters),
asked before and after the delivery."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from benchmarks.bench_meters_list_plans import unbounded_list_meters
from server.meters import repository
from server.snapshot import one_moment
from tests.query_plans import after_statement, statements_run
from tests.server.delivery_between_statements import DAY, DELIVERED, NOW, deliver, silent_meter_database, undeliver


@pytest.fixture(scope="module")
def url(timescale_admin_url: str, migrated_template: str) -> Iterator[str]:
    """NEVER registered and never read, READ and SILENT as in the scenario: listed in that order."""
    with silent_meter_database(timescale_admin_url, migrated_template, never_read=True) as url:
        yield url


@pytest.fixture
def conn(url: str) -> Iterator[psycopg.Connection[Any]]:
    """Autocommit, rows as dicts, as the server's pool lends them."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.mark.parametrize("not_read_since", [None, NOW - 3 * DAY], ids=["all", "not read for 3 days"])
@pytest.mark.parametrize("within", ["alone", "a page's moment"])
def test_a_delivery_stored_while_the_meters_are_listed_shows_wholly_or_not_at_all(
    url: str, conn: psycopg.Connection[Any], within: str, not_read_since: datetime | None
) -> None:
    """Whichever of list_meters' statements the delivery is stored after, the list is as it was before it
    (SILENT's latest 30 days ago, through GW1) or after it (this hour's, through GW3; not listed among
    those not read for 3 days). Before, stored after the first, SILENT was listed with the held-back
    reading of 10 days ago (through GW2): the latest at no moment."""
    with psycopg.connect(url, autocommit=True) as writer:
        before = unbounded_list_meters(conn, None, 10, not_read_since)
        deliver(writer)
        after = unbounded_list_meters(conn, None, 10, not_read_since)
        undeliver(writer)
        silent = [[row["latest_ts"] for row in rows if row["meter_id"] == "SILENT"] for rows in (before, after)]
        assert silent == [[NOW - 30 * DAY], [DELIVERED[-1][0]] if not_read_since is None else []]
        n = 1
        while True:
            moment = one_moment(conn) if within != "alone" else nullcontext()
            with after_statement(conn, n, lambda: deliver(writer)) as run, moment:
                found = repository.list_meters(conn, None, 10, not_read_since)
            undeliver(writer)
            listed = [(row["latest_ts"], row["last_gateway_id"]) for row in found if row["meter_id"] == "SILENT"]
            assert found in (before, after), f"delivered after statement {n} of {run[0]}: SILENT {listed}"
            if run[0] <= n:  # (the last statement: every place tried)
                break
            n += 1
    assert n >= 3


def test_a_list_of_meters_read_this_week_is_one_statement_with_no_transaction(
    conn: psycopg.Connection[Any],
) -> None:
    """The list's fast path is kept: meters read within 7 days, or with no readings, are listed by the
    first query alone, with no BEGIN and COMMIT around it."""
    with statements_run() as statements:
        found = repository.list_meters(conn, None, 2)
    assert [row["meter_id"] for row in found] == ["NEVER", "READ"]
    assert found == unbounded_list_meters(conn, None, 2)
    assert len(statements) == 1, statements
