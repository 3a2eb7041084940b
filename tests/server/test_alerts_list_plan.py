"""What GET /alerts costs as the alert history grows. Alerts stay (resolved and dismissed ones too),
and the list, newest first, read and sorted every one of them: 206 ms for 400,000 (a parallel
sequential scan). It now reads its page off the start of an index (collector migrations 0068, and
0069 for one status). No timing here: the plans, as the web page's alerts are tested."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from collector.alert_store import list_alerts
from server.app import create_app
from server.auth import create_api_key
from tests.query_plans import explained_nodes, queries_run

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STORED = 5000
PAGE = 50

# 5,000 alerts five minutes apart: every 50th dismissed, the newest 20 open, the rest resolved
_FILL = """
INSERT INTO alerts (alert_id, kind, source, status, meter_id, dma, start, detected_at, last_seen, ended_at,
                    rate_l_h, volume_l, confidence, evidence, resolved_at, dismissed_by, dismiss_reason)
SELECT 'leak/M' || g, 'leak', 'detector', s, 'M' || g, 'D' || (g %% 30), t, t, t, t, 20, 100, 0.9, '[]', t,
       CASE WHEN s = 'dismissed' THEN 'tester' END, CASE WHEN s = 'dismissed' THEN 'a test' END
FROM generate_series(1, %(n)s) g,
     LATERAL (SELECT %(t0)s::timestamptz + make_interval(mins => 5 * g) AS t,
                     CASE WHEN g %% 50 = 0 THEN 'dismissed' WHEN g > %(n)s - 20 THEN 'open' ELSE 'resolved' END AS s) x
"""


@pytest.fixture
def history(migrated_database_url: str) -> Iterator[tuple[TestClient, str, psycopg.Connection[Any]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE alerts DISABLE TRIGGER USER")  # no enquiries: the list does not read them
        conn.execute(_FILL, {"n": STORED, "t0": T0})
        conn.execute("ALTER TABLE alerts ENABLE TRIGGER USER")
        conn.execute("ANALYZE alerts")
        key = create_api_key(conn, "desk", ["reader"])
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, key, conn


def _listing_queries(client: TestClient, key: str, paths: list[str]) -> list[tuple[str, Any]]:
    """The alert-list queries GET ``paths`` ran, with their parameters."""
    with queries_run(lambda text: "FROM alerts" in text and "ORDER BY detected_at DESC" in text) as listing:
        for path in paths:
            response = client.get(path, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, response.text
            assert len(response.json()["items"]) == PAGE
    return listing


def test_the_list_reads_only_the_page_it_gives(history) -> None:
    """Every status, one status (the common one, and a rare one), and a page after a cursor: each
    read off an index in order, no more alerts than the page (and the one after it) read, no sort.
    Before, each read all 5,000 alerts and sorted them (or those of the status)."""
    client, key, conn = history
    cursor = "leak/M2600"
    paths = [f"/alerts?limit={PAGE}", f"/alerts?limit={PAGE}&cursor={cursor}"] + [
        f"/alerts?limit={PAGE}&status={status}{more}"
        for status in ("resolved", "dismissed")
        for more in ("", f"&cursor={cursor}")
    ]
    queries = _listing_queries(client, key, paths)
    assert len(queries) == len(paths), queries
    for (query, params), path in zip(queries, paths, strict=True):
        nodes = explained_nodes(conn, query, params)
        assert not [n for n in nodes if n["Node Type"] == "Sort"], (path, nodes)
        read = [n for n in nodes if n.get("Relation Name") == "alerts"]
        assert read and all(n["Actual Rows"] * n["Actual Loops"] <= PAGE + 1 for n in read), (path, nodes)
        assert all(n["Node Type"] != "Seq Scan" for n in read), (path, nodes)


def test_one_status_or_several_list_the_same_alerts_in_the_same_order(history) -> None:
    """One status as an equality, several as a list: the same alerts, newest first, as filtering
    every alert and sorting them gives."""
    _, _, conn = history
    for statuses in (["open"], ["dismissed"], ["open", "dismissed"], ["resolved", "open"]):
        expected = [
            alert_id
            for (alert_id,) in conn.execute(
                "SELECT alert_id FROM alerts WHERE status = ANY(%s) ORDER BY detected_at DESC, alert_id DESC LIMIT 70",
                (statuses,),
            )
        ]
        got = [a.alert_id for a in list_alerts(conn, status=statuses, limit=70)]
        assert got == expected, statuses
        if len(statuses) == 1:
            assert [a.alert_id for a in list_alerts(conn, status=statuses[0], limit=70)] == expected
