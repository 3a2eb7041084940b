"""Ended sign-in sessions and old sign-in links are deleted on a clock (server.sign_in_purge): before,
only as a link was made or opened or the form signed someone in, so a server nobody signed in to
kept them all. The server purges FIRST_PURGE_AFTER after it starts (a minute; shortened here) and
every PURGE_EVERY (an hour) while it runs; what is still live (a session in its shift, a link within
its day after expiry) is kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from server import sign_in_purge
from server.app import create_app
from server.auth import Principal, create_api_key, key_id_of
from server.sign_in_links import make_link, session_for_key

#: Rows past their time: a link expired 25 hours ago (kept 24), a session ended a minute ago.
_OLD_ROWS = (
    """INSERT INTO sign_in_links (token_hash, key_id, created_at, expires_at)
    VALUES (repeat('a', 64), %s, now() - interval '25 hours 10 minutes', now() - interval '25 hours')""",
    """INSERT INTO sign_in_sessions (secret_hash, key_id, created_at, expires_at)
    VALUES (repeat('b', 64), %s, now() - interval '12 hours 1 minute', now() - interval '1 minute')""",
)


def _add_old_rows(conn: psycopg.Connection, key_id: str) -> None:
    for insert in _OLD_ROWS:
        conn.execute(insert, (key_id,))


def _counts(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM sign_in_links), (SELECT count(*) FROM sign_in_sessions)"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sign_in_purge, "FIRST_PURGE_AFTER", timedelta(milliseconds=100))
    monkeypatch.setattr(sign_in_purge, "PURGE_EVERY", timedelta(hours=1))


def test_the_server_purges_ended_sessions_and_old_links_soon_after_it_starts(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key_id = key_id_of(create_api_key(conn, "care desk", ["customer_care"]))
        make_link(conn, key_id)  # within its 10 minutes: kept
        session_for_key(conn, Principal(key_id, "care desk", frozenset({"customer_care"})))  # in its shift: kept
        _add_old_rows(conn, key_id)
        assert _counts(conn) == (2, 2)
        with TestClient(create_app(migrated_database_url)):
            _until(lambda: _counts(conn) == (1, 1), f"the old rows were not purged after start: {_counts(conn)}")
        kept = conn.execute(
            "SELECT (SELECT bool_and(expires_at > now()) FROM sign_in_links),"
            " (SELECT bool_and(expires_at > now()) FROM sign_in_sessions)"
        ).fetchone()
        assert kept == (True, True)  # the live link and session are the ones kept


def test_the_server_purges_again_while_it_runs(migrated_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No one signs in, yet rows that ended after a round are deleted by the next one."""
    monkeypatch.setattr(sign_in_purge, "PURGE_EVERY", timedelta(milliseconds=100))
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key_id = key_id_of(create_api_key(conn, "care desk", ["customer_care"]))
        _add_old_rows(conn, key_id)
        with TestClient(create_app(migrated_database_url)):
            _until(lambda: _counts(conn) == (0, 0), f"the first round purged nothing: {_counts(conn)}")
            _add_old_rows(conn, key_id)  # ended since the first round
            _until(lambda: _counts(conn) == (0, 0), f"no later round purged them: {_counts(conn)}")


def test_a_round_without_the_database_purges_nothing_and_says_so_quietly(migrated_database_url: str) -> None:
    """The database away (or not migrated yet) as a round comes: nothing raised into the server, the
    next round tries again."""
    with ConnectionPool("postgresql://127.0.0.1:1/none?connect_timeout=1", min_size=1, open=False) as pool:
        pool.open(wait=False)
        assert sign_in_purge.purge_now(pool) is False
    with ConnectionPool(migrated_database_url, min_size=1, kwargs={"autocommit": True}) as pool:
        assert sign_in_purge.purge_now(pool) is True
