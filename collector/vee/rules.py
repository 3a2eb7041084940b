"""Validation rules, vectorised over a :class:`Series` of many meters at once.

Each rule is a boolean mask over the readings (the reading that *closes* a suspicious interval is
the one flagged). Pairs of neighbours are compared with shifted arrays; a pair that straddles two
meters is masked out, so one pass covers the whole fleet with no loop per reading or per meter.

A register going backwards is explained by evidence, in this order:
- ``rollover``: it went from the top of its range into the bottom, and the implied use fits the
  meter's maximum flow;
- ``reverse_flow``: the reverse register grew by the drop, or the meter reported negative flow or
  a ``reverse_flow`` alarm;
- ``replacement``: the register falls far, from well above where a new meter starts
  (``replacement_min_previous_m3``, 20 m³) to near zero (``replacement_max_start_m3``, 10 m³): a
  new meter behind the same endpoint; a young meter stepping back 10 L is no replacement;
- otherwise ``register_backwards``: unexplained; its consumption is unknown.

Before all of these, a ``bad_read``: an actual read that leaves the register (backwards, or up
faster than the meter's maximum flow) when the next read is back at the level before it (within
the backwards tolerance and the maximum flow over both intervals): one glitch read of 0 between
1234.5 and 1234.52 m³. It counts nothing, and the next read's interval counts the water since the
read before the bad one (step kinds ``bad_read`` and ``after_bad_read``), so the glitch is neither
a replacement nor 1234 m³ of use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo

import numpy as np
import numpy.typing as npt

from collector.vee.config import VeeConfig
from collector.vee.intervals import ReadIntervals, around, read_intervals
from collector.vee.series import F64, B, Series

STEP_KINDS = ("replacement", "rollover", "reverse_flow", "unexplained", "bad_read", "after_bad_read")
RULES = (
    "bad_read",
    "rollover",
    "reverse_flow",
    "replacement",
    "register_backwards",
    "over_max_flow",
    "gap",
    "stuck_register",
    "future_timestamp",
    "far_past_timestamp",
)


@dataclass(frozen=True)
class Validation:
    """Masks over the series' readings, one per rule, and the backward steps' consumption."""

    masks: dict[str, B]
    step_kind: npt.NDArray[np.str_]  # "" where the reading is no backward step, else a STEP_KINDS value
    step_consumption: F64  # the interval's consumption at a step (NaN: unknown)
    interval_consumption: F64  # every reading's interval consumption (NaN: first read or unknown)
    gap_s: F64  # seconds since the previous read of the same meter (NaN: first)
    #: per reading: a measured read closing a gap whose estimates stand (its previous read is VEE's
    #: estimate): flagged ``gap`` with the others, not estimated again
    filled_gap: B
    measured_gap_s: F64  # seconds since the previous measured read of the same meter (NaN: none loaded)
    interval_s: F64  # per meter code: the meter's own read interval now (collector/vee/intervals.py)
    interval_known: B  # per meter code: the interval is the meter's own (else the configured one; no gaps)
    read_interval_s: F64  # per reading: the meter's read interval at it (a meter's interval changes)
    read_phase_s: F64  # per reading: that interval's slot grid's offset
    #: per reading: the water and the seconds ``over_max_flow`` judges; after VEE's estimates, those
    #: since the measured read before them (the gap's), else the interval's
    flow_consumption: F64
    flow_s: F64

    def flagged(self, rule: str) -> npt.NDArray[np.intp]:
        return np.flatnonzero(self.masks[rule])


def _shifted(series: Series) -> tuple[B, F64, F64]:
    """(same meter as previous, seconds since previous, register change since previous), per reading."""
    n = len(series)
    same = np.zeros(n, bool)
    dt = np.full(n, np.nan)
    dv = np.full(n, np.nan)
    if n > 1:
        same[1:] = series.meter[1:] == series.meter[:-1]
        dt[1:] = np.where(same[1:], series.ts[1:] - series.ts[:-1], np.nan)
        dv[1:] = np.where(same[1:], series.volume[1:] - series.volume[:-1], np.nan)
    return same, dt, dv


def _previous(values: F64) -> F64:
    out = np.full(len(values), np.nan)
    out[1:] = values[:-1]
    return out


def _next(values: F64) -> F64:
    out = np.full(len(values), np.nan)
    out[:-1] = values[1:]
    return out


def allowance(max_flow: F64, seconds: F64, config: VeeConfig) -> F64:
    """The most water a meter can pass in ``seconds`` at ``max_flow`` m³/h, with ``max_flow_slack``."""
    result: F64 = max_flow * (seconds / 3600.0) * (1 + config.max_flow_slack)
    return result


def _bad_reads(series: Series, same: B, allowed: F64, left: B, tolerance: float) -> B:
    """Actual reads that ``left`` the register when the next read (same meter) is back at the
    level of the read before, within ``tolerance`` and the maximum flow over both intervals."""
    same_next = np.zeros(len(series), bool)
    same_next[:-1] = same[1:]
    back = _next(series.volume) - _previous(series.volume)
    returned = same & same_next & (back >= -tolerance) & (back <= allowed + _next(allowed))
    return left & returned & (series.quality == "actual")


def _runs_at_least(condition: B, minimum: int) -> B:
    """Readings inside a run of ``condition`` at least ``minimum`` long."""
    if not len(condition):
        return condition
    group = np.cumsum(~condition)
    lengths = np.bincount(group, weights=condition.astype(float))
    return condition & (lengths[group] >= minimum)


def wrong_times(ts: F64, received: F64, actual: B, now: float, config: VeeConfig) -> tuple[B, B]:
    """(``future_timestamp``, ``far_past_timestamp``) of reads at ``ts`` that arrived at ``received``."""
    # Ahead of the collector's clock now, or when it arrived: a later rerun (every round runs
    # the last two days again) must not find it fine because its time has come since.
    future = ts > np.minimum(now, received) + config.future_tolerance_s
    # Only what a meter sent: an estimate made today for last year's gap is not a late arrival.
    far_past = (ts < received - config.max_age_days * 86400.0) & actual
    return future, far_past


def validate(
    series: Series, config: VeeConfig, now: float, zone: tzinfo = UTC, intervals: ReadIntervals | None = None
) -> Validation:
    """Every rule over ``series``; ``zone``: the utility's, whose clock a slot grid longer than an
    hour follows (pass :func:`collector.vee.estimation.estimate` the same); ``intervals``: the
    series' read intervals, when already found (:func:`collector.vee.intervals.read_intervals`)."""
    same, dt, dv = _shifted(series)
    intervals = intervals or read_intervals(series, config, zone)
    prev_volume = _previous(series.volume)
    prev_reverse = _previous(series.reverse)
    allowed = allowance(series.max_flow, dt, config)
    with np.errstate(invalid="ignore"):
        # (in float, 100.0005 - 100.0000 is a hair over 0.0005: the database counts that drop, in
        # numeric, as within the tolerance, and so must this)
        backwards = same & (dv < -(config.backwards_tolerance_m3 + 1e-9))
        cap = series.capacity
        wrapped = series.volume + cap - prev_volume
        rollover = (
            backwards
            & (prev_volume >= cap * (1 - config.rollover_window))
            & (series.volume <= cap * config.rollover_window)
            & (wrapped <= allowed)
        )
        reverse_grew = (series.reverse - prev_reverse) >= (-dv - config.reverse_tolerance_m3)
        # water going back passes the meter no faster than forwards: a step back of 400 m³ in an
        # hour is no reverse flow, whatever alarm the meter still reports (a replacement, say)
        reverse = backwards & ~rollover & (reverse_grew | (series.flow < 0) | series.reverse_alarm) & (-dv <= allowed)
        tolerance = config.backwards_tolerance_m3 + 1e-9
        spike = (dv > allowed) & (_next(series.volume) < series.volume - tolerance)  # up too fast, then down
        bad = _bad_reads(series, same, allowed, (backwards & ~rollover & ~reverse) | spike, tolerance)
        after_bad = np.zeros(len(series), bool)
        after_bad[1:] = bad[:-1]
        judged = ~bad & ~after_bad  # steps around a bad read are the bad read's, not steps of their own
        rollover &= judged
        reverse &= judged
        replacement = (
            backwards
            & judged
            & ~rollover
            & ~reverse
            & (series.volume <= config.replacement_max_start_m3)
            & (prev_volume >= config.replacement_min_previous_m3)
        )
        unexplained = backwards & judged & ~rollover & ~reverse & ~replacement

        step_kind = np.full(len(series), "", dtype="<U14")
        step_kind[rollover] = "rollover"
        step_kind[reverse] = "reverse_flow"
        step_kind[replacement] = "replacement"
        step_kind[unexplained] = "unexplained"
        step_kind[bad] = "bad_read"
        step_kind[after_bad] = "after_bad_read"
        step_consumption = np.full(len(series), np.nan)
        step_consumption[rollover] = wrapped[rollover]
        step_consumption[reverse] = dv[reverse]
        step_consumption[replacement] = series.volume[replacement]  # the new register counted from zero
        step_consumption[bad] = 0.0
        step_consumption[after_bad] = (series.volume - _previous(prev_volume))[after_bad]  # since the read before

        # a drop within the tolerance counts as it is, a little below zero, as the database's
        # interval_consumption (collector migration 0054) counts it: intervals sum to the register's
        # difference (taken as zero, each wobble's rise would count again)
        consumption = np.where(same & ~backwards, dv, np.nan)
        consumption = np.where(step_kind != "", step_consumption, consumption)
        # more than gap_factor of the meter's own interval at the time: a daily meter's next-day read
        # is no gap, nor are the hourly reads of a meter read every 15 minutes since; a meter whose
        # interval is not known yet (a new one's first 2 steps) has none until it is: judged at the
        # configured hour, a new daily meter's first days each got 23 hourly estimates. A gap VEE
        # filled is still one, between the measured reads either side (the meter missed those reads,
        # and its hours are estimates): judged between readings only, a rerun found the gap filled and
        # deleted its flag, 1 after the round that estimated it and 0 after the next
        limit = intervals.read_interval_s * config.gap_factor
        gap = same & (dt > limit) & intervals.known[series.meter]
        measured = series.quality != "estimated"
        before, _ = around(measured, series.meter)
        previous = np.full(len(series), -1)
        previous[1:] = np.where(same[1:], before[:-1], -1)  # the measured read before, of the same meter
        measured_dt = np.where(previous >= 0, series.ts - series.ts[np.maximum(previous, 0)], np.nan)
        # not on VEE's own estimates: a profile puts a gap's use into its busy hours, and a rerun
        # flagged the estimate it had written. A measured read after them is judged over the gap,
        # from the measured read before it, as the run that estimated the gap judged it: judged on
        # its own interval from the estimate before it, rounded to the litre, a gap 9 L over its
        # allowance (12.609 m³ in 24 h at 0.5 m³/h, 12.6 allowed) lost its flag in the next run
        after_estimate = np.zeros(len(series), bool)
        after_estimate[1:] = same[1:] & ~measured[:-1]
        across = np.flatnonzero(after_estimate & measured & (previous >= 0))  # (few: one per filled gap)
        across = across[step_kind[across] == ""]
        flow_consumption, flow_s = consumption.copy(), dt.copy()
        flow_consumption[across] = series.volume[across] - series.volume[previous[across]]
        flow_s[across] = measured_dt[across]
        over_max = same & measured & (flow_consumption > allowance(series.max_flow, flow_s, config))
        filled = np.zeros(len(series), bool)
        filled[1:] = same[1:] & ~measured[:-1]  # (the read before is an estimate)
        filled &= measured & (measured_dt > limit) & intervals.known[series.meter] & ~gap
        gap |= filled
        stuck = _runs_at_least(
            same & (np.abs(dv) <= config.backwards_tolerance_m3) & (series.flow > config.stuck_min_flow_m3h),
            config.stuck_min_reads,
        )
        future, far_past = wrong_times(series.ts, series.received, series.quality == "actual", now, config)
    masks = {
        "bad_read": bad,
        "rollover": rollover,
        "reverse_flow": reverse,
        "replacement": replacement,
        "register_backwards": unexplained,
        "over_max_flow": over_max,
        "gap": gap,
        "stuck_register": stuck,
        "future_timestamp": future,
        "far_past_timestamp": far_past,
    }
    return Validation(
        masks,
        step_kind,
        step_consumption,
        consumption,
        dt,
        filled,
        measured_dt,
        intervals.interval_s,
        intervals.known,
        intervals.read_interval_s,
        intervals.read_phase_s,
        flow_consumption,
        flow_s,
    )
