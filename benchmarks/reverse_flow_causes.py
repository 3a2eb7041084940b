"""Why a reverse flow's volume on the net register misses by more than 10%, and how much of it the
hourly register could have told at all.

The net register counts the household's use minus the water going back, per interval. An interval
that ran forwards may hold any amount of backward flow under more use, so the register alone (no
model of the household's use) pins a flow's start only between the last interval before its first
backward one that did not run forwards (idle: no use and no flow) and that backward interval, less
the share of it its backward litres take at the flow's rate; the end likewise (:func:`register_edges`;
an hour whose use cancelled the flow exactly reads as idle and narrows a span, so what the spans pin
is if anything overstated).
Given those spans, a flow's volume at its true rate is known within half their sum, whatever
estimate is made; a volume miss is then put down to the part of the estimate that moved it most
(the rate, the start or the end) and to whether the register showed that part (:func:`cause`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.detection.scoring import Match

#: A part of the estimate is "hidden" when the register alone places it this many hours from the
#: truth or more, in the direction of the error (an interval's share is exact only without use).
HIDDEN_H = 0.25


@dataclass(frozen=True)
class Edges:
    """Where the net register alone (any use) places one flow's start and end (unix seconds): the
    start in [start_lo, start_hi], the end in [end_lo, end_hi]; ``clear_rate`` says whether some
    interval wholly inside the flow showed its whole rate (within 1.5 register steps)."""

    start_lo: float
    start_hi: float
    end_lo: float
    end_hi: float
    clear_rate: bool

    def pinned(self, rate_l_h: float, volume_l: float, within: float = 0.10) -> bool:
        """Whether, at the true rate, every estimate in the middle of both spans is within ``within``
        of the true volume whatever the household drew: half the spans' sum is small enough."""
        spread_h = 0.5 * ((self.start_hi - self.start_lo) + (self.end_hi - self.end_lo)) / 3600.0
        return rate_l_h * spread_h <= within * volume_l + 1e-9


def register_edges(
    flow_l_h: np.ndarray,
    ends_s: np.ndarray,
    start_s: float,
    end_s: float,
    rate_l_h: float,
    step_flow_l_h: float,
) -> Edges | None:
    """The :class:`Edges` of a flow of ``rate_l_h`` from ``start_s`` to ``end_s`` (unix seconds; the
    data's end where it ran on) on one meter's net register: its flows ``flow_l_h`` (L/h, negative
    backwards, NaN unknown) over intervals ending at ``ends_s`` (interval j is (ends_s[j-1],
    ends_s[j]]). None where no interval of the flow ran backwards. An unknown interval (NaN) bounds
    a span as an idle one does (it says nothing either way; they are few)."""
    interval_s = float(ends_s[1] - ends_s[0])
    half = 0.5 * step_flow_l_h
    begins = ends_s - interval_s
    inside = (ends_s > start_s) & (begins < end_s)
    with np.errstate(invalid="ignore"):
        forwards = flow_l_h > half
        back = np.flatnonzero((flow_l_h < -half) & inside)
    if back.size == 0:
        return None
    first, last = int(back[0]), int(back[-1])
    k = first - 1
    while k >= 1 and forwards[k]:
        k -= 1
    start_lo = float(ends_s[max(k, 0)])
    start_hi = float(ends_s[first]) - min(1.0, -flow_l_h[first] / rate_l_h) * interval_s
    if end_s >= ends_s[-1]:  # ran on to the data's end: nothing to place
        end_lo = end_hi = float(ends_s[-1])
    else:
        k = last + 1
        while k < flow_l_h.size and forwards[k]:
            k += 1
        end_hi = float(ends_s[k - 1])
        end_lo = float(begins[last]) + min(1.0, -flow_l_h[last] / rate_l_h) * interval_s
    whole = (begins >= start_s) & (ends_s <= end_s)
    with np.errstate(invalid="ignore"):
        clear = bool((-flow_l_h[whole] >= rate_l_h - 1.5 * step_flow_l_h).any())
    return Edges(start_lo, min(start_hi, end_lo), max(end_lo, start_hi), end_hi, clear)


def cause(match: Match, edges: Edges, data_end_s: float) -> str:
    """The part of a found flow's estimate that moved its volume most, and whether the net register
    showed it: the volume's error ``rate_est·D_est − rate·D`` is the rate's part ``(rate_est −
    rate)·D_est`` plus the start's ``rate·(start − start_est)`` plus the end's ``rate·(end_est −
    end)`` (``D`` durations)."""
    alert, event = match.alert, match.event
    assert alert is not None, "a flow no alert found has no estimate to blame"
    rate = event.size
    true_start = event.start.timestamp()
    true_end = min(event.end.timestamp(), data_end_s) if event.end is not None else data_end_s
    est_start = alert.start.timestamp()
    est_end = (alert.ended_at or alert.last_seen).timestamp()
    parts = {
        "rate": (alert.rate_l_h - rate) * (est_end - est_start) / 3600.0,
        "start": rate * (true_start - est_start) / 3600.0,
        "end": rate * (est_end - true_end) / 3600.0,
    }
    part = max(parts, key=lambda p: abs(parts[p]))
    low = parts[part] < 0
    if part == "rate":
        if not low:
            return "rate read high"
        return "rate read low, misread" if edges.clear_rate else "rate read low, no interval clear of use"
    hidden_h = HIDDEN_H * 3600.0
    if part == "start":
        if not low:
            return "start taken too early"
        return "start hidden under use" if edges.start_hi - true_start >= hidden_h else "start misread late"
    if not low:
        return "end taken too late"
    return "end hidden under use" if true_end - edges.end_lo >= hidden_h else "end misread early"
