"""Gaps opening before the reads a run loads: judged from the meter's last measured read, looked up.

A run loads its period, 28 days of look-back and each meter's last read before them. A gap VEE
filled whose opening read lies further back has an estimate as that last read, so nothing loaded
says how long the gap is. The read closing it was left unjudged (its flag from the run that
estimated the gap kept), and a read arriving late inside such a gap, 28 days or more after it
opened, was never flagged at all: the estimates before it stand (no run can estimate that part
again without its opening read), yet its ``vee_flags`` did not say that the meter had missed the
reads before it. Each such read is judged now against the meter's last measured read before it,
one look-up per read (newest first, skipping estimates; these are few: only gaps longer than the
look-back): a gap, flagged ``gap`` "…; estimated" like any other VEE filled.

The same look-up finds such a gap that the rules leave for a person (longer than 62 days, which
no load reaches across, across a backward step of the register, opening at a glitch read, or with
a read whose time is wrong at either end) that earlier code filled: its
estimates are deleted in the database, all of them, before the load's (``vee:no-estimate``, as
:mod:`collector.vee.leftovers` does for the gaps whose opening read is loaded), and the run loads
the meter's reads again: the gap is then flagged "not estimated", as one found empty.

A glitch read (a ``bad_read``: one read off the register with the next back at the level before
it) is one only between its neighbours, and the load has no read before its look-back read. A gap
opening at a glitch before the look-back was estimated from the glitch's level (0.000 m³ between
1234.5 and a closing read at 1235.46: 1235 m³ the meter never measured), or its closing read flagged
``register_backwards`` (after a glitch up), where within the look-back the gap is left for a person
and the closing read counts the water since the read before the glitch. The round now looks up the
read before such an opening read (:func:`judge_glitch_openings`) and keeps it where it makes the
opening a glitch; and the clean-up above, for estimates earlier code made in such a gap whose
opening read is no longer loaded, judges the opening read between the read before it and the
closing read (two more look-ups per such gap), and deletes them where it is a glitch. The glitch
read's own flag, from the round it arrived in, is not rewritten.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import psycopg

from collector.store import SAY_WHO
from collector.vee.config import VeeConfig
from collector.vee.intervals import ReadIntervals, around, read_intervals
from collector.vee.rules import Validation, allowance, validate, wrong_times
from collector.vee.series import F64, B, Series, load_reads_before

#: ``reading_history``'s reason for the estimates of a gap the current rules do not estimate
LEFT_ALONE_REASON = (
    "the current rules make no estimate in its gap (across a register step, longer than {days:g} days, "
    "or beside a read whose time is wrong): left for a person"
)

_OPENING = """
SELECT coalesce(extract(epoch FROM p.ts)::float8, 'NaN'), coalesce(p.volume_m3::float8, 'NaN'),
       coalesce(extract(epoch FROM p.received_at)::float8, 'NaN'), coalesce(p.quality = 'actual', false)
FROM unnest(%s::text[], %s::float8[]) WITH ORDINALITY AS s(meter_id, ts_epoch, n)
LEFT JOIN LATERAL (
    SELECT x.ts, x.volume_m3, x.received_at, x.quality FROM readings x
    WHERE x.meter_id = s.meter_id AND x.ts < to_timestamp(s.ts_epoch) AND x.quality <> 'estimated'
    ORDER BY x.ts DESC LIMIT 1
) p ON true
ORDER BY s.n
"""


# The estimates of gaps (meter, opened, closed), strictly between their reads.
_GAPS = "unnest(%s::text[], %s::float8[], %s::float8[]) AS g(meter_id, opened, closed)"
_IN_GAPS = (
    "r.meter_id = g.meter_id AND r.ts > to_timestamp(g.opened) AND r.ts < to_timestamp(g.closed) "
    "AND r.quality = 'estimated'"
)

# The gaps' estimates locked at once in (meter, time) order before they are deleted, as ingest locks
# the estimates it replaces with the meter's reads (collector/store.py, _LOCK_ESTIMATES): the DELETE
# alone takes them in its plan's order (a chunk's physical order, a hash join's), and could hold a
# later estimate while waiting for an earlier one ingest held, ingest waiting for the later one.
_LOCK_GAPS_ESTIMATES = f"""
SELECT count(*) FROM (
    SELECT 1 FROM readings r JOIN {_GAPS} ON {_IN_GAPS}
    ORDER BY r.meter_id, r.ts
    FOR UPDATE OF r
) locked
"""


def unloaded_openings(series: Series, in_period: B) -> B:
    """The measured reads in the period whose previous reading (loaded) is an estimate with no
    measured read of the meter loaded before it: gaps VEE filled, opening before the load."""
    before, _ = around(series.quality != "estimated", series.meter)
    same = np.zeros(len(series), bool)
    same[1:] = series.meter[1:] == series.meter[:-1]
    out = np.zeros(len(series), bool)
    out[1:] = same[1:] & (series.quality[:-1] == "estimated") & (before[:-1] < 0)
    return out & (series.quality != "estimated") & in_period


class Openings(NamedTuple):
    """Per read looked up: its meter's last measured read before it (NaN where there is none)."""

    ts: F64
    volume: F64
    received: F64
    actual: B


def look_up_openings(conn: psycopg.Connection, series: Series, idx: npt.NDArray[np.intp]) -> Openings:
    """The last measured read of its meter before each read ``idx`` of ``series``."""
    meters = [series.meter_ids[m] for m in series.meter[idx].tolist()]
    rows = conn.execute(_OPENING, (meters, series.ts[idx].tolist())).fetchall() if len(idx) else []
    ts, volume, received = (np.array([r[k] for r in rows], dtype=float) for k in range(3))
    return Openings(ts, volume, received, np.array([r[3] for r in rows], dtype=bool))


def delete_unloaded_left_alone(
    conn: psycopg.Connection, series: Series, config: VeeConfig, in_period: B, now: float
) -> dict[str, float]:
    """Delete (``vee:no-estimate`` in ``reading_history``) the estimates of each gap closing in the
    period whose opening read is not loaded and which the rules leave for a person: longer than
    ``max_estimated_gap_s`` (which no load reaches across), across a backward step of the
    register, opening at a glitch (a ``bad_read`` between the read before it and the closing read),
    or with a read at either end whose time is wrong (as of ``now``). Per meter, the
    opening read's time (the consumption to refresh from); the run loads its reads again when
    there is any."""
    idx = np.flatnonzero(unloaded_openings(series, in_period))
    opening = look_up_openings(conn, series, idx)
    found = np.isfinite(opening.ts)
    idx, opening = (
        idx[found],
        Openings(opening.ts[found], opening.volume[found], opening.received[found], opening.actual[found]),
    )
    too_long = series.ts[idx] - opening.ts > config.max_estimated_gap_s
    backwards = series.volume[idx] < opening.volume - (config.backwards_tolerance_m3 + 1e-9)
    closing_wrong = wrong_times(series.ts[idx], series.received[idx], series.quality[idx] == "actual", now, config)
    opening_wrong = wrong_times(opening.ts, opening.received, opening.actual, now, config)
    alone = too_long | backwards | closing_wrong[0] | closing_wrong[1] | opening_wrong[0] | opening_wrong[1]
    alone |= _glitch_openings(conn, series, idx, config, now)
    idx, opened = idx[alone], opening.ts[alone]
    if not len(idx):
        return {}
    meters = [series.meter_ids[m] for m in series.meter[idx].tolist()]
    gaps = (meters, opened.tolist(), series.ts[idx].tolist())
    with conn.transaction():  # (who and why hold for the transaction: one, on an autocommit connection too)
        conn.execute(_LOCK_GAPS_ESTIMATES, gaps)
        conn.execute(SAY_WHO, ("vee:no-estimate", LEFT_ALONE_REASON.format(days=config.max_estimated_gap_s / 86400)))
        conn.execute(f"DELETE FROM readings r USING {_GAPS} WHERE {_IN_GAPS}", gaps)
    changed: dict[str, float] = {}
    for meter, since in zip(meters, opened.tolist(), strict=True):
        changed[meter] = min(since, changed.get(meter, since))
    return changed


def _glitch_openings(
    conn: psycopg.Connection, series: Series, idx: npt.NDArray[np.intp], config: VeeConfig, now: float
) -> B:
    """Per read ``idx`` of ``series`` (the first measured read of its meter loaded, its opening read
    not loaded), whether that opening read is a ``bad_read`` between the read before it and this
    one: the three reads looked up and validated alone (a bad_read needs no more)."""
    if not len(idx):
        return np.zeros(0, bool)
    opening = load_reads_before(conn, series, idx, config, measured=True)
    before = load_reads_before(conn, opening, np.arange(len(opening)), config)
    closing = np.zeros(len(series), bool)
    closing[idx] = True
    trial = series.without(~closing).with_reads(opening).with_reads(before)
    bad = trial.meter[validate(trial, config, now).step_kind == "bad_read"]
    return np.isin(series.meter[idx], bad)


def judge_unloaded_openings(
    conn: psycopg.Connection, series: Series, validation: Validation, config: VeeConfig, unjudged: B
) -> B:
    """Judge the reads in ``unjudged`` (:func:`unloaded_openings`) from the meter's last measured
    read before each, looked up: ``validation`` is updated in place (``measured_gap_s``, the
    ``gap`` mask and ``filled_gap`` where the step is a gap, and ``over_max_flow`` over the gap's
    water). The reads with no measured read before them at all, which stay unjudged (their
    flags are kept)."""
    idx = np.flatnonzero(unjudged)
    if not len(idx):
        return unjudged
    opening = look_up_openings(conn, series, idx)
    found = np.isfinite(opening.ts)
    judged = idx[found]
    dt = series.ts[judged] - opening.ts[found]
    validation.measured_gap_s[judged] = dt
    # over_max_flow over the gap, as the run that estimated it judged it (and as rules.validate
    # judges a gap whose opening read is loaded): on the hour after the last estimate, rounded to the
    # litre, a gap over its allowance by less than a litre an hour lost its flag in the next run
    whole = validation.step_kind[judged] == ""
    over = judged[whole]
    validation.flow_consumption[over] = series.volume[over] - opening.volume[found][whole]
    validation.flow_s[over] = dt[whole]
    validation.masks["over_max_flow"][over] = validation.flow_consumption[over] > allowance(
        series.max_flow[over], dt[whole], config
    )
    known = validation.interval_known[series.meter[judged]]
    gap = (dt > validation.read_interval_s[judged] * config.gap_factor) & known
    validation.masks["gap"][judged[gap]] = True
    validation.filled_gap[judged[gap]] = True
    left = np.zeros(len(series), bool)
    left[idx[~found]] = True
    return left


class Judged(NamedTuple):
    """A series, its read intervals and its validation."""

    series: Series
    intervals: ReadIntervals
    validation: Validation


def judge_glitch_openings(
    conn: psycopg.Connection, judged: Judged, stored: F64, config: VeeConfig, now: float, zone: tzinfo
) -> Judged:
    """``judged`` with the read before each gap's opening read added where that read is the first
    of its meter loaded (the load's look-back read: the gap opened before the look-back) and, judged
    with it, a ``bad_read``: intervals found and rules applied again (``stored``: the meters' stored
    intervals, per meter code, as for :func:`collector.vee.intervals.read_intervals`).

    A glitch read (0.000 m³ once, between 1234.500 and the next read back at that level) is a
    ``bad_read`` only between its neighbours, and the load has no read before its look-back read.
    A gap opening at one within the look-back is left for a person (its closing read is the
    ``after_bad_read`` step, counting the water since the read before the glitch); one opening at
    one before the look-back was estimated from the glitch's level up to the closing read's, 1235 m³
    a meter never measured. The read before is added only where it makes a glitch: elsewhere it
    would add a step before the load, to intervals and (for a meter found now) to the gaps estimated."""
    series, _, validation = judged
    first = np.ones(len(series), bool)
    first[1:] = series.meter[1:] != series.meter[:-1]
    closing = np.flatnonzero(validation.masks["gap"])
    closing = closing[first[closing - 1] & (series.quality[closing - 1] == "actual")]
    before = load_reads_before(conn, series, closing - 1, config)
    if not len(before):
        return judged
    # (rules look at one meter's reads only: the trial is of the meters with a read before, alone)
    trial = series.without(~np.isin(series.meter, before.meter)).with_reads(before)
    glitch = validate(trial, config, now, zone, read_intervals(trial, config, zone, stored)).step_kind == "bad_read"
    # each read added is before its meter's first loaded one: the first of its meter in the trial
    added = np.ones(len(trial), bool)
    added[1:] = trial.meter[1:] != trial.meter[:-1]
    added &= np.isin(trial.meter, before.meter)
    keep = np.zeros(len(trial), bool)
    keep[:-1] = added[:-1] & glitch[1:]
    if not keep.any():
        return judged
    series = series.with_reads(trial.without(~keep))  # (the read before each glitch)
    intervals = read_intervals(series, config, zone, stored)
    return Judged(series, intervals, validate(series, config, now, zone, intervals))
