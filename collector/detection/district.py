"""Main bursts: steps up in a district metered area's balance (:mod:`collector.detection.balance`).

A main burst is a step up in the balance. The baseline is a low quantile (``dma_baseline_quantile``)
of the balance at each time of day over the previous ``dma_baseline_days`` (it carries the
night-time swell of pressure-driven leakage and the diurnal shape of apparent losses); the excess
over it is averaged over several windows, and a window whose mean is ``dma_z`` times its own recent
noise (at that time of day, where that is larger), and at least ``dma_min_fraction`` of the inlet's
mean flow, raises the alert. Short windows catch large bursts within an interval, long windows small
ones within a day. Once a burst of days is over, the days after are measured on the balance without
its flow (:class:`.district_long.LongBursts`): it would lift their history for two weeks; so are the days after
the repair of one running since the data began (:func:`.district_long._since_the_start`). A customer register that
stood still for hours may be hiding its customer's use from the balance (a shop's register stuck at
closing time shows up the next morning as a step of the shop's use): where what one such register
may hide is at least half a step, it is taken as explained
(:func:`collector.detection.balance.still_register_flow`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from collector.detection.alerts import Alert
from collector.detection.balance import DmaBalance
from collector.detection.common import (
    Clock,
    confidence,
)
from collector.detection.config import DetectionConfig
from collector.detection.district_bars import Bars, smallest_main_burst_by_day
from collector.detection.district_long import LongBursts
from collector.detection.district_overlap import LaterSteps, Nest
from collector.detection.district_steps import NO_FLOW_L_H, QUIET_RUN, SHORT_END, rolling_median, step_start
from collector.detection.flows import DayLayout


def detect_dma_bursts(balance: DmaBalance, config: DetectionConfig) -> list[Alert]:
    """Main bursts: steps up in each DMA's balance over the bars (:class:`Bars`), measured on
    the days after a burst of days without its flow (:class:`.district_long.LongBursts`)."""
    config = config.with_dma_windows_for(balance.interval_s)
    losses = balance.losses_l_h
    layout = DayLayout.of_grid(balance.timestamps, balance.interval_s, balance.day_offset_s)
    floor = smallest_main_burst_by_day(balance.inlet_l_h, layout, config)[:, layout.day_of_columns()]
    bars = Bars.of(balance, layout, floor, config)
    long_bursts = LongBursts.of(balance, bars, layout, floor, config)
    if long_bursts is not None:
        bars = Bars.of(balance, layout, floor, config, long_bursts.periods(layout.n_days))
    baseline_days, excess, means, sigmas = bars.baseline_days, bars.excess, bars.means, bars.sigmas
    z_score, triggered = bars.z_score, bars.triggered
    clock = Clock(balance.timestamps, balance.interval_s, balance.day_offset_s)
    alerts: list[Alert] = []
    rising = triggered.copy()
    rising[:, 1:] &= ~triggered[:, :-1]
    w2 = 6 if 6 in sigmas else min(sigmas)
    for d in range(losses.shape[0]):
        busy_until = -1
        quiet_from = 0  # the first column after the last episode found: no step begins before it
        pending = deque(np.flatnonzero(rising[d]).tolist())
        resumed_at = -1  # where the search resumed after a nest
        held = _Held.nothing(losses.shape[1])  # the last nest's bursts as measured
        while pending:
            j = pending.popleft()
            if j <= busy_until:
                continue  # the step that is already an open alert
            w_hit = min(w for w, hit_mean in means.items() if not np.isnan(hit_mean[d, j]))  # shortest
            first_rate = float(np.nanmedian(excess[d, max(0, j - w_hit + 1) : j + 1]))
            # where the search resumed after a nest (no rise of its own), the step may have begun
            # under the nest's bursts: it is searched for, and measured, with their flow taken out
            under = held.flow if j == resumed_at else np.zeros(losses.shape[1])
            not_before = held.latest_start + 1 if j == resumed_at else quiet_from
            start_col = step_start(excess[d] - under, j, first_rate, config, not_before)
            # after detection, measure against the baseline frozen at the day the step began
            frozen = baseline_days[d, layout.day_of(start_col)]
            after = losses[d] - frozen[(layout.offset + np.arange(losses.shape[1])) % layout.per_day] - under
            nest = Nest(balance, d, after, clock, config)
            busy_until = nest.add(j, start_col, first_rate, confidence(float(z_score[d, j]), config.dma_z))
            overall = rolling_median(after[None, :], w2)[0]
            rose = np.full_like(overall, np.nan)
            rose[w2:] = overall[w2:] - overall[:-w2]
            later = LaterSteps(
                rose=rose,
                hidden=rolling_median(balance.still_l_h[d : d + 1], w2)[0],
                need=np.maximum(floor[d], config.dma_z * sigmas[w2][d]),
                window=w2,
                not_before=j + 1,
                quiet_from=quiet_from,
            )
            scan = j + w2
            found: list[Alert] = []
            measured = 0  # episodes in the nest when it was last measured
            while True:
                busy_until = later.add_to(nest, scan, busy_until, config)
                if len(nest.found) == measured:
                    break  # nothing new where the search went on: the episodes as measured stand
                found, measured = nest.alerts(), len(nest.found)
                # the episodes as finally measured may run on past where the search took them to
                # end (one taken to end at another's repair, found running on once all were
                # measured): the search goes on to their end, with them holding their measured
                # rates there, so that a rise in that stretch is a burst of its own and their own
                # flow is not taken for one
                longer = nest.open_until
                if longer <= busy_until:
                    break
                nest.hold_measured(busy_until, longer)
                scan, busy_until = max(scan, busy_until), longer
            # an episode measured at no flow above the level before it (the step was another's:
            # a second inlet's flow, a burst the nest holds) is no burst: raised, it said 0.0 L/h;
            # nor is one over before it could be raised (:func:`_over_before_raised`)
            found = [a for a in found if a.rate_l_h > NO_FLOW_L_H and not _over_before_raised(a, balance.interval_s)]
            if j == resumed_at:
                found = _running_on(alerts, found, after, clock)
            alerts += found
            quiet_from = nest.last_end
            held = _Held.of(nest.spans, losses.shape[1])
            # still well above the baseline over the shortest window once these are over (the
            # longer ones still hold them): a burst began as the last was repaired, with no rise
            # of its own in ``triggered`` to start from; nor has a step while ``triggered`` stays
            # up (the longer windows holding a burst the nest took to have ended): the first
            # column the shortest window holds again, before the next rise
            until = next((c for c in pending if c > busy_until), losses.shape[1])
            again = np.flatnonzero(~np.isnan(means[min(means)][d, busy_until + 1 : until]))
            if again.size:
                resumed_at = busy_until + 1 + int(again[0])
                pending.appendleft(resumed_at)
    return alerts


def _over_before_raised(alert: Alert, interval_s: int) -> bool:
    """Whether the episode ended before its ``detected_at`` without the data up to then able to
    say so (its end is known only ``QUIET_RUN`` intervals on): they show the balance already back
    at its level inside an episode still open, measure it at no flow and drop it, so it is raised
    only from data after it (issue #6: detection is causal). Kept, the data cut at its
    ``detected_at`` did not raise it: seed 21's DMA017, 529 L/h from 01-11 03:00 ended 03:00 (an
    episode with no whole interval takes its trigger's rate), seed 29's DMA017 (184 L/h, a false
    one) and seed 28's DMA007 (4 L/h, a nest cut into pieces), each ended an hour before it. A burst
    raised late (its inlet's read late) and over well before is raised as it was: the data up to
    then hold its end."""
    if alert.ended_at is None or alert.ended_at >= alert.detected_at:
        return False
    return (alert.detected_at - alert.ended_at).total_seconds() < QUIET_RUN * interval_s


@dataclass(frozen=True)
class _Held:
    """The flow of a nest's bursts as finally measured, for the search that resumes after it.

    A burst smaller than a quarter of a running one (``dma_nested_share``) is not searched for
    under it; it is found once that one is repaired, the balance staying up. Its start was searched
    for only from that repair on (the larger burst's flow would have drawn the change point back
    to its own start), so a burst that began hours before was dated at the repair and its volume
    came out short by those hours (seeds 22 and 23: 357 L/h under 1,574 L/h, dated 10.6 hours
    late, volume 11% short; 409 L/h under 2,887 L/h, 22.7 hours late, 18% short). With the nest's
    measured flow taken out, the balance under it shows the smaller burst's own step."""

    flow: np.ndarray  # (T,) the bursts' rates over their spans
    latest_start: int  # the last of their start columns: a step found after them began after it

    @classmethod
    def nothing(cls, t: int) -> _Held:
        return cls(np.zeros(t), -1)

    @classmethod
    def of(cls, spans: Sequence[tuple[int, int, float]], t: int) -> _Held:
        flow = np.zeros(t)
        for start_col, end, rate in spans:
            if rate > NO_FLOW_L_H:
                flow[start_col + 1 : end] += rate
        return cls(flow, max(start_col for start_col, _, _ in spans))


def _running_on(alerts: list[Alert], found: list[Alert], after: np.ndarray, clock: Clock) -> list[Alert]:
    """``found`` (where the search resumed after a nest) less its first episode if that is an
    ended one of ``alerts`` running on, which is extended there instead: it begins within
    ``QUIET_RUN`` intervals of that one's end, in the same DMA, at half to twice its rate (the
    nest took a lull in its flow for its repair; as another alert it would be a second enquiry
    about one burst, and the first would say the flow stopped). Of several, the one that ended last.

    Not where the balance between them (``after``: over the level before the new one) was back at
    its level, not a lull: ``SHORT_END`` whole intervals in a row under a quarter of that one's
    rate. A lull leaves it under half the rate, nearer half than nothing; a repair at the level
    before. Taken for a lull, a burst repaired four hours before another of about its rate began
    was one alert over both, 164% over its volume, and the second was never raised (seed 27's 461
    and 444 L/h; seed 36's 1,389 and 2,198 L/h)."""
    if not found:
        return found
    on = min(found, key=lambda a: a.start)
    within_h = QUIET_RUN * clock.interval_s / 3600.0

    def gap_h(before: Alert) -> float:
        return float("inf") if before.ended_at is None else (on.start - before.ended_at).total_seconds() / 3600.0

    def back_at_level(before: Alert) -> bool:
        assert before.ended_at is not None  # within the gap: it ended
        between = after[clock.column(before.ended_at) + 1 : clock.column(on.start)]  # whole intervals
        with np.errstate(invalid="ignore"):
            low = between < 0.25 * before.rate_l_h  # NaN: unknown, no sign of either
        return between.size >= SHORT_END and bool(np.all(sliding_window_view(low, SHORT_END), axis=1).any())

    candidates = [
        i
        for i, before in enumerate(alerts)
        if before.dma == on.dma
        and 0.0 <= gap_h(before) <= within_h
        and before.rate_l_h > 0
        and 0.5 <= on.rate_l_h / before.rate_l_h <= 2.0
        and not back_at_level(before)
    ]
    if not candidates:
        return found
    i = min(candidates, key=lambda c: gap_h(alerts[c]))
    before = alerts[i]
    until = on.last_seen if on.ended_at is None else on.ended_at
    volume = before.volume_l + on.volume_l + gap_h(before) * 0.5 * (before.rate_l_h + on.rate_l_h)
    alerts[i] = before.replace(
        ended_at=on.ended_at,
        last_seen=on.last_seen,
        rate_l_h=volume / ((until - before.start).total_seconds() / 3600.0),
        volume_l=volume,
        evidence=before.evidence + on.evidence,
    )
    return [a for a in found if a is not on]
