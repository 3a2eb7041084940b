"""A scheduled run's failure is one log line: a database error without the context PostgreSQL adds."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import psycopg
from psycopg import sql

from collector.detection_job import DetectionScheduler
from tests.services import free_port


def test_a_scheduled_run_refused_by_the_floor_is_logged_on_one_line_naming_the_grant(migrated_database_url, caplog):
    """The floor's owner cannot see every session (migrations run by an unprivileged role): the
    schedule logged the refusal with PL/pgSQL's CONTEXT ("CONTEXT:  PL/pgSQL function
    open_transactions_floor() line … at RAISE") on a second line. It is one line now, naming the grant."""
    role = f"aquami_collector_{uuid.uuid4().hex[:12]}"
    caplog.set_level(logging.WARNING, logger="collector.schedule")
    with psycopg.connect(migrated_database_url, autocommit=True) as admin:  # connected: a session of another role
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        try:
            admin.execute(sql.SQL("ALTER FUNCTION open_transactions_floor() OWNER TO {}").format(sql.Identifier(role)))
            job = DetectionScheduler(migrated_database_url, timedelta(hours=1))
            assert job.run_once() is False
        finally:
            admin.execute("ALTER FUNCTION open_transactions_floor() OWNER TO CURRENT_USER")
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
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
