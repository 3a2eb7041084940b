"""One episode of water escaping at one meter is one piece of work (server migration 0045): a
detector's burst raised on top of a leak whose enquiry is being worked is that enquiry's, not a
second one. Before, a 25 L/h leak that opened up by 575 L/h had a 'high' and an 'urgent' enquiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from collector.alert_store import save_changes
from collector.detection.alerts import Alert, AlertKind, AlertStatus
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges

LEAK_SEEN = datetime(2026, 3, 2, 4, tzinfo=UTC)
GREW = LEAK_SEEN + timedelta(days=1)


def _alert(kind: AlertKind, meter_id: str, rate_l_h: float, start: datetime, detected: datetime) -> Alert:
    return new_alert(
        kind, meter_id, "D1", start=start, detected_at=detected, last_seen=detected, ended_at=None,
        rate_l_h=rate_l_h, volume_l=rate_l_h, confidence=0.9, evidence=((detected, detected),),
    ).replace(updated_at=detected)  # fmt: skip


def _leak(meter_id: str) -> Alert:
    return _alert(AlertKind.LEAK, meter_id, 25.0, LEAK_SEEN - timedelta(hours=5), LEAK_SEEN)


def _burst(meter_id: str) -> Alert:
    return _alert(AlertKind.BURST, meter_id, 600.0, GREW - timedelta(hours=1), GREW)


def _enquiries(conn: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """Each alert's enquiry: status, priority, and the enquiry it is a duplicate of."""
    rows = conn.execute("SELECT alert_id, status, priority, duplicate_of, enquiry_id FROM enquiries").fetchall()
    return {row[0]: row[1:] for row in rows}


def test_a_burst_on_a_worked_leak_is_its_work_and_what_follows_reaches_it(migrated_database_url: str) -> None:
    """The leak's enquiry, being worked, takes the burst: urgent, told. The burst's later news (the
    flow stopped, then ran again) is written on it too, and it, not the closed duplicate, reopens."""
    leak, burst = _leak("M1"), _burst("M1")
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[leak]))
        conn.execute("UPDATE enquiries SET status = 'in_progress'")
        save_changes(conn, AlertChanges(opened=[burst]))
        found = _enquiries(conn)
        kept = found[leak.alert_id][3]
        assert found[leak.alert_id] == ("in_progress", "urgent", None, kept)
        assert found[burst.alert_id][:3] == ("closed", "urgent", kept)
        ended = GREW + timedelta(hours=3)
        stopped = burst.replace(status=AlertStatus.RESOLVED, ended_at=ended, resolved_at=ended, last_seen=ended)
        save_changes(conn, AlertChanges(resolved=[stopped]))
        conn.execute("UPDATE enquiries SET status = 'closed', closed_at = now() WHERE enquiry_id = %s", (kept,))
        again = GREW + timedelta(hours=6)
        running = stopped.replace(status=AlertStatus.ONGOING, ended_at=None, resolved_at=None, last_seen=again)
        save_changes(conn, AlertChanges(updated=[running]))
        found = _enquiries(conn)
        notes = [n for (n,) in conn.execute("SELECT note FROM enquiry_updates WHERE enquiry_id = %s", (kept,))]
    assert found[leak.alert_id][0] == "open" and found[burst.alert_id][0] == "closed"
    whence = f"on enquiry {found[burst.alert_id][3]} (alert {burst.alert_id}): "
    assert notes[-2:] == [
        f"{whence}alert resolved: the flow stopped (600 L lost in all)",
        f"{whence}alert ongoing again: later reads show its flow did not stop; enquiry {kept} reopened",
    ]


def test_a_burst_is_its_own_work_beside_a_closed_a_dismissed_or_an_ended_leak(migrated_database_url: str) -> None:
    """A leak enquiry a person closed, a leak a person dismissed, a leak that stopped before the
    burst began, and a leak on another meter: the burst raises its own urgent enquiry, as before."""
    meters = ("M-closed", "M-dismissed", "M-ended", "M-other")
    leaks = {m: _leak(m) for m in meters}
    ended = GREW - timedelta(hours=6)
    leaks["M-ended"] = leaks["M-ended"].replace(status=AlertStatus.RESOLVED, ended_at=ended, resolved_at=ended)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=list(leaks.values())))
        conn.execute("UPDATE enquiries SET status = 'closed', closed_at = now() WHERE meter_id = 'M-closed'")
        conn.execute(
            "UPDATE alerts SET status = 'dismissed', dismissed_at = now(), dismissed_by = 'ana', "
            "dismiss_reason = 'pool filling' WHERE meter_id = 'M-dismissed'"
        )
        bursts = [_burst(m) for m in meters[:3]] + [_burst("M-elsewhere")]
        save_changes(conn, AlertChanges(opened=bursts))
        found = _enquiries(conn)
    for burst in bursts:
        assert found[burst.alert_id][:3] == ("open", "urgent", None), burst.meter_id
    assert found[leaks["M-other"].alert_id][:3] == ("open", "high", None)
