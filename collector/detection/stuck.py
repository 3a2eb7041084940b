"""A stuck register, told from a house left empty by the district balance.

On its register alone a stuck meter and a household away on holiday look the same: the register
stops moving. What differs is the water. A stuck register stops counting, but the water still flows
through the pipe, through the DMA's inlet meter, into a household that keeps using it; so from the
day the register stopped, the DMA's unaccounted flow (inlet minus the sum of what the customers'
meters recorded, see :mod:`collector.detection.district`) rises by about that household's usual use.
A household on holiday takes its use out of both sides of the balance: the balance does not move.
(The simulated fleets model it so: a stuck meter's register freezes while its true use still
reaches the inlet, :mod:`simulators.fleet`; a holiday removes the use itself.)

So a register still for ``stuck_days`` is a *candidate*, raised as stuck at once only where the
balance confirms it:

* The balance here is the raw one: customers' registers as they are (a still register counts
  zero), missing reads filled with the true average over the gap once its closing read is known
  (days later, it always is), otherwise estimated. Its daily means carry no daily pressure curve
  and little of the hour-to-hour noise of gap averages: a day is the unit.
* Around the day the register stopped (``stuck_balance_days`` each side, as far as the days are
  wholly known at the check; days a main burst raised by then ran on are left out), the daily
  balance is fitted by least squares as a level plus δ × the meter's usual daily use while still
  (its mean flow per time of day, and per weekday / Saturday / Sunday, over the
  ``stuck_history_days`` before it stopped).
* Holidays begin every day in a DMA of hundreds of houses, and now and then another register
  sticks: other still registers of the DMA (still at least ``dma_stalled_days``, of meters using
  at least ``stuck_min_daily_l``) whose stillness begins or ends in the window compete with the
  candidate: the registers are added to the fit one at a time, the one that explains most of what
  is left first, while one explains a step of ``stuck_min_share``–``stuck_max_share`` of its own
  use at least ``stuck_z`` noise deviations clear (at most ``stuck_max_explained``). A candidate
  passed over for others has no evidence: the step is theirs (a holiday that began the day before
  another register stuck explains that step less well than the stuck one). Where no register
  stands out, the candidate is fitted first and the others after it. So another stuck register
  stopping a day or two apart takes its own step, and a holiday beside a stuck register neither
  hides it nor takes its step. Two registers stopping the same day cannot be told apart: one whose
  stillness steps on the candidate's days (``stuck_twin_correlation``) and which alone would explain
  the step is fitted beside it whatever the selection, so the standard error grows and neither is
  confirmed; both wait for ``stuck_unconfirmed_days``.
* The noise is the balance's own day-to-day spread (successive days' differences, robustly), or
  the fit's residuals if larger. The evidence is the log-likelihood ratio of δ = 1 (the use went on
  unrecorded) against δ = 0 (nobody home): ``(2δ - 1) / (2 se²)`` nats; ``stuck_evidence_nats``
  confirms. A δ far beyond the meter's use (above ``stuck_max_share``) is no evidence. A quiet
  balance confirms households using a few hundred litres a day; a noisy one (a large DMA, other
  unrecorded use varying from day to day) confirms only large users, or nobody.

Where the balance cannot confirm a candidate — no inlet in its DMA, too few whole days known, a
noisy or disturbed balance, a household away when its register stuck, a house simply empty — the
register alone decides, but only after ``stuck_unconfirmed_days`` (longer than most holidays), with a
confidence below one half. A register still for that long deserves a visit whatever the balance
says, and one whose household comes back moves again first.

Causal: the check at the column where the register has been still for ``stuck_days`` uses the
balance of the days wholly known by then (every customer's and the inlet's read in), the other
registers' still runs as known by then, and the main bursts raised by then.

The simulated fleets' network leakage follows a fixed daily pressure curve, so their balance is
steadier than a real DMA's; the test takes its noise from the data, so on a real network it
confirms fewer candidates and leaves more to the longer wait. Their stuck meters (half a percent of
meters in the benchmark, far more than real fleets have) often stop within days of each other in
the same DMA, which is what limits the benchmark's recall and precision here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from collector.detection.alerts import Alert, AlertKind
from collector.detection.common import Clock, confidence, new_alert
from collector.detection.config import DetectionConfig
from collector.detection.flows import DayLayout, Flows
from collector.detection.series import SeriesBlock


@dataclass(frozen=True)
class StillRuns:
    """Runs of a customer register standing still for at least ``dma_stalled_days`` (or
    ``stuck_days``, if shorter).

    ``row`` indexes the block's meters; ``start`` is the first still interval, ``end`` the first
    interval after the run (T: still at the last read); ``profile`` (R, per_day) the meter's mean
    flow per time of day (L/h) over the ``stuck_history_days`` before the run, ``weekday`` (R, 7)
    each day of the week's use against that mean (Monday first; weekdays pooled), and ``seen_h``
    the hours of reads it rests on. The candidates, still for ``stuck_days``, have reached that at
    column ``crossing`` (-1 for the others).
    """

    row: np.ndarray  # (R,) int
    start: np.ndarray  # (R,) int
    end: np.ndarray  # (R,) int
    profile: np.ndarray  # (R, per_day) float
    weekday: np.ndarray  # (R, 7) each day of the week's use against the mean (Monday first)
    seen_h: np.ndarray  # (R,) float
    crossing: np.ndarray  # (R,) int

    @classmethod
    def empty(cls, per_day: int) -> StillRuns:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, np.zeros((0, per_day)), np.zeros((0, 7)), np.zeros(0), z)

    def shifted(self, rows: np.ndarray) -> StillRuns:
        """The same runs with ``row`` mapped through ``rows`` (chunk rows → block rows)."""
        return StillRuns(rows[self.row], self.start, self.end, self.profile, self.weekday, self.seen_h, self.crossing)

    @staticmethod
    def concat(parts: Sequence[StillRuns], per_day: int) -> StillRuns:
        if not parts:
            return StillRuns.empty(per_day)
        return StillRuns(
            np.concatenate([p.row for p in parts]),
            np.concatenate([p.start for p in parts]),
            np.concatenate([p.end for p in parts]),
            np.concatenate([p.profile for p in parts]),
            np.concatenate([p.weekday for p in parts]),
            np.concatenate([p.seen_h for p in parts]),
            np.concatenate([p.crossing for p in parts]),
        )


def still_runs(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> StillRuns:
    """Every run of a still register at least ``dma_stalled_days`` long, with the meter's usual use
    before it (a few per meter and month at most: holidays, stuck registers, empty houses)."""
    f = flows.flow_l_h
    layout = DayLayout.of(block)
    per_day = layout.per_day
    shortest = max(1, round(min(config.dma_stalled_days, config.stuck_days) * 24.0 / flows.interval_h))
    if f.shape[1] <= shortest:
        return StillRuns.empty(per_day)
    still = flows.still()
    if shortest >= 2 * per_day - 1:
        # a run that long holds a whole still day: only meters with one go further (cheap)
        idle_day = np.asarray(layout.to_days(still, fill=True).all(axis=2))
        keep = np.flatnonzero(idle_day.any(axis=1))
    else:
        keep = np.flatnonzero(still.any(axis=1))
    if keep.size == 0:
        return StillRuns.empty(per_day)
    sub = still[keep]
    edges = np.diff(sub.astype(np.int8), axis=1, prepend=0, append=0)
    r_start, c_start = np.nonzero(edges == 1)
    _, c_end = np.nonzero(edges == -1)  # row-major: starts and ends pair up in order
    long = (c_end - c_start) >= shortest
    rows, start, end = keep[r_start[long]], c_start[long], c_end[long]
    # the meter's usual flow per time of day over the days before the run (reads actually seen)
    history = round(config.stuck_history_days * 24.0 / flows.interval_h)
    history -= history % per_day
    history = max(history, per_day)
    offsets = np.arange(-history, 0)
    cols = start[:, None] + offsets[None, :]
    valid = cols >= 0
    past = f[rows[:, None], np.maximum(cols, 0)]
    past = np.where(valid & ~flows.spread[rows[:, None], np.maximum(cols, 0)], past, np.nan)
    ok = ~np.isnan(past)
    slot = (layout.offset + cols) % per_day
    r_idx = np.broadcast_to(np.arange(rows.size)[:, None], cols.shape)
    cell = (r_idx * per_day + slot)[ok]
    total = np.bincount(cell, past[ok], rows.size * per_day).reshape(rows.size, per_day).astype(np.float64)
    count = np.bincount(cell, None, rows.size * per_day).reshape(rows.size, per_day).astype(np.float64)
    profile = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    # slots never seen take the meter's mean, so the profile still sums to its daily use
    mean = np.divide(total.sum(axis=1), count.sum(axis=1), out=np.zeros(rows.size), where=count.sum(axis=1) > 0)
    profile = np.where(count > 0, profile, mean[:, None])
    # … and per day of the week (a shop closed on Sundays leaves nothing unrecorded on Sundays)
    dow = layout.day_of_week(block.timestamps)[(layout.offset + np.maximum(cols, 0)) // per_day]
    cell = (r_idx * 7 + dow)[ok]
    by_dow = np.bincount(cell, past[ok], rows.size * 7).reshape(rows.size, 7).astype(np.float64)
    dow_n = np.bincount(cell, None, rows.size * 7).reshape(rows.size, 7).astype(np.float64)
    # weekdays pooled (two weeks hold only two of each): Monday–Friday, Saturday, Sunday
    kinds = np.array([0, 0, 0, 0, 0, 1, 2])
    by_kind = np.stack([by_dow[:, kinds == k].sum(axis=1) for k in range(3)], axis=1)
    kind_n = np.stack([dow_n[:, kinds == k].sum(axis=1) for k in range(3)], axis=1)
    kind_mean = np.divide(by_kind, kind_n, out=np.zeros_like(by_kind), where=kind_n > 0)
    weekday = np.where(kind_n > 0, kind_mean / np.maximum(mean, 1e-9)[:, None], 1.0)[:, kinds]
    seen_h = ok.sum(axis=1) * flows.interval_h
    window = max(1, round(config.stuck_days * 24.0 / flows.interval_h))
    crossing = np.where(end - start >= window, start + window - 1, -1)
    return StillRuns(rows, start, end, profile, weekday, seen_h, crossing)


@dataclass(frozen=True)
class Balance:
    """What the stuck check needs of the district balance (one row per DMA)."""

    dma_names: np.ndarray  # (D,) str
    residual_l_h: np.ndarray  # (D, T) inlet minus the customers' registers as they are; NaN unknown
    known_idx: np.ndarray  # (D, T) the column by which each value was known
    daily_l_h: np.ndarray  # (D, days) its mean over each whole day (NaN: a day not wholly known)
    has_inlet: np.ndarray  # (D,) bool
    bursts: Sequence[Alert]  # the DMA bursts raised, any DMA


def detect_stuck_confirmed(
    block: SeriesBlock,
    runs: StillRuns,
    dma_code: np.ndarray,
    balance: Balance,
    config: DetectionConfig,
) -> list[Alert]:
    """Stuck alerts for the candidate runs of ``runs`` (rows index ``block``'s meters, whose DMA is
    ``balance.dma_names[dma_code[row]]``): at ``stuck_days`` where the balance confirms them, at
    ``stuck_unconfirmed_days`` elsewhere."""
    t = block.n_intervals
    interval_h = block.interval_s / 3600.0
    clock = Clock.of(block)
    layout = DayLayout.of(block)
    ctx = _Context.of(block, runs, dma_code, balance, layout, clock)
    long_window = max(1, round(config.stuck_unconfirmed_days * 24.0 / interval_h))
    alerts = []
    for i in np.flatnonzero(runs.crossing >= 0).tolist():
        row, stop, end, j = int(runs.row[i]), int(runs.start[i]), int(runs.end[i]), int(runs.crossing[i])
        profile = runs.profile[i]
        # "a history of use": what the meter recorded in the days before it stopped
        if runs.seen_h[i] < config.stuck_min_history_days * 24.0:
            continue
        rate = float(profile.mean())
        if rate * 24.0 < config.stuck_min_daily_l:
            continue
        code = int(dma_code[row])
        share, se = _balance_share(i, runs, ctx, code, j, config)
        nats = _evidence(share, se, config) if share is not None and se is not None else 0.0
        confirmed = nats >= config.stuck_evidence_nats
        if confirmed:
            at = j
            conf = confidence(nats, config.stuck_evidence_nats)
        else:
            at = stop + long_window - 1
            if at >= end or at >= t:
                continue  # moved again (or the data end) before the register alone could tell
            conf = 0.5 * confidence(float(at - stop + 1), float(long_window))
        restarted = end < t and not np.isnan(block.volume_m3[row, end])
        start = clock.at(max(stop - 1, 0))
        last_seen = clock.at(end - 1)
        later = np.flatnonzero(~np.isnan(block.volume_m3[row, at:]))  # the read that shows column ``at``
        detected_at = clock.at(at + int(later[0]) if later.size else t - 1)
        stalled_h = clock.hours(start, last_seen)
        alerts.append(
            new_alert(
                AlertKind.STUCK,
                str(block.meter_ids[row]),
                str(block.dma[row]),
                start=start,
                detected_at=detected_at,
                last_seen=last_seen,
                ended_at=clock.at(end) if restarted else None,
                rate_l_h=rate * (share if confirmed and share is not None else 1.0),
                volume_l=rate * (share if confirmed and share is not None else 1.0) * stalled_h,
                confidence=conf,
                evidence=((start, detected_at),),
            )
        )
    return alerts


def _evidence(share: float, se: float, config: DetectionConfig) -> float:
    """Log-likelihood ratio (nats) of "stuck" (the balance rose by the meter's usual use, δ = 1)
    against "an empty house" (δ = 0), given δ's estimate and standard error: (2δ - 1) / (2 se²).
    A δ beyond ``stuck_max_share`` (a step far larger than the meter's use) is no evidence."""
    if share > config.stuck_max_share:
        return 0.0
    return (2.0 * share - 1.0) / (2.0 * se * se)


@dataclass(frozen=True)
class _Context:
    """What every candidate's check shares, computed once."""

    layout: DayLayout
    clock: Clock
    daily: np.ndarray  # (D, days) the balance's daily means
    day_known: np.ndarray  # (D, days) the column by which each whole day was known
    has_inlet: np.ndarray  # (D,)
    cover: np.ndarray  # (R, days) each run's usual daily use while still (L/h)
    rate: np.ndarray  # (R,) each run's meter's mean use (L/h)
    by_dma: dict[int, np.ndarray]  # DMA code → its runs
    bursts: dict[int, list[tuple[int, np.ndarray]]]  # DMA code → (column raised, share of each day run)

    @classmethod
    def of(
        cls,
        block: SeriesBlock,
        runs: StillRuns,
        dma_code: np.ndarray,
        balance: Balance,
        layout: DayLayout,
        clock: Clock,
    ) -> _Context:
        day_known = layout.to_days(balance.known_idx, fill=np.iinfo(np.int64).max).max(axis=2)
        codes = dma_code[runs.row]
        by_dma = {int(c): np.flatnonzero(codes == c) for c in np.unique(codes).tolist()}
        code_of = {str(name): k for k, name in enumerate(balance.dma_names.tolist())}
        bursts: dict[int, list[tuple[int, np.ndarray]]] = {}
        for b in balance.bursts:
            bursts.setdefault(code_of[b.dma], []).append((clock.column(b.detected_at), _burst_days(b, clock, layout)))
        cover = _daily_use(runs, np.arange(runs.row.size), layout, layout.day_of_week(block.timestamps))
        return cls(
            layout,
            clock,
            balance.daily_l_h,
            day_known,
            balance.has_inlet,
            cover,
            runs.profile.mean(axis=1),
            by_dma,
            bursts,
        )


def _balance_share(
    i: int, runs: StillRuns, ctx: _Context, code: int, j: int, config: DetectionConfig
) -> tuple[float | None, float | None]:
    """(δ, its standard error) of run ``i`` from the DMA's daily balance around its stop, as known
    at column ``j``; (None, None) where the balance cannot tell."""
    if not ctx.has_inlet[code]:
        return None, None
    layout = ctx.layout
    days = round(config.stuck_balance_days)
    d0 = layout.day_of(int(runs.start[i]))
    lo, hi = max(0, d0 - days), min(layout.n_days, d0 + days + 1)
    # whole days known by column j: every column read (inlet and customers) by then
    y = np.where(ctx.day_known[code, lo:hi] <= j, ctx.daily[code, lo:hi], np.nan)
    # days a main burst (raised by now) ran on are left out: its step would be anyone's
    for raised, on in ctx.bursts.get(code, []):
        if raised <= j:
            y[on[lo:hi] > 0] = np.nan
    ok = ~np.isnan(y)
    if (
        ok[: d0 - lo].sum() < config.stuck_min_days_each_side
        or ok[d0 - lo + 1 :].sum() < config.stuck_min_days_each_side
    ):
        return None, None
    yy = y[ok]
    mine = np.stack([ctx.cover[i, lo:hi][ok], np.ones(yy.size)], axis=1)  # the candidate, a level
    if np.ptp(mine[:, 0]) <= 0:
        return None, None
    # the balance's day-to-day noise: successive days' differences, robustly
    steps = np.diff(yy)
    noise = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / np.sqrt(2.0)
    noise = max(noise, config.stuck_min_noise_l_h)
    # most candidates are empty houses and the balance shows no step at all: no need to look further
    mx = mine[:, 0] - mine[:, 0].mean()
    alone = float(mx @ (yy - yy.mean())) / float(mx @ mx)
    if alone < 0.5 * config.stuck_min_share:
        return alone, noise / float(np.sqrt(mx @ mx))
    # the other registers of the DMA long enough still by now, of meters that use enough water to
    # move the balance, whose stillness changes inside the window
    same = ctx.by_dma[code]
    first_col, last_col = lo * layout.per_day - layout.offset, hi * layout.per_day - layout.offset
    start, end = runs.start[same], runs.end[same]
    lasted = np.minimum(end, j + 1) - start
    shortest = max(1, round(config.dma_stalled_days * layout.per_day))
    pool = (same != i) & (start <= j) & (start < last_col) & (end > first_col) & (lasted >= shortest)
    pool &= ctx.rate[same] * 24.0 >= config.stuck_min_daily_l
    others = ctx.cover[same[pool], lo:hi][:, ok].T
    if others.shape[1]:
        others = others[:, np.ptp(others, axis=0) > 0]
    # the candidate among the others, none put first: whichever registers explain the balance best
    # are taken, one at a time (a holiday that began the day before another register stuck explains
    # that step less well than the stuck one does); a candidate passed over for others has no
    # evidence, and where none stands out the candidate is fitted first, the others after it
    chosen = _forward_select(mine[:, 1:], np.hstack([mine[:, :1], others]), yy, noise, config)
    if chosen and 0 not in chosen:
        return 0.0, noise / float(np.sqrt(mx @ mx))
    alongside = [c - 1 for c in chosen if c != 0] if chosen else _forward_select(mine, others, yy, noise, config)
    # a register whose step falls on the candidate's days is fitted beside it, whether chosen or not:
    # where the two cannot be told apart, the standard error says so and neither is confirmed
    alongside += [k for k in _twins(mine[:, 0], others, yy, config) if k not in alongside]
    x = np.hstack([mine, others[:, alongside]])
    n, p = x.shape
    if n - p < 1:
        return None, None
    coef, _, rank, _ = np.linalg.lstsq(x, yy, rcond=None)
    if rank < p:
        return None, None  # the candidate's step cannot be told from another's
    sigma2 = max(float(np.sum((yy - x @ coef) ** 2)) / (n - p), noise**2)
    cov = np.linalg.pinv(x.T @ x)
    return float(coef[0]), float(np.sqrt(cov[0, 0] * sigma2))


def _twins(candidate: np.ndarray, others: np.ndarray, y: np.ndarray, config: DetectionConfig) -> list[int]:
    """Columns of ``others`` whose step falls on the same days as the candidate's (a correlation of
    at least ``stuck_twin_correlation`` over the days fitted) and which alone would explain the
    balance's step as a plausible share of their own use: the step could be theirs as well."""
    if others.shape[1] == 0:
        return []
    c = candidate - candidate.mean()
    o = others - others.mean(axis=0)
    o_norm2 = (o * o).sum(axis=0)
    norms = np.sqrt(o_norm2 * float(c @ c))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(norms > 0, (o.T @ c) / norms, 0.0)
        share = np.where(o_norm2 > 0, (o.T @ (y - y.mean())) / o_norm2, 0.0)
    plausible = (share >= config.stuck_min_share) & (share <= config.stuck_max_share)
    return np.flatnonzero((corr >= config.stuck_twin_correlation) & plausible).tolist()


def _forward_select(
    base: np.ndarray, pool: np.ndarray, y: np.ndarray, noise: float, config: DetectionConfig
) -> list[int]:
    """Columns of ``pool`` that explain ``y`` beyond ``base``, added one at a time, best first, while
    the best one's own step is ``stuck_z`` noise deviations clear (at most as many as the data bear).

    Many registers stand still around the same days (holidays begin every day in a DMA of hundreds
    of houses) and nearly all leave the balance alone; the few whose stillness does move it are the
    ones that explain it."""
    chosen: list[int] = []
    n = y.shape[0]
    for _ in range(min(config.stuck_max_explained, pool.shape[1])):
        x = np.hstack([pool[:, chosen], base])
        if n - x.shape[1] - 1 < config.stuck_min_days_each_side:
            break
        q, _ = np.linalg.qr(x)
        resid = y - q @ (q.T @ y)
        other = pool - q @ (q.T @ pool)  # each candidate column, less what the chosen already explain
        norm = np.einsum("ij,ij->j", other, other)
        with np.errstate(invalid="ignore", divide="ignore"):
            dot = other.T @ resid
            gain = np.where(norm > 1e-9, dot / np.sqrt(norm), 0.0)
            share = np.where(norm > 1e-9, dot / norm, 0.0)
        # a stuck register leaves about its usual use unrecorded, not ten times as much
        gain[(share < config.stuck_min_share) | (share > config.stuck_max_share)] = 0.0
        gain[chosen] = 0.0
        best = int(np.argmax(gain))  # only rises: a register never records more for being stuck
        if gain[best] < config.stuck_z * noise:
            break
        chosen.append(best)
    return chosen


def _daily_use(runs: StillRuns, which: np.ndarray, layout: DayLayout, dows: np.ndarray) -> np.ndarray:
    """(K, days): the mean flow (L/h) each run's meter usually draws on each day while its register
    is still: the water it leaves unrecorded if stuck. (A run still going on at some column counts
    as on up to it; days after it are never looked at then.)"""
    per_day = layout.per_day
    cols = np.arange(layout.n_days * per_day) - layout.offset  # block column of each day slot
    on = (cols[None, :] >= runs.start[which][:, None]) & (cols[None, :] < runs.end[which][:, None])
    use = np.tile(runs.profile[which], (1, layout.n_days)) * on
    daily = use.reshape(which.size, layout.n_days, per_day).mean(axis=2)
    return np.asarray(daily * runs.weekday[which][:, dows])


def _burst_days(burst: Alert, clock: Clock, layout: DayLayout) -> np.ndarray:
    """(days,): the share of each day a main burst ran."""
    first = int(clock.seconds[0]) - layout.offset * clock.interval_s
    edges = first + np.arange(layout.n_days + 1) * layout.per_day * clock.interval_s
    a = burst.start.timestamp()
    b = burst.ended_at.timestamp() if burst.ended_at is not None else float(edges[-1])
    overlap = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
    return np.asarray(overlap / (layout.per_day * clock.interval_s))
