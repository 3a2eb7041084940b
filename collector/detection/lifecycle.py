"""An alert's life: open → ongoing (the same alert, updated) → resolved; or dismissed by a person.

:func:`merge_alerts` is pure: it takes the alerts already stored and those a detection run just
produced, and says which to insert and which to update. The store and the scheduler around it
(a database table, a periodic job) only persist its answer.

Matching a detection to a stored alert: the same ``alert_id`` (detection is causal, so re-running
over more data raises the same episode at the same ``detected_at``), or else the same kind and
subject with overlapping episodes. A meter's own alarm about an episode a detector has found (the
meter's ``leak`` bit, raised after a day of flow, beside the leak detector's alert) is that same
alert, and only confirms it: the detector's figures (its estimated start, the leak's own rate) stand,
and the alarm neither overwrites nor resolves them. An alert only resolves when a detection says
its flow stopped (``ended_at``); an alert missing from a run is left as it is (the run may simply
not have covered it). A dismissed alert stays dismissed for the rest of its episode; a later
episode is a new alert.

An alert's kind can change once later reads show its episode better: a burst raised on a shop's
busy afternoon whose flow turns out continuous, at a leak's rate, comes back from the detectors
with the same ``alert_id`` and kind ``leak`` (see ``engine._bursts_found_to_be_leaks``). It is the
same alert, updated with the rest of its figures; its enquiry is told (server migration 0032).
The one exception to "resolved for good" is that case: the burst may have ended at closing time
(its flow fell below half the level that raised it) while the leak under it goes on all night. The
episode did not end, so the alert comes back to ``ongoing`` under its new kind rather than the leak
being lost (its enquiry is told, and reopened if a person had closed it: server migration 0033).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from collector.detection.alerts import ACTIVE, Alert, AlertSource, AlertStatus


@dataclass
class AlertChanges:
    opened: list[Alert] = field(default_factory=list)  # to insert
    updated: list[Alert] = field(default_factory=list)  # still open, new figures (now ``ongoing``)
    resolved: list[Alert] = field(default_factory=list)  # the flow stopped

    @property
    def changed(self) -> list[Alert]:
        return [*self.opened, *self.updated, *self.resolved]

    def __bool__(self) -> bool:
        return bool(self.opened or self.updated or self.resolved)


_FIGURES = ("kind", "start", "last_seen", "ended_at", "rate_l_h", "volume_l", "confidence", "evidence")


def _same_episode(stored: Alert, found: Alert) -> bool:
    if stored.alert_id == found.alert_id:
        return True
    if stored.key != found.key:
        return False
    stored_end = stored.ended_at or stored.resolved_at
    found_end = found.ended_at
    return (stored_end is None or found.start <= stored_end) and (found_end is None or stored.start <= found_end)


def _seen_again_as_another_kind(stored: Alert, found: Alert) -> bool:
    """A resolved alert that the detectors now raise, under its own id, as another kind still
    running: the episode it was part of did not end (a shop's burst that ended at closing is a leak
    that goes on all night)."""
    return (
        stored.status is AlertStatus.RESOLVED
        and found.source is AlertSource.DETECTOR
        and found.alert_id == stored.alert_id
        and found.kind is not stored.kind
        and found.ended_at is None
    )


def merge_alerts(existing: Iterable[Alert], detected: Iterable[Alert], now: datetime) -> AlertChanges:
    """What ``detected`` changes about ``existing`` at ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware UTC")
    stored_alerts = list(existing)
    current = {a.alert_id: a for a in stored_alerts}
    changes = AlertChanges()
    touched: dict[str, Alert] = {}  # alert_id → its new state, for alerts changed in this merge
    by_detector: set[str] = set()  # alerts a detector's finding opened or matched in this merge
    # the detectors' findings first, so that a meter's alarm about the same episode finds their alert
    for found in sorted(detected, key=lambda a: (a.source is not AlertSource.DETECTOR, a.detected_at, a.alert_id)):
        stored = _match(found, current)
        if stored is None:
            new = found.replace(status=AlertStatus.OPEN, resolved_at=None)
            if found.ended_at is not None:
                new = new.replace(status=AlertStatus.RESOLVED, resolved_at=found.ended_at)
            current[new.alert_id] = new
            touched[new.alert_id] = new
            if found.source is AlertSource.DETECTOR:
                by_detector.add(new.alert_id)
            continue
        if found.source is AlertSource.DETECTOR:
            by_detector.add(stored.alert_id)
        elif stored.alert_id in by_detector or stored.source is AlertSource.DETECTOR:
            continue  # the detector's alert about this episode: the meter's alarm only confirms it
        reopened = _seen_again_as_another_kind(stored, found)
        if stored.status not in ACTIVE and not reopened:
            continue  # resolved or dismissed: that episode is closed for good
        updated = stored.replace(**{name: getattr(found, name) for name in _FIGURES})
        if reopened:
            updated = updated.replace(status=AlertStatus.ONGOING, resolved_at=None)
        if found.ended_at is not None:
            updated = updated.replace(status=AlertStatus.RESOLVED, resolved_at=found.ended_at)
        elif updated != stored:
            updated = updated.replace(status=AlertStatus.ONGOING)
        if updated != stored:
            current[stored.alert_id] = updated
            touched[stored.alert_id] = updated
    before = {a.alert_id for a in stored_alerts}
    for alert_id, changed in touched.items():
        alert = changed.replace(updated_at=now)
        if alert_id not in before:
            changes.opened.append(alert)
        elif alert.status is AlertStatus.RESOLVED:
            changes.resolved.append(alert)
        else:
            changes.updated.append(alert)
    return changes


def _match(found: Alert, current: dict[str, Alert]) -> Alert | None:
    exact = current.get(found.alert_id)
    if exact is not None:
        return exact
    candidates = [a for a in current.values() if _same_episode(a, found)]
    if not candidates:
        return None
    # prefer an alert still open, then the latest
    return max(candidates, key=lambda a: (a.status in ACTIVE, a.detected_at))


def dismiss(alert: Alert, *, by: str, reason: str, now: datetime) -> Alert:
    """A person closes the alert as not needing action; the reason is required."""
    if not by.strip() or not reason.strip():
        raise ValueError("dismissing an alert needs who and why")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware UTC")
    if alert.status is AlertStatus.DISMISSED:
        raise ValueError(f"alert {alert.alert_id} is already dismissed")
    return alert.replace(
        status=AlertStatus.DISMISSED, dismissed_at=now, dismissed_by=by, dismiss_reason=reason, updated_at=now
    )
