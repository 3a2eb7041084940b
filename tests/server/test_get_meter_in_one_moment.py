"""GET /meters/{id}'s meter (server.meters.repository.get_meter) is the truth of one moment.

A meter not read within 7 days has its latest reading looked for further back, in spans, a query each
(server.meters.repository: bounds known when each is planned). Before, those queries ran each in its
own moment after the meter's row's: a gateway's spool delivering a reading of this hour with ones of the
days it held back, stored between them, answered a latest reading from those days, the latest at no
moment. Now they run in one read-only REPEATABLE READ transaction (server.snapshot), or in the caller's
(the meter page's one moment). The oracle is the old one look at all of a meter's readings
(benchmarks.bench_meter_page_plans.UNBOUNDED), asked before and after the delivery."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from benchmarks.bench_meter_page_plans import UNBOUNDED
from server.meters import repository
from server.snapshot import one_moment
from tests.query_plans import after_statement
from tests.server.delivery_between_statements import DAY, DELIVERED, NOW, deliver, silent_meter_database, undeliver


@pytest.fixture(scope="module")
def url(timescale_admin_url: str, migrated_template: str) -> Iterator[str]:
    """READ and SILENT, as in the scenario (tests/server/delivery_between_statements.py)."""
    with silent_meter_database(timescale_admin_url, migrated_template) as url:
        yield url


@pytest.fixture
def conn(url: str) -> Iterator[psycopg.Connection[Any]]:
    """Autocommit, rows as dicts, as the server's pool lends them."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


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
