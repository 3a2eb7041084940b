"""The API and the pages give times in UTC whatever zone the database's sessions default to.

initdb copies the host's zone into postgresql.conf, so a database on a server in Sydney hands out
timestamps at +11:00 unless the service asks for UTC."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from server.app import create_app
from server.auth import create_api_key

T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)
PASTED = {"Sec-Fetch-Site": "none"}  # the sign-in link pasted into the address bar signs in at once


@pytest.fixture
def api_on_a_sydney_database(migrated_database_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'Australia/Sydney'").format(
            sql.Identifier(conn.info.dbname)))  # fmt: skip
        keys = {role: create_api_key(conn, f"test {role}", [role]) for role in ("reader", "billing")}
        conn.execute("INSERT INTO meters (meter_id, registered, dma) VALUES ('M1', true, 'D1')")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('A1', 'Ada')")
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP1', 'D1')")
        since = T0 - timedelta(days=30)
        conn.execute("INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('A1', 'SP1', %s)",
                     (since,))  # fmt: skip
        conn.execute("INSERT INTO meter_installations (service_point_id, meter_id, installed_at) "
                     "VALUES ('SP1', 'M1', %s)", (since,))  # fmt: skip
        for h in range(3):
            conn.execute("INSERT INTO readings (meter_id, ts, volume_m3) VALUES ('M1', %s, %s)",
                         (T0 + timedelta(hours=h), Decimal(h)))  # fmt: skip
    with psycopg.connect(migrated_database_url) as conn:  # (a new session: the database's zone applies)
        assert conn.execute("SHOW TimeZone").fetchone() == ("Australia/Sydney",)
    with TestClient(create_app(migrated_database_url)) as client:
        yield client, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_readings_and_meters_are_sent_in_utc(api_on_a_sydney_database):
    client, keys = api_on_a_sydney_database
    readings = client.get("/meters/M1/readings", headers=auth(keys["reader"])).json()["items"]
    assert [r["ts"] for r in readings] == ["2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"]
    meter = client.get("/meters/M1", headers=auth(keys["reader"])).json()
    assert meter["latest"]["ts"] == "2026-11-01T08:00:00Z" and meter["first_seen"].endswith("Z")


def test_the_page_labelled_utc_shows_utc(api_on_a_sydney_database):
    client, keys = api_on_a_sydney_database
    page = client.get("/login", params={"key": keys["reader"]}, headers=PASTED, follow_redirects=True).text
    assert "2026-11-01 08:00:00 UTC" in page  # newest reading
    assert "2026-11-01 19:00" not in page  # (Sydney's clock)


def test_billing_echoes_its_period_in_utc(api_on_a_sydney_database):
    client, keys = api_on_a_sydney_database
    page = client.get(
        "/billing/reads",
        params={"account": "A1", "from": "2026-11-01T08:00:00+02:00", "to": "2026-11-02T00:00:00-05:00"},
        headers=auth(keys["billing"]),
    ).json()
    assert (page["start"], page["end"]) == ("2026-11-01T06:00:00Z", "2026-11-02T05:00:00Z")
    assert [r["ts"] for r in page["items"]] == ["2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"]
