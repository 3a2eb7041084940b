"""VEE's own estimates that no longer stand in a gap: deleted by the next round.

A gap is judged at the interval the meter was reading at then (:mod:`collector.vee.intervals`), and
a new interval takes over only after 4 steps at it (``interval_change_steps``). A meter switched from
hourly to daily reads, with rounds every hour, had its first 3 daily steps judged hourly: each a gap
with 23 hourly estimates (69 in all). Once the 4th daily read came, the steps were daily and no
gaps, but the estimates stayed for ever: billing counted their spread and NEM12 showed the days as
estimated. A round now deletes (``reading_history`` keeps them) the estimates whose step between
the measured reads either side (of the same meter, both loaded) is no gap at the interval in force
at its closing read: across the whole series it loads (28 days of look-back and its period), not
its period only. A person's edit or substitution, and the meter's own reads, are measured reads:
never deleted here.

Nor does an estimate stand at the slot a measured read of its meter stands for
(:func:`collector.vee.estimation.slot_of`): rounds wrote one on the hour 7 s before the meter's read
at 11:00:07, a gap of 2 missing reads with 3 estimates. No round writes such an estimate now, and a
round deletes those earlier ones wrote, across the series it loads too.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from typing import NamedTuple

import numpy as np

from collector.vee.config import VeeConfig
from collector.vee.estimation import slot_of
from collector.vee.intervals import around
from collector.vee.series import F64, I64, B, Series


class Neighbours(NamedTuple):
    """Per reading, the index of the nearest measured (not estimated) reading at or before it and at
    or after it (0 where there is none), and whether both are of its meter (and loaded)."""

    before: I64
    after: I64
    both: B


def measured_neighbours(series: Series) -> Neighbours:
    """Each reading's measured neighbours (:class:`Neighbours`)."""
    before, after = around(series.quality != "estimated", series.meter)
    return Neighbours(np.maximum(before, 0), np.maximum(after, 0), (before >= 0) & (after >= 0))


def estimates_outside_gaps(series: Series, neighbours: Neighbours, read_interval_s: F64, config: VeeConfig) -> B:
    """The estimates of ``series`` whose step between the measured reads either side
    (``neighbours``) is not a gap: no more than ``gap_factor`` of the interval in force at the
    closing read (``read_interval_s``, per reading, as :func:`collector.vee.intervals.read_intervals`
    finds it)."""
    before, after, both = neighbours
    step = series.ts[after] - series.ts[before]
    return (series.quality == "estimated") & both & (step <= read_interval_s[after] * config.gap_factor)


def estimates_at_read_slots(
    series: Series, neighbours: Neighbours, read_interval_s: F64, read_phase_s: F64, zone: tzinfo = UTC
) -> B:
    """The estimates of ``series`` at the slot the measured read before or after them
    (``neighbours``) stands for (its meter's, on the grid in force at the estimate:
    ``read_interval_s`` and ``read_phase_s`` per reading; ``zone``: the utility's)."""
    estimated = np.flatnonzero(series.quality == "estimated")
    before, after, both = neighbours
    interval, phase = read_interval_s[estimated], read_phase_s[estimated]
    slot = slot_of(series.ts[estimated], interval, phase, zone)
    at_read = np.zeros(len(series), bool)
    for neighbour in (before, after):
        at_read[estimated] |= slot == slot_of(series.ts[neighbour[estimated]], interval, phase, zone)
    return at_read & both
