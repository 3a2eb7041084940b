"""A database `aquami collector migrate` has not been run on is named as such, with what to do.

The CLI printed raw SQL errors (relation "api_keys" does not exist) and the server answered 500 to
every keyed request while its /health said ok; neither said to run the migrations.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from collector.migrate import migrate
from server import db
from server.app import create_app
from server.auth import create_api_key
from tests.services import LOOPBACK, drop_database, with_database
from tests.tcp_cut_proxy import CutProxy

SAYS = "the database is not migrated: run `aquami collector migrate`"


@pytest.fixture
def migrated_database_url(freshly_migrated_database_url: str) -> str:
    """Migrated for real here, not copied from the worker's template: these are tests of migrating."""
    return freshly_migrated_database_url


def test_the_server_does_not_start_on_an_unmigrated_database(database_url: str) -> None:
    app = create_app(database_url)
    with pytest.raises(RuntimeError, match="not migrated: run `aquami collector migrate`"), TestClient(app):
        pass


def test_the_server_starts_on_a_migrated_one(migrated_database_url: str) -> None:
    with TestClient(create_app(migrated_database_url)) as client:
        assert client.get("/health").status_code == 200


def test_a_server_started_before_its_database_refuses_it_unmigrated_once_it_is_there(
    timescale_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up could not ask a database that was not there yet, and nothing asked later: once it
    came up unmigrated (or left by an older release), every keyed request was a 500 "unexpected
    error" (relation "api_keys" does not exist) for ever, while /health said 200."""
    monkeypatch.setattr(db, "STARTUP_WAIT_S", 0.5)
    monkeypatch.setattr(db, "HEALTH_WAIT_S", 5.0, raising=False)  # generous: a loaded machine lends late
    name = f"aquami_test_{uuid.uuid4().hex[:12]}"
    url = with_database(timescale_admin_url, name)
    bearer = {"Authorization": "Bearer aqk_0000.nope"}
    try:
        with TestClient(create_app(url)) as client:
            assert client.get("/health").status_code == 200  # away: liveness, as before
            with psycopg.connect(timescale_admin_url, autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            deadline = time.monotonic() + 60
            while (response := client.get("/meters", headers=bearer)).json()["title"] == "Database unavailable":
                assert time.monotonic() < deadline, "the server never reached its database"
                time.sleep(0.2)
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["title"] == "Database not migrated" and response.json()["detail"] == SAYS
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["detail"] == SAYS
            migrate(url)
            with psycopg.connect(url, autocommit=True) as conn:
                key = create_api_key(conn, "late reader", ["reader"])
            assert client.get("/health").status_code == 200  # asked again: migrated now
            assert client.get("/meters", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        drop_database(timescale_admin_url, url)


@pytest.mark.parametrize(
    "args",
    [
        ["server", "create-key", "--name", "me", "--role", "admin"],  # a table: api_keys
        ["collector", "consumption", "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z"],  # a function
    ],
)
def test_a_command_on_an_unmigrated_database_says_to_migrate(database_url: str, args: list[str]) -> None:
    command = [str(Path(sys.executable).with_name("aquami")), *args, "--database-url", database_url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 1, result.stderr
    assert f"error: database: {SAYS}" in result.stderr and "Traceback" not in result.stderr


def test_server_run_on_an_unmigrated_database_is_one_line_and_exit_1(database_url: str) -> None:
    """It exited 3 with a 46-line traceback: the refusal was raised inside uvicorn's lifespan."""
    command = [str(Path(sys.executable).with_name("aquami")), "server", "run", "--port", "0"]
    env = {**os.environ, "AQUAMI_DATABASE_URL": database_url}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"error: database: {SAYS}\n"


def test_server_run_starts_on_a_database_not_reachable_yet() -> None:
    """A host's boot order is not fatal: nothing to refuse until the database is there, and the
    requests ask it then (the answer server run hands the app has not passed)."""
    from server.schema_check import SchemaCheck

    schema = SchemaCheck()
    assert db.ask_at_start("postgresql://postgres@127.0.0.1:1/none", schema) is None
    assert not schema.passed and schema.problem is None


def test_a_database_mute_at_start_that_comes_back_unmigrated_is_refused_and_said_once_in_the_log(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Start-up's question timed out on a host that took the connection and never answered; the
    database then came back unmigrated. Requests found it so (503 Database not migrated) but the
    server's log said nothing: whoever ran it saw only clients' 503s. Now said once, however many
    requests ask, and once more when it is migrated."""
    target = conninfo_to_dict(database_url)
    bearer = {"Authorization": "Bearer aqk_0000.nope"}
    with contextlib.ExitStack() as running:
        with socket.socket() as mute:
            mute.bind((LOOPBACK, 0))
            mute.listen(16)  # accepted by the kernel, never answered
            port = mute.getsockname()[1]
            url = make_conninfo(database_url, host=LOOPBACK, port=str(port))
            client = running.enter_context(TestClient(create_app(url)))  # start-up waits out its connect timeout
            assert client.get("/health").json() == {"status": "ok", "database": "unavailable"}
        # the mute host gone (its held connections reset), the database back on its port, unmigrated
        back = CutProxy(int(str(target.get("port", 5432))), str(target.get("host", LOOPBACK)), port=port)
        running.enter_context(back)
        deadline = time.monotonic() + 60
        while (response := client.get("/meters", headers=bearer)).json()["title"] == "Database unavailable":
            assert time.monotonic() < deadline, "the server never reached its database"
            time.sleep(0.2)
        answers = [response] + [client.get("/meters", headers=bearer) for _ in range(4)]
        for answer in answers:
            assert answer.status_code == 503 and answer.json()["title"] == "Database not migrated", answer.text
            assert answer.json()["detail"] == SAYS and "retry-after" not in answer.headers
        said = [r.getMessage() for r in caplog.records if r.name == "server.schema_check"]
        assert said == [f"{SAYS} (every request is answered 503 meanwhile)"]
        migrate(database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            key = create_api_key(conn, "late reader", ["reader"])
        for _ in range(3):
            assert client.get("/meters", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        said = [r.getMessage() for r in caplog.records if r.name == "server.schema_check"]
        assert said[1:] == ["the database is migrated now; requests are served"]
