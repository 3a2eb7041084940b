"""An alert's enquiry follows the figures later runs revise (server migration 0044): its subject
always, a note when the change is material against what care was last told. Before, only a change
of kind reached the enquiry: a shop's burst raised at 302.8 L/h and measured at 193.0 L/h four
hours on still read "302.8 L/h since 10:00"."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collector.migrate as migrate_module
from collector.alert_store import save_changes
from collector.detection.alerts import Alert, AlertKind, AlertStatus
from collector.detection.common import new_alert
from collector.detection.lifecycle import AlertChanges

DETECTED = datetime(2026, 1, 21, 12, tzinfo=UTC)
#: what makes a revision material (migration 0044): the rate by 20% of the rate told and 1 L/h; the start by 2 hours
RATE_SHARE, RATE_FLOOR_L_H, START_MOVE = 0.2, 1.0, timedelta(hours=2)


def _alert(kind: AlertKind, meter_id: str, rate_l_h: float, start: datetime) -> Alert:
    return new_alert(
        kind, meter_id, "D1", start=start, detected_at=DETECTED, last_seen=DETECTED, ended_at=None,
        rate_l_h=rate_l_h, volume_l=rate_l_h * 2, confidence=0.5, evidence=((DETECTED, DETECTED),),
    ).replace(updated_at=DETECTED)  # fmt: skip


def _revise(conn: psycopg.Connection[Any], alert: Alert, step: int, **figures: Any) -> Alert:
    """``alert`` as the run ``step`` hours later stores it, with new ``figures``."""
    later = DETECTED + timedelta(hours=step)
    revised = alert.replace(status=AlertStatus.ONGOING, last_seen=later, updated_at=later, **figures)
    save_changes(conn, AlertChanges(updated=[revised]))
    return revised


def _enquiry(conn: psycopg.Connection[Any], alert_id: str) -> tuple[str, list[str]]:
    """The subject of ``alert_id``'s enquiry and its notes by detection after the one raising it."""
    row = conn.execute("SELECT enquiry_id, subject FROM enquiries WHERE alert_id = %s", (alert_id,)).fetchone()
    assert row is not None
    notes = conn.execute(
        "SELECT note FROM enquiry_updates WHERE enquiry_id = %s ORDER BY at, update_id", (row[0],)
    ).fetchall()
    return row[1], [n for (n,) in notes[1:]]


def _l_h(rate: float) -> str:
    """A rate as the subject quotes it: to 0.1 L/h, halves away from zero (PostgreSQL's round)."""
    return f"{Decimal(repr(rate)).quantize(Decimal('0.1'), ROUND_HALF_UP)} L/h"


def _since(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def test_the_shop_s_burst_measured_lower_reads_so_and_the_fall_is_written_once(migrated_database_url: str) -> None:
    """Raised at 302.75 L/h since 10:00; the next runs measure 302.50 since 09:47, 197.50 since 09:41
    (35% less: material), 193.00 since 09:40 (2% below what care was told, the start 1 minute on).
    The subject reads each; one note says what changed."""
    burst = _alert(AlertKind.BURST, "SHOP", 302.75, DETECTED - timedelta(hours=2))
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[burst]))
        subjects = []
        for step, (rate, minutes) in enumerate([(302.5, 13), (197.5, 19), (193.0, 20)], start=1):
            _revise(conn, burst, step, rate_l_h=rate, start=burst.start - timedelta(minutes=minutes))
            subjects.append(_enquiry(conn, burst.alert_id)[0])
        _, notes = _enquiry(conn, burst.alert_id)
    title = "Suspected burst behind meter SHOP"
    assert subjects == [
        f"{title}: 302.5 L/h since 2026-01-21 09:47 UTC",
        f"{title}: 197.5 L/h since 2026-01-21 09:41 UTC",
        f"{title}: 193.0 L/h since 2026-01-21 09:40 UTC",
    ]
    assert notes == [
        "later reads revise the alert: rate 197.5 L/h, was 302.8 L/h; "
        "since 2026-01-21 09:41 UTC, was 2026-01-21 10:00 UTC"
    ]


revisions = st.lists(
    st.tuples(st.floats(0.5, 400.0).map(lambda r: round(r, 2)), st.integers(-36 * 60, 6 * 60)), min_size=1, max_size=6
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first_rate=st.floats(0.5, 400.0).map(lambda r: round(r, 2)), steps=revisions)
def test_the_subject_follows_every_revision_and_a_note_only_a_material_one(
    migrated_database_url: str, first_rate: float, steps: list[tuple[float, int]]
) -> None:
    """Each run's rate and start (minutes from the first start): the subject reads them at once; a
    note is written when the rate moved by 20% and 1 L/h, or the start by 2 hours, from what care
    was last told (raised, or the last note), never for a drift under that, however many runs."""
    first_start = DETECTED - timedelta(hours=3)
    leak = _alert(AlertKind.LEAK, f"M-{uuid.uuid4().hex[:8]}", first_rate, first_start)
    told_rate, told_start, expected_notes = first_rate, first_start, 0
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[leak]))
        for step, (rate, minutes) in enumerate(steps, start=1):
            start = first_start + timedelta(minutes=minutes)
            _revise(conn, leak, step, rate_l_h=rate, start=start)
            subject, notes = _enquiry(conn, leak.alert_id)
            assert subject == f"Continuous flow (leak) at meter {leak.meter_id}: {_l_h(rate)} since {_since(start)}"
            if (
                abs(rate - told_rate) >= max(RATE_SHARE * told_rate, RATE_FLOOR_L_H)
                or abs(start - told_start) >= START_MOVE
            ):
                rate_told = f"rate {_l_h(rate)}, was {_l_h(told_rate)}"
                assert notes[-1].startswith("later reads revise the alert: ")
                assert (rate_told in notes[-1]) == (_l_h(rate) != _l_h(told_rate)), notes[-1]
                told_rate, told_start, expected_notes = rate, start, expected_notes + 1
            assert len(notes) == expected_notes, (steps, notes)
        conn.rollback()  # each example's alert is its own; nothing kept


def test_a_refiled_or_re_kinded_enquiry_is_told_once_and_a_figure_of_no_flow_is_not_quoted(
    migrated_database_url: str,
) -> None:
    """An enquiry a person refiled keeps its subject and gets the note. A burst found to be a leak
    is told by its refiling's note, which quotes the new figures (0032), not a second time. A stuck
    register's rate is no water flowing: its change is never written, its start's is."""
    start = DETECTED - timedelta(hours=2)
    refiled = _alert(AlertKind.LEAK, "M-refiled", 30.0, start)
    rekinded = _alert(AlertKind.BURST, "M-shop", 300.0, start)
    stuck = _alert(AlertKind.STUCK, "M-stuck", 12.0, start)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[refiled, rekinded, stuck]))
        conn.execute("UPDATE enquiries SET category = 'meter fault' WHERE meter_id = 'M-refiled'")
        _revise(conn, refiled, 1, rate_l_h=60.0)
        _revise(conn, rekinded, 1, kind=AlertKind.LEAK, rate_l_h=150.0)
        rekinded = _revise(conn, rekinded, 2, kind=AlertKind.LEAK, rate_l_h=151.0)
        _revise(conn, stuck, 1, rate_l_h=30.0)
        _revise(conn, stuck, 2, rate_l_h=30.0, start=start - timedelta(hours=5))
        found = {a.meter_id: _enquiry(conn, a.alert_id) for a in (refiled, rekinded, stuck)}
    assert found["M-refiled"] == (
        "Continuous flow (leak) at meter M-refiled: 30.0 L/h since 2026-01-21 10:00 UTC",
        ["later reads revise the alert: rate 60.0 L/h, was 30.0 L/h"],
    )
    subject, notes = found["M-shop"]
    assert subject == "Continuous flow (leak) at meter M-shop: 151.0 L/h since 2026-01-21 10:00 UTC"
    assert [n for n in notes if "revise" in n] == [] and len(notes) == 1 and "150.0 L/h" in notes[0]
    assert found["M-stuck"] == (
        "Register not advancing at meter M-stuck: since 2026-01-21 05:00 UTC",
        ["later reads revise the alert: since 2026-01-21 05:00 UTC, was 2026-01-21 10:00 UTC"],
    )


def test_enquiries_raised_before_the_migration_are_brought_up_to_date_once_it_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database whose enquiries already quote a stale rate: those being worked are brought up to
    date, noted against the figures their subject quotes when material; a closed one keeps its
    subject."""
    every = migrate_module.migration_files()
    monkeypatch.setattr(
        migrate_module, "migration_files", lambda: [f for f in every if not f[0].startswith("server/0044_")]
    )
    migrate_module.migrate(database_url)
    start = DETECTED - timedelta(hours=2)
    leaks = {m: _alert(AlertKind.LEAK, m, 25.0, start) for m in ("M-stale", "M-drift", "M-closed")}
    with psycopg.connect(database_url) as conn:
        save_changes(conn, AlertChanges(opened=list(leaks.values())))
        _revise(conn, leaks["M-stale"], 1, rate_l_h=48.0)
        _revise(conn, leaks["M-drift"], 1, rate_l_h=26.0)
        _revise(conn, leaks["M-closed"], 1, rate_l_h=48.0)
        conn.execute("UPDATE enquiries SET status = 'closed', closed_at = now() WHERE meter_id = 'M-closed'")
    monkeypatch.setattr(migrate_module, "migration_files", lambda: every)
    migrate_module.migrate(database_url)
    with psycopg.connect(database_url) as conn:
        found = {m: _enquiry(conn, a.alert_id) for m, a in leaks.items()}
    since = "since 2026-01-21 10:00 UTC"
    assert found["M-stale"] == (
        f"Continuous flow (leak) at meter M-stale: 48.0 L/h {since}",
        ["later reads revise the alert: rate 48.0 L/h, was 25.0 L/h"],
    )
    assert found["M-drift"] == (f"Continuous flow (leak) at meter M-drift: 26.0 L/h {since}", [])
    assert found["M-closed"] == (f"Continuous flow (leak) at meter M-closed: 25.0 L/h {since}", [])
