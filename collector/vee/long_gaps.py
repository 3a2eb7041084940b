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
"""

from __future__ import annotations

import numpy as np
import psycopg

from collector.vee.config import VeeConfig
from collector.vee.rules import Validation
from collector.vee.series import B, Series

_OPENING = """
SELECT coalesce(extract(epoch FROM p.ts)::float8, 'NaN')
FROM unnest(%s::text[], %s::float8[]) WITH ORDINALITY AS s(meter_id, ts_epoch, n)
LEFT JOIN LATERAL (
    SELECT x.ts FROM readings x
    WHERE x.meter_id = s.meter_id AND x.ts < to_timestamp(s.ts_epoch) AND x.quality <> 'estimated'
    ORDER BY x.ts DESC LIMIT 1
) p ON true
ORDER BY s.n
"""


def unloaded_openings(series: Series, validation: Validation, in_period: B) -> B:
    """The measured reads in the period whose previous reading (loaded) is an estimate with no
    measured read of the meter loaded before it: gaps VEE filled, opening before the load."""
    unjudged = np.zeros(len(series), bool)
    unjudged[1:] = (series.meter[1:] == series.meter[:-1]) & (series.quality[:-1] == "estimated")
    return unjudged & (series.quality != "estimated") & np.isnan(validation.measured_gap_s) & in_period


def judge_unloaded_openings(
    conn: psycopg.Connection, series: Series, validation: Validation, config: VeeConfig, unjudged: B
) -> B:
    """Judge the reads in ``unjudged`` (:func:`unloaded_openings`) from the meter's last measured
    read before each, looked up: ``validation`` is updated in place (``measured_gap_s``, and the
    ``gap`` mask and ``filled_gap`` where the step is a gap). The reads with no measured read
    before them at all, which stay unjudged (their flags are kept)."""
    idx = np.flatnonzero(unjudged)
    if not len(idx):
        return unjudged
    rows = conn.execute(_OPENING, ([series.meter_ids[m] for m in series.meter[idx].tolist()], series.ts[idx].tolist()))
    opened = np.array([row[0] for row in rows.fetchall()], dtype=float)
    found = np.isfinite(opened)
    judged = idx[found]
    dt = series.ts[judged] - opened[found]
    validation.measured_gap_s[judged] = dt
    known = validation.interval_known[series.meter[judged]]
    gap = (dt > validation.read_interval_s[judged] * config.gap_factor) & known
    validation.masks["gap"][judged[gap]] = True
    validation.filled_gap[judged[gap]] = True
    left = np.zeros(len(series), bool)
    left[idx[~found]] = True
    return left
