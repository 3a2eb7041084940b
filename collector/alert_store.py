"""Alerts in the database: load those a run may match, persist what :func:`merge_alerts` decided.

All SQL about alerts lives here; the rules of their lifecycle live in
:mod:`collector.detection.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from collector.detection.alerts import Alert, AlertKind, AlertSource, AlertStatus
from collector.detection.lifecycle import AlertChanges

_COLUMNS = (
    "alert_id", "kind", "source", "status", "meter_id", "dma", "start", "detected_at", "last_seen", "ended_at",
    "rate_l_h", "volume_l", "confidence", "evidence", "resolved_at", "dismissed_at", "dismissed_by",
    "dismiss_reason", "updated_at", "dismissed_by_key_id",
)  # fmt: skip


# who closed an alert, when and why: written once, by the first dismissal that reaches the row (an
# UPDATE's right-hand side reads the row as it was, so CASE WHEN status = 'dismissed' sees the stored status)
_DISMISSAL = frozenset({"dismissed_at", "dismissed_by", "dismiss_reason", "dismissed_by_key_id"})


def _row(alert: Alert) -> tuple[Any, ...]:
    evidence = [[a.isoformat(), b.isoformat()] for a, b in alert.evidence]
    return (
        alert.alert_id, alert.kind.value, alert.source.value, alert.status.value, alert.meter_id, alert.dma,
        alert.start, alert.detected_at, alert.last_seen, alert.ended_at, alert.rate_l_h, alert.volume_l,
        alert.confidence, Jsonb(evidence), alert.resolved_at, alert.dismissed_at, alert.dismissed_by,
        alert.dismiss_reason, alert.updated_at, alert.dismissed_by_key_id,
    )  # fmt: skip


def _alert(row: Sequence[Any] | Mapping[str, Any]) -> Alert:
    """An alert from a row, whichever row factory the connection uses (the API's gives dicts)."""
    values = dict(row) if isinstance(row, Mapping) else dict(zip(_COLUMNS, row, strict=True))
    values["kind"] = AlertKind(values["kind"])
    values["source"] = AlertSource(values["source"])
    values["status"] = AlertStatus(values["status"])
    values["evidence"] = tuple((datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in values["evidence"])
    return Alert(**values)


def alerts_to_merge(conn: psycopg.Connection[Any], since: datetime) -> list[Alert]:
    """The stored alerts a run over the window from ``since`` may find again: every active one, every
    dismissed one whose episode has not been seen to end, and any other whose episode reached into
    the window. A resolved alert found again, under its own id or one the sliding window shifted, is
    then left as it is (or reopened, if it runs on), never inserted a second time with an enquiry
    of its own; a dismissed one is not raised again."""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM alerts WHERE status IN ('open', 'ongoing') "
        "OR (status = 'dismissed' AND ended_at IS NULL) OR last_seen >= %s",
        (since,),
    ).fetchall()
    return [_alert(row) for row in rows]


def alerts_for(conn: psycopg.Connection[Any], meter_id: str) -> list[Alert]:
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM alerts WHERE meter_id = %s ORDER BY detected_at", (meter_id,)
    ).fetchall()
    return [_alert(row) for row in rows]


def save_changes(conn: psycopg.Connection[Any], changes: AlertChanges) -> None:
    """Insert opened alerts and update the others, in the caller's transaction.

    An alert a person dismissed is only updated by a change that keeps it dismissed (a run following
    its episode): a detection run reads its alerts without locking them (a dismissal would wait for
    the whole run), so one that read an alert just before it was dismissed would otherwise write it
    back as it was, undoing the dismissal it never saw. Nor does such a change rewrite who dismissed
    it, when and why: the run that read the alert still open may have folded it into a detector's
    alert (dismissed by 'detection'), and that must not replace the person's dismissal it never saw."""
    with conn.cursor() as cur:
        if changes.opened:
            placeholders = ", ".join(["%s"] * len(_COLUMNS))
            cur.executemany(
                f"INSERT INTO alerts ({', '.join(_COLUMNS)}) VALUES ({placeholders}) ON CONFLICT (alert_id) DO NOTHING",
                [_row(a) for a in changes.opened],
            )
        changed = [*changes.updated, *changes.resolved]
        if changed:
            assignments = ", ".join(
                f"{c} = CASE WHEN status = 'dismissed' THEN {c} ELSE %s END" if c in _DISMISSAL else f"{c} = %s"
                for c in _COLUMNS[1:]
            )
            cur.executemany(
                f"UPDATE alerts SET {assignments} WHERE alert_id = %s AND (status <> 'dismissed' OR %s = 'dismissed')",
                [(*_row(a)[1:], a.alert_id, a.status.value) for a in changed],
            )


def save_what_fits(conn: psycopg.Connection[Any], changes: AlertChanges) -> tuple[AlertChanges, list[Alert]]:
    """:func:`save_changes`, in a savepoint of the caller's transaction; should PostgreSQL refuse an
    index row (``ProgramLimitExceeded``), each alert again in a savepoint of its own. Returns the
    changes saved and the alerts refused.

    A district's name and a meter's id are keys of the alerts' and enquiries' btree indexes, and
    inside an alert's id; PostgreSQL refuses an index row over 2,704 bytes. register-meters refuses
    a name over 500 characters and an id over 64 now, but a database from before it may hold one of
    about 2,650 bytes or more: one such alert made the whole save fail, so no alert of the run was
    stored, in any district, at every run (:mod:`collector.unindexable` says which meter or
    district). Only that index error is handled so; any other fault still fails the run."""
    try:
        with conn.transaction():
            save_changes(conn, changes)
        return changes, []
    except psycopg.errors.ProgramLimitExceeded:
        pass
    saved = AlertChanges()
    refused: list[Alert] = []
    for part in ("opened", "updated", "resolved"):
        for alert in getattr(changes, part):
            try:
                with conn.transaction():
                    save_changes(conn, AlertChanges(**{part: [alert]}))
            except psycopg.errors.ProgramLimitExceeded:
                refused.append(alert)
            else:
                getattr(saved, part).append(alert)
    return saved, refused


def dismiss_alert(
    conn: psycopg.Connection[Any],
    alert_id: str,
    *,
    by: str,
    reason: str,
    now: datetime,
    by_key_id: str | None = None,
) -> Alert | None:
    """A person closes an alert as needing no action; None when there is no such alert.
    ``by_key_id``: the id of the API key ``by`` names."""
    from collector.detection.lifecycle import dismiss

    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,))
    row = rows.fetchone()
    if row is None:
        return None
    dismissed = dismiss(_alert(row), by=by, reason=reason, now=now).replace(dismissed_by_key_id=by_key_id)
    save_changes(conn, AlertChanges(updated=[dismissed]))
    return dismissed


def record_run(
    conn: psycopg.Connection[Any],
    run_at: datetime,
    window: tuple[datetime, datetime],
    meters: int,
    changes: AlertChanges,
    seen_at: datetime | None = None,
    arrivals_from: datetime | None = None,
) -> None:
    """Note a run at ``run_at``; ``seen_at``: the database's clock when it read the readings;
    ``arrivals_from``: where the readings that arrive after it begin (``open_transactions_floor()``
    then), which the next run takes as arrived."""
    counts = (len(changes.opened), len(changes.updated), len(changes.resolved))
    conn.execute(
        "INSERT INTO detection_runs (run_at, window_from, window_to, meters, opened, updated, resolved, seen_at,"
        " arrivals_from) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_at) DO NOTHING",
        (run_at, *window, meters, *counts, seen_at, arrivals_from),
    )


def alert_exists(conn: psycopg.Connection[Any], alert_id: str) -> bool:
    return conn.execute("SELECT 1 FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone() is not None


def alerts_by_id(conn: psycopg.Connection[Any], alert_ids: Sequence[str]) -> list[Alert]:
    """The alerts of ``alert_ids``, in that order; an id no longer stored is left out."""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM alerts WHERE alert_id = ANY(%s)", (list(alert_ids),)
    ).fetchall()
    found = {alert.alert_id: alert for alert in map(_alert, rows)}
    return [found[alert_id] for alert_id in alert_ids if alert_id in found]


def list_alerts(
    conn: psycopg.Connection[Any],
    *,
    status: str | Collection[str] | None = None,
    kind: str | None = None,
    meter_id: str | None = None,
    dma: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[Alert]:
    """Alerts newest first (by ``detected_at``, then id), filtered (``status``: one, or any of
    several); ``after`` is the last id of a page."""
    statuses = [status] if isinstance(status, str) else None if status is None else sorted(status)
    # one status as an equality: the index on (status, detected_at, alert_id) then gives its alerts in
    # order (collector migration 0069), where ANY of a one-status list had them all read and sorted
    one = statuses[0] if statuses is not None and len(statuses) == 1 else None
    rows = conn.execute(
        f"""
        SELECT {", ".join(_COLUMNS)} FROM alerts
        WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))
          AND (%(one)s::text IS NULL OR status = %(one)s)
          AND (%(kind)s::text IS NULL OR kind = %(kind)s)
          AND (%(meter_id)s::text IS NULL OR meter_id = %(meter_id)s)
          AND (%(dma)s::text IS NULL OR dma = %(dma)s)
          AND (%(after)s::text IS NULL OR (detected_at, alert_id) <
               (SELECT detected_at, alert_id FROM alerts WHERE alert_id = %(after)s))
        ORDER BY detected_at DESC, alert_id DESC LIMIT %(limit)s
        """,
        {
            "statuses": None if one is not None else statuses,
            "one": one,
            "kind": kind,
            "meter_id": meter_id,
            "dma": dma,
            "after": after,
            "limit": limit,
        },
    ).fetchall()
    return [_alert(row) for row in rows]
