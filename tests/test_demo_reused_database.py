"""``aquami demo`` on a database an earlier run filled (``--database-url``, ``--data-dir``).

The history's reads already stored are left as they are (readings are unique by meter and instant),
and the demo says so: it said "10100 historical readings loaded" again on a second run that stored
none of them. A second run leaves one alert and one enquiry per episode, as the first did."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
from typer.testing import CliRunner

from aquami.cli import app
from aquami.demo import HistoryLoaded, demo_fleet, load_history
from server.meters.repository import register_meters

FIRST_RUN = datetime(2026, 12, 1, 9, 41, tzinfo=UTC)


def _readings(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert row is not None
    return int(row[0])


def test_the_history_already_stored_is_neither_written_again_nor_said_loaded(migrated_database_url: str) -> None:
    fleet = demo_fleet(2, 7, FIRST_RUN)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        register_meters(conn, [(m.meter_id, None, "customer") for m in fleet])
    first = load_history(migrated_database_url, fleet, FIRST_RUN, 2)
    assert first == HistoryLoaded(read=2 * (2 * 24 + 1), stored=2 * (2 * 24 + 1))
    assert first.line() == "· 98 historical readings loaded"
    assert _readings(migrated_database_url) == 98

    again = load_history(migrated_database_url, fleet, FIRST_RUN + timedelta(minutes=15), 2)
    assert again == HistoryLoaded(read=98, stored=0)
    assert again.line() == "· the 98 historical readings were stored already (an earlier run's): none loaded"
    assert _readings(migrated_database_url) == 98

    # three hours on, the window's newest three hours are new and its oldest three were stored before
    later = load_history(migrated_database_url, fleet, FIRST_RUN + timedelta(hours=3), 2)
    assert later == HistoryLoaded(read=98, stored=6)
    assert later.line() == "· 6 historical readings loaded (92 more were stored already, an earlier run's)"
    assert _readings(migrated_database_url) == 104


def _counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("alerts", "enquiries", "accounts", "service_agreements", "meter_installations")
        }


def test_a_second_demo_run_on_the_same_database_says_what_it_loaded_and_doubles_nothing(database_url: str) -> None:
    options = ["--database-url", database_url, "--duration", "2", "--port", "0", "--meters", "3"]
    runs = []
    for _ in range(2):
        result = CliRunner().invoke(app, ["demo", *options, "--poll-interval", "0.5"], terminal_width=400)
        assert result.exit_code == 0, result.output
        runs.append((result.output, _counts(database_url)))
    (first, after_first), (second, after_second) = runs
    assert re.search(r"^· \d+ historical readings loaded$", first, re.MULTILINE), first
    none_new = r"^· the \d+ historical readings were stored already \(an earlier run's\): none loaded$"
    some_new = r"^· \d+ historical readings loaded \(\d+ more were stored already, an earlier run's\)$"
    assert re.search(none_new, second, re.M) or re.search(some_new, second, re.M), second
    assert after_first["alerts"] > 0 and after_first["enquiries"] > 0, after_first  # meter 3's leak
    assert after_second == after_first
