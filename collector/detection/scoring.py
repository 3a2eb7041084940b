"""Scoring alerts against ground truth: recall, precision, false alarms, time to detect, and LeakDB.

Ground truth is anything shaped like :class:`simulators.ground_truth.GroundTruthEvent` (``event``,
``meter_id``, ``dma``, ``start``, ``end``, ``size`` in L/h for flows); the collector does not import
the simulators.

An alert matches an event of the same kind at the same meter (or DMA, for ``dma_burst``) when it was
raised between the event's start and its end (plus ``grace``). Each event takes its earliest match
not already another event's; an alert raised outside every event of its kind and subject is a
false alarm, including an alert of one kind at a meter whose fault is of another kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from collector.detection.alerts import Alert


class TruthEvent(Protocol):
    @property
    def event(self) -> str: ...
    @property
    def meter_id(self) -> str | None: ...
    @property
    def dma(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def size(self) -> float: ...


@dataclass(frozen=True)
class Match:
    event: TruthEvent
    alert: Alert | None
    observed_h: float  # how long the event lasted within the data

    @property
    def delay_h(self) -> float | None:
        if self.alert is None:
            return None
        return (self.alert.detected_at - self.event.start).total_seconds() / 3600.0

    @property
    def start_error_h(self) -> float | None:
        if self.alert is None:
            return None
        return abs((self.alert.start - self.event.start).total_seconds()) / 3600.0

    @property
    def volume_error(self) -> float | None:
        """Relative error of the alert's volume (what billing's leak adjustment takes) against the
        water the event lost within the data. Not over the alert's own span only: an alert that
        runs on for days after the repair, or ends days before it, misstates the loss as much as
        one at the wrong rate (scored over the span alone, both passed)."""
        if self.alert is None or self.event.size <= 0:
            return None
        true_l = self.event.size * self.observed_h
        if true_l <= 0:
            return None
        return abs(self.alert.volume_l - true_l) / true_l


def _subject(kind: str, meter_id: str | None, dma: str) -> tuple[str, str]:
    return (kind, meter_id if meter_id is not None else f"dma:{dma}")


def match_alerts(
    alerts: Sequence[Alert], truth: Iterable[TruthEvent], kind: str, data_end: datetime, grace: timedelta
) -> tuple[list[Match], list[Alert]]:
    """(one match per event of ``kind``, the alerts of ``kind`` that match no event).

    An alert raised while several events of its subject were on (two main bursts in one DMA) can
    only be the detection of the one whose start its own estimated start is nearest (before, the
    earliest event took it, and the alert's start and volume were scored against the wrong
    burst); each event takes the earliest alert that can be its."""
    by_subject: dict[tuple[str, str], list[Alert]] = {}
    for a in alerts:
        if a.kind.value == kind:
            by_subject.setdefault(_subject(kind, a.meter_id, a.dma), []).append(a)
    events = sorted((e for e in truth if e.event == kind), key=lambda e: e.start)

    def during(e: TruthEvent) -> list[Alert]:
        end = e.end if e.end is not None else data_end
        group = by_subject.get(_subject(kind, e.meter_id, e.dma), [])
        return [a for a in group if e.start <= a.detected_at <= end + grace]

    raised_during = [during(e) for e in events]
    home: dict[str, int] = {}  # alert → the event (index) whose start is nearest its own
    for i, group in enumerate(raised_during):
        for a in group:
            j = home.get(a.alert_id)
            if j is None or abs(a.start - events[i].start) < abs(a.start - events[j].start):
                home[a.alert_id] = i
    explained: set[str] = set()  # alerts raised while an event of theirs was on
    matches = []
    for i, (e, group) in enumerate(zip(events, raised_during, strict=True)):
        explained.update(a.alert_id for a in group)
        own = [a for a in group if home[a.alert_id] == i]  # each alert has one home: no event takes another's
        first = min(own, key=lambda a: a.detected_at) if own else None
        end = e.end if e.end is not None else data_end
        observed = (min(end, data_end) - e.start).total_seconds() / 3600.0
        matches.append(Match(e, first, observed))
    false = [a for group in by_subject.values() for a in group if a.alert_id not in explained]
    return matches, false


@dataclass(frozen=True)
class KindScore:
    kind: str
    events: int  # eligible events
    detected: int  # detected within the horizon
    recall: float
    alerts: int
    false_alarms: int
    #: alerts raised during an event whose detection was another alert: a fault raised twice, a
    #: second enquiry about one job (not false alarms, but work all the same)
    repeats: int
    precision: float
    false_per_10k_meter_days: float
    median_delay_h: float
    p90_delay_h: float
    start_within_1h: float  # share of detected events
    volume_within_10pct: float


def score_kind(
    alerts: Sequence[Alert],
    truth: Iterable[TruthEvent],
    kind: str,
    *,
    data_end: datetime,
    meter_days: float,
    grace: timedelta,
    size_range: tuple[float, float] = (0.0, float("inf")),
    min_observed_h: float = 0.0,
    within_h: float | None = None,
    deadline: Callable[[TruthEvent], datetime | None] | None = None,
    scored_from: datetime | None = None,
) -> KindScore:
    """Score one kind; events outside ``size_range``, observable for less than ``min_observed_h`` or
    starting before ``scored_from`` are left out of recall (but alerts on them are not false
    alarms); alerts raised before ``scored_from`` are not counted at all.

    A detection counts towards recall only if it came within ``within_h`` of the event's start and,
    when ``deadline`` is given, no later than ``deadline(event)`` (an event whose deadline is None,
    one the data cannot show in time, is left out of recall like a too short one)."""
    matches, false = match_alerts(alerts, truth, kind, data_end, grace)
    taken = {m.alert.alert_id for m in matches if m.alert is not None}
    if scored_from is not None:
        matches = [m for m in matches if m.event.start >= scored_from]
        false = [a for a in false if a.detected_at >= scored_from]
        alerts = [a for a in alerts if a.detected_at >= scored_from]
    lo, hi = size_range
    eligible = [m for m in matches if lo <= m.event.size < hi and m.observed_h >= min_observed_h]
    due = {id(m): deadline(m.event) for m in eligible} if deadline is not None else {}
    if deadline is not None:
        eligible = [m for m in eligible if due[id(m)] is not None]

    def in_time(m: Match) -> bool:
        if m.alert is None:
            return False
        if within_h is not None and (m.delay_h or 0) > within_h:
            return False
        limit = due.get(id(m))
        return limit is None or m.alert.detected_at <= limit

    hits = [m for m in eligible if in_time(m)]
    delays = np.array([m.delay_h for m in hits], dtype=np.float64)
    starts = np.array([m.start_error_h for m in hits], dtype=np.float64)
    volumes = np.array([v for m in hits if (v := m.volume_error) is not None], dtype=np.float64)
    n_alerts = sum(1 for a in alerts if a.kind.value == kind)
    accounted = taken | {a.alert_id for a in false}
    repeats = sum(1 for a in alerts if a.kind.value == kind and a.alert_id not in accounted)
    return KindScore(
        kind=kind,
        events=len(eligible),
        detected=len(hits),
        recall=len(hits) / len(eligible) if eligible else float("nan"),
        alerts=n_alerts,
        false_alarms=len(false),
        repeats=repeats,
        precision=(n_alerts - len(false)) / n_alerts if n_alerts else float("nan"),
        false_per_10k_meter_days=len(false) / meter_days * 10_000 if meter_days else float("nan"),
        median_delay_h=float(np.median(delays)) if delays.size else float("nan"),
        p90_delay_h=float(np.percentile(delays, 90)) if delays.size else float("nan"),
        start_within_1h=float(np.mean(starts <= 1.0)) if starts.size else float("nan"),
        volume_within_10pct=float(np.mean(volumes <= 0.10)) if volumes.size else float("nan"),
    )


def leakdb_scores(
    labels_true: np.ndarray, labels_alg: np.ndarray, tw_ex: int = 10, persistence: float = 0.75
) -> tuple[float, float]:
    """(F1, early-detection score), both 0–100, as LeakDB's ``scoring_algorithm.m`` computes them.

    ``labels_*`` are (scenarios, time steps) 0/1: here one scenario per DMA, one step per interval.
    F1 counts time steps over all scenarios. Each fault (a run of 1s in the truth) scores
    ``2 / (1 + exp(5 dt / tw))`` if the algorithm's first 1 in the window ``[start, end + tw_ex]``
    comes ``dt`` steps after the start and more than ``persistence`` of the window from there on is
    labelled 1; otherwise 0.
    """
    truth = labels_true.astype(bool)
    alg = labels_alg.astype(bool)
    tp = int(np.sum(truth & alg))
    fp = int(np.sum(~truth & alg))
    fn = int(np.sum(truth & ~alg))
    f1 = 200.0 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    scores: list[float] = []
    n = truth.shape[1]
    for row_true, row_alg in zip(truth, alg, strict=True):
        edges = np.diff(np.r_[0, row_true.astype(np.int8), 0])
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True):
            window_end = min(e + tw_ex, n - 1)
            tw = window_end - s
            window = row_alg[s : window_end + 1]
            hits = np.flatnonzero(window)
            if tw <= 0 or hits.size == 0:
                scores.append(0.0)
                continue
            dt = int(hits[0])
            scores.append(2.0 / (1.0 + np.exp(5.0 / tw * dt)) if window[dt:].mean() > persistence else 0.0)
    sed = 100.0 * float(np.mean(scores)) if scores else float("nan")
    return f1, sed


def interval_labels(
    spans: Iterable[tuple[str, datetime, datetime | None]], names: Sequence[str], timestamps: np.ndarray
) -> np.ndarray:
    """(len(names), T) 0/1: 1 at instants within ``[from, to)`` of a span of that name."""
    index = {name: i for i, name in enumerate(names)}
    seconds = timestamps.astype("datetime64[s]").astype(np.int64)
    out = np.zeros((len(names), seconds.shape[0]), dtype=np.int8)
    for name, a, b in spans:
        lo = int(a.timestamp())
        hi = int(b.timestamp()) if b is not None else int(seconds[-1]) + 1
        out[index[name], (seconds >= lo) & (seconds < hi)] = 1
    return out
