"""What the register itself betrays: running backwards (reverse flow) or not moving at all (stuck).

Reverse flow: the register falls, by a little at a time (a fall large enough to be a reset, a new
meter or a rollover, is not counted; see :mod:`collector.detection.flows`). Once the backward
movement within ``reverse_window_h`` reaches ``reverse_min_l`` litres and ``reverse_min_steps``
register steps, it is an alert. A meter that keeps a backward-volume register (EN 13757-3's
"volume, backward", the reading's ``reverse_volume_m3``) shows the backward movement there, and
that register is read instead: a household drawing water in the same hour no longer hides it, so
its start and volume are known far better (the benchmark scores both ways). On the net register
alone, a first or last backward interval that carries the whole rate says the flow went on beyond
it, into the household's use next to it (see :func:`_hidden_by_use`); one that carries less says so
where the meter's own use at those times of day makes its shortfall likelier the household's use
than the flow's edge (see :func:`_ran_on_under_use`). A first backward read with none after it yet
is the rate's only measure, so it says neither (see :func:`_rate_a_floor`).

Stuck, by the register alone: the register has not changed for ``stuck_days`` on a meter that,
before it stopped, used at least ``stuck_min_daily_l`` a day. A house left empty looks the same on
its register, so for customer meters this is only where the search starts: the engine raises them
through :mod:`collector.detection.stuck`, which asks the DMA balance whether the water went on
flowing. :func:`detect_stuck` is the rule for inlet meters and the register-only baseline the
benchmark compares with. Such alerts resolve themselves when the register moves again, and their
rate is the use the meter stopped recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import Clock, confidence, flows_at_same_time, new_alert, use_density
from collector.detection.config import DetectionConfig
from collector.detection.flows import DayLayout, Flows, first_crossings, interval_flows, rolling_sum
from collector.detection.series import SeriesBlock


@dataclass(frozen=True)
class BackwardFlows:
    """The backward flow (L/h, positive) of the meters that show any, per interval: 0 where the
    register shows none, NaN where unknown."""

    rows: np.ndarray  # (K,) rows of the block
    net: np.ndarray  # (K,) bool: read on the net register (the meter keeps no backward register)
    flow_l_h: np.ndarray  # (K, T)
    known_idx: np.ndarray  # (K, T) column of the read that makes the value known


def backward_flows(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> BackwardFlows:
    """Where each meter shows water going back: its backward register where it keeps one
    (``block.reverse_m3``), which counts the backward flow whatever the household draws at other
    moments of the interval; otherwise its net register, which shows backward flow only in the
    intervals where it outweighs the household's use."""
    t = block.n_intervals
    keeps = np.zeros(block.n_meters, dtype=bool)
    if block.reverse_m3 is not None:
        keeps = ~np.isnan(block.reverse_m3).all(axis=1)
    half_step = 0.5 * flows.step_flow_l_h
    with np.errstate(invalid="ignore"):
        net_rows = np.flatnonzero(~keeps & (flows.flow_l_h < -half_step).any(axis=1))
    # only meters that ever ran backwards (a handful) go further
    net = flows.flow_l_h[net_rows]
    with np.errstate(invalid="ignore"):
        parts = [np.where(net < -half_step[net_rows], -net, np.where(np.isnan(net), np.nan, 0.0))]
    known = [flows.known_idx[net_rows]]
    rows = [net_rows]
    kept_rows = np.flatnonzero(keeps)
    if kept_rows.size and block.reverse_m3 is not None:
        # the backward register as a block of its own (its meters' alarms and net registers unneeded)
        backward = SeriesBlock(
            block.meter_ids[kept_rows], block.dma[kept_rows], block.role[kept_rows], block.timestamps,
            block.reverse_m3[kept_rows], day_offset_s=block.day_offset_s,
        )  # fmt: skip
        register = interval_flows(backward, config)
        with np.errstate(invalid="ignore"):
            moved = (register.flow_l_h > half_step[kept_rows]).any(axis=1)
            # a backward register that falls was reset (meter replaced): that interval shows nothing
            back = np.maximum(register.flow_l_h[moved], 0.0)
        parts.append(back)
        known.append(register.known_idx[moved])
        rows.append(kept_rows[moved])
    return BackwardFlows(
        rows=np.concatenate(rows),
        net=np.arange(sum(r.size for r in rows)) < net_rows.size,
        flow_l_h=np.concatenate(parts).reshape(-1, t),
        known_idx=np.concatenate(known).reshape(-1, t),
    )


def detect_reverse_flow(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    found = backward_flows(block, flows, config)
    if found.rows.size == 0:
        return []
    f = found.flow_l_h
    step_flow = flows.step_flow_l_h[found.rows]
    with np.errstate(invalid="ignore"):
        backwards = f > 0.5 * step_flow
    back_l = np.where(backwards, f * flows.interval_h, 0.0)
    window = max(1, round(config.reverse_window_h / flows.interval_h))
    in_window = rolling_sum(back_l, window)
    need = np.maximum(config.reverse_min_l, config.reverse_min_steps * flows.step_l[found.rows])[:, None]
    active = in_window >= need - 1e-9
    rows, cols = first_crossings(active)
    clock = Clock.of(block)
    t = block.n_intervals
    alerts = []
    for m, j in zip(rows.tolist(), cols.tolist(), strict=True):
        lo = max(0, j - window + 1)
        first = lo + int(np.flatnonzero(backwards[m, lo : j + 1])[0])
        # over once a read shows the window without enough backward flow: missing reads (NaN) show nothing
        quiet = np.flatnonzero(~active[m, j:] & ~np.isnan(f[m, j:]))
        end = j + int(quiet[0]) if quiet.size else t
        last_back = first + int(np.flatnonzero(backwards[m, first:end])[-1])
        rates = back_l[m, first : last_back + 1][backwards[m, first : last_back + 1]] / flows.interval_h
        row = int(found.rows[m])
        on_net = bool(found.net[m])
        rate = reverse_rate(rates, float(step_flow[m, 0]), net_register=on_net)
        share = float(np.clip(back_l[m, first] / (rate * flows.interval_h), 0.0, 1.0))
        start = clock.at(first, -share * block.interval_s)
        # a read after the last backward interval that shows the flow stopped in it (for now: the
        # alert stays open until the window is quiet) tells its last minutes
        stopped = end < t or _stopped_after(flows.flow_l_h[row], f[m], last_back, float(step_flow[m, 0]), on_net)
        flow_end = None
        if stopped:
            tail = float(np.clip(back_l[m, last_back] / (rate * flows.interval_h), 0.0, 1.0))
            flow_end = clock.at(last_back - 1, tail * block.interval_s) if last_back > first else clock.at(last_back)
        if on_net:
            step = float(step_flow[m, 0])
            f_row, spread_row = flows.flow_l_h[row], flows.spread[row]
            before, after = _hidden_by_use(f_row, spread_row, first, last_back, rate, step)
            if before and _rate_a_floor(f_row, found.known_idx[m], first, last_back):
                before = False  # the reads after it tell whether that interval was whole
            days = config.reverse_history_days
            before = before or _ran_on_under_use(f_row, spread_row, first, -1, rate, step, clock, days)
            after = after or _ran_on_under_use(f_row, spread_row, last_back, 1, rate, step, clock, days)
            if before:  # it began in the hour of use before: its middle is the best guess
                start = clock.at(first - 1, -0.5 * block.interval_s)
            if after:
                last_back += 1
                if flow_end is not None:
                    flow_end = clock.at(last_back - 1, 0.5 * block.interval_s)
        detected_at = clock.at(int(found.known_idx[m, j]))
        alerts.append(
            new_alert(
                AlertKind.REVERSE_FLOW,
                str(block.meter_ids[row]),
                str(block.dma[row]),
                start=start,
                detected_at=detected_at,
                last_seen=clock.at(last_back),
                ended_at=flow_end if end < t else None,
                rate_l_h=rate,
                # the household's own use hides some of it from the register: the rate, not the
                # backward movement, tells what went back
                volume_l=rate * clock.hours(start, flow_end or clock.at(last_back)),
                confidence=confidence(float(back_l[m, first : last_back + 1].sum()), float(need[m, 0])),
                evidence=((clock.at(max(first - 1, 0)), clock.at(last_back)),),
            )
        )
    return alerts


def _hidden_by_use(
    f: np.ndarray, spread: np.ndarray, first: int, last_back: int, rate: float, step_flow_l_h: float
) -> tuple[bool, bool]:
    """(whether the reverse flow began in the interval before ``first``, whether it went on into
    the one after ``last_back``), on the net register ``f`` (flows, L/h, negative backwards).

    The register falls only in the intervals where the flow outweighs the household's use, so a
    flow that begins or ends while the household draws more shows from or up to an interval
    carrying its whole rate. A first (last) backward interval within one and a half register
    steps of the rate is such a whole one where the interval before (after) it carried use: the
    flow began (ended) in that one or earlier (later). Only that neighbour is taken: further
    back the household's hours of use usually hold no reverse flow at all (taking the middle of
    the whole run of use, or fitting a step to each hour's excess over the meter's usual use at
    that time of day, each dated fewer flows within an hour than the register alone did, on the
    benchmark's tuning seeds)."""
    whole = rate - 1.5 * step_flow_l_h
    half = 0.5 * step_flow_l_h

    def in_use(j: int) -> bool:  # a flow seen forwards (NaN, a gap's average: not seen)
        return 0 <= j < f.size and not spread[j] and bool(f[j] > half)

    return bool(-f[first] >= whole and in_use(first - 1)), bool(-f[last_back] >= whole and in_use(last_back + 1))


def _rate_a_floor(f: np.ndarray, known_idx: np.ndarray, first: int, last_back: int) -> bool:
    """Whether a reverse flow's rate so far is only a floor: all its backward intervals known by
    one read (an interval, or a gap's spread over several) and no read after it yet, on the net
    register ``f`` (L/h, negative backwards). That read is then the first backward one as well as
    the rate's only measure, so it is whole by its own measure however it began; the next reads
    either show the flow at that rate (it was whole) or at a higher one (it began inside it). Until
    they come, the flow is dated from that read's intervals alone: taking it as whole put the
    start in the middle of the hour of use before, and the reads after moved it 1.0–1.5 h later
    (78 alerts of seeds 21–30 at their ``detected_at``)."""
    return bool(known_idx[first] == known_idx[last_back] and not np.isfinite(f[last_back + 1 :]).any())


#: The shares of an interval a flow may have taken, for its likelihood there (a uniform prior).
_SHARES = np.linspace(0.05, 1.0, 20)


def _ran_on_under_use(
    f: np.ndarray, spread: np.ndarray, edge: int, side: int, rate: float, step_flow_l_h: float, clock: Clock, days: int
) -> bool:
    """Whether a reverse flow whose first (``side`` -1) or last (+1) backward interval ``edge``
    carries less than its rate went on into the neighbouring interval of use, on the net register
    ``f`` (L/h, negative backwards).

    Such an edge is the flow beginning (ending) inside it, or the flow through all of it with the
    household drawing the shortfall, and then going on, hidden, into the neighbour that carried
    use. Two ways to explain the two intervals' use: none in the edge and the neighbour's as read,
    or the shortfall in the edge and the neighbour's flow plus some share of the rate (any share
    alike). The meter's own flows at those times of day on the ``days`` days before tell which is
    likelier (:func:`~collector.detection.common.use_density`): a household idle at that hour ended
    its flow in the edge; one that usually draws about the shortfall there hid the flow's edge under
    its use. Before, such an edge was always where the flow began (ended), and a flow that ran on
    under the household's use was read short (over seeds 21–44, 101 of the 350 such last intervals
    next to use had the flow run on).
    """
    neighbour = edge + side
    back = -float(f[edge])
    if not 0 <= neighbour < f.size or spread[neighbour] or spread[edge] or not f[neighbour] > 0.5 * step_flow_l_h:
        return False
    if back >= rate - 1.5 * step_flow_l_h:  # a whole interval: see _hidden_by_use
        return False
    past, _ = flows_at_same_time(f, spread, np.array([edge, neighbour]), clock, days)
    if past is None:
        return False
    seen = float(f[neighbour])
    shortfall = use_density(past[0], np.array([rate - back, 0.0]), step_flow_l_h)
    ran_on = use_density(np.broadcast_to(past[1], (_SHARES.size, past.shape[1])), seen + rate * _SHARES, step_flow_l_h)
    as_read = use_density(past[1], np.array(seen), step_flow_l_h)
    evidence = np.log(shortfall[0] / shortfall[1]) + np.log(ran_on.mean() / as_read)
    return bool(evidence > 0.0)


def reverse_rate(rates: np.ndarray, step_flow_l_h: float, *, net_register: bool = False) -> float:
    """The rate (L/h) of water going back through a meter, from the flows of the intervals in
    which its register fell (``rates``, as positive numbers, in order).

    The household's own use at the same time takes away from an interval's backward flow and
    never adds to it, so the rate is the level of the highest intervals, not their median: the
    mean of those within one and a half register steps of the highest (an exact rate shows as
    the steps just below and above it). The first and last intervals usually hold only part of
    the flow: with no others, the larger of them is the best there is. On the net register they
    count among the rest (``net_register``): a partial one is lower and left out anyway, and the
    first or last may be the one whole interval the household's use left clear (a flow that
    began and ended in hours of use, one clear hour between them, read at the lower of two
    partial ones).
    """
    if rates.size < 3:
        return float(rates.max())
    inner = rates if net_register else rates[1:-1]
    top = inner[inner >= inner.max() - 1.5 * step_flow_l_h]
    return float(top.mean())


def detect_stuck(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    f = flows.flow_l_h
    still = flows.still()
    window = max(1, round(config.stuck_days * 24.0 / flows.interval_h))
    if window > f.shape[1] - 1:
        return []
    # a stuck meter has whole days without movement in a row: keep only meters that do (cheap)
    layout = DayLayout.of(block)
    whole_days = window // layout.per_day - 1
    if whole_days >= 1:
        idle_day: np.ndarray = np.asarray(layout.to_days(still, fill=True).all(axis=2))
        streak = idle_day[:, : idle_day.shape[1] - whole_days + 1].copy()
        for k in range(1, whole_days):
            streak &= idle_day[:, k : idle_day.shape[1] - whole_days + 1 + k]
        keep = np.flatnonzero(streak.any(axis=1))
        if keep.size == 0:
            return []
        if keep.size < f.shape[0]:
            sub = block.take(keep)
            part = Flows(
                f[keep],
                flows.spread[keep],
                flows.known_idx[keep],
                flows.reset[keep],
                flows.step_l[keep],
                flows.interval_h,
            )
            return detect_stuck_rows(sub, part, still[keep], window, config)
    return detect_stuck_rows(block, flows, still, window, config)


def detect_stuck_rows(
    block: SeriesBlock, flows: Flows, still: np.ndarray, window: int, config: DetectionConfig
) -> list[Alert]:
    f = flows.flow_l_h
    # stuck at j: every one of the last ``window`` intervals known and still
    run = np.cumsum(still, axis=1, dtype=np.int32)
    stuck = np.zeros(f.shape, dtype=bool)
    np.greater_equal(run[:, window:] - run[:, :-window], window, out=stuck[:, window:])
    rows, cols = first_crossings(stuck)
    if rows.size == 0:
        return []
    clock = Clock.of(block)
    t = block.n_intervals
    history = round(config.stuck_history_days * 24.0 / flows.interval_h)
    alerts = []
    for m, j in zip(rows.tolist(), cols.tolist(), strict=True):
        moving_before = np.flatnonzero(~still[m, : j + 1])
        stop = int(moving_before[-1]) + 1 if moving_before.size else 0  # first still interval
        # "a history of use": what the meter recorded in the days before it stopped
        past = f[m, max(0, stop - history) : stop]
        seen_h = float(np.count_nonzero(~np.isnan(past))) * flows.interval_h
        if seen_h < config.stuck_min_history_days * 24.0:
            continue
        rate = float(np.nansum(past)) * flows.interval_h / seen_h
        if rate * 24.0 < config.stuck_min_daily_l:
            continue
        moved = np.flatnonzero(~still[m, j:])
        end = j + int(moved[0]) if moved.size else t
        restarted = end < t and not np.isnan(f[m, end])
        start = clock.at(max(stop - 1, 0))
        last_seen = clock.at(end - 1)
        detected_at = clock.at(int(flows.known_idx[m, j]))
        stalled_h = clock.hours(start, last_seen)
        alerts.append(
            new_alert(
                AlertKind.STUCK,
                str(block.meter_ids[m]),
                str(block.dma[m]),
                start=start,
                detected_at=detected_at,
                last_seen=last_seen,
                ended_at=clock.at(end) if restarted else None,
                rate_l_h=rate,
                volume_l=rate * stalled_h,
                confidence=confidence(stalled_h, config.stuck_days * 24.0),
                evidence=((start, detected_at),),
            )
        )
    return alerts


def _stopped_after(net: np.ndarray, back: np.ndarray, last_back: int, step_flow_l_h: float, on_net: bool) -> bool:
    """Whether a read after the last backward interval shows the flow stopped: on a backward
    register any read does (it counts the flow whatever the household draws); on the net register
    only a still one, since an hour of use may hold the flow on under it."""
    if not on_net:
        return bool((~np.isnan(back[last_back + 1 :])).any())
    with np.errstate(invalid="ignore"):
        return bool((np.abs(net[last_back + 1 :]) < 0.5 * step_flow_l_h).any())
