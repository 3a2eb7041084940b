"""``aquami server run`` asks its database once whether it is migrated, not twice.

The command asked (to refuse an unmigrated database in one line, exit 1), then the app's start-up
asked again on a connection of its own: two connections and two round trips with the database
there, and twice the connect timeout before listening with a database host that does not answer.
PostgreSQL counts the sessions each database had (``pg_stat_database.sessions``), which is what is
read here, on a database of the test's own that nothing else connects to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.services import accepts, free_port


def _sessions(admin_url: str, dbname: str) -> tuple[int, int]:
    """Sessions the database has had, and those open now (a fresh connection: a fresh snapshot)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        had = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (dbname,)).fetchone()
        open_now = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'", (dbname,)
        ).fetchone()
    assert had is not None and open_now is not None
    return int(had[0]), int(open_now[0])


def _until(condition_met: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition_met():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_server_run_on_a_migrated_database_opens_one_connection_to_ask_and_the_pools_one(
    migrated_database_url: str, timescale_admin_url: str
) -> None:
    dbname = str(conninfo_to_dict(migrated_database_url)["dbname"])
    _until(lambda: _sessions(timescale_admin_url, dbname)[1] == 0, "the migration's connections never ended")
    before, _ = _sessions(timescale_admin_url, dbname)
    port = free_port()
    command = [str(Path(sys.executable).with_name("aquami")), "server", "run", "--port", str(port)]
    env = {**os.environ, "AQUAMI_DATABASE_URL": migrated_database_url}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until(lambda: server.poll() is None and accepts(port), "the server never listened")
        _until(lambda: _sessions(timescale_admin_url, dbname)[1] == 1, "the pool never opened its connection")
    finally:
        server.terminate()
        server.wait(timeout=30)
    _until(lambda: _sessions(timescale_admin_url, dbname)[1] == 0, "the server's connections outlived it")
    after, _ = _sessions(timescale_admin_url, dbname)
    assert after - before == 2, f"{after - before} sessions: start-up's question once, then the pool's one connection"
