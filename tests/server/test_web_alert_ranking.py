"""Which active alerts the web page shows, in which order, and what that costs: the most urgent
enquiry first (urgent, high, normal, low, then none), then the newest detected, then by id. The
page ranked every active alert on each 10-second refresh (1.2 s for 100,000 against 0.2 s without);
it now reads its 25 off the start of an index (server migration 0046), in the same order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector.migrate as migrate_module
from collector.alert_store import save_changes
from collector.detection.alerts import ACTIVE, Alert, AlertKind, AlertSource, AlertStatus
from collector.detection.lifecycle import AlertChanges
from server.app import create_app
from server.auth import create_api_key
from server.web.router import ALERTS_COUNTED, ALERTS_SHOWN
from tests.query_plans import explained_nodes, queries_run

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PRIORITIES = ("urgent", "high", "normal", "low")

#: The page's order as it was computed before migration 0046, from the enquiries at read time: the
#: oracle the page must still agree with.
RANKED_FROM_ENQUIRIES = """
    SELECT a.alert_id FROM alerts a
    LEFT JOIN LATERAL (
        SELECT min(CASE e.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END) AS rank
        FROM enquiries e WHERE e.alert_id = a.alert_id
    ) raised ON true
    WHERE a.status = ANY(%s)
    ORDER BY coalesce(raised.rank, 4), a.detected_at DESC, a.alert_id DESC
    LIMIT %s
"""


@pytest.fixture
def desk(migrated_database_url: str) -> Iterator[tuple[TestClient, str, psycopg.Connection]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        key = create_api_key(conn, "care desk", ["customer_care"])
        with TestClient(create_app(migrated_database_url)) as client:
            yield client, key, conn


def _shown(client: TestClient, key: str) -> list[str]:
    """The meters of the alerts the page lists, in its order (each alert here has its own meter)."""
    page = client.get("/", headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200, page.text
    if '<section class="alerts">' not in page.text:
        return []
    box = page.text.split('<section class="alerts">')[1].split("</section>")[0]
    return re.findall(r'<li><span class="alarm">[^<]*</span>\s*<a href="/care/meters/M\d+">(M\d+)</a>', box)


def _alert(n: int, kind: AlertKind, hour: int, status: AlertStatus) -> Alert:
    at = T0 + timedelta(hours=hour)
    return Alert(
        alert_id=f"{kind}/M{n}",
        kind=kind,
        meter_id=f"M{n}",
        dma="DMA1",
        start=at,
        detected_at=at,
        last_seen=at + timedelta(hours=1),
        rate_l_h=10.0,
        volume_l=10.0,
        confidence=0.9,
        evidence=(),
        updated_at=at,
        source=AlertSource.DETECTOR,
        status=status,
        ended_at=None if status in ACTIVE else at + timedelta(hours=1),
        resolved_at=None if status in ACTIVE else at + timedelta(hours=1),
    )


_ALERTS = st.lists(
    st.tuples(
        st.sampled_from([AlertKind.BURST, AlertKind.LEAK, AlertKind.TAMPER, AlertKind.LOW_BATTERY]),
        st.integers(0, 5),  # few hours: many ties on detected_at, decided by the id
        st.sampled_from([AlertStatus.OPEN, AlertStatus.ONGOING, AlertStatus.RESOLVED]),
        st.sampled_from([None, "reprioritised", "removed", "reopened"]),  # what happens after
        st.sampled_from(PRIORITIES),
    ),
    max_size=ALERTS_SHOWN + 12,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=_ALERTS)
def test_the_page_shows_the_alerts_the_enquiries_rank_first_in_that_order(desk, specs) -> None:
    """Whatever befalls the alerts' enquiries after they were raised (a person's new priority, an
    enquiry removed, a resolved alert running again), the page lists the same alerts in the same
    order as ranking them from their enquiries at read time did."""
    client, key, conn = desk
    conn.execute("TRUNCATE alerts, enquiries, enquiry_updates, open311_requests, open311_posts")
    alerts = [_alert(n, kind, hour, status) for n, (kind, hour, status, _, _) in enumerate(specs)]
    save_changes(conn, AlertChanges(opened=alerts))
    for alert, (_, _, _, then, priority) in zip(alerts, specs, strict=True):
        if then == "reprioritised":
            conn.execute("UPDATE enquiries SET priority = %s WHERE alert_id = %s", (priority, alert.alert_id))
        elif then == "removed":
            conn.execute(
                "DELETE FROM enquiry_updates u USING enquiries e WHERE u.enquiry_id = e.enquiry_id AND e.alert_id = %s",
                (alert.alert_id,),
            )
            conn.execute("DELETE FROM enquiries WHERE alert_id = %s", (alert.alert_id,))
        elif then == "reopened" and alert.status not in ACTIVE:
            conn.execute("UPDATE alerts SET status = 'ongoing', ended_at = NULL WHERE alert_id = %s", (alert.alert_id,))
    expected = conn.execute(RANKED_FROM_ENQUIRIES, (sorted(ACTIVE), ALERTS_SHOWN)).fetchall()
    assert _shown(client, key) == [alert_id.split("/")[1] for (alert_id,) in expected]


def test_an_urgent_alert_raised_last_goes_first_and_a_resolved_one_leaves(desk) -> None:
    """The same, step by step: the rank an alert is raised with, and the page after each change."""
    client, key, conn = desk
    lows = [_alert(n, AlertKind.LOW_BATTERY, n, AlertStatus.OPEN) for n in range(1, 4)]
    save_changes(conn, AlertChanges(opened=lows))
    assert _shown(client, key) == ["M3", "M2", "M1"]  # all low: the newest first
    save_changes(conn, AlertChanges(opened=[_alert(9, AlertKind.BURST, 0, AlertStatus.OPEN)]))
    assert _shown(client, key) == ["M9", "M3", "M2", "M1"]  # urgent, though detected first
    conn.execute("UPDATE enquiries SET priority = 'high' WHERE alert_id = 'low_battery/M1'")
    assert _shown(client, key) == ["M9", "M1", "M3", "M2"]
    conn.execute("UPDATE alerts SET status = 'resolved' WHERE alert_id = 'burst/M9'")
    assert _shown(client, key) == ["M1", "M3", "M2"]


def test_the_page_reads_only_the_alerts_it_shows(desk) -> None:
    """No timing here: the plan of the page's ranking query, with 400 active alerts. Before, it read
    every active alert (and each one's enquiry) and sorted them all for the 25 it showed."""
    client, key, conn = desk
    conn.execute(
        """
        INSERT INTO alerts (alert_id, kind, source, status, meter_id, dma, start, detected_at, last_seen,
                            rate_l_h, volume_l, confidence, evidence)
        SELECT 'low_battery/M' || i, 'low_battery', 'meter', 'open', 'M' || i, 'D1', t, t, t, 0, 0, 0.9, '[]'
        FROM generate_series(1, 400) i, LATERAL (SELECT %s::timestamptz + make_interval(mins => i) AS t) at
        """,
        (T0,),
    )
    conn.execute("ANALYZE alerts")
    conn.execute("ANALYZE enquiries")
    with queries_run(lambda text: "FROM alerts" in text and "ORDER BY" in text) as ranking:
        assert len(_shown(client, key)) == ALERTS_SHOWN
    assert len(ranking) == 1, ranking
    nodes = explained_nodes(conn, *ranking[0])
    read = [node for node in nodes if node.get("Relation Name") == "alerts"]
    assert read and all(node["Actual Rows"] <= ALERTS_SHOWN + 1 for node in read), nodes  # one more: are there more?
    assert not [node for node in nodes if node["Node Type"] == "Sort"], nodes


def _heading(client: TestClient, key: str) -> str:
    page = client.get("/", headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200, page.text
    return page.text.split('<section class="alerts">')[1].split("</h2>")[0]


def test_the_page_counts_the_active_alerts_only_when_there_are_more_and_only_so_far(desk) -> None:
    """No timing here. The heading counted every active alert on each 10-second refresh (28 ms per 100,000),
    and did so with 3 active alerts too, where it says nothing. Now the page reads one alert beyond the
    25 it shows: with 25 it counts nothing; with more, it counts up to ALERTS_COUNTED (1,000) and says
    "more than 1000" beyond, the plan of its count reading at most 1,001 alerts however many are active."""
    client, key, conn = desk
    insert = """
        INSERT INTO alerts (alert_id, kind, source, status, meter_id, dma, start, detected_at, last_seen,
                            rate_l_h, volume_l, confidence, evidence)
        SELECT 'low_battery/M' || i, 'low_battery', 'meter', 'open', 'M' || i, 'D1', t, t, t, 0, 0, 0.9, '[]'
        FROM generate_series(%s::int, %s::int) i, LATERAL (SELECT %s::timestamptz + make_interval(mins => i) AS t) at
    """
    counting = lambda text: "count(" in text and "alerts" in text  # noqa: E731
    conn.execute(insert, (1, ALERTS_SHOWN, T0))
    with queries_run(counting) as counted:
        heading = _heading(client, key)
        assert heading.endswith(f"open or ongoing: {ALERTS_SHOWN}") and "most urgent" not in heading
    assert counted == []
    conn.execute(insert, (ALERTS_SHOWN + 1, 40, T0))
    assert "open or ongoing: 40 <small>the 25 most urgent shown;" in _heading(client, key)
    conn.execute(insert, (41, ALERTS_COUNTED, T0))
    assert f"open or ongoing: {ALERTS_COUNTED} <small>the 25 most urgent shown;" in _heading(client, key)
    conn.execute(insert, (ALERTS_COUNTED + 1, 2500, T0))
    conn.execute("ANALYZE alerts")
    with queries_run(counting) as counted:
        assert f"open or ongoing: more than {ALERTS_COUNTED} <small>the 25 most urgent shown;" in _heading(client, key)
    assert len(counted) == 1, counted
    nodes = explained_nodes(conn, *counted[0])
    read = [node for node in nodes if node.get("Relation Name") == "alerts"]
    assert read and all(node["Actual Rows"] <= ALERTS_COUNTED + 1 for node in read), nodes


def test_a_database_upgraded_with_alerts_ranks_them_as_their_enquiries_say(database_url, monkeypatch) -> None:
    """Migration 0046 gives the alerts already stored their enquiry's rank (none: 4)."""
    every = migrate_module.migration_files()
    monkeypatch.setattr(migrate_module, "migration_files", lambda: [f for f in every if "0046_" not in f[0]])
    migrate_module.migrate(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        kinds = [AlertKind.LOW_BATTERY, AlertKind.BURST, AlertKind.LEAK, AlertKind.TAMPER, AlertKind.LOW_BATTERY]
        save_changes(conn, AlertChanges(opened=[_alert(n, kind, n, AlertStatus.OPEN) for n, kind in enumerate(kinds)]))
        conn.execute("UPDATE enquiries SET priority = 'urgent' WHERE alert_id = 'low_battery/M0'")
        conn.execute(
            "DELETE FROM enquiry_updates u USING enquiries e WHERE u.enquiry_id = e.enquiry_id AND e.meter_id = 'M1'"
        )
        conn.execute("DELETE FROM enquiries WHERE meter_id = 'M1'")
        monkeypatch.setattr(migrate_module, "migration_files", lambda: every)
        migrate_module.migrate(database_url)
        ranks: dict[str, int] = dict(conn.execute("SELECT meter_id, enquiry_rank FROM alerts").fetchall())
        assert ranks == {"M0": 0, "M1": 4, "M2": 1, "M3": 2, "M4": 3}
        expected = conn.execute(RANKED_FROM_ENQUIRIES, (sorted(ACTIVE), ALERTS_SHOWN)).fetchall()
        key = create_api_key(conn, "care desk", ["customer_care"])
    with TestClient(create_app(database_url)) as client:
        assert (
            _shown(client, key)
            == [alert_id.split("/")[1] for (alert_id,) in expected]
            == ["M0", "M2", "M3", "M4", "M1"]
        )
