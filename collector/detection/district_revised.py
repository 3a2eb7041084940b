"""Main bursts' volumes revised once households away are known to have been away.

A customer register still for ``dma_stalled_days`` is estimated in the DMA balance at its usual use
(:func:`collector.detection.balance.customer_flow_parts`): a stuck meter's customer still draws
water through the inlet. Most such registers are households away, who draw nothing: their estimate
is water nobody drew, taken out of the balance. Households away in the two weeks before a main
burst lower the baseline it is measured from (its volume reads high), and ones away during it lower
the burst itself (it reads low): on seeds 11–16 and 21–26, 22 of 323 main bursts were more than 10%
off in volume, and with the estimates zeroed over the days the simulator sends each household away
(an oracle) 10 of them came within 10%.

When a register stalls, the balance cannot yet tell the two apart (a household's 12 L/h
against the 4–5 L/h noise of two days' balance: see README). What does tell them apart is later
data: a household back home moves its register again, while a stuck register stays stuck until the
meter is exchanged. So detection keeps the estimates (it is causal: an alert at ``t`` uses reads up
to ``t``), and each main burst's rate and volume are measured again on the balance without the
estimates of stalled runs that ended with the register moving again, as known by the block's last
read (the alert's volume is revised as later runs update it, as a volume always is). A burst
measured again takes the revision only where the same burst (same DMA, start and end within an
interval) is found, and its rate moved by no more than the most the estimates taken out lowered the
balance over its baseline's days and its own: a larger change is another measurement (the nest of
overlapping bursts cut differently), not this correction. A stuck register that frees itself
would be taken for a household back home (the simulated fleets' never do; an exchanged meter's
register falls, which is no move).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from collector.detection.alerts import Alert
from collector.detection.balance import DmaBalance
from collector.detection.common import Clock
from collector.detection.config import DetectionConfig
from collector.detection.flows import Flows


def resumed_stalled_cells(
    flows: Flows, quiet: np.ndarray, estimated: np.ndarray, config: DetectionConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, estimates): the stalled cells (still for more than ``dma_stalled_days``, so
    estimated) of still runs that ended with the register moving again (a read showing it moved,
    not one missing), and their estimates."""
    window = round(config.dma_stalled_days * 24.0 / flows.interval_h)
    some = np.flatnonzero(quiet.max(axis=1, initial=0) > window)  # a few meters in a hundred
    sub, cols = np.nonzero(quiet[some] > window)
    if sub.size == 0:
        return sub, cols, np.zeros(0)
    t = flows.flow_l_h.shape[1]
    still = flows.take(some).still()
    # the first column at or after each column where the register is not known still
    stop = np.where(~still, np.arange(t), t)
    stop = np.minimum.accumulate(stop[:, ::-1], axis=1)[:, ::-1]
    ends = stop[sub, cols]
    moved = ~np.isnan(flows.flow_l_h[some]) & ~still  # NaN is not still, and no sign of moving either
    resumed = np.zeros(sub.size, dtype=bool)
    inside = ends < t
    resumed[inside] = moved[sub[inside], ends[inside]]
    rows = some[sub[resumed]]
    return rows, cols[resumed], estimated[rows, cols[resumed]]


def revised_volumes(
    alerts: list[Alert],
    remeasured: list[Alert],
    taken_l_h: np.ndarray,
    dma_row: dict[str, int],
    clock: Clock,
    per_day: int,
    config: DetectionConfig,
) -> list[Alert]:
    """``alerts`` (main bursts) with the rate and volume of their counterpart in ``remeasured``
    (the same detector on the balance with ``taken_l_h`` (D, T) put back) where that is the same
    burst and moved by no more than ``taken_l_h`` does over the burst and its baseline's days."""
    out = []
    for alert in alerts:
        d = dma_row[str(alert.dma)]
        first = clock.column(alert.start)
        last = clock.column(alert.ended_at or alert.last_seen)
        span = taken_l_h[d, max(first - config.dma_baseline_days * per_day, 0) : last + 1]
        bound = float(span.max()) if span.size else 0.0
        twin = _same_burst(alert, remeasured, clock.interval_s)
        if twin is None or bound <= 0.0 or abs(twin.rate_l_h - alert.rate_l_h) > bound:
            out.append(alert)
            continue
        out.append(alert.replace(rate_l_h=twin.rate_l_h, volume_l=twin.volume_l))
    return out


def _same_burst(alert: Alert, remeasured: list[Alert], interval_s: int) -> Alert | None:
    """The alert of ``remeasured`` in the same DMA that starts and ends within an interval of
    ``alert`` (both open, or both ended), if one does."""
    for other in remeasured:
        if other.dma != alert.dma or abs((other.start - alert.start).total_seconds()) > interval_s:
            continue
        if (other.ended_at is None) != (alert.ended_at is None):
            continue
        ends = (other.ended_at, alert.ended_at)
        if ends[0] is not None and ends[1] is not None and abs((ends[0] - ends[1]).total_seconds()) > interval_s:
            continue
        return other
    return None


def dmas_to_measure_again(alerts: list[Alert], taken_l_h: np.ndarray, dma_row: dict[str, int]) -> np.ndarray:
    """The DMA rows with a main burst and estimates taken out: the only ones measured again."""
    with_alert = np.zeros(taken_l_h.shape[0], dtype=bool)
    with_alert[[dma_row[str(a.dma)] for a in alerts]] = True
    return np.flatnonzero(with_alert & taken_l_h.any(axis=1))


def balance_without(balance: DmaBalance, rows: np.ndarray, taken_l_h: np.ndarray) -> DmaBalance:
    """The balance of DMA ``rows`` alone, with ``taken_l_h`` (D, T) taken out of the customers'
    estimated flow."""
    return replace(
        balance,
        dmas=balance.dmas[rows],
        inlet_l_h=balance.inlet_l_h[rows],
        customers_l_h=balance.customers_l_h[rows] - taken_l_h[rows],
        estimated_l_h=balance.estimated_l_h[rows] - taken_l_h[rows],
        known_idx=balance.known_idx[rows],
        n_customers=balance.n_customers[rows],
        still_l_h=balance.still_l_h[rows],
        unread=tuple(balance.unread[i] for i in rows.tolist()) if balance.unread else (),
    )
