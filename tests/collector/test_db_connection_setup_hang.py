"""A database connection that goes silent after it is accepted, before its setup is answered.

The writer's waits on the database are bounded (:mod:`collector.db`): a connection attempt by its
``connect_timeout``, a write by :func:`collector.db.deadline`. Between the two, a new connection's
setup (its ``SET statement_timeout``, the writer's staging tables) was bounded by nothing: a peer
that acknowledges and never answers (a frozen proxy or pooler, the chaos test's half-open link)
held the writer there for ever. The collector stored nothing more and said nothing more (seed 2 of
``tests/test_chaos_network.py``: 20 messages waiting, unacknowledged, for minutes, and no line).
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from collector.store import ReadingStore
from tests.tcp_cut_proxy import CutProxy


@pytest.mark.parametrize("silent_at", [b"SET statement_timeout", b"CREATE TEMP TABLE IF NOT EXISTS readings_staging"])
def test_a_connection_silent_during_its_setup_is_given_up(migrated_database_url: str, silent_at: bytes) -> None:
    params = conninfo_to_dict(migrated_database_url)
    outcome: list[BaseException | None] = []

    def write(url: str) -> None:
        store = ReadingStore(url, statement_timeout_s=1)
        try:
            store.write([], [("aquami/v1/gw/reads", "a dead letter", b"{}")])
            outcome.append(None)
        except BaseException as error:  # the test reports whatever ended the write
            outcome.append(error)
        finally:
            store.close()

    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", "127.0.0.1"))) as proxy:
        proxy.go_dead_at(silent_at)
        writer = threading.Thread(
            target=write, args=(make_conninfo(migrated_database_url, host="127.0.0.1", port=proxy.port),), daemon=True
        )
        writer.start()
        writer.join(30)  # cut after 2 s (twice the statement timeout); before, never
        assert not writer.is_alive(), f"the writer still waits on a connection silent at {silent_at!r}"
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.OperationalError), outcome
