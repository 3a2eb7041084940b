"""A burst on top of a leak: its rate measured above the meter's usual flow without the leak.

A burst's rate is its excess over the meter's usual flow at that time of day, the median of the
previous ``burst_history_days`` days (:mod:`burst`). A leak already flowing on more than half of
those days is in that median, so the burst's rate left the leak's out; a younger leak is not, and
the burst's rate held it. Billing counts the water of a meter's alerts at each moment at the largest
rate flowing (``server.billing.service.leak_water_m3``), which is right only when a burst's rate
holds the leak under it: a burst on a 20 L/h leak begun 20 days before lost the leak's 20 L/h for
every hour of the burst. Here a burst overlapping a leak that began before it is measured again
against the usual flow with the leak's own flow taken out, so its rate is everything above the
meter's ordinary use whatever the leak's age (on a young leak, the same as before).
"""

from __future__ import annotations

import numpy as np

from collector.detection.alerts import Alert
from collector.detection.common import Clock, usual_flow_at_same_time
from collector.detection.config import DetectionConfig
from collector.detection.flows import Flows
from collector.detection.series import SeriesBlock


def _leak_flow(leak: Alert, clock: Clock, t: int) -> np.ndarray:
    """(T,): the leak's own flow in each interval (column j: from column j-1's read to j's), its rate
    over the share of the interval it ran."""
    ends = clock.seconds.astype(np.float64)
    starts = np.r_[ends[0], ends[:-1]]
    lo = leak.start.timestamp()
    hi = (leak.ended_at or leak.last_seen).timestamp()
    ran = np.clip(np.minimum(ends, hi) - np.maximum(starts, lo), 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(ends > starts, ran / (ends - starts), 0.0)
    return leak.rate_l_h * share[:t]


def leak_held_in_usual(burst: Alert, leak: Alert, block: SeriesBlock, flows: Flows, row: int, days: int) -> float:
    """How much of the leak's flow (L/h) the usual flow under the burst held: the leak's own flow
    taken as the usual is (the median at each of the burst's times of day over the days before, on
    the days the meter's flow is known), its median over the burst's intervals. The leak's rate when
    it flowed on more than half of those days, 0 on fewer (the ordinary use's ups and downs are left
    out: taking the leak out of the meter's flow and its median again moves a daytime median by what
    the use does, 12 L/h on a 20 L/h leak of 5 of 14 days)."""
    clock = Clock.of(block)
    t = block.n_intervals
    # the intervals it flowed in: from the first read after its start to the first at or after its end
    first = min(int(np.searchsorted(clock.seconds, int(burst.start.timestamp()), side="right")), t - 1)
    last = min(clock.column(burst.ended_at or burst.last_seen), t - 1)
    span = np.arange(first, last + 1)
    own = np.where(np.isnan(flows.flow_l_h[row]), np.nan, _leak_flow(leak, clock, t))
    held = usual_flow_at_same_time(own, flows.spread[row], span, clock, days)
    held = held[~np.isnan(held)]
    return float(np.clip(np.median(held), 0.0, leak.rate_l_h)) if held.size else 0.0


def bursts_above_leak_free_use(
    bursts: list[Alert], leaks: list[Alert], block: SeriesBlock, flows: Flows, config: DetectionConfig
) -> list[Alert]:
    """Each burst that overlaps a leak begun before it on the same meter, with the share of the leak
    its usual flow held added to its rate (and its volume, the rate over its span): its rate is then
    all the meter carried above its ordinary use while it ran, a leak under it included, as it is for
    a burst on a leak too young to be in the usual flow. Other alerts unchanged."""
    if not bursts or not leaks:
        return bursts
    row_of = {m: i for i, m in enumerate(block.meter_ids.tolist())}
    out = []
    for burst in bursts:
        under = [
            leak
            for leak in leaks
            if leak.meter_id == burst.meter_id and leak.start < burst.start and leak.overlaps(burst)
        ]
        held = sum(
            leak_held_in_usual(burst, leak, block, flows, row_of[burst.meter_id], config.burst_history_days)
            for leak in under
        )
        if held > 0.0:
            rate = burst.rate_l_h + held
            burst = burst.replace(rate_l_h=rate, volume_l=burst.volume_l * rate / burst.rate_l_h)
        out.append(burst)
    return out
