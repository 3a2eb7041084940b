"""A run refused by the database is one line, in the schedule's log and from the command: a
database error without the context PostgreSQL adds."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from collector.detection_job import DetectionScheduler
from tests.services import free_port


@contextmanager
def floor_owned_by_a_role_that_cannot_see_every_session(url: str) -> Iterator[str]:
    """open_transactions_floor() handed to a new unprivileged role (migrations run by one), while a
    session of another role (this one's) is connected: the floor refuses. The role's name."""
    role = f"aquami_collector_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        try:
            admin.execute(sql.SQL("ALTER FUNCTION open_transactions_floor() OWNER TO {}").format(sql.Identifier(role)))
            yield role
        finally:
            admin.execute("ALTER FUNCTION open_transactions_floor() OWNER TO CURRENT_USER")
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_scheduled_run_refused_by_the_floor_is_logged_on_one_line_naming_the_grant(migrated_database_url, caplog):
    """The floor's owner cannot see every session (migrations run by an unprivileged role): the
    schedule logged the refusal with PL/pgSQL's CONTEXT ("CONTEXT:  PL/pgSQL function
    open_transactions_floor() line … at RAISE") on a second line. It is one line now, naming the grant."""
    caplog.set_level(logging.WARNING, logger="collector.schedule")
    with floor_owned_by_a_role_that_cannot_see_every_session(migrated_database_url) as role:
        job = DetectionScheduler(migrated_database_url, timedelta(hours=1))
        assert job.run_once() is False
    (line,) = [r.getMessage() for r in caplog.records if r.name == "collector.schedule"]
    assert "\n" not in line and "CONTEXT" not in line, line
    assert f"GRANT pg_read_all_stats TO {role}" in line, line


def test_a_scheduled_run_that_cannot_connect_is_logged_on_one_line(caplog):
    """libpq's "Connection refused" is followed by a tabbed "Is the server running on that host…?"
    line: logged as it was, a second line."""
    caplog.set_level(logging.WARNING, logger="collector.schedule")
    away = DetectionScheduler(f"postgresql://aquami@127.0.0.1:{free_port()}/none?connect_timeout=2", timedelta(hours=1))
    assert away.run_once() is False
    (line,) = [r.getMessage() for r in caplog.records if r.name == "collector.schedule"]
    assert "\n" not in line and "Connection refused" in line and "Is the server running" in line, line


def test_a_detect_command_refused_by_the_floor_says_so_on_one_line_naming_the_grant(migrated_database_url):
    """``aquami collector detect`` printed the refusal and, on a second line, PL/pgSQL's CONTEXT."""
    command = [str(Path(sys.executable).with_name("aquami")), "collector", "detect"]
    env = {**os.environ, "AQUAMI_DATABASE_URL": migrated_database_url, "COLUMNS": "400"}
    with floor_owned_by_a_role_that_cannot_see_every_session(migrated_database_url) as role:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: database: open_transactions_floor cannot see"), result.stderr
    assert result.stderr.endswith(f"GRANT pg_read_all_stats TO {role}\n"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
