"""What the fuzz tests of the server share: a small fleet to call the app on, its keys, the ids of
stored things, and a checksum of every table (what a refused write must leave as it was).

tests/server/test_api_fuzz.py calls the OpenAPI schema's operations on it, tests/server/test_web_fuzz.py
the HTML pages."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg import sql

from collector.detection_job import DetectionJobConfig, run_detection_once
from server.auth import ROLES, create_api_key
from tests.collector.test_detection_job import LEAKY, START, fleet, store_hours
from tests.server.test_alerts_feed_care_and_billing import register_leaky_household


def load_fleet(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Twenty households in D1 with nine days of hourly reads, one of them leaking (account ACC-7);
    detection run once over them (alerts, and the enquiries they raise). The keys, one for each role
    by its name, and a stored thing's id by the path parameter that names it."""
    meters = fleet()
    with psycopg.connect(url, autocommit=True) as conn:
        register_leaky_household(conn, meters)
        keys = {role: create_api_key(conn, f"fuzz {role.replace('_', ' ')}", [role]) for role in ROLES}
    store_hours(url, meters, 0, 9 * 24)
    with psycopg.connect(url) as conn:
        run_detection_once(conn, START + timedelta(days=9), DetectionJobConfig(history_days=9))
        row = conn.execute(
            "SELECT a.alert_id, e.enquiry_id FROM alerts a JOIN enquiries e USING (alert_id) WHERE a.meter_id = %s",
            (LEAKY,),
        ).fetchone()
        code = conn.execute("SELECT min(service_code) FROM open311_services").fetchone()
    assert row is not None and code is not None, "detection raised no alert for the leak"
    stored = {
        "meter_id": LEAKY,
        "ts": (START + timedelta(days=8)).isoformat(),
        "alert_id": row[0],
        "enquiry_id": str(row[1]),
        "service_request_id": str(row[1]),
        "service_code": code[0],
    }
    return keys, stored


def table_checksums(url: str) -> dict[str, str]:
    """Each table's rows, hashed: what a refused write must leave as it was. One statement for every
    table (a round trip each made it 63 ms; the web fuzz takes two for each form it sends)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        ]
        each = sql.SQL("SELECT {}, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t")
        query = sql.SQL(" UNION ALL ").join(each.format(sql.Literal(table), sql.Identifier(table)) for table in tables)
        return {table: digest for table, digest in conn.execute(query)}
