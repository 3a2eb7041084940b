"""While its database is away, the server answers 503 without holding a worker for the whole wait,
and serves again as soon as the database is back (server.database_away).

Before: every API request waited server.db.CONNECTION_WAIT_S for a connection that could not come
(5 s each: 100 requests at once were all answered only after 15 s, and /health waited 9.5 s behind
them), and once the database was back the pool tried again only when its doubling back-off said
(after a 70 s outage, the first 200 came 50 s later). The database goes away here the way a host
does: the TCP proxy in front of it closes (its port refuses, the pool's connections are cut), and
comes back on the same port.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from server import db
from server.app import create_app
from server.auth import create_api_key
from tests.services import LOOPBACK
from tests.tcp_cut_proxy import CutProxy

#: The full wait for a connection, made long here so that a request answered within it is unmistakable.
LONG_WAIT_S = 10.0


class Database:
    """The test's migrated database behind a proxy that can be closed and opened again."""

    def __init__(self, url: str) -> None:
        target = conninfo_to_dict(url)
        self.target = (int(str(target.get("port", 5432))), str(target.get("host", LOOPBACK)))
        self.proxy = CutProxy(*self.target).start()
        self.port = self.proxy.port
        self.url = make_conninfo(url, host=LOOPBACK, port=str(self.port))

    def go_away(self) -> None:
        self.proxy.close()

    def come_back(self) -> None:
        self.proxy = CutProxy(*self.target, port=self.port).start()


@pytest.fixture
def database(migrated_database_url: str) -> Iterator[Database]:
    behind = Database(migrated_database_url)
    try:
        yield behind
    finally:
        behind.proxy.close()


def _bearer(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {"Authorization": f"Bearer {create_api_key(conn, 'desk', ['reader'])}"}


def test_with_the_database_away_requests_are_answered_503_without_the_full_wait(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "CONNECTION_WAIT_S", LONG_WAIT_S)
    bearer = _bearer(database.url)
    with TestClient(create_app(database.url)) as client:
        assert client.get("/meters", headers=bearer).status_code == 200
        database.go_away()
        started = time.monotonic()
        first = client.get("/meters", headers=bearer)  # the pool learns it here: its connection is cut
        took = time.monotonic() - started
        assert first.status_code == 503 and first.headers["retry-after"] == "5", first.text
        # it waited the whole wait (5 s here 10 s), the pool knowing within milliseconds: now AWAY_WAIT_S
        assert took < LONG_WAIT_S / 2, f"the first request after the cut waited {took:.1f} s"
        assert first.json()["detail"].startswith("the database is not reachable"), first.text
        for _ in range(3):
            started = time.monotonic()
            response = client.get("/meters", headers=bearer)
            took = time.monotonic() - started
            assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
            assert took < LONG_WAIT_S / 2, f"a request waited {took:.1f} s for a database known to be away"
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["title"] == "Database unavailable"
            assert response.json()["detail"].startswith("the database is not reachable"), response.text
        database.come_back()
        deadline = time.monotonic() + 30
        while (response := client.get("/meters", headers=bearer)).status_code == 503:
            assert time.monotonic() < deadline, "the server never reached its database again"
            time.sleep(0.1)
        assert response.status_code == 200, response.text


#: Long enough for psycopg_pool's own back-off to have doubled its delay to 16 s, then 32 s.
OUTAGE_S = 35.0
#: Served again within this once the database is back: before, the next attempt came at the
#: back-off's 63 s, 28 s after the database was back; then within 4 s steps; now at the next request.
SERVED_AGAIN_WITHIN_S = 12.0


def test_after_a_long_outage_the_server_serves_again_soon_after_the_database_is_back(database: Database) -> None:
    bearer = _bearer(database.url)
    with TestClient(create_app(database.url)) as client:
        assert client.get("/meters", headers=bearer).status_code == 200
        database.go_away()
        away = time.monotonic()
        while time.monotonic() - away < OUTAGE_S:  # a care desk retrying as the 503s' Retry-After says
            assert client.get("/meters", headers=bearer).status_code == 503
            time.sleep(1)
        database.come_back()
        back = time.monotonic()
        while (response := client.get("/meters", headers=bearer)).status_code == 503:
            assert time.monotonic() - back < SERVED_AGAIN_WITHIN_S, (
                f"still 503 {SERVED_AGAIN_WITHIN_S:g} s after the database was back: {response.text}"
            )
            time.sleep(0.5)
        assert response.status_code == 200, response.text


#: A request's bound on a dead link: the check's CHECK_WAIT_S (3 s), then its wait for another
#: connection (5 s), with room for a loaded machine. Before, it waited on the check for ever.
ANSWERED_ON_A_DEAD_LINK_WITHIN_S = 20.0


def _get_within(client: TestClient, bearer: dict[str, str], seconds: float) -> tuple[int, str] | None:
    """``GET /meters``'s status and detail, or None when it was not answered within ``seconds``."""
    answered: list[tuple[int, str]] = []

    def ask() -> None:
        response = client.get("/meters", headers=bearer)
        answered.append((response.status_code, response.text))

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(seconds)
    return answered[0] if answered else None


def test_with_the_database_host_hung_requests_are_answered_503_not_held(database: Database) -> None:
    """A host that stops answering, its packets dropped (frozen, or a firewall): the pool's idle
    connection looks alive, and its check before lending waited on it for ever."""
    bearer = _bearer(database.url)
    with TestClient(create_app(database.url)) as client:
        assert client.get("/meters", headers=bearer).status_code == 200
        database.proxy.black_hole()
        try:
            first = _get_within(client, bearer, ANSWERED_ON_A_DEAD_LINK_WITHIN_S)
            assert first is not None, f"not answered within {ANSWERED_ON_A_DEAD_LINK_WITHIN_S:g} s"
            assert first[0] == 503, first[1]
            deadline = time.monotonic() + 30  # the pool's attempt to connect gives up (CONNECT_TIMEOUT_S)
            while "the database is not reachable" not in (answer := _get_within(client, bearer, 30) or (0, ""))[1]:
                assert answer[0] == 503 and time.monotonic() < deadline, answer
        finally:
            database.proxy.restore(stale=False)  # the link back: what it held goes on, new connections work
        deadline = time.monotonic() + 30
        while (response := client.get("/meters", headers=bearer)).status_code == 503:
            assert time.monotonic() < deadline, "the server never reached its database again"
            time.sleep(0.1)
        assert response.status_code == 200, response.text


def test_the_pools_bounds_on_a_dead_link_give_way_to_the_urls_own_settings() -> None:
    from server.db import CONNECT_TIMEOUT_S, _bounded_waits

    plain = _bounded_waits("postgresql://aquami@db.example/aquami")
    assert plain["connect_timeout"] == CONNECT_TIMEOUT_S and plain["tcp_user_timeout"] == 30_000
    assert plain["keepalives"] == 1
    own = _bounded_waits("postgresql://aquami@db.example/aquami?connect_timeout=10&keepalives_idle=60")
    assert "connect_timeout" not in own and "keepalives_idle" not in own and own["keepalives_count"] == 3


def test_a_request_that_comes_once_the_database_is_back_is_served(database: Database) -> None:
    """The pool's attempts to connect backed off 1, 2, then 4 s, and a request that came in a gap
    after the database was back waited its 0.5 s and was answered 503: here the database is back 5 s
    after the outage began, in the 4 s gap, and the next request was 503 (the first 200 came 1.3 s
    or more later). Now the pool gives up after a second attempt, and the next request's starts anew."""
    bearer = _bearer(database.url)
    with TestClient(create_app(database.url)) as client:
        assert client.get("/meters", headers=bearer).status_code == 200
        database.go_away()
        assert client.get("/meters", headers=bearer).status_code == 503  # 5 s: the pool learns it
        database.come_back()
        response = client.get("/meters", headers=bearer)
        assert response.status_code == 200, response.text


#: More connections idle in the pool than psycopg_pool's check slept through within a request's 5 s
#: wait (1, 2, then 4 s after each it found dead).
IDLE = 8


def test_after_a_restart_cut_the_pools_idle_connections_the_next_request_is_served(database: Database) -> None:
    """A database restart (every open connection cut, new ones taken at once) left the pool's idle
    connections dead: the next request's check found one dead, slept 1 s, the next, 2 s, and so on,
    and with six was answered 503 after 5 s, the database back all along. Now each dead one is given
    up and the next tried at once."""
    bearer = _bearer(database.url)
    with TestClient(create_app(database.url)) as client:
        pool = client.app.state.pool  # type: ignore[attr-defined]
        held = [pool.getconn() for _ in range(IDLE)]
        for conn in held:
            pool.putconn(conn)
        assert pool.get_stats()["pool_available"] == IDLE
        assert database.proxy.drop() >= IDLE  # the restart
        response = client.get("/meters", headers=bearer)
        assert response.status_code == 200, response.text


def test_an_outage_is_said_once_and_its_end_once_not_a_warning_per_attempt(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg_pool logged a warning (two lines) at each failed attempt to connect and another at each
    round it gave up: 45 a minute with a request a second. Now the outage is said as the collector's
    (aquami.outage): at its first failure, then every 5 minutes, and its end at INFO."""
    caplog.set_level(logging.INFO)
    bearer = _bearer(database.url)
    with TestClient(create_app(database.url)) as client:
        assert client.get("/meters", headers=bearer).status_code == 200
        database.go_away()
        away = time.monotonic()
        while time.monotonic() - away < 8:  # many attempts: a request every 0.1 s, each 0.5 s
            assert client.get("/meters", headers=bearer).status_code == 503
            time.sleep(0.1)
        database.come_back()
        deadline = time.monotonic() + 30
        while client.get("/meters", headers=bearer).status_code == 503:
            assert time.monotonic() < deadline, "the server never reached its database again"
            time.sleep(0.1)
    said = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith(("server", "psycopg"))]
    warned = [line for line in said if line[1] != "INFO"]
    assert [(name, level) for name, level, _ in warned] == [("server.db", "WARNING")], warned
    assert warned[0][2].startswith("database unavailable (connection failed: "), warned
    assert "\n" not in warned[0][2]
    back = [text for name, level, text in said if name == "server.db" and level == "INFO"]
    assert len(back) == 1 and re.fullmatch(r"database available again after \d+ s, \d+ failures", back[0]), said
    failures = int(back[0].split(", ")[1].split()[0])
    assert failures >= 10, back  # the pool tried all along, each failure counted, none said apart


def test_nem12_with_the_database_gone_after_its_checks_is_answered_503_not_a_200_cut_short(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is streamed on the request's connection, its cursor declared before the 200. A
    connection of its own was taken as the 200 began, with the pool's own wait: the database gone
    after the request's checks, it waited 30 s, then cut the 200 short (PoolTimeout). Now the
    database gone is found before the 200: a 503. Either way the connection goes back to the pool."""
    from server.billing import router

    with psycopg.connect(database.url, autocommit=True) as conn:
        bearer = {"Authorization": f"Bearer {create_api_key(conn, 'billing', ['billing'])}"}
    prepare = router.prepare
    gone_after_prepare = [True]

    def prepared_then_gone(*args: Any, **kwargs: Any) -> Any:
        export = prepare(*args, **kwargs)
        if gone_after_prepare[0]:
            gone_after_prepare[0] = False
            database.go_away()
        return export

    monkeypatch.setattr(router, "prepare", prepared_then_gone)
    nem12 = "/billing/nem12?period=2026-11-02/2026-11-04"
    with TestClient(create_app(database.url)) as client:
        assert client.get("/health").status_code == 200
        started = time.monotonic()
        response = client.get(nem12, headers=bearer)
        took = time.monotonic() - started
        assert response.status_code == 503 and response.headers["retry-after"] == "5", response.text
        assert response.json()["title"] == "Database unavailable", response.text
        assert took < LONG_WAIT_S, f"the file's connection was waited for {took:.1f} s"
        response = client.get(nem12, headers=bearer)
        assert response.status_code == 503 and "the database is not reachable" in response.text, response.text
        database.come_back()
        deadline = time.monotonic() + 30
        while (response := client.get(nem12, headers=bearer)).status_code == 503:
            assert time.monotonic() < deadline, "the server never reached its database again"
            time.sleep(0.1)
        assert response.status_code == 200 and response.text.endswith("900\r\n"), response.text
        stats = client.app.state.pool.get_stats()  # type: ignore[attr-defined]
        assert stats["pool_available"] == stats["pool_size"], stats  # every connection given back
