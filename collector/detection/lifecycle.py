"""An alert's life: open → ongoing (the same alert, updated) → resolved; or dismissed by a person.

:func:`merge_alerts` is pure: it takes the alerts already stored and those a detection run just
produced, and says which to insert and which to update. The store and the scheduler around it
(a database table, a periodic job) only persist its answer.

Matching a detection to a stored alert: the same ``alert_id`` (detection is causal, so re-running
over more data raises the same episode at the same ``detected_at``), or else the same kind and
subject with overlapping episodes (the detectors' window slides: an episode raised at 10:00 in one
run may be dated 11:00 from the next one's, and a leak older than the window is dated from the
window's start), each stored alert taken by one finding at most, the one raised nearest the
finding's own detection: a district's second burst while its first one runs is an alert of its own.
A meter's own alarm about an episode a detector has found (the meter's ``leak`` bit, raised after a
day of flow, beside the leak detector's alert) is that same alert, and only confirms it: the
detector's figures (its estimated start, the leak's own rate) stand, and the alarm neither
overwrites nor resolves them. Of the flow kinds, the kinds need not agree: many meters flag any
continuous flow as ``leak``, a 600 L/h burst included, and a burst the detectors raised may later be
found to be a leak; a meter's leak or burst alarm overlapping a detector's leak or burst alert on
its meter (not dismissed) is that alert. A meter's alarm stored before the detector's alert
about its flow is folded into it: closed as dismissed by ``detection``, naming the detector's alert
(its enquiry is closed as a duplicate: server migration 0039), so the episode is one alert, one
enquiry and one volume for billing. An alert only resolves when a detection says its flow stopped
(``ended_at``); an alert missing from a run is left as it is (the run may simply not have covered
it). A dismissed alert stays dismissed for the rest of its episode, which runs go on following (its
``last_seen`` and ``ended_at``, from a detector's findings or the meter's alarm alike) so that they
neither raise it again while it runs nor take a later episode for it; a later episode is a new
alert. A dismissal answers its own source only: the leak detector's finding is not taken by a
dismissed ``leak`` alarm of the meter (a garden hose), nor the meter's alarm by a dismissed
detector's alert; and a dismissed alert whose end no run saw takes no finding that begins more than
a day after it was last seen.

An alert's kind can change once later reads show its episode better: a burst raised on a shop's
busy afternoon whose flow turns out continuous, at a leak's rate, comes back from the detectors
with the same ``alert_id`` and kind ``leak`` (see ``engine._bursts_found_to_be_leaks``). It is the
same alert, updated with the rest of its figures; its enquiry is told (server migration 0032).
The one exception to "resolved for good" is an episode a detector finds still running after its
alert resolved: the burst may have ended at closing time (its flow fell below half the level that
raised it) while the leak under it goes on all night, or a main burst's inflow dipped for an hour
in the noise. The episode did not end, so the alert comes back to ``ongoing`` (under its new kind,
if it has one) rather than being lost (its enquiry is told, and reopened if a person had closed it:
server migration 0033). A meter's alert and its episode are the meter's: moved to another DMA, its
alert goes on, in the new DMA.

A meter meterization has taken out (``removed``: the meter, and when its last installation ended)
passes no more water, so the detectors would never see its flow stop: its active alerts would stay
open for good, beside its replacement's alert about the same leak. They resolve at the removal
(their enquiry is told the meter was taken out: server migration 0034).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from collector.detection.alerts import ACTIVE, Alert, AlertKind, AlertSource, AlertStatus


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


#: A dismissed alert whose end no run has seen went on at most this long after it was last seen.
_DISMISSED_GAP = timedelta(days=1)
_FIGURES = ("kind", "dma", "start", "ended_at", "rate_l_h", "volume_l", "confidence", "evidence")


def as_raised(found: Alert) -> Alert:
    """A found alert as it is first stored: open, or resolved at its end when its flow has stopped
    (``aquami detect`` writes its alerts so too, as the collector's dry run does)."""
    if found.ended_at is None:
        return found.replace(status=AlertStatus.OPEN, resolved_at=None)
    return found.replace(status=AlertStatus.RESOLVED, resolved_at=found.ended_at)


def _same_episode(stored: Alert, found: Alert) -> bool:
    if stored.alert_id == found.alert_id:
        return True
    if stored.key != found.key:
        return False
    stored_end = stored.ended_at or stored.resolved_at
    if stored.status is AlertStatus.DISMISSED:
        # a person's dismissal covers that one episode: not what the other source says (the meter's
        # leak bit for a garden hose is no answer to the leak detector's finding), and not one that
        # begins after it was last seen, when no run saw it end
        if stored.source is not found.source:
            return False
        stored_end = stored.ended_at or stored.last_seen + _DISMISSED_GAP
    found_end = found.ended_at
    return (stored_end is None or found.start <= stored_end) and (found_end is None or stored.start <= found_end)


def _seen_running_again(stored: Alert, found: Alert) -> bool:
    """A resolved alert whose episode a detector now finds still running: it did not end (a shop's
    burst that ended at closing is a leak that goes on all night; a main burst whose inflow dipped
    in one hour's noise runs on in the next runs' data). Seen running past where it was last seen:
    a finding over no newer data is no news, and each flip would tell its enquiry again."""
    return (
        stored.status is AlertStatus.RESOLVED
        and found.source is AlertSource.DETECTOR
        and found.ended_at is None
        and found.last_seen > stored.last_seen
    )


#: A finding that starts this close after its run's first instant may have been cut there.
_WINDOW_EDGE = timedelta(days=1)


def _start_kept(stored: Alert, found: Alert, window_from: datetime | None) -> datetime:
    """The start a stored alert keeps when ``found`` dates it later (see :func:`merge_alerts`)."""
    if found.start <= stored.start:
        return found.start
    if window_from is not None and stored.start < window_from + _WINDOW_EDGE:
        return stored.start  # the window no longer holds where it began
    return min(found.start, stored.detected_at)


def merge_alerts(
    existing: Iterable[Alert],
    detected: Iterable[Alert],
    now: datetime,
    *,
    opens_from: datetime | None = None,
    removed: Mapping[str, datetime] | None = None,
    arrived: Mapping[str, tuple[datetime, datetime]] | None = None,
    window_from: datetime | None = None,
) -> AlertChanges:
    """What ``detected`` changes about ``existing`` at ``now`` (timezone-aware).

    A finding that matches no stored alert opens one if it was detected at or after ``opens_from``
    or is still running. An ended episode detected before it is left alone: a run's window slides,
    and its oldest part, there as the detectors' history, has too little history of its own (a
    burst against a meter's first few days); the run at the episode's own time saw it with its
    history and opened what it was. An active alert on a meter in ``removed`` (meter id → when it
    was taken out, by ``now``) that began before its removal resolves there.

    ``arrived`` (subject → the oldest and newest instants of its readings that arrived since the
    previous run) opens an ended episode detected before ``opens_from`` whose span (start to end)
    reaches into its subject's: readings that were not there when the episode was new (a gateway's
    spool after a week offline: a 2,700 L burst that began and ended while it was away) cannot have
    been seen by the run at its own time, so this run's is the first look.

    ``window_from`` is where the run's data begins. A stored alert whose start lies before it (or in
    its first day, where a finding's start says only that the episode had begun by then) keeps that
    start when a finding dates the episode later: once the window has passed a leak's beginning,
    the detectors date it from the window's start, or days after it (a 157 L/h leak's start moved
    4.5 days on, past the time it was raised), and billing's leak adjustment spans start to end
    (moved with the window, a two-month leak's alert lost a day a day; that one lost some 20,000 L
    at once); its volume then counts from the start kept, at the finding's rate. A start inside the
    data is the finding's, which has seen more of the episode (a district's second burst first
    raised with the first one's start is dated where it began), but never after the alert's
    ``detected_at``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware UTC")
    removed = removed or {}

    def removed_by(alert: Alert) -> datetime | None:
        """When the alert's meter was taken out, if it was during the alert (by ``now``)."""
        taken_out = removed.get(alert.meter_id or "")
        return taken_out if taken_out is not None and alert.start < taken_out <= now else None

    stored_alerts = list(existing)
    current = {a.alert_id: a for a in stored_alerts}
    by_key: dict[tuple[str, str], list[str]] = {}  # alerts' ids by kind and subject
    for alert in stored_alerts:
        by_key.setdefault(alert.key, []).append(alert.alert_id)
    changes = AlertChanges()
    touched: dict[str, Alert] = {}  # alert_id → its new state, for alerts changed in this merge
    flow_by_meter: dict[str, list[str]] = {}  # leak and burst alerts' ids by meter
    for alert in stored_alerts:
        if alert.kind in _FLOW_EPISODE and alert.meter_id is not None:
            flow_by_meter.setdefault(alert.meter_id, []).append(alert.alert_id)
    found_all = list(detected)
    # alerts a detector's finding opened or matched in this merge; those a finding names by id first
    by_detector = {f.alert_id for f in found_all if f.source is AlertSource.DETECTOR and f.alert_id in current}
    # the detectors' findings first, so that a meter's alarm about the same episode finds their alert
    for found in sorted(found_all, key=lambda a: (a.source is not AlertSource.DETECTOR, a.detected_at, a.alert_id)):
        # a detector's finding is one episode: it takes a stored alert no other finding has taken
        taken = by_detector if found.source is AlertSource.DETECTOR else set()
        stored = _match(found, current, by_key.get(found.key, []), taken)
        if found.source is AlertSource.METER and _confirms(found, stored, current, flow_by_meter, by_detector):
            continue  # the detector's alert about this flow, whatever its kind: the alarm only confirms it
        if stored is None:
            if (
                opens_from is not None
                and found.detected_at < opens_from
                and found.ended_at is not None
                and not _arrived_during(found, arrived or {})
            ):
                continue
            new = as_raised(found)
            current[new.alert_id] = new
            by_key.setdefault(new.key, []).append(new.alert_id)
            touched[new.alert_id] = new
            if found.source is AlertSource.DETECTOR:
                by_detector.add(new.alert_id)
            if new.kind in _FLOW_EPISODE and new.meter_id is not None:
                flow_by_meter.setdefault(new.meter_id, []).append(new.alert_id)
            continue
        if found.source is AlertSource.DETECTOR:
            by_detector.add(stored.alert_id)
        elif stored.alert_id in by_detector or stored.source is AlertSource.DETECTOR:
            continue  # the detector's alert about this episode: the meter's alarm only confirms it
        if stored.status is AlertStatus.DISMISSED:
            # a person closed it; its episode is still followed, so that once it ends a later one is
            # a new alert, and while it runs the run's sliding window does not raise it again
            followed = stored.replace(last_seen=max(stored.last_seen, found.last_seen), ended_at=found.ended_at)
            if followed != stored:
                current[stored.alert_id] = touched[stored.alert_id] = followed
            continue
        taken_out = removed_by(stored)
        reopened = _seen_running_again(stored, found) and taken_out is None
        if stored.status not in ACTIVE and not reopened:
            continue  # resolved: that episode is closed for good
        # a finding's own figures, but the latest instant a run saw the episode is never moved back
        figures = {name: getattr(found, name) for name in _FIGURES}
        updated = stored.replace(**figures, last_seen=max(stored.last_seen, found.last_seen))
        start = _start_kept(stored, found, window_from)
        if start < found.start:  # the finding's volume counts from the start kept
            hours = (found.start - start).total_seconds() / 3600.0
            updated = updated.replace(start=start, volume_l=found.volume_l + found.rate_l_h * hours)
        if reopened:
            updated = updated.replace(status=AlertStatus.ONGOING, resolved_at=None)
        if found.ended_at is not None:
            updated = updated.replace(status=AlertStatus.RESOLVED, resolved_at=found.ended_at)
        elif updated != stored:
            updated = updated.replace(status=AlertStatus.ONGOING)
        if updated != stored:
            current[stored.alert_id] = updated
            touched[stored.alert_id] = updated
    for alert_id in [i for ids in flow_by_meter.values() for i in ids]:
        folded = _folded(current[alert_id], current, flow_by_meter, by_detector, now)
        if folded is not None:
            current[alert_id] = touched[alert_id] = folded
    for alert_id, alert in list(current.items()):
        taken_out = removed_by(alert)
        if taken_out is None:
            continue
        end = alert.ended_at or max(taken_out, alert.last_seen)
        if alert.status in ACTIVE:
            current[alert_id] = touched[alert_id] = alert.replace(
                status=AlertStatus.RESOLVED, ended_at=end, resolved_at=end
            )
        elif alert.status is AlertStatus.DISMISSED and alert.ended_at is None:
            current[alert_id] = touched[alert_id] = alert.replace(ended_at=end)  # its episode ended there
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


#: The kinds of one flow episode behind a meter: the meter's ``leak`` bit and the detectors' burst
#: are the same water (many meters flag any continuous flow as a leak, whatever its size; a burst
#: found later to be a leak changes kind).
_FLOW_EPISODE = frozenset({AlertKind.LEAK, AlertKind.BURST})
#: Who "dismisses" a meter's alarm folded into the detector's alert about the same flow; server
#: migration 0039 closes that alert's enquiry as a duplicate of the detector's.
FOLDED_BY = "detection"
FOLDED_REASON = "the same episode as alert "


def _detectors_alert(
    alert: Alert, current: Mapping[str, Alert], flow_by_meter: Mapping[str, list[str]], by_detector: set[str]
) -> Alert | None:
    """A detector's leak or burst alert on ``alert``'s meter, not dismissed, whose episode overlaps
    ``alert``'s (a meter's alarm, stored or found), other than ``alert`` itself: the same flow. A
    meter's alert a detector's finding took over in this merge counts as the detector's."""
    if alert.kind not in _FLOW_EPISODE or alert.meter_id is None:
        return None
    for alert_id in flow_by_meter.get(alert.meter_id, ()):
        other = current[alert_id]
        if (
            alert_id == alert.alert_id
            or other.status is AlertStatus.DISMISSED
            or (other.source is not AlertSource.DETECTOR and alert_id not in by_detector)
        ):
            continue
        other_end = other.ended_at or other.resolved_at
        alert_end = alert.ended_at
        if (other_end is None or alert.start <= other_end) and (alert_end is None or other.start <= alert_end):
            return other
    return None


def _confirms(
    found: Alert,
    own: Alert | None,
    current: Mapping[str, Alert],
    flow_by_meter: Mapping[str, list[str]],
    by_detector: set[str],
) -> bool:
    """Whether the meter's alarm ``found`` only confirms a detector's alert about the same flow (of
    either flow kind: a 600 L/h burst the meter flags as ``leak``). ``own``: the stored alert it
    matched. An active one is folded into the detector's after the merge (:func:`_folded`); a
    dismissed one goes on being followed (a person's dismissal, or a fold, answers that source only),
    and one a detector's finding took over is the detector's alert already."""
    if own is not None and (own.status is AlertStatus.DISMISSED or own.alert_id in by_detector):
        return False
    return _detectors_alert(found, current, flow_by_meter, by_detector) is not None


def _folded(
    alert: Alert,
    current: Mapping[str, Alert],
    flow_by_meter: Mapping[str, list[str]],
    by_detector: set[str],
    now: datetime,
) -> Alert | None:
    """A meter's leak or burst alarm's alert, opened before a detector raised the same flow under
    another kind (or before a detector's burst turned out a leak), folded into the detector's: closed
    as its duplicate, so that the episode is one alert, one enquiry and one volume for billing (two
    alerts counted a shop's 150 L/h leak twice: 2.85 + 2.70 m³). None when it is no such alarm."""
    if alert.source is not AlertSource.METER or alert.status is AlertStatus.DISMISSED or alert.alert_id in by_detector:
        return None
    detectors = _detectors_alert(alert, current, flow_by_meter, by_detector)
    if detectors is None:
        return None
    return alert.replace(
        status=AlertStatus.DISMISSED,
        dismissed_at=now,
        dismissed_by=FOLDED_BY,
        dismiss_reason=FOLDED_REASON + detectors.alert_id,
        resolved_at=None,
    )


def _arrived_during(found: Alert, arrived: Mapping[str, tuple[datetime, datetime]]) -> bool:
    """Whether readings of ``found``'s subject between its start and its end arrived since the
    previous run (``arrived``: subject → their oldest and newest instants)."""
    span = arrived.get(found.subject)
    end = found.ended_at or found.last_seen
    return span is not None and span[0] <= end and found.start <= span[1]


def to_merge(alerts: Iterable[Alert], since: datetime) -> list[Alert]:
    """The ``alerts`` a run over the window from ``since`` may find again: those
    :func:`collector.alert_store.alerts_to_merge` loads from the table, of alerts held in memory."""
    return [
        a
        for a in alerts
        if a.status in ACTIVE or (a.status is AlertStatus.DISMISSED and a.ended_at is None) or a.last_seen >= since
    ]


def _match(found: Alert, current: dict[str, Alert], same_key: list[str], taken: set[str]) -> Alert | None:
    """The stored alert ``found`` is about: the one with its id, or else one of ``same_key`` (the
    ids of the alerts of its kind and subject) that no other finding has ``taken``."""
    exact = current.get(found.alert_id)
    if exact is not None:
        return exact
    candidates = [current[i] for i in same_key if i not in taken and _same_episode(current[i], found)]
    if not candidates:
        return None
    # the one raised nearest the finding's own detection, then the one whose start is nearest: of a
    # district's two bursts, neither is taken for the other, even once the first has resolved and
    # only the second is still open
    return min(candidates, key=lambda a: (abs(a.detected_at - found.detected_at), abs(a.start - found.start)))


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
