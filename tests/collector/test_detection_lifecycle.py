"""The alert lifecycle as a pure merge: open → ongoing → resolved, or dismissed by a person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from collector.detection.alerts import Alert, AlertKind, AlertSource, AlertStatus, make_alert_id
from collector.detection.lifecycle import dismiss, merge_alerts

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _leak(
    detected: datetime,
    last_seen: datetime,
    *,
    start: datetime | None = None,
    ended: datetime | None = None,
    rate: float = 5.0,
    meter: str = "M1",
) -> Alert:
    start = start or detected - 6 * H
    return Alert(
        alert_id=make_alert_id(AlertKind.LEAK, meter, "D1", detected),
        kind=AlertKind.LEAK,
        meter_id=meter,
        dma="D1",
        start=start,
        detected_at=detected,
        last_seen=last_seen,
        rate_l_h=rate,
        volume_l=rate * (last_seen - start).total_seconds() / 3600,
        confidence=0.6,
        evidence=((start, detected),),
        ended_at=ended,
    )


def test_a_new_detection_opens_an_alert_and_the_next_run_updates_it_without_duplicating() -> None:
    first = merge_alerts([], [_leak(T0, T0)], now=T0)
    assert [a.status for a in first.opened] == [AlertStatus.OPEN] and not first.updated
    stored = first.opened
    again = merge_alerts(stored, [_leak(T0, T0 + 5 * H, rate=5.5)], now=T0 + 5 * H)
    assert not again.opened and not again.resolved
    (updated,) = again.updated
    assert updated.alert_id == stored[0].alert_id
    assert updated.status is AlertStatus.ONGOING
    assert updated.last_seen == T0 + 5 * H and updated.rate_l_h == 5.5
    assert updated.updated_at == T0 + 5 * H
    # the same run once more changes nothing
    assert not merge_alerts([updated], [_leak(T0, T0 + 5 * H, rate=5.5)], now=T0 + 6 * H)


def test_an_alert_resolves_when_the_flow_stops_and_a_later_episode_is_a_new_alert() -> None:
    stored = merge_alerts([], [_leak(T0, T0 + 2 * H)], now=T0 + 2 * H).opened
    stopped = merge_alerts(stored, [_leak(T0, T0 + 30 * H, ended=T0 + 31 * H)], now=T0 + 32 * H)
    (resolved,) = stopped.resolved
    assert resolved.status is AlertStatus.RESOLVED and resolved.resolved_at == T0 + 31 * H
    later = T0 + 5 * 24 * H
    fresh = merge_alerts([resolved], [_leak(T0, T0 + 30 * H, ended=T0 + 31 * H), _leak(later, later)], now=later)
    assert [a.detected_at for a in fresh.opened] == [later]
    assert not fresh.updated and not fresh.resolved


def test_a_detection_matching_an_open_alert_of_the_same_episode_updates_it() -> None:
    """A refined start moves the detection, not the episode: no second alert."""
    stored = merge_alerts([], [_leak(T0, T0)], now=T0).opened
    shifted = _leak(T0 + H, T0 + 8 * H, start=T0 - 5 * H)
    changes = merge_alerts(stored, [shifted], now=T0 + 8 * H)
    assert not changes.opened
    assert [a.alert_id for a in changes.updated] == [stored[0].alert_id]


def test_a_dismissed_alert_stays_dismissed_for_its_episode() -> None:
    stored = merge_alerts([], [_leak(T0, T0)], now=T0).opened
    dismissed = dismiss(stored[0], by="ana", reason="pool filling, known", now=T0 + H)
    assert dismissed.status is AlertStatus.DISMISSED and dismissed.dismiss_reason == "pool filling, known"
    followed = merge_alerts([dismissed], [_leak(T0, T0 + 9 * H)], now=T0 + 9 * H)
    assert not followed.opened and not followed.resolved  # its episode followed, still dismissed:
    assert [(a.status, a.last_seen, a.dismiss_reason) for a in followed.updated] == [
        (AlertStatus.DISMISSED, T0 + 9 * H, "pool filling, known")
    ]
    with pytest.raises(ValueError):
        dismiss(stored[0], by="ana", reason=" ", now=T0)
    with pytest.raises(ValueError):
        dismiss(dismissed, by="ana", reason="again", now=T0)


def test_a_burst_that_later_reads_show_to_be_a_leak_is_the_same_alert_with_its_new_kind() -> None:
    """The detectors return a burst raised on a busy afternoon, once its flow shows as continuous,
    under its own id as a leak: the stored alert takes the new kind and figures, and no second
    alert opens."""
    raised = _leak(T0, T0, rate=190.0)
    burst = raised.replace(kind=AlertKind.BURST, alert_id=make_alert_id(AlertKind.BURST, "M1", "D1", T0))
    stored = merge_alerts([], [burst], now=T0).opened
    seen_better = burst.replace(kind=AlertKind.LEAK, last_seen=T0 + 9 * H, rate_l_h=183.0)
    changes = merge_alerts(stored, [seen_better], now=T0 + 9 * H)
    assert not changes.opened and not changes.resolved
    (updated,) = changes.updated
    assert (updated.alert_id, updated.kind, updated.status) == (burst.alert_id, AlertKind.LEAK, AlertStatus.ONGOING)
    assert updated.rate_l_h == 183.0 and updated.detected_at == T0


def test_a_burst_that_ended_and_is_then_seen_to_be_a_running_leak_reopens_as_that_leak() -> None:
    """A shop's burst ends at closing (its flow falls below half the level that raised it) and is
    stored resolved; that night the leak under it shows, and the detectors return the burst's id as
    a leak still running. The episode did not end: the alert is ongoing again, as a leak."""
    burst = _leak(T0, T0 + 7 * H, rate=186.0).replace(
        kind=AlertKind.BURST, alert_id=make_alert_id(AlertKind.BURST, "M1", "D1", T0), ended_at=T0 + 7 * H
    )
    (stored,) = merge_alerts([], [burst], now=T0 + 8 * H).opened
    assert stored.status is AlertStatus.RESOLVED
    leak = burst.replace(kind=AlertKind.LEAK, last_seen=T0 + 14 * H, ended_at=None, rate_l_h=150.0)
    changes = merge_alerts([stored], [leak], now=T0 + 14 * H)
    assert not changes.opened and not changes.resolved
    (reopened,) = changes.updated
    assert (reopened.alert_id, reopened.kind, reopened.status) == (burst.alert_id, AlertKind.LEAK, AlertStatus.ONGOING)
    assert reopened.resolved_at is None and reopened.ended_at is None and reopened.rate_l_h == 150.0


def test_a_resolved_alert_reopens_only_when_a_detector_finds_its_episode_still_running() -> None:
    """The same burst seen again as ended, or as a leak that ended too, leaves the resolved alert
    alone. Seen still running, of either kind, it reopens: an hour's dip had ended it (a main burst
    so resolved was lost while it ran on for days). A dismissed one stays dismissed whatever comes."""
    burst = _leak(T0, T0 + 7 * H, rate=400.0).replace(
        kind=AlertKind.BURST, alert_id=make_alert_id(AlertKind.BURST, "M1", "D1", T0), ended_at=T0 + 7 * H
    )
    (stored,) = merge_alerts([], [burst], now=T0 + 8 * H).opened
    later = T0 + 12 * H
    assert not merge_alerts([stored], [burst], now=later)
    assert not merge_alerts([stored], [burst.replace(kind=AlertKind.LEAK, last_seen=later)], now=later)
    running = merge_alerts([stored], [burst.replace(ended_at=None, last_seen=later)], now=later)
    assert not running.opened and not running.resolved
    assert [(a.alert_id, a.status, a.resolved_at, a.last_seen) for a in running.updated] == [
        (stored.alert_id, AlertStatus.ONGOING, None, later)
    ]
    dismissed = dismiss(stored.replace(status=AlertStatus.OPEN), by="A. Clerk", reason="meter test", now=later)
    followed = merge_alerts([dismissed], [burst.replace(kind=AlertKind.LEAK, ended_at=None)], now=later)
    assert [(a.status, a.kind) for a in followed.updated] == [(AlertStatus.DISMISSED, AlertKind.BURST)]
    assert not followed.opened and not followed.resolved


def test_a_meter_moved_to_another_dma_keeps_its_alert() -> None:
    """A meter's alert is the meter's: the run after meterization moved it to D2 dated its leak an
    hour later (a new id) in D2, opened a second alert, and the first stayed ongoing for good."""
    (stored,) = merge_alerts([], [_leak(T0, T0)], now=T0).opened
    moved = _leak(T0 + H, T0 + 8 * H, start=stored.start).replace(
        dma="D2", alert_id=make_alert_id(AlertKind.LEAK, "M1", "D2", T0 + H)
    )
    changes = merge_alerts([stored], [moved], now=T0 + 8 * H)
    assert not changes.opened
    assert [(a.alert_id, a.dma, a.last_seen) for a in changes.updated] == [(stored.alert_id, "D2", T0 + 8 * H)]


def test_a_dismissed_alert_s_episode_ends_when_its_meter_is_taken_out() -> None:
    (stored,) = merge_alerts([], [_leak(T0, T0)], now=T0).opened
    dismissed = dismiss(stored, by="ana", reason="pool filling, known", now=T0 + H)
    changes = merge_alerts([dismissed], [], now=T0 + 9 * H, removed={"M1": T0 + 5 * H})
    assert [(a.status, a.ended_at) for a in changes.updated] == [(AlertStatus.DISMISSED, T0 + 5 * H)]


def test_other_meters_and_kinds_are_other_alerts() -> None:
    stored = merge_alerts([], [_leak(T0, T0)], now=T0).opened
    other = merge_alerts(stored, [_leak(T0, T0, meter="M2")], now=T0)
    assert [a.meter_id for a in other.opened] == ["M2"]
    with pytest.raises(ValueError):
        merge_alerts([], [], now=datetime(2026, 1, 1))  # naive on purpose


def _main_burst(detected: datetime, start: datetime, rate: float, *, ended: datetime | None = None) -> Alert:
    """A district burst in D1, raised at ``detected``, last seen then."""
    return _leak(detected, detected, start=start, rate=rate, ended=ended).replace(
        kind=AlertKind.DMA_BURST, meter_id=None, alert_id=make_alert_id(AlertKind.DMA_BURST, None, "D1", detected)
    )


def test_a_second_burst_in_a_district_while_the_first_runs_is_an_alert_of_its_own() -> None:
    """A district's first burst (494 L/h) is stored and still running when a second (817 L/h) begins
    four days later. A run that finds both leaves the first alert as it was and opens one for the
    second; neither takes the other's figures."""
    first = merge_alerts([], [_main_burst(T0, T0 - 2 * H, 494.0)], now=T0).opened
    later = T0 + 96 * H
    second = _main_burst(later, later - 4 * H, 817.0)
    first_again = _main_burst(T0 + H, T0 - 2 * H, 494.0).replace(last_seen=later)  # its id dated an hour later
    changes = merge_alerts(first, [first_again, second], now=later)
    (opened,) = changes.opened
    assert (opened.alert_id, opened.rate_l_h, opened.start) == (second.alert_id, 817.0, later - 4 * H)
    (updated,) = changes.updated
    assert (updated.alert_id, updated.rate_l_h, updated.start) == (first[0].alert_id, 494.0, T0 - 2 * H)
    assert not changes.resolved


def test_a_leak_older_than_the_window_is_the_same_alert_as_its_start_moves_with_the_window() -> None:
    """A leak running since before the detectors' window is dated from the window's start, and a
    later run, whose window starts later, dates it later (and as detected then): the same episode,
    not a second alert."""
    stored = merge_alerts([], [_leak(T0, T0, start=T0 - 40 * H, rate=54.0)], now=T0).opened
    later = T0 + 60 * H
    slid = _leak(T0 + 50 * H, later, start=T0 + 50 * H, rate=54.0)  # its start past the stored detection
    changes = merge_alerts(stored, [slid], now=later)
    assert not changes.opened
    assert [a.alert_id for a in changes.updated] == [stored[0].alert_id]


def test_two_findings_about_the_same_district_in_one_run_are_two_alerts() -> None:
    """Two main bursts first found in the same run (both overlap, both new): one alert each."""
    found = [_main_burst(T0, T0 - 30 * H, 3772.0), _main_burst(T0 + H, T0 - 2 * H, 2200.0)]
    opened = merge_alerts([], found, now=T0 + H).opened
    assert sorted(a.rate_l_h for a in opened) == [2200.0, 3772.0]


def test_a_resolved_alert_found_again_under_an_id_the_sliding_window_shifted_is_not_a_new_alert() -> None:
    """The detectors' window slides: an ended main burst once raised at 00:00 is dated 01:00 by a
    later run. The resolved alert is the same episode; nothing opens (its enquiry is not raised
    twice)."""
    ended = T0 + 100 * H
    (stored,) = merge_alerts([], [_main_burst(T0, T0 - 2 * H, 2049.0, ended=ended)], now=ended).opened
    shifted = _main_burst(T0 + H, T0 - 2 * H, 2048.0, ended=ended).replace(last_seen=ended)
    assert not merge_alerts([stored], [shifted], now=ended + 5 * H)


def test_a_dismissed_alert_found_again_under_a_shifted_id_stays_dismissed() -> None:
    """A person dismissed a leak (a pool being filled); a later run dates it an hour later, a new
    id. It is the same episode, still dismissed: no fresh alert undoes the person's decision."""
    (stored,) = merge_alerts([], [_leak(T0, T0)], now=T0).opened
    dismissed = dismiss(stored, by="ana", reason="pool filling, known", now=T0 + H)
    shifted = _leak(T0 + H, T0 + 9 * H, start=stored.start)
    assert shifted.alert_id != dismissed.alert_id
    changes = merge_alerts([dismissed], [shifted], now=T0 + 9 * H)
    assert not changes.opened and [a.status for a in changes.updated] == [AlertStatus.DISMISSED]


def test_of_two_stored_alerts_a_finding_takes_the_one_raised_nearest_its_own_detection() -> None:
    """A district's second burst was first raised with the first one's start and rate (the run saw
    the step but not yet where it began); the next run dates it later. Of the two stored alerts, the
    first burst's finding takes the first alert, and the second's takes the one raised for it, with
    its rate and its start (inside the run's data, the finding's start is the better one)."""
    later = T0 + 96 * H
    first = _main_burst(T0, T0 - 2 * H, 494.0)
    early_second = _main_burst(later - H, T0 - 2 * H, 494.0)
    stored = merge_alerts([], [first], now=T0).opened + merge_alerts([], [early_second], now=later - H).opened
    findings = [
        _main_burst(T0 + H, T0 - 2 * H, 494.0).replace(last_seen=later),
        _main_burst(later, later - 4 * H, 817.0),
    ]
    changes = merge_alerts(stored, findings, now=later)
    assert not changes.opened and not changes.resolved
    figures = {a.alert_id: (a.start, a.rate_l_h) for a in changes.updated}
    assert figures[early_second.alert_id] == (later - 4 * H, 817.0)
    assert figures.get(first.alert_id, (first.start, first.rate_l_h)) == (T0 - 2 * H, 494.0)


def test_an_ended_episode_found_in_the_windows_old_part_opens_nothing_and_a_running_one_does() -> None:
    """A run's oldest days are the detectors' history and have little of their own: a burst found
    there against a meter's first few days, long ended, is no news (the run at its own time saw it
    with its history). One found there still running, or found in the newest part, opens."""
    opens_from = T0 + 21 * 24 * H
    old_ended = _leak(T0 + 5 * 24 * H, T0 + 5 * 24 * H + 2 * H, ended=T0 + 5 * 24 * H + 3 * H, meter="M-old")
    old_running = _leak(T0 + 6 * 24 * H, opens_from + 30 * H, meter="M-running")
    recent_ended = _leak(opens_from + H, opens_from + 2 * H, ended=opens_from + 3 * H, meter="M-recent")
    changes = merge_alerts([], [old_ended, old_running, recent_ended], now=opens_from + 30 * H, opens_from=opens_from)
    assert {a.meter_id for a in changes.opened} == {"M-recent", "M-running"}
    stored = merge_alerts([], [old_ended], now=old_ended.last_seen).opened  # opened in its own time
    assert not merge_alerts(stored, [old_ended], now=opens_from + 30 * H, opens_from=opens_from)


def test_a_findings_resolved_alert_is_its_own_even_while_another_of_its_district_is_open() -> None:
    """A district's first burst has resolved; its second, begun three hours after the first, is
    still open. The first's finding, dated an hour later by this run, is the resolved alert's (raised
    nearest it), not the open one's: the second keeps its own figures and stays open."""
    ended = T0 + 20 * H
    (first,) = merge_alerts([], [_main_burst(T0, T0 - 2 * H, 941.0, ended=ended)], now=ended).opened
    (second,) = merge_alerts([], [_main_burst(T0 + 8 * H, T0 + H, 533.0)], now=T0 + 8 * H).opened
    findings = [
        _main_burst(T0 + H, T0 - 2 * H, 941.0, ended=ended).replace(last_seen=ended),
        _main_burst(T0 + 9 * H, T0 + H, 540.0).replace(last_seen=T0 + 30 * H),
    ]
    changes = merge_alerts([first, second], findings, now=T0 + 30 * H)
    assert not changes.opened and not changes.resolved
    (updated,) = changes.updated
    assert (updated.alert_id, updated.status, updated.rate_l_h) == (second.alert_id, AlertStatus.ONGOING, 540.0)


def test_an_alert_on_a_meter_taken_out_resolves_at_its_removal_and_only_then() -> None:
    """A removed meter's reads stop, so no detection would ever say its flow stopped."""
    stored = merge_alerts([], [_leak(T0, T0 + 5 * H, meter="OLD"), _leak(T0, T0 + 5 * H, meter="KEPT")], now=T0).opened
    out = T0 + 7 * H
    before = merge_alerts(stored, [], now=out - H, removed={"OLD": out})
    assert not before  # not yet taken out at the run's time (a replay of an earlier hour)
    after = merge_alerts(stored, [], now=out + H, removed={"OLD": out})
    (resolved,) = after.resolved
    assert resolved.meter_id == "OLD" and resolved.status is AlertStatus.RESOLVED
    assert resolved.ended_at == resolved.resolved_at == out
    assert not after.updated and not after.opened
    late = merge_alerts(stored, [], now=T0 + 9 * H, removed={"OLD": T0 - 12 * H})
    assert not late  # begun after that meter's removal: not for its removal to end


def test_a_finding_on_a_meter_taken_out_is_stored_resolved() -> None:
    """Reads that reached the collector late may raise an episode after its meter's removal."""
    out = T0 + 7 * H
    found = merge_alerts([], [_leak(T0, T0 + 6 * H, meter="OLD")], now=T0 + 30 * H, removed={"OLD": out})
    (opened,) = found.opened
    assert opened.status is AlertStatus.RESOLVED and opened.ended_at == out


def test_a_leak_older_than_the_window_keeps_the_start_it_was_given_and_its_volume_counts_from_there() -> None:
    """Once a run's window had passed a leak's beginning, the detectors dated it from the window's
    start, and the stored alert took that start: a two-month leak lost a day of volume each day
    (billing's leak adjustment spans the alert's start to its end), and its start came to lie after
    the time it was raised."""
    (stored,) = merge_alerts([], [_leak(T0, T0)], now=T0).opened
    window_from = T0 + 40 * 24 * H
    now = window_from + 28 * 24 * H
    clipped = _leak(window_from + 24 * H, now, start=window_from + 5 * 24 * H, rate=5.0)
    (updated,) = merge_alerts([stored], [clipped], now=now, window_from=window_from).updated
    assert updated.alert_id == stored.alert_id and updated.start == stored.start
    assert updated.volume_l == pytest.approx(5.0 * (now - stored.start).total_seconds() / 3600)
    # a start the detectors date earlier is taken as they give it
    refined = _leak(T0 + 8 * H, T0 + 8 * H, start=T0 - 9 * H)
    (moved,) = merge_alerts([stored], [refined], now=T0 + 8 * H).updated
    assert moved.start == T0 - 9 * H


@settings(max_examples=150, deadline=None)
@given(
    stored_start_h=st.integers(0, 72),
    found_start_h=st.integers(-72, 40 * 24),
    seen_h=st.integers(1, 60 * 24),
    window_from_h=st.integers(-48, 60 * 24),
    rate=st.floats(0.5, 2000.0),
    resolved=st.booleans(),
)
def test_a_stored_alert_s_start_moves_later_only_within_the_run_s_data_and_never_after_its_detection(
    stored_start_h: int, found_start_h: int, seen_h: int, window_from_h: int, rate: float, resolved: bool
) -> None:
    """The seed-17 leak M003572 (157 L/h since 01-07): once older than the window, one run moved its
    alert's start 4.5 days later, after its detected_at, and cut its volume by some 20,000 L. A
    stored start the run's data no longer holds (before the window, or in its first day) stays;
    one inside it takes the finding's, but never past the alert's detected_at; the volume counts
    from the start kept, at the finding's rate."""
    detected = T0 + 72 * H
    (stored,) = merge_alerts([], [_leak(detected, detected, start=T0 + stored_start_h * H)], now=detected).opened
    later = detected + seen_h * H
    window_from = T0 + window_from_h * H
    found_start = min(detected + found_start_h * H, later)
    found = _leak(detected + H, later, start=found_start, rate=rate, ended=later + H if resolved else None)
    (changed,) = merge_alerts([stored], [found], now=later + H, window_from=window_from).changed
    if found.start <= stored.start:
        assert changed.start == found.start
    elif stored.start < window_from + 24 * H:
        assert changed.start == stored.start
    else:
        assert changed.start == min(found.start, stored.detected_at)
    assert changed.start <= changed.detected_at == stored.detected_at
    extra_h = (found.start - changed.start).total_seconds() / 3600
    assert changed.volume_l == pytest.approx(found.volume_l + rate * extra_h)


def _alarm(kind: AlertKind, start: datetime, last_seen: datetime, *, ended: datetime | None = None) -> Alert:
    """The meter's own alarm bit, on from ``start`` to ``last_seen`` (and off at ``ended``)."""
    alert = _leak(start, last_seen, start=start, ended=ended, rate=0.0).replace(kind=kind, source=AlertSource.METER)
    return alert.replace(alert_id=make_alert_id(kind, "M1", "D1", start, AlertSource.METER), confidence=1.0)


@settings(max_examples=60, deadline=None)
@given(
    on_h=st.integers(1, 48),
    off_h=st.integers(1, 10 * 24),
    again_h=st.integers(1, 48),
    runs_between=st.booleans(),
    kind=st.sampled_from([AlertKind.TAMPER, AlertKind.LEAK, AlertKind.DRY]),
)
def test_a_dismissed_alarm_ends_with_its_episode_and_a_later_alarm_is_an_alert_of_its_own(
    on_h: int, off_h: int, again_h: int, runs_between: bool, kind: AlertKind
) -> None:
    """A meter's tamper alarm (the utility's own crew opening it) is dismissed; it goes off, and
    days later the meter raises it again. The dismissed alert was never followed (only detectors'
    findings were), so it had no end and took every later episode of its kind on its meter: the
    second tamper (8 reads of it, four days on) was never raised. Its episode is now followed to
    its end, and one that begins after it opens (if no run saw the first end, one that begins more
    than a day after it was last seen)."""
    first_end = T0 + on_h * H
    (stored,) = merge_alerts([], [_alarm(kind, T0, T0)], now=T0 + H).opened
    dismissed = dismiss(stored, by="field.tech", reason="our crew opened it", now=T0 + H)
    ended = _alarm(kind, T0, first_end - H, ended=first_end)
    if runs_between:  # a run saw the first one end
        (dismissed,) = merge_alerts([dismissed], [ended], now=first_end + H).updated
        assert (dismissed.status, dismissed.ended_at) == (AlertStatus.DISMISSED, first_end)
    again = first_end + off_h * H
    second = _alarm(kind, again, again + again_h * H)
    # unseen, the first's end is not known: an alarm begun more than a day after it was last seen
    # is another episode
    assume(runs_between or again > dismissed.last_seen + 24 * H)
    found = [ended, second] if runs_between else [second]
    changes = merge_alerts([dismissed], found, now=again + again_h * H)
    assert [a.alert_id for a in changes.opened] == [second.alert_id]
    assert all(a.status is AlertStatus.DISMISSED for a in changes.updated)


def test_a_detector_s_leak_is_not_taken_by_a_dismissed_leak_alarm_of_the_meter() -> None:
    """The meter's leak bit for a few hours (a paddling pool filling) is dismissed by customer care;
    four days later a real 25 L/h leak starts. The leak detector's finding matched the dismissed
    alarm's alert (same kind and meter, no end) and was absorbed into it: no alert, no enquiry.
    A person's dismissal of one source's alert is no answer to the other's finding."""
    (stored,) = merge_alerts([], [_alarm(AlertKind.LEAK, T0, T0)], now=T0 + H).opened
    dismissed = dismiss(stored, by="care.agent", reason="paddling pool", now=T0 + H)
    leak_at = T0 + 4 * 24 * H
    leak = _leak(leak_at + 20 * H, leak_at + 30 * H, start=leak_at, rate=25.0)
    changes = merge_alerts([dismissed], [leak], now=leak_at + 30 * H)
    assert [(a.alert_id, a.status) for a in changes.opened] == [(leak.alert_id, AlertStatus.OPEN)]
    # nor is a running alarm taken by a dismissed detector's alert about the same leak
    (detected,) = merge_alerts([], [leak], now=leak.last_seen).opened
    dismissed_leak = dismiss(detected, by="care.agent", reason="irrigation, known", now=leak.last_seen)
    bit = _alarm(AlertKind.LEAK, leak_at + 24 * H, leak_at + 30 * H)
    later = merge_alerts([dismissed_leak], [leak, bit], now=leak_at + 30 * H)
    assert [a.alert_id for a in later.opened] == [bit.alert_id]
    assert not later.updated and not later.resolved  # the dismissed leak as it was


@settings(max_examples=60, deadline=None)
@given(seen_h=st.integers(0, 300), back_h=st.integers(1, 300), ended=st.booleans(), rate=st.floats(1.0, 500.0))
def test_a_merge_never_moves_an_alert_s_last_seen_back(seen_h: int, back_h: int, ended: bool, rate: float) -> None:
    """A finding that saw less of the episode than the stored alert (a run over older data: a
    back-run rewound an ongoing leak's last_seen to its past instant) leaves last_seen where it was."""
    (stored,) = merge_alerts([], [_leak(T0, T0 + seen_h * H)], now=T0 + seen_h * H).opened
    earlier = max(T0, stored.last_seen - back_h * H)
    found = _leak(T0, earlier, rate=rate, ended=earlier + H if ended else None)
    for changed in merge_alerts([stored], [found], now=stored.last_seen + H).changed:
        assert changed.last_seen == stored.last_seen


def test_a_resolved_alert_is_not_reopened_by_a_finding_that_saw_no_further() -> None:
    """A finding that says the episode runs on but saw it no later than the stored alert's last
    sighting (a run over older data) flipped the resolved alert to ongoing, and the next run back to
    resolved: each flip a note on its enquiry, a closed enquiry reopened. It is no news."""
    burst = _leak(T0, T0 + 7 * H, rate=400.0).replace(
        kind=AlertKind.BURST, alert_id=make_alert_id(AlertKind.BURST, "M1", "D1", T0), ended_at=T0 + 7 * H
    )
    (stored,) = merge_alerts([], [burst], now=T0 + 8 * H).opened
    assert not merge_alerts([stored], [burst.replace(ended_at=None, last_seen=T0 + 5 * H)], now=T0 + 9 * H)
    assert not merge_alerts([stored], [burst.replace(ended_at=None)], now=T0 + 9 * H)


def _burst(detected: datetime, last_seen: datetime, *, ended: datetime | None = None) -> Alert:
    """A detector's 600 L/h burst on M1, begun an hour before it was raised."""
    leak = _leak(detected, last_seen, start=detected - H, ended=ended, rate=600.0)
    return leak.replace(kind=AlertKind.BURST, alert_id=make_alert_id(AlertKind.BURST, "M1", "D1", detected))


def test_the_meter_s_leak_bit_beside_a_detector_s_burst_only_confirms_it() -> None:
    """600 L/h for 10 h behind a meter that flags any continuous flow as ``leak`` from two hours in:
    the detector's burst and the meter's leak were two alerts, two enquiries, and billing summed
    10,800 L for 6,000 L lost. The bit is the same flow: it opens nothing."""
    burst = _burst(T0, T0 + 2 * H)
    (stored,) = merge_alerts([], [burst], now=T0 + 2 * H).opened
    bit = _alarm(AlertKind.LEAK, T0 + 2 * H, T0 + 2 * H)
    changes = merge_alerts([stored], [_burst(T0, T0 + 2 * H), bit], now=T0 + 3 * H)
    assert not changes
    ended = T0 + 9 * H
    bit = _alarm(AlertKind.LEAK, T0 + 2 * H, ended - H, ended=ended)
    changes = merge_alerts([stored], [_burst(T0, ended - H, ended=ended), bit], ended)
    assert not changes.opened and [a.alert_id for a in changes.resolved] == [stored.alert_id]


@pytest.mark.parametrize("reclassified", [False, True])
def test_a_meter_s_leak_alarm_raised_first_is_folded_into_the_detector_s_alert_of_another_kind(
    reclassified: bool,
) -> None:
    """The shop's 150 L/h leak: the meter's leak bit opened an alert at 11:00, the detector raised a
    burst at noon, later found to be a leak (the same alert, kind leak). Two ongoing leak alerts and
    two open enquiries, and billing counted 2.85 + 2.70 m³. The meter's alert is now folded into the
    detector's: closed as its duplicate (dismissed by detection, naming it), so billing and care see
    one; it is then followed to its end like any dismissed alarm, and confirms nothing new."""
    bit_at = T0 - H
    (own,) = merge_alerts([], [_alarm(AlertKind.LEAK, bit_at, bit_at)], now=bit_at + H).opened
    burst = _burst(T0, T0 + H)
    if reclassified:  # the burst raised beside the bit (before this fix), then found to be a leak
        (stored,) = merge_alerts([], [burst], now=T0 + H).opened
        burst = burst.replace(kind=AlertKind.LEAK)
        existing = [own, stored]
    else:
        existing = [own]
    changes = merge_alerts(existing, [burst, _alarm(AlertKind.LEAK, bit_at, T0 + H)], now=T0 + 2 * H)
    assert [a.alert_id for a in changes.opened] == ([] if reclassified else [burst.alert_id])
    (folded,) = [a for a in changes.changed if a.alert_id == own.alert_id]
    assert folded.status is AlertStatus.DISMISSED and folded.dismissed_by == "detection"
    assert folded.dismiss_reason == f"the same episode as alert {burst.alert_id}"
    # the next run: the bit goes on, then clears; the folded alert follows it, and nothing opens
    now = T0 + 5 * H
    stored_now = {a.alert_id: a for a in [*existing, *changes.changed]}
    later = merge_alerts(stored_now.values(), [burst, _alarm(AlertKind.LEAK, bit_at, now - H, ended=now)], now=now)
    assert not later.opened
    assert [(a.status, a.ended_at) for a in later.changed if a.alert_id == own.alert_id] == [
        (AlertStatus.DISMISSED, now)
    ]


def test_a_leak_alarm_is_not_folded_into_a_dismissed_detector_s_alert_nor_one_of_another_meter() -> None:
    """A dismissal answers its own source only: the detector's burst a person dismissed (a pool
    being filled) does not swallow the meter's leak bit; and another meter's burst is other water."""
    (burst,) = merge_alerts([], [_burst(T0, T0 + H)], now=T0 + H).opened
    dismissed = dismiss(burst, by="care.agent", reason="filling the pool", now=T0 + H)
    bit = _alarm(AlertKind.LEAK, T0 + H, T0 + 2 * H)
    changes = merge_alerts([dismissed], [bit], now=T0 + 2 * H)
    assert [a.alert_id for a in changes.opened] == [bit.alert_id]
    other = _burst(T0, T0 + H).replace(meter_id="M2", alert_id="burst/M2/x")
    changes = merge_alerts([other], [bit], now=T0 + 2 * H)
    assert [a.alert_id for a in changes.opened] == [bit.alert_id]
