"""A NEM12 download reads its file on the request's own pooled connection: one connection a download.

Before, the file took a second connection of its own, lent as the request's was still held (FastAPI,
0.118 on, gives a dependency's connection back once the response has been sent, not as the handler
returns): two a download, so a pool of one answered every download 503 after its 5 s wait, and
downloads at once each holding one and waiting for another were answered 503 though the database
was there. Now N downloads at once through a pool of M complete, and every connection is back after.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import psycopg
import psycopg_pool
import pytest
from fastapi.testclient import TestClient
from psycopg.pq import TransactionStatus

from server import app as server_app
from server import db
from server.app import create_app
from server.auth import create_api_key
from server.billing import nem12
from tests.server.test_nem12_streaming import _fleet, _unstamped

PERIOD = "/billing/nem12?period=2026-11-02/2026-11-04"
DAY = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture
def bearer(migrated_database_url: str) -> dict[str, str]:
    _fleet(migrated_database_url)
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        return {"Authorization": f"Bearer {create_api_key(conn, 'billing', ['billing'])}"}


def _client(url: str, pool_size: int, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setattr(server_app, "open_pool", partial(db.open_pool, max_size=pool_size))
    return TestClient(create_app(url))


def _all_back(client: TestClient) -> None:
    stats = client.app.state.pool.get_stats()  # type: ignore[attr-defined]
    assert stats["pool_available"] == stats["pool_size"] and stats.get("requests_waiting", 0) == 0, stats


def test_a_download_through_a_pool_of_one_connection_completes(
    migrated_database_url: str, bearer: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with _client(migrated_database_url, 1, monkeypatch) as client:
        response = client.get(PERIOD, headers=bearer)
        assert response.status_code == 200, response.text
        assert response.text.startswith("100,NEM12,") and response.text.endswith("900\r\n")
        assert response.text.count("\r\n200,") == 7  # every meter's stream
        _all_back(client)


@pytest.mark.parametrize(("downloads", "pool_size"), [(6, 2), (4, 4)])
def test_downloads_at_once_through_a_smaller_pool_all_complete_and_give_every_connection_back(
    migrated_database_url: str,
    bearer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    downloads: int,
    pool_size: int,
) -> None:
    with _client(migrated_database_url, pool_size, monkeypatch) as client:
        alone = client.get(PERIOD, headers=bearer)
        assert alone.status_code == 200, alone.text
        start = threading.Barrier(downloads)
        answers: list[httpx.Response] = []

        def download() -> None:
            start.wait()
            answers.append(client.get(PERIOD, headers=bearer))

        threads = [threading.Thread(target=download) for _ in range(downloads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        whole = [(a.status_code, _unstamped(a.text) == _unstamped(alone.text)) for a in answers]
        assert whole == [(200, True)] * downloads, [a.text[:200] for a in answers if a.status_code != 200]
        _all_back(client)


def test_a_download_cut_short_ends_its_transaction_before_its_connection_goes_back(
    migrated_database_url: str, bearer: dict[str, str]
) -> None:
    """A response cut short (the client gone) stops reading its body where it was, in the file's
    transaction with its cursor open; Starlette does not close it. The request's end closes it
    (get_streaming_connection), before get_connection gives the connection back to the pool: closed
    only when garbage collected, it would end its transaction on a connection lent to another request."""
    settings = {"autocommit": True}
    with psycopg_pool.ConnectionPool(migrated_database_url, min_size=1, max_size=1, kwargs=settings) as pool:
        conn = pool.getconn()
        request = db.get_streaming_connection(conn)
        streaming = next(request)
        chunks = streaming.stream(nem12.nem12_chunks(conn, nem12.prepare(conn, DAY, DAY + timedelta(days=2))))
        assert next(chunks).startswith("100,NEM12,") and next(chunks).startswith("200,SP0,")
        assert conn.info.transaction_status == TransactionStatus.INTRANS  # mid-file, as a client leaves
        request.close()  # the request ends: its dependency's exit
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
        pool.putconn(conn)
