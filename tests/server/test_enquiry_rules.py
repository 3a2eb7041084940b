"""The rules that turn alerts into enquiries agree with the detection code's kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from collector.alert_store import dismiss_alert, save_changes
from collector.detection.alerts import FLOW_KINDS, Alert, AlertKind, AlertSource, AlertStatus
from collector.detection.common import new_alert
from collector.detection.lifecycle import FOLDED_BY, FOLDED_REASON, AlertChanges
from server.accounts.register import Agreement, record_accounts
from server.meters.repository import Installation, record_installations

DETECTED = datetime(2026, 3, 2, 4, tzinfo=UTC)


def test_every_alert_kind_has_a_rule_and_exactly_the_flow_kinds_quote_a_rate(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url) as conn:
        rules: dict[str, bool] = dict(conn.execute("SELECT alert_kind, shows_rate FROM alert_enquiry_rules").fetchall())
    assert set(rules) == {k.value for k in AlertKind}
    assert {kind for kind, shows in rules.items() if shows} == {k.value for k in FLOW_KINDS}


def _alert(kind: AlertKind, meter_id: str, rate_l_h: float, running: timedelta) -> Alert:
    """An alert raised at DETECTED about an episode ``running`` for so long; a tamper is the meter's own."""
    return new_alert(
        kind,
        meter_id,
        "D1",
        start=DETECTED - running,
        detected_at=DETECTED,
        last_seen=DETECTED,
        ended_at=None,
        rate_l_h=rate_l_h,
        volume_l=rate_l_h * running.total_seconds() / 3600,
        confidence=0.8,
        evidence=((DETECTED - timedelta(hours=1), DETECTED),),
        source=AlertSource.METER if kind is AlertKind.TAMPER else AlertSource.DETECTOR,
    ).replace(updated_at=DETECTED)


def test_an_enquiry_quotes_the_rate_of_water_flowing_and_no_other(migrated_database_url: str) -> None:
    """A leak's 12.5 L/h is water lost; a stuck register's is use going unrecorded, and a meter's own
    tamper alarm carries none: their enquiries say since when, not how much."""
    alerts = [
        _alert(kind, f"M-{kind.value}", 12.5, timedelta(hours=5))
        for kind in (AlertKind.LEAK, AlertKind.STUCK, AlertKind.TAMPER)
    ]
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=alerts))
        subjects: dict[str, str] = dict(conn.execute("SELECT meter_id, subject FROM enquiries").fetchall())
    assert subjects["M-leak"] == "Continuous flow (leak) at meter M-leak: 12.5 L/h since 2026-03-01 23:00 UTC"
    assert subjects["M-stuck"] == "Register not advancing at meter M-stuck: since 2026-03-01 23:00 UTC"
    assert subjects["M-tamper"] == "Tamper alarm from meter M-tamper: since 2026-03-01 23:00 UTC"


def test_a_burst_found_to_be_a_leak_refiles_its_enquiry_and_keeps_its_priority(migrated_database_url: str) -> None:
    """The same alert, now a leak: its one enquiry is filed as a leak, with the leak's subject and a
    note saying what changed; its priority stays urgent (a crew may be on the way). An enquiry a
    person refiled keeps its category and gets the note."""
    running = timedelta(hours=7, minutes=19)
    bursts = [_alert(AlertKind.BURST, meter, 183.4, running) for meter in ("M-shop", "M-refiled")]
    later = DETECTED + timedelta(hours=9)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=bursts))
        conn.execute("UPDATE enquiries SET category = 'meter fault' WHERE meter_id = 'M-refiled'")
        leaks = [b.replace(kind=AlertKind.LEAK, last_seen=later, updated_at=later) for b in bursts]
        save_changes(conn, AlertChanges(updated=leaks))
        enquiries = {
            row[0]: row[1:]
            for row in conn.execute("SELECT meter_id, category, priority, subject, enquiry_id FROM enquiries")
        }
        notes = _notes(conn)
    assert len(enquiries) == 2  # no second enquiry for the same alert
    category, priority, subject, _ = enquiries["M-shop"]
    assert (category, priority) == ("customer leak", "urgent")
    assert subject == "Continuous flow (leak) at meter M-shop: 183.4 L/h since 2026-03-01 20:41 UTC"
    assert "alert is now leak, was burst" in notes["M-shop"]
    category, priority, subject, _ = enquiries["M-refiled"]
    assert (category, priority) == ("meter fault", "urgent")
    assert subject.startswith("Suspected burst behind meter M-refiled")
    assert "alert is now leak, was burst" in notes["M-refiled"]


def _notes(conn: psycopg.Connection[tuple[str, str]]) -> dict[str, str]:
    """Each meter's enquiry's updates, in order, joined by " | "."""
    return dict(
        conn.execute(
            "SELECT e.meter_id, string_agg(u.note, ' | ' ORDER BY u.at, u.update_id) FROM enquiry_updates u "
            "JOIN enquiries e USING (enquiry_id) GROUP BY e.meter_id"
        ).fetchall()
    )


def test_a_resolved_burst_back_as_a_running_leak_reopens_a_closed_enquiry(migrated_database_url: str) -> None:
    """A burst resolved at closing time comes back that night as a leak still running: its enquiry,
    closed by a person after "alert resolved", is open again with a note saying so; one still being
    worked keeps its status and gets the note."""
    bursts = [_alert(AlertKind.BURST, meter, 186.0, timedelta(hours=2)) for meter in ("M-closed", "M-working")]
    ended = DETECTED + timedelta(hours=8)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=bursts))
        resolved = [b.replace(status=AlertStatus.RESOLVED, ended_at=ended, resolved_at=ended) for b in bursts]
        save_changes(conn, AlertChanges(resolved=resolved))
        conn.execute("UPDATE enquiries SET status = 'closed', closed_at = now() WHERE meter_id = 'M-closed'")
        conn.execute("UPDATE enquiries SET status = 'in_progress' WHERE meter_id = 'M-working'")
        leaks = [
            b.replace(kind=AlertKind.LEAK, status=AlertStatus.ONGOING, ended_at=None, resolved_at=None, rate_l_h=150.0)
            for b in resolved
        ]
        save_changes(conn, AlertChanges(updated=leaks))
        enquiries = {
            row[0]: row[1:] for row in conn.execute("SELECT meter_id, status, closed_at, category FROM enquiries")
        }
        notes = _notes(conn)
    assert enquiries["M-closed"] == ("open", None, "customer leak")
    assert enquiries["M-working"] == ("in_progress", None, "customer leak")
    assert notes["M-closed"].endswith(
        "alert ongoing again: later reads show its flow did not stop; enquiry reopened"
    ), notes["M-closed"]
    assert "alert resolved" in notes["M-closed"] and "alert is now leak, was burst" in notes["M-closed"]
    assert notes["M-working"].endswith("alert ongoing again: later reads show its flow did not stop")


def test_an_alert_resolved_at_its_meter_s_removal_tells_its_enquiry_the_meter_was_taken_out(
    migrated_database_url: str,
) -> None:
    """ "The flow stopped" would tell care the leak was over; behind a meter taken out it may go on
    through the replacement. A meter still in place, one taken out after the alert ended, and one
    never listed by meterization: the flow stopped."""
    leaks = [
        _alert(AlertKind.LEAK, meter, 12.5, timedelta(hours=5)) for meter in ("M-out", "M-in", "M-later", "M-none")
    ]
    ended = DETECTED + timedelta(hours=3)
    installations = [
        ("SP-1", "M-out", DETECTED - timedelta(days=400), ended),
        ("SP-2", "M-in", DETECTED - timedelta(days=400), None),
        ("SP-3", "M-later", DETECTED - timedelta(days=400), ended + timedelta(days=2)),
    ]
    with psycopg.connect(migrated_database_url) as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO meters (meter_id) VALUES (%s)", [(i[1],) for i in installations])
            cur.executemany(
                "INSERT INTO service_points (service_point_id) VALUES (%s)", [(i[0],) for i in installations]
            )
            cur.executemany(
                "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
                "VALUES (%s, %s, %s, %s)",
                installations,
            )
        save_changes(conn, AlertChanges(opened=leaks))
        resolved = [a.replace(status=AlertStatus.RESOLVED, ended_at=ended, resolved_at=ended) for a in leaks]
        save_changes(conn, AlertChanges(resolved=resolved))
        notes = _notes(conn)
    assert notes["M-out"].endswith(
        "alert resolved: meter M-out taken out (63 L lost until then); "
        "a leak behind it would go on through its replacement"
    ), notes["M-out"]
    for meter in ("M-in", "M-later", "M-none"):
        assert notes[meter].endswith("alert resolved: the flow stopped (63 L lost in all)"), notes[meter]


def test_a_meter_s_own_alarm_without_a_flow_reading_quotes_no_rate(migrated_database_url: str) -> None:
    """A meter's leak alarm with no flow beside it is stored at rate 0: "0.0 L/h" read as "no leak".
    A detector's rate, and a meter's measured one, are still quoted."""
    alarmed = _alert(AlertKind.LEAK, "M-alarm", 0.0, timedelta(hours=5)).replace(source=AlertSource.METER)
    measured = _alert(AlertKind.LEAK, "M-measured", 3.0, timedelta(hours=5)).replace(source=AlertSource.METER)
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[alarmed, measured]))
        subjects: dict[str, str] = dict(conn.execute("SELECT meter_id, subject FROM enquiries").fetchall())
    assert subjects["M-alarm"] == "Continuous flow (leak) at meter M-alarm: since 2026-03-01 23:00 UTC"
    assert subjects["M-measured"] == "Continuous flow (leak) at meter M-measured: 3.0 L/h since 2026-03-01 23:00 UTC"


def test_an_enquiry_moves_to_the_dma_its_alert_moved_to(migrated_database_url: str) -> None:
    """A meter moved to another district keeps its alert, now in the new DMA: its enquiry follows,
    with a note, so the new district's list holds it. One a person filed elsewhere stays there."""
    leaks = [_alert(AlertKind.LEAK, meter, 12.5, timedelta(hours=5)) for meter in ("M-moved", "M-refiled")]
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=leaks))
        conn.execute("UPDATE enquiries SET dma = 'D9' WHERE meter_id = 'M-refiled'")
        save_changes(conn, AlertChanges(updated=[leak.replace(dma="D2") for leak in leaks]))
        dmas: dict[str, str] = dict(conn.execute("SELECT meter_id, dma FROM enquiries").fetchall())
        notes = _notes(conn)
    assert dmas == {"M-moved": "D2", "M-refiled": "D9"}
    assert notes["M-moved"].endswith("alert now in DMA D2, was D1"), notes["M-moved"]


def test_an_alert_of_a_kind_the_code_does_not_know_is_refused(migrated_database_url: str) -> None:
    """Every stored kind is one AlertKind knows: one it did not made every list holding it fail
    (GET /alerts, the web page, dismissal, the detection runs)."""
    leak = _alert(AlertKind.LEAK, "M1", 12.5, timedelta(hours=5))
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[leak.replace(kind=kind, alert_id=f"a/{kind}") for kind in AlertKind]))
        conn.commit()
        with pytest.raises(psycopg.errors.CheckViolation, match="alerts_kind_known"):
            conn.execute("UPDATE alerts SET kind = 'backflow' WHERE alert_id = 'a/leak'")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM alerts").fetchone() == (len(AlertKind),)


def test_an_enquiry_raised_before_meterization_recorded_the_meter_is_placed_once_it_does(
    migrated_database_url: str,
) -> None:
    """The job card arrives after the leak was raised: its enquiry had no service point nor account,
    and the account's list never showed it. Recording the installation, then the agreement, fills
    them in as of the alert's detection; a meter fitted only after it stays unplaced."""
    leaks = [_alert(AlertKind.LEAK, meter, 12.5, timedelta(hours=5)) for meter in ("M-late-card", "M-fitted-after")]
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=leaks))
        assert conn.execute("SELECT count(*) FROM enquiries WHERE service_point_id IS NULL").fetchone() == (2,)
        conn.execute("INSERT INTO meters (meter_id) VALUES ('M-late-card'), ('M-fitted-after')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-1'), ('SP-2')")
        conn.execute("INSERT INTO accounts (account_id, name) VALUES ('ACC-1', 'A Customer')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at) "
            "VALUES ('SP-1', 'M-late-card', %s), ('SP-2', 'M-fitted-after', %s)",
            (DETECTED - timedelta(days=300), DETECTED + timedelta(days=1)),
        )
        conn.execute(
            "INSERT INTO service_agreements (account_id, service_point_id, start_at) VALUES ('ACC-1', 'SP-1', %s)",
            (DETECTED - timedelta(days=200),),
        )
        places = {
            row[0]: row[1:] for row in conn.execute("SELECT meter_id, service_point_id, account_id FROM enquiries")
        }
        notes = _notes(conn)
    assert places == {"M-late-card": ("SP-1", "ACC-1"), "M-fitted-after": (None, None)}
    assert notes["M-late-card"].endswith(
        "meter recorded as fitted at service point SP-1 | service point supplied to account ACC-1"
    ), notes["M-late-card"]
    assert "fitted at" not in notes["M-fitted-after"], notes["M-fitted-after"]


def test_an_enquiry_follows_the_records_corrected_after_its_alert_to_the_right_customer(
    migrated_database_url: str,
) -> None:
    """A move-out recorded late (the new tenant supplied at SP-1 from 17 days before the leak) left
    the new tenant's leak on the old tenant's account, and a job card corrected from the
    neighbour's SP-X to SP-2 left the enquiry at the neighbour's: GET /enquiries?account=NEW showed
    nothing. Corrected through register-accounts and register-meters' own functions, the enquiries
    being worked move, with a note saying from where; a closed one keeps the links it was closed with."""
    long_ago, moved_in = DETECTED - timedelta(days=400), DETECTED - timedelta(days=17)
    meters = ("M-moved-in", "M-card", "M-closed")
    leaks = [_alert(AlertKind.LEAK, meter, 12.5, timedelta(hours=5)) for meter in meters]
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id) SELECT unnest(%s::text[])", (list(meters),))
        record_installations(
            conn, [Installation(m, p, "D1", long_ago) for m, p in zip(meters, ("SP-1", "SP-X", "SP-3"), strict=True)]
        )
        record_accounts(
            conn,
            [
                Agreement("OLD", "Old tenant", "SP-1", long_ago, None, None),
                Agreement("SPX", "Neighbour", "SP-X", long_ago, None, None),
                Agreement("A3", "Third", "SP-3", long_ago, None, None),
            ],
        )
        save_changes(conn, AlertChanges(opened=leaks))
        conn.execute("UPDATE enquiries SET status = 'closed', closed_at = now() WHERE meter_id = 'M-closed'")
        record_accounts(
            conn,
            [
                Agreement("OLD", "Old tenant", "SP-1", long_ago, moved_in, None),
                Agreement("NEW", "New tenant", "SP-1", moved_in, None, None),
                Agreement("B3", "Third, corrected", "SP-3", long_ago, None, None),  # the same one, another account
            ],
        )
        record_installations(conn, [Installation("M-card", "SP-2", "D1", long_ago)])
        record_accounts(conn, [Agreement("ACC2", "Right customer", "SP-2", long_ago, None, None)])
        places = {
            row[0]: row[1:] for row in conn.execute("SELECT meter_id, service_point_id, account_id FROM enquiries")
        }
        notes = _notes(conn)
    assert places == {"M-moved-in": ("SP-1", "NEW"), "M-card": ("SP-2", "ACC2"), "M-closed": ("SP-3", "A3")}
    assert notes["M-moved-in"].endswith(
        "service point supplied to account NEW when its alert was detected; enquiry moved from account OLD"
    ), notes["M-moved-in"]
    assert notes["M-card"].endswith(
        "meter recorded as fitted at service point SP-2 when its alert was detected; enquiry moved from service "
        "point SP-X | no account recorded as supplied there when its alert was detected; enquiry taken off "
        "account SPX | service point supplied to account ACC2"
    ), notes["M-card"]
    assert "moved" not in notes["M-closed"], notes["M-closed"]


def test_a_meter_moved_by_one_register_meters_file_moves_its_enquiry_once(migrated_database_url: str) -> None:
    """A job card file recording a meter's removal from SP-X and its fitting at SP-2 is written in
    two statements (the removal, then the fitting): the enquiry was told of the state between them,
    "no longer recorded as fitted anywhere" and taken off SPX's account, before it was placed at
    SP-2. It is now placed once the file is written: one move, from SP-X to SP-2."""
    long_ago, moved = DETECTED - timedelta(days=400), DETECTED - timedelta(days=30)
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES ('M-move')")
        record_installations(conn, [Installation("M-move", "SP-X", "D1", long_ago)])
        conn.execute("INSERT INTO service_points (service_point_id, dma) VALUES ('SP-2', 'D1')")
        record_accounts(
            conn,
            [
                Agreement("SPX", "Neighbour", "SP-X", long_ago, None, None),
                Agreement("ACC2", "Right customer", "SP-2", long_ago, None, None),
            ],
        )
        save_changes(conn, AlertChanges(opened=[_alert(AlertKind.LEAK, "M-move", 12.5, timedelta(hours=5))]))
        record_installations(
            conn,
            [Installation("M-move", "SP-X", "D1", long_ago, moved), Installation("M-move", "SP-2", "D1", moved)],
        )
        place = conn.execute("SELECT service_point_id, account_id FROM enquiries WHERE meter_id = 'M-move'").fetchone()
        notes = _notes(conn)
    assert place == ("SP-2", "ACC2")
    assert "no longer" not in notes["M-move"] and "taken off" not in notes["M-move"], notes["M-move"]
    assert notes["M-move"].endswith(
        "meter recorded as fitted at service point SP-2 when its alert was detected; enquiry moved from service "
        "point SP-X | service point supplied to account ACC2 when its alert was detected; enquiry moved from "
        "account SPX"
    ), notes["M-move"]


def test_the_enquiry_of_a_meter_s_alarm_folded_into_a_detector_s_alert_is_closed_as_its_duplicate(
    migrated_database_url: str,
) -> None:
    """The meter's leak bit raised an enquiry before the detector's burst raised its own about the
    same flow: two open enquiries for one leak. Folded (collector.detection.lifecycle), the alarm's
    enquiry is closed, naming the one that goes on; one a person is working keeps its status."""
    now = DETECTED + timedelta(hours=2)
    alarms = [
        _alert(AlertKind.LEAK, meter, 0.0, timedelta(hours=1)).replace(source=AlertSource.METER)
        for meter in ("M-open", "M-working")
    ]
    bursts = [
        _alert(AlertKind.BURST, a.meter_id or "", 600.0, timedelta(hours=2)).replace(alert_id=f"burst/{a.meter_id}")
        for a in alarms
    ]
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=alarms))
        conn.execute("UPDATE enquiries SET status = 'in_progress' WHERE meter_id = 'M-working'")
        folded = [
            a.replace(
                status=AlertStatus.DISMISSED,
                dismissed_at=now,
                dismissed_by=FOLDED_BY,
                dismiss_reason=f"{FOLDED_REASON}burst/{a.meter_id}",
            )
            for a in alarms
        ]
        save_changes(conn, AlertChanges(opened=bursts, updated=folded))
        status: dict[str, str] = dict(conn.execute("SELECT alert_id, status FROM enquiries").fetchall())
        ids: dict[str, int] = dict(conn.execute("SELECT alert_id, enquiry_id FROM enquiries").fetchall())
        notes = _notes(conn)
    assert status[alarms[0].alert_id] == "closed" and status[alarms[1].alert_id] == "in_progress"
    assert status["burst/M-open"] == status["burst/M-working"] == "open"
    assert notes["M-open"].endswith(
        f"a duplicate of enquiry {ids['burst/M-open']} (alert burst/M-open), about the same flow; enquiry closed"
    ), notes["M-open"]
    assert notes["M-working"].endswith(
        f"a duplicate of enquiry {ids['burst/M-working']} (alert burst/M-working), about the same flow"
    ), notes["M-working"]


def test_an_alert_of_no_flow_tells_its_enquiry_it_cleared_without_litres(migrated_database_url: str) -> None:
    """A meter's tamper alarm of 8 hours told its enquiry "the flow stopped (23 L lost in all)": the
    household's use while it was on, no water lost. Only the flow kinds' notes quote litres."""
    kinds = {
        "M-tamper": AlertKind.TAMPER,
        "M-dry": AlertKind.DRY,
        "M-battery": AlertKind.LOW_BATTERY,
        "M-stuck": AlertKind.STUCK,
        "M-out": AlertKind.TAMPER,
        "M-leak": AlertKind.LEAK,
    }
    alerts = [
        _alert(kind, meter, 2.9, timedelta(hours=8)).replace(
            source=AlertSource.DETECTOR if kind in (AlertKind.STUCK, AlertKind.LEAK) else AlertSource.METER
        )
        for meter, kind in kinds.items()
    ]
    ended = DETECTED + timedelta(hours=1)
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("INSERT INTO meters (meter_id) VALUES ('M-out')")
        conn.execute("INSERT INTO service_points (service_point_id) VALUES ('SP-out')")
        conn.execute(
            "INSERT INTO meter_installations (service_point_id, meter_id, installed_at, removed_at) "
            "VALUES ('SP-out', 'M-out', %s, %s)",
            (DETECTED - timedelta(days=400), ended),
        )
        save_changes(conn, AlertChanges(opened=alerts))
        resolved = [a.replace(status=AlertStatus.RESOLVED, ended_at=ended, resolved_at=ended) for a in alerts]
        save_changes(conn, AlertChanges(resolved=resolved))
        notes = _notes(conn)
    last = {meter: note.rsplit(" | ", 1)[-1] for meter, note in notes.items()}
    assert last == {
        "M-tamper": "alert resolved: alarm cleared",
        "M-dry": "alert resolved: alarm cleared",
        "M-battery": "alert resolved: alarm cleared",
        "M-stuck": "alert resolved: no longer seen",
        "M-out": "alert resolved: meter M-out taken out",
        "M-leak": "alert resolved: the flow stopped (23 L lost in all)",
    }


def test_a_dismissal_by_detection_naming_no_stored_alert_closes_no_enquiry(migrated_database_url: str) -> None:
    """A key named 'detection' (made before the system's names were refused) dismissed an urgent
    burst with a fold's reason naming no alert: its enquiry was closed as "a duplicate of enquiry
    (none)". A fold names an alert stored before it; this dismissal is only written on the enquiry."""
    burst = _alert(AlertKind.BURST, "M-burst", 900.0, timedelta(hours=1))
    with psycopg.connect(migrated_database_url) as conn:
        save_changes(conn, AlertChanges(opened=[burst]))
        reason = f"{FOLDED_REASON}NO-SUCH-ALERT"
        dismiss_alert(conn, burst.alert_id, by=FOLDED_BY, reason=reason, now=DETECTED + timedelta(hours=1))
        (status,) = conn.execute("SELECT status FROM enquiries WHERE meter_id = 'M-burst'").fetchone() or (None,)
        notes = _notes(conn)
    assert status == "open"
    assert notes["M-burst"].endswith(f"alert dismissed: {reason}") and "duplicate" not in notes["M-burst"]
