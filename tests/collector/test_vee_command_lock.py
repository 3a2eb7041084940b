"""``aquami collector vee`` and the collector's hourly round take turns: the command waits for the
rounds' lock, and says so, instead of running beside a round over the same days."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from typer.testing import CliRunner

from aquami.cli import app
from collector.vee.rounds import ROUND_LOCK_KEY
from tests.lock_waits import waiting_for_advisory

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _waiting_for_the_lock(conn: psycopg.Connection) -> bool:
    """Whether a session of this database (not another pytest worker's) waits for the rounds' lock."""
    return bool(waiting_for_advisory(conn, ROUND_LOCK_KEY))


def test_the_vee_command_waits_for_a_round_under_way_and_then_runs(migrated_database_url):
    """Before, the command took no lock: run beside a round over the same days, one of the two
    failed with UniqueViolation on vee_flags_pkey (3 times in 3)."""
    url = migrated_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO meters (meter_id, registered) VALUES ('C1', true)")
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, received_at) "
            "SELECT 'C1', t, 100 + 0.01 * extract(epoch FROM t - %(f)s) / 3600, t "
            "FROM generate_series(%(f)s::timestamptz, %(n)s::timestamptz, '1 hour') t "
            "WHERE extract(hour FROM t) NOT IN (3, 4, 5)",
            {"f": NOW - timedelta(days=3), "n": NOW},
        )
    results: list[Any] = []
    args = ["collector", "vee", "--from", (NOW - timedelta(days=3)).isoformat(), "--to", NOW.isoformat()]
    command = threading.Thread(
        target=lambda: results.append(CliRunner().invoke(app, args, env={"AQUAMI_DATABASE_URL": url}))
    )
    with psycopg.connect(url, autocommit=True) as round_in_progress:
        round_in_progress.execute("SELECT pg_advisory_lock(%s)", (ROUND_LOCK_KEY,))  # a round under way
        command.start()
        deadline = time.monotonic() + 120  # a bound on a loaded machine, not a timing assertion
        while command.is_alive() and not _waiting_for_the_lock(round_in_progress) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_for_the_lock(round_in_progress), "the command ran beside the round"
        estimated = round_in_progress.execute("SELECT count(*) FROM readings WHERE quality = 'estimated'").fetchone()
        assert estimated == (0,)
    # the round's session ended: its lock is given back, and the command goes ahead
    command.join(timeout=300)
    assert not command.is_alive()
    result = results[0]
    assert result.exit_code == 0, result.output
    assert "waiting for the VEE round under way" in result.stderr
    assert json.loads(result.stdout)["estimates"] == 9
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_try_advisory_lock(%s)", (ROUND_LOCK_KEY,)).fetchone() == (True,)
