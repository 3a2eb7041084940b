"""A database `aquami collector migrate` has not been run on is named as such, with what to do.

The CLI printed raw SQL errors (relation "api_keys" does not exist) and the server answered 500 to
every keyed request while its /health said ok; neither said to run the migrations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app

SAYS = "the database is not migrated: run `aquami collector migrate`"


def test_the_server_does_not_start_on_an_unmigrated_database(database_url: str) -> None:
    app = create_app(database_url)
    with pytest.raises(RuntimeError, match="not migrated: run `aquami collector migrate`"), TestClient(app):
        pass


def test_the_server_starts_on_a_migrated_one(migrated_database_url: str) -> None:
    with TestClient(create_app(migrated_database_url)) as client:
        assert client.get("/health").status_code == 200


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
