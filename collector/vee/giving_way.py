"""A person's correction of an estimate gives way to the meter's own read of the same slot.

Estimates stand on the meter's slots (whole hours), while gateways stamp a read a few seconds later
(10:00:07). A read arriving for the very key of an edited estimate replaces it at ingest
(``collector.store``); one 7 s after it left the edit standing, and VEE judged the meter's read
against the person's guess: 100.820 after an edit of 100.825 a ``bad_read``, after 100.805 a
``register_backwards`` that left the bill line without consumption, though the meter's reads gave
exactly 0.120 m³. A round now deletes (``reading_history`` keeps it) each edited estimate whose
history holds no actual and which has an actual read of its meter within half the meter's interval
(the read stands for the same slot; half, as a read at 09:00:07 is the 09:00 slot's, not 10:00's),
and estimates the gap again around the read. An edit of the meter's own read, or a substitution,
stays.
"""

from __future__ import annotations

import numpy as np

from collector.vee.series import F64, B, Series


def edits_giving_way(series: Series, interval_s: F64) -> B:
    """The edited estimates of ``series`` with an actual read of the same meter within half the
    meter's interval (``interval_s``, per meter code) before or after them."""
    n = len(series)
    giving_way = np.zeros(n, bool)
    edits = np.flatnonzero(series.edited_estimate)
    if not len(edits):
        return giving_way
    half = interval_s[series.meter[edits]] / 2
    for step in (-1, 1):
        other = edits + step
        valid = (other >= 0) & (other < n)
        other = np.clip(other, 0, n - 1)
        giving_way[edits] |= (
            valid
            & (series.meter[other] == series.meter[edits])
            & (series.quality[other] == "actual")
            & (np.abs(series.ts[other] - series.ts[edits]) < half)
        )
    return giving_way
