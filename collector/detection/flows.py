"""From cumulative registers to flow per interval, the quantity every detector reasons about.

Interval ``j`` is ``(timestamps[j-1], timestamps[j]]`` and its flow is known once the read at
``timestamps[j]`` is. Where reads are missing, the volume between the two reads around the gap is
spread evenly over the gap's intervals (``spread``) and is known only when the read after the gap
arrives (``known_idx``): detectors report that read's time as ``detected_at``, which keeps them causal.
A register that falls sharply (meter replaced, register rolled over) is a ``reset``: that interval's
flow is unknown rather than a huge backward flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.detection.config import DetectionConfig
from collector.detection.series import SeriesBlock

DAY_S = 86_400


@dataclass(frozen=True)
class Flows:
    flow_l_h: np.ndarray  # (M, T) float64, NaN where unknown; column 0 always NaN
    spread: np.ndarray  # (M, T) bool: value spread evenly over a gap of missing reads
    known_idx: np.ndarray  # (M, T) int32: column of the read that makes the value known
    reset: np.ndarray  # (M, T) bool: register reset inside this interval
    step_l: np.ndarray  # (M,) the register's step (resolution) in litres
    interval_h: float

    @property
    def step_flow_l_h(self) -> np.ndarray:
        """(M, 1): the flow of one register step per interval."""
        return (self.step_l / self.interval_h)[:, None]

    def take(self, rows: np.ndarray) -> Flows:
        """The flows of these rows (meters) alone."""
        return Flows(
            self.flow_l_h[rows],
            self.spread[rows],
            self.known_idx[rows],
            self.reset[rows],
            self.step_l[rows],
            self.interval_h,
        )

    def still(self) -> np.ndarray:
        """(M, T) bool: the register is known not to have moved (less than half a step; NaN: unknown)."""
        with np.errstate(invalid="ignore"):
            return np.abs(self.flow_l_h) < 0.5 * self.step_flow_l_h


def interval_flows(block: SeriesBlock, config: DetectionConfig) -> Flows:
    v = block.volume_m3
    m, t = v.shape
    interval_h = block.interval_s / 3600.0
    delta = np.empty_like(v)
    delta[:, 0] = np.nan
    np.subtract(v[:, 1:], v[:, :-1], out=delta[:, 1:])  # NaN next to a missing read
    _to_millilitres(delta)
    v_prev = np.empty_like(v)
    v_prev[:, 0] = np.nan
    v_prev[:, 1:] = v[:, :-1]
    with np.errstate(invalid="ignore"):
        reset = (delta < 0) & ((delta <= -config.reset_drop_m3) | (v < config.reset_ratio * v_prev))
    # a week of steps shows the resolution; a backward move (not a reset) is as many steps as a
    # forward one, and on a fleet's first hours it may be the finest move yet seen (causal: see
    # register_step_l)
    week = slice(0, 7 * 86_400 // block.interval_s + 1)
    step_l = register_step_l(np.where(reset[:, week], np.nan, np.abs(delta[:, week])), config)
    flow = delta * (1000.0 / interval_h)
    spread = np.zeros((m, t), dtype=bool)
    known_idx: np.ndarray = np.broadcast_to(np.arange(t, dtype=np.int32), (m, t))
    missing = np.flatnonzero(np.isnan(v))  # few: handled one gap at a time, as whole arrays
    if missing.size:
        known_idx = known_idx.copy()
        _spread_gaps(v, missing, config, flow, spread, known_idx, reset, 1000.0 / interval_h)
    flow[reset] = np.nan
    return Flows(
        flow_l_h=flow,
        spread=spread,
        known_idx=known_idx,
        reset=reset,
        step_l=step_l,
        interval_h=interval_h,
    )


def _spread_gaps(
    v: np.ndarray,
    missing: np.ndarray,
    config: DetectionConfig,
    flow: np.ndarray,
    spread: np.ndarray,
    known_idx: np.ndarray,
    reset: np.ndarray,
    to_l_h: float,
) -> None:
    """Fill the intervals of each gap of missing reads (and the one closing it) in place."""
    t = v.shape[1]
    rows, cols = np.divmod(missing, t)
    new_gap = np.r_[True, (np.diff(missing) != 1) | (np.diff(rows) != 0)]
    gap_of = np.cumsum(new_gap) - 1
    last_of_gap = np.r_[new_gap[1:], True]
    g_row = rows[new_gap]
    before = cols[new_gap] - 1  # the read before the gap (-1: none)
    after = cols[last_of_gap] + 1  # the read after it (t: none)
    closed = (before >= 0) & (after < t)
    v_before = np.where(before >= 0, v[g_row, np.maximum(before, 0)], np.nan)
    v_after = np.where(after < t, v[g_row, np.minimum(after, t - 1)], np.nan)
    delta = _to_millilitres(v_after - v_before)
    with np.errstate(invalid="ignore"):
        is_reset = closed & (delta < 0) & ((delta <= -config.reset_drop_m3) | (v_after < config.reset_ratio * v_before))
    per_interval = np.where(closed & ~is_reset, delta / (after - before) * to_l_h, np.nan)
    # the missing intervals, then the interval that closes each gap
    flow[rows, cols] = per_interval[gap_of]
    spread[rows, cols] = closed[gap_of]
    known_idx[rows, cols] = np.minimum(after, t - 1)[gap_of]
    reset[rows, cols] = is_reset[gap_of]
    ends = np.flatnonzero(after < t)
    flow[g_row[ends], after[ends]] = per_interval[ends]
    spread[g_row[ends], after[ends]] = closed[ends]
    reset[g_row[ends], after[ends]] = is_reset[ends]


def _to_millilitres(delta_m3: np.ndarray) -> np.ndarray:
    """Differences of registers (m³) rounded in place to the millilitre, finer than any water
    register: the difference of two floats carries the registers' own rounding (0.015 m³ read as
    0.01499999999), which depended on how large the registers were, so that a meter's alerts did
    too (a register 123.456 m³ higher raised a leak an hour later, at a level it then met exactly)."""
    return np.round(delta_m3, 6, out=delta_m3)


def register_step_l(delta: np.ndarray, config: DetectionConfig) -> np.ndarray:
    """Each meter's register resolution (L): the largest quantum that every advance between
    consecutive reads is a whole number of (counted in millilitres, which also rounds away float
    noise such as 0.000999999 m³).

    Not the smallest advance: a household that never draws less than 3 L between two reads has a
    1-litre register all the same, and a step read as 3 L would hide a 2 L/h leak from every rule
    that asks for "any flow at all" (half a step) and widen every tolerance of a step and a half.

    ``delta`` holds the backward moves too (as sizes; resets left out): on a fleet's first hours a
    meter may have moved forward only a few times (23 L; 7 L and 7 L), and its first backward move
    (15 L; 13 L) is what shows a 1-litre register. From the forward moves alone the step was read
    as 23 L or 7 L there, so the reverse-flow rule asked for two such steps backwards: a flow raised
    from the whole data (whose week shows 1 L) was not raised from the data cut at its
    ``detected_at`` (issue #6, seed 46's M008586 and M009196).
    """
    with np.errstate(invalid="ignore"):
        advance_ml = np.where(delta > 1e-9, np.rint(delta * 1e6), 0.0).astype(np.int64)
    step_ml = np.gcd.reduce(advance_ml, axis=1)
    return np.where(step_ml > 0, step_ml / 1000.0, config.default_step_m3 * 1000.0)


def day_of_week(epoch_days: np.ndarray) -> np.ndarray:
    """0 Monday … 6 Sunday of days counted from 1970-01-01, which was a Thursday."""
    return np.asarray((epoch_days + 3) % 7)


@dataclass(frozen=True)
class DayLayout:
    """How the T columns sit on whole days: ``offset`` empty slots before the first, ``per_day``.
    Days are local: they begin at midnight ``day_offset_s`` ahead of UTC (the utility's standard time)."""

    offset: int
    per_day: int
    n_days: int
    n_cols: int
    day_offset_s: int = 0

    @classmethod
    def of(cls, block: SeriesBlock) -> DayLayout:
        return cls.of_grid(block.timestamps, block.interval_s, block.day_offset_s)

    @classmethod
    def of_grid(cls, timestamps: np.ndarray, interval_s: int, day_offset_s: int = 0) -> DayLayout:
        if DAY_S % interval_s:
            raise ValueError(f"the interval ({interval_s} s) must divide a day")
        if day_offset_s % interval_s:
            raise ValueError(f"the day offset ({day_offset_s} s) must be whole intervals ({interval_s} s)")
        per_day = DAY_S // interval_s
        n = int(timestamps.shape[0])
        first = int(timestamps[0].astype("datetime64[s]").astype(np.int64)) if n else 0
        offset = ((first + day_offset_s) % DAY_S) // interval_s
        n_days = max(1, -(-(offset + n) // per_day))
        return cls(offset, per_day, n_days, n, day_offset_s)

    def weekend(self, timestamps: np.ndarray) -> np.ndarray:
        """(days,) bool: the layout's days that are Saturdays or Sundays."""
        return self.day_of_week(timestamps) >= 5

    def day_kind(self, timestamps: np.ndarray) -> np.ndarray:
        """(days,) 0 Monday to Friday, 1 Saturday, 2 Sunday: a shop may open on Saturdays and
        not on Sundays, and two weeks hold only two of each."""
        dow = self.day_of_week(timestamps)
        return np.where(dow < 5, 0, dow - 4)

    def day_of_week(self, timestamps: np.ndarray) -> np.ndarray:
        """(days,) of the layout: 0 Monday … 6 Sunday."""
        first = int(timestamps[0].astype("datetime64[s]").astype(np.int64)) if self.n_cols else 0
        first_day = (first + self.day_offset_s) // DAY_S
        return day_of_week(first_day + np.arange(self.n_days))

    def day_of_columns(self) -> np.ndarray:
        """(T,) the day of each column."""
        return (self.offset + np.arange(self.n_cols)) // self.per_day

    def day_sums(self, x: np.ndarray) -> np.ndarray:
        """(R, days) the sum of each day's columns of ``x`` (R, T)."""
        starts = np.maximum(np.arange(self.n_days) * self.per_day - self.offset, 0)
        return np.add.reduceat(x, starts, axis=1) if self.n_cols else np.zeros((x.shape[0], self.n_days))

    def day_of(self, j: int) -> int:
        return (self.offset + j) // self.per_day

    def slot_of(self, j: int) -> int:
        return (self.offset + j) % self.per_day

    def columns_of(self, days: slice) -> slice:
        """The columns of a run of days (``days.start`` to ``days.stop``, a step of 1)."""
        return slice(max(days.start * self.per_day - self.offset, 0), max(days.stop * self.per_day - self.offset, 0))

    def to_days(self, x: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(R, T) → (R, days, per_day), padded with ``fill`` (a view when no padding is needed)."""
        if self.offset == 0 and self.n_cols == self.n_days * self.per_day:
            return x.reshape(x.shape[0], self.n_days, self.per_day)
        out = np.full((x.shape[0], self.n_days * self.per_day), fill, dtype=x.dtype)
        out[:, self.offset : self.offset + self.n_cols] = x
        return out.reshape(x.shape[0], self.n_days, self.per_day)

    def from_days(self, y: np.ndarray) -> np.ndarray:
        """(R, days, per_day) → (R, T)."""
        flat = y.reshape(y.shape[0], self.n_days * self.per_day)
        return flat[:, self.offset : self.offset + self.n_cols]


def prior_days_sum(by_day: np.ndarray, days: int, dtype: type = np.float32) -> np.ndarray:
    """Sum over the ``days`` whole days before each day (same slot), excluding the day itself.

    A running sum over the (few) days, each step one vector operation over all meters and slots.
    """
    r, d, p = by_day.shape
    out: np.ndarray = np.zeros((r, d, p), dtype=dtype)
    for day in range(1, d):
        np.add(out[:, day - 1], by_day[:, day - 1], out=out[:, day])
        if day - 1 - days >= 0:
            out[:, day] -= by_day[:, day - 1 - days]
    return out


def prior_days_sum_by_type(by_day: np.ndarray, days: int, day_type: np.ndarray, dtype: type) -> np.ndarray:
    """Like :func:`prior_days_sum`, but each day sums only earlier days of its own type (weekdays,
    weekends), over as many of them as ``days`` calendar days hold.

    ``day_type`` is a function of the day of the week, so a type's share of the calendar is its share
    of any whole week: of the block's first seven days (a shorter block: of its own days, where at the
    defaults no window binds). It was the type's share of the whole block, which depends on how far
    the data run on: weekdays held 18 of the 24 days of a fleet's data cut on a Wednesday (their
    window 21 × 0.75 → 16 days) and 25 of its whole 35 (15 days), so a leak's evidence moved with readings after it and
    leaks were raised from the whole data an hour or more after the cut data raised them (issue #6)."""
    out: np.ndarray = np.zeros(by_day.shape, dtype=dtype)
    week = day_type[:7]
    for kind in np.unique(day_type).tolist():
        idx = np.flatnonzero(day_type == kind)
        share = np.count_nonzero(week == kind) / max(week.size, 1)
        window = max(1, round(days * max(share, 2 / 7)))
        out[:, idx] = prior_days_sum(by_day[:, idx], window, dtype)
    return out


def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last ``window`` columns up to and including each column (fewer at the start)."""
    cs = np.cumsum(x, axis=1)
    out = cs.copy()
    if window < x.shape[1]:
        out[:, window:] -= cs[:, :-window]
    return out


def last_index(mask: np.ndarray) -> np.ndarray:
    """For each column, the last column at or before it where ``mask`` holds (-1: none)."""
    cols = np.arange(mask.shape[1], dtype=np.int32)
    return np.maximum.accumulate(np.where(mask, cols, np.int32(-1)), axis=1)


def next_index(mask: np.ndarray) -> np.ndarray:
    """For each column, the first column at or after it where ``mask`` holds (T: none)."""
    t = mask.shape[1]
    cols = np.arange(t, dtype=np.int32)
    return np.minimum.accumulate(np.where(mask, cols, np.int32(t))[:, ::-1], axis=1)[:, ::-1]


def first_crossings(state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) where ``state`` turns from False to True (it is usually False nearly everywhere)."""
    candidates = np.flatnonzero(state.any(axis=1))
    sub = state[candidates]
    rising = sub.copy()
    rising[:, 1:] &= ~sub[:, :-1]
    rows, cols = np.nonzero(rising)
    return candidates[rows], cols
