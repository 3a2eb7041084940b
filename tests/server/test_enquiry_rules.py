"""The rules that turn alerts into enquiries agree with the detection code's kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from collector.alert_store import save_changes
from collector.detection.alerts import FLOW_KINDS, AlertKind, AlertSource
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges

DETECTED = datetime(2026, 3, 2, 4, tzinfo=UTC)


def test_every_alert_kind_has_a_rule_and_exactly_the_flow_kinds_quote_a_rate(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url) as conn:
        rules: dict[str, bool] = dict(conn.execute("SELECT alert_kind, shows_rate FROM alert_enquiry_rules").fetchall())
    assert set(rules) == {k.value for k in AlertKind}
    assert {kind for kind, shows in rules.items() if shows} == {k.value for k in FLOW_KINDS}


def test_an_enquiry_quotes_the_rate_of_water_flowing_and_no_other(migrated_database_url: str) -> None:
    """A leak's 12.5 L/h is water lost; a stuck register's is use going unrecorded, and a meter's own
    tamper alarm carries none: their enquiries say since when, not how much."""
    alerts = [
        new_alert(
            kind,
            f"M-{kind.value}",
            "D1",
            start=DETECTED - timedelta(hours=5),
            detected_at=DETECTED,
            last_seen=DETECTED,
            ended_at=None,
            rate_l_h=12.5,
            volume_l=62.5,
            confidence=0.8,
            evidence=((DETECTED - timedelta(hours=5), DETECTED),),
            source=AlertSource.METER if kind is AlertKind.TAMPER else AlertSource.DETECTOR,
        ).replace(updated_at=DETECTED)
        for kind in (AlertKind.LEAK, AlertKind.STUCK, AlertKind.TAMPER)
    ]
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=alerts))
        subjects: dict[str, str] = dict(conn.execute("SELECT meter_id, subject FROM enquiries").fetchall())
    assert subjects["M-leak"] == "Continuous flow (leak) at meter M-leak: 12.5 L/h since 2026-03-01 23:00 UTC"
    assert subjects["M-stuck"] == "Register not advancing at meter M-stuck: since 2026-03-01 23:00 UTC"
    assert subjects["M-tamper"] == "Tamper alarm from meter M-tamper: since 2026-03-01 23:00 UTC"
