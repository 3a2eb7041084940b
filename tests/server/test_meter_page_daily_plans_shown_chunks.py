"""The meter page's days are asked of the chunks of readings (7 days each) around the days shown, not of
every chunk the meter's history fills. Before, the day's query (server.meters.repository._DAILY) looked
for reads between bounds it worked out itself (a subquery, an installation's instant in a lateral join),
which TimescaleDB cannot know when it plans the query: it laid out every chunk of readings for each of
its six looks at them, and a meter page cost 49 ms in a database holding three years of reads against
3.5 ms in one holding a month, the meter's own history a month or three years alike.

The plans are the database's own (auto_explain, its lines sent to the test's connection): each query
daily_consumption runs is counted by the chunks of readings its plan names."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from server.meters.repository import daily_consumption
from tests.server.test_meter_page_daily_cards_as_billed import _record

START = datetime(2025, 1, 1, tzinfo=UTC)
REMOVED = datetime(2026, 1, 10, tzinfo=UTC)
FITTED_AGAIN = datetime(2026, 1, 20, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)


def _twice_daily(since: datetime, until: datetime, register: Decimal) -> list[tuple[datetime, Decimal]]:
    """Reads at 06:00 and 18:00 from ``since`` to before ``until``, the register 0.010 m³ up each time."""
    reads, ts = [], since + timedelta(hours=6)
    while ts < until:
        register += Decimal("0.010")
        reads.append((ts, register))
        ts += timedelta(hours=12)
    return reads


def test_the_page_s_days_plan_only_the_chunks_near_them(migrated_database_url: str) -> None:
    """X fitted on 1 January 2025 with a card (0.500), removed on 10 January 2026 with one (read none
    then), fitted again on 20 January 2026 with a card, read twice a day throughout: 96 weeks of reads,
    three cards whose reads are looked for. The page's 30 days plan a handful of chunks, not 96 a look."""
    url = migrated_database_url
    first_life = _twice_daily(START, REMOVED, Decimal("0.500"))
    _record(
        url,
        [
            (START, REMOVED, Decimal("0.500"), first_life[-1][1] + Decimal("0.005")),
            (FITTED_AGAIN, None, Decimal("2.000"), None),
        ],
        first_life + _twice_daily(FITTED_AGAIN, END, Decimal("2.000")),
    )
    plans: list[str] = []
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT refresh_consumption(%s, %s)", (START, END))
        chunks = {
            row["chunk_name"]
            for row in conn.execute(
                "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
            )
        }
        assert len(chunks) > 90  # the meter's history: a chunk a week
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET client_min_messages = log")  # auto_explain's lines to this connection
        days = daily_consumption(conn, "X", 30)  # type: ignore[arg-type]  # dict rows, as the page reads them
        conn.execute("RESET client_min_messages")
    assert [row["date"] for row in days][-1] == datetime(2026, 10, 31).date() and len(days) == 30
    assert plans, "auto_explain said no plan"
    # a scan of a chunk, as EXPLAIN names it: "... on _hyper_1_93_chunk r_2" (its index is named after it too)
    scanned = [re.findall(r" on (_hyper_\d+_\d+_chunk)\b", plan) for plan in plans]
    readings_chunks = [sum(1 for name in names if name in chunks) for names in scanned]
    planned = [len(names) for names in scanned]
    assert max(readings_chunks) <= 8, (readings_chunks, planned)
    assert sum(readings_chunks) <= 16, (readings_chunks, planned)
