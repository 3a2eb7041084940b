"""A demo run's key is the only demo key that signs in: the keys earlier runs printed are revoked at
start-up, and a run's own when it stops; keys a person made in the demo's database are left alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aquami.demo_keys import DEMO_KEYS, issue_demo_key, revoke_demo_keys, revoke_on_stop
from server.auth import create_api_key, verify_api_key


@pytest.fixture(scope="module")
def demo_database() -> Iterator[str]:
    """One migrated database for the module: what holds after any history holds after a longer one."""
    from collector.migrate import migrate
    from tests.services import admin_url, create_database, drop_database

    server = admin_url()
    url = create_database(server)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(server, url)


def _signs_in(conn: psycopg.Connection, key: str) -> bool:
    return verify_api_key(conn, key) is not None


@settings(max_examples=25)
@given(history=st.lists(st.sampled_from(["demo run", "demo stopped", "person's key"]), min_size=1, max_size=6))
def test_only_the_last_runs_key_signs_in_and_peoples_keys_stay(demo_database: str, history: list[str]) -> None:
    with psycopg.connect(demo_database, autocommit=True) as conn:
        issue_demo_key(conn)  # a demo ran on this database before, and stopped
        revoke_demo_keys(conn)
        demo_keys: list[str] = []
        people: list[str] = []
        stopped = True
        for step in history:
            if step == "demo run":
                demo_keys.append(issue_demo_key(conn))
                stopped = False
            elif step == "demo stopped":
                revoke_on_stop(demo_database)
                stopped = True
            else:  # a person's key, even one named like the demo's
                people.append(create_api_key(conn, "demo" if len(people) % 2 else "ops", ["admin"]))
        assert not any(_signs_in(conn, key) for key in demo_keys[:-1])  # before: every one still signed in
        if demo_keys:
            assert _signs_in(conn, demo_keys[-1]) == (not stopped)
        assert all(_signs_in(conn, key) for key in people)


def test_a_database_a_demo_filled_before_its_keys_were_recorded_has_them_revoked(demo_database: str) -> None:
    """Demos before the table named their keys "demo", role admin only: those are revoked once."""
    with psycopg.connect(demo_database, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {DEMO_KEYS}")
        old = create_api_key(conn, "demo", ["admin"])
        reader = create_api_key(conn, "demo", ["reader"])
        new = issue_demo_key(conn)
        assert not _signs_in(conn, old)
        assert _signs_in(conn, new) and _signs_in(conn, reader)
        person = create_api_key(conn, "demo", ["admin"])  # made after the table: a person's, left alone
        issue_demo_key(conn)
        assert _signs_in(conn, person) and not _signs_in(conn, new)


def _demo_run(database_url: str, *args: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AQUAMI_")}
    command = [sys.executable, "-m", "aquami", "demo", "--port", "0", "--meters", "2", "--database-url", database_url]
    return subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean)


def _printed_key(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        output.append(line)
        if match := re.search(r"API key \(role admin\): (aqk_\S+)", line):
            return match.group(1)
    raise AssertionError("".join(output))


def test_a_killed_runs_key_is_revoked_by_the_next_run_and_a_stopped_runs_by_itself(database_url: str) -> None:
    """The proof: a key printed by an earlier run still signed in as admin on the next run over the
    same database. Run 1 is killed (it never stops cleanly), run 2 runs for a second and stops."""
    first = _demo_run(database_url)
    try:
        killed_key = _printed_key(first)
    finally:
        first.kill()
        first.communicate(timeout=60)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert _signs_in(conn, killed_key)  # nothing revoked it: the process was killed
    second = _demo_run(database_url, "--duration", "1")
    stopped_key = _printed_key(second)
    rest, _ = second.communicate(timeout=120)
    assert second.returncode == 0 and "stopped cleanly" in rest, rest
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert not _signs_in(conn, killed_key)
        assert not _signs_in(conn, stopped_key)
