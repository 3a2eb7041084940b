"""The demo writes its invented fleet only into a database that is its own.

``aquami demo`` took its database from ``AQUAMI_DATABASE_URL``: a user with it exported for the
real system who ran the demo got the utility's WM-00001 re-registered into the demo's DMA, 504
invented 'actual' readings around its real ones and 20 demo accounts.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import aquami.demo
from aquami.cli import app
from server.meters.repository import register_meters


def _holdings(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT array_agg((meter_id, dma)::text ORDER BY meter_id) FROM meters),"
            " (SELECT array_agg((meter_id, ts, volume_m3, quality)::text ORDER BY ts) FROM readings),"
            " (SELECT count(*) FROM accounts), to_regclass('aquami_demo') IS NOT NULL"
        ).fetchone()
    assert row is not None
    return tuple(row)


def _a_utilitys_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        register_meters(conn, [("WM-00001", "ZONE-7", "customer")])
        conn.execute(
            "INSERT INTO readings (meter_id, ts, volume_m3, quality) VALUES "
            "('WM-00001', '2026-12-01T00:00Z', 12.000, 'actual'), ('WM-00001', '2026-12-05T00:00Z', 13.000, 'actual')"
        )


def test_the_demo_does_not_take_its_database_or_broker_from_the_environment(monkeypatch) -> None:
    given: list[aquami.demo.DemoOptions] = []
    monkeypatch.setattr(aquami.demo, "run_demo", given.append)
    monkeypatch.setenv("AQUAMI_DATABASE_URL", "postgresql://127.0.0.1:1/the_utilitys")
    monkeypatch.setenv("AQUAMI_MQTT_URL", "mqtt://127.0.0.1:1")
    result = CliRunner().invoke(app, ["demo", "--duration", "1"])
    assert result.exit_code == 0, result.output
    assert given and given[0].database_url is None and given[0].mqtt_url is None


def test_a_database_holding_someone_elses_meters_is_refused_and_left_as_it_was(migrated_database_url: str) -> None:
    _a_utilitys_database(migrated_database_url)
    before = _holdings(migrated_database_url)
    result = CliRunner().invoke(
        app,
        ["demo", "--database-url", migrated_database_url, "--duration", "1", "--port", "0", "--meters", "2"],
        terminal_width=400,
    )
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for --database-url" in said and "holds meters the demo did not make" in said
    assert _holdings(migrated_database_url) == before
    assert before[3] is False  # not marked as the demo's either


@pytest.mark.parametrize("table", ["readings", "accounts"])
def test_readings_or_accounts_alone_are_enough_to_refuse(migrated_database_url: str, table: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        if table == "readings":  # a head-end's history loaded before any meter was registered
            conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('X-1', '2026-12-01T00:00Z', 1)")
        else:
            conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A-1', 'A customer')")
    from aquami.demo import NotTheDemosDatabase, claim_database

    with pytest.raises(NotTheDemosDatabase, match=table):
        claim_database(migrated_database_url)


def test_an_empty_database_becomes_the_demos_and_stays_so(migrated_database_url: str) -> None:
    from aquami.demo import claim_database

    claim_database(migrated_database_url)  # empty: marked
    _a_utilitys_database(migrated_database_url)  # as a demo run fills it
    claim_database(migrated_database_url)  # the demo's own, filled: taken again
    assert _holdings(migrated_database_url)[3] is True


def test_a_database_never_migrated_is_empty_and_taken(database_url: str) -> None:
    from aquami.demo import claim_database

    claim_database(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM aquami_demo").fetchone() == (1,)
