"""A writer's transaction cut off before its COMMIT must not hold the rows it inserted for ever.

The writer's connection goes dead after its INSERT reached the server and before its COMMIT did (a
half-open link, a frozen proxy): the writer gives up (collector.db.deadline) and writes the same
messages again on a new connection, but the server's end of the old one knows nothing of it. Its
session sat "idle in transaction" holding the new readings' keys, so every retry's INSERT waited
for it, hit the statement timeout, and the next retry did the same: the collector stored nothing
more for as long as the server kept that session (its TCP keepalive: two hours by default), one
"database unavailable" a retry. Found by ``tests/test_chaos_network.py`` (seed 12: 3,971 readings
accepted and not stored 90 s after the faults ended, each retry failing after 30 s).
"""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from collector.store import ReadingStore
from tests.tcp_cut_proxy import CutProxy

STATEMENT_TIMEOUT_S = 1.0


def _rows(first: int) -> list[tuple[str, str, str, float | None, str | None, list[str], str, int]]:
    return [
        ("Z1", f"2026-03-01T00:{minute:02d}:00Z", f"{minute}.000", None, None, [], "gw-z", 1)
        for minute in (first, first + 1)
    ]


def test_a_transaction_cut_before_its_commit_does_not_block_the_retry(migrated_database_url: str) -> None:
    params = conninfo_to_dict(migrated_database_url)
    with CutProxy(int(str(params.get("port") or 5432)), str(params.get("host", "127.0.0.1"))) as proxy:
        cut_off = ReadingStore(
            make_conninfo(migrated_database_url, host="127.0.0.1", port=proxy.port), STATEMENT_TIMEOUT_S
        )
        assert cut_off.write(_rows(0)).inserted == 2  # connected, its staging tables made
        proxy.go_dead_at(b"COMMIT")
        with pytest.raises(psycopg.OperationalError):
            cut_off.write(_rows(10))  # its INSERT done on the server, its COMMIT held
        cut_off.close()
        retry = ReadingStore(migrated_database_url, STATEMENT_TIMEOUT_S)
        started, errors = time.monotonic(), []
        try:
            while time.monotonic() - started < 15:
                try:
                    stored = retry.write(_rows(10))
                    break
                except psycopg.OperationalError as error:  # waited on the dead transaction's rows
                    errors.append(type(error).__name__)
                    retry.close()
                    time.sleep(0.5)
            else:
                raise AssertionError(f"the retry never got the rows: {len(errors)} tries, {errors[:3]}")
        finally:
            retry.close()
    assert stored.inserted == 2
    assert time.monotonic() - started < 4 * STATEMENT_TIMEOUT_S + 2, errors
