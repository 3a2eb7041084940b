"""A district metered area's balance: the inlet's flow minus what the customers' meters recorded.

The balance ``inlet - Σ customers`` is the DMA's losses: leakage from the mains and apparent losses
(under-registering, stuck or bypassed meters). A customer's missing read is not left out of the sum
(that would look like a loss): its flow is estimated from the same meter's mean at that time of day
over the previous days of the same kind (weekday, Saturday, Sunday), its raised bursts left out,
which needs no later read, so the balance at ``t`` is known at ``t``. Over a gap in the inlet's own
reads, the inflow takes the customers' shape (:func:`inlet_shaped_like_customers`). What a customer
register standing still may be hiding from the balance is measured here too
(:func:`still_register_flow`), for the main-burst search (:mod:`collector.detection.district`). The
minimum night flow (the lowest inlet flow of each day), the classic indicator, is kept alongside for
reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collector.detection.config import DetectionConfig
from collector.detection.flows import DayLayout, Flows, prior_days_sum, prior_days_sum_by_type
from collector.detection.series import SeriesBlock


@dataclass(frozen=True)
class DmaBalance:
    dmas: np.ndarray  # (D,) str
    timestamps: np.ndarray  # (T,) datetime64[s]
    interval_s: int
    inlet_l_h: np.ndarray  # (D, T), NaN where the inlet's flow is unknown
    customers_l_h: np.ndarray  # (D, T) sum of customer flows, missing reads estimated
    estimated_l_h: np.ndarray  # (D, T) the estimated part of ``customers_l_h``
    known_idx: np.ndarray  # (D, T) column of the inlet read that makes the balance known
    n_customers: np.ndarray  # (D,)
    still_l_h: np.ndarray  # (D, T) the most flow one still customer register may hide: see still_register_flow
    day_offset_s: int = 0  # local days: see SeriesBlock.day_offset_s
    #: per DMA, the meters in place over the block without a single reading: a customer's use
    #: cannot be estimated without any (it counted as none, and a DMA's losses share came out
    #: 0.21 for 0.05), nor an inlet's flow; the DMA's balance is unknown. Empty: none unread.
    unread: tuple[tuple[str, ...], ...] = ()

    @property
    def losses_l_h(self) -> np.ndarray:
        return self.inlet_l_h - self.customers_l_h

    def minimum_night_flow_l_h(self) -> np.ndarray:
        """(D, days): each day's lowest inlet flow (local days)."""
        layout = DayLayout.of_grid(self.timestamps, self.interval_s, self.day_offset_s)
        return np.fmin.reduce(layout.to_days(self.inlet_l_h, fill=np.nan), axis=2)  # NaN: no read that day

    def summary(self) -> list[dict[str, object]]:
        """Per DMA: volumes in, recorded and lost over the block (over the intervals whose inflow is
        known), the share estimated, and the meters unread (``unread``, ``unread_meters``). A DMA
        whose inflow is known at no interval (no inlet meter, or its inlets never read), or with a
        meter unread, has the figures all null: its balance is unknown, not 0 (it was 0.0 m³ in,
        recorded and lost, as if nothing flowed), nor what the meters read add up to."""
        hours = self.interval_s / 3600.0
        both = ~np.isnan(self.inlet_l_h)
        out = []
        for d, name in enumerate(self.dmas.tolist()):
            unread = list(self.unread[d]) if self.unread else []
            row: dict[str, object] = {"dma": name, "customers": int(self.n_customers[d])}
            if not both[d].any() or unread:
                out.append(row | dict.fromkeys(_FIGURES) | {"unread": len(unread), "unread_meters": unread})
                continue
            inlet = float(np.nansum(self.inlet_l_h[d, both[d]])) * hours / 1000.0
            customers = float(np.sum(self.customers_l_h[d, both[d]])) * hours / 1000.0
            estimated = float(np.sum(self.estimated_l_h[d, both[d]])) * hours / 1000.0
            row |= {
                "inlet_m3": round(inlet, 3),
                "customers_m3": round(customers, 3),
                "losses_m3": round(inlet - customers, 3),
                "losses_share": round((inlet - customers) / inlet, 4) if inlet > 0 else None,
                "estimated_m3": round(estimated, 3),
                "unread": 0,
                "unread_meters": [],
            }
            out.append(row)
        return out


#: The figures of :meth:`DmaBalance.summary`, null where the DMA's balance is unknown.
_FIGURES = ("inlet_m3", "customers_m3", "losses_m3", "losses_share", "estimated_m3")


def estimated_customer_flow(block: SeriesBlock, flows: Flows, config: DetectionConfig) -> tuple[np.ndarray, np.ndarray]:
    """(flow with gaps filled (M, T), the estimated part (M, T)): see :func:`customer_flow_parts`."""
    filled, guess, _ = customer_flow_parts(block, flows, config)
    return filled, guess


def customer_flow_parts(
    block: SeriesBlock,
    flows: Flows,
    config: DetectionConfig,
    quiet: np.ndarray | None = None,
    burst_known_from: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(flow with gaps filled (M, T), the estimated part (M, T)), causal with ``dma_read_lag``.

    An interval inside a gap of missing reads takes the gap's true average once the read after the
    gap has arrived within ``dma_read_lag`` intervals; otherwise it is estimated. So is every
    interval of a register that has not moved for ``dma_stalled_days``: a stuck meter's customer
    still draws water through the inlet, and left at zero it would look like a main burst every
    day; an empty house gets a little phantom use instead, which only lowers the balance. An unread
    interval in which meterization says the meter was not in its place (``block.installed``) is no
    gap: its flow is zero, so a meter exchanged for another is not estimated on beside it.

    The estimate is the meter's mean flow at that time of day on the latest earlier days of the same
    kind (as many weekdays, Saturdays and Sundays as ``dma_baseline_days`` hold) that were read and
    not stalled, however long ago; without such a day, on any earlier days (none: 0). An interval a
    burst of the meter's flowed through is not its usual use, from that burst's detection on
    (``burst_known_from`` (M, T): that column, where a raised burst flowed; see
    ``engine._burst_cells``). Counted in, a day and a half of 2,500 L/h had the house, left empty
    after it, estimated at about 450 L/h, and the balance stepped up by as much when its register
    moved again: a main burst.

    The third value, ``(rows, cols, values)``, turns the filled flow back into the registers as they
    are wherever their flow is known (a stalled register at zero, a gap's true average however late
    its read came): ``values`` is the registers' flow minus the estimate at those few cells. The
    stuck check (:mod:`collector.detection.stuck`) needs that raw balance, looked at days later.
    """
    f = flows.flow_l_h
    unread = np.isnan(f)
    # a meter not in its place, unread, passed no water: nothing to estimate (a read there still counts)
    absent = block.not_installed() & unread
    usable = ~unread
    if flows.spread.any():
        cols = np.arange(f.shape[1], dtype=np.int32)
        usable &= ~flows.spread | (flows.known_idx <= cols + config.dma_read_lag)
    window = round(config.dma_stalled_days * 24.0 / flows.interval_h)
    stalled = _stalled(flows, window) if quiet is None else quiet > window
    usable &= ~stalled
    observed = (usable & ~flows.spread).ravel()
    filled = np.where(absent, 0.0, f)
    guess = np.zeros_like(filled)
    rows, gap_cols = np.nonzero(~usable & ~absent)  # few: missing reads and stalled registers
    back: tuple[np.ndarray, np.ndarray, np.ndarray] = (rows[:0], gap_cols[:0], np.zeros(0))
    if rows.size:
        layout = DayLayout.of(block)
        per_day = layout.per_day
        col_kind = layout.day_kind(block.timestamps)[layout.day_of_columns()]
        gap_kind = col_kind[gap_cols]
        flat = rows * f.shape[1] + gap_cols
        flat_f = f.ravel()
        total, count = np.zeros(rows.size), np.zeros(rows.size)  # days of the gap's type
        any_total, any_count = np.zeros(rows.size), np.zeros(rows.size)  # days of any type
        wanted = config.dma_baseline_days
        wanted_n = np.where(gap_kind == 0, max(1, round(wanted * 5 / 7)), max(1, round(wanted / 7)))
        # back day by day until enough of the same kind (weekday, Saturday, Sunday: a shop shut on
        # Sundays) were read: as far as it takes, for a register stuck for weeks (stopping at four
        # weeks made its estimate 0 from then on, and its use a main burst)
        for k in range(1, f.shape[1] // per_day + 1):
            ok = (gap_cols >= k * per_day) & (count < wanted_n)
            if not ok.any():
                break
            earlier = flat[ok] - k * per_day
            seen = observed.take(earlier)
            if burst_known_from is not None:  # a burst's hours are not the customer's use
                seen &= burst_known_from.ravel().take(earlier) > gap_cols[ok]
            value = np.where(seen, flat_f.take(earlier), 0.0)
            fresh = ok.copy()
            fresh[ok] = any_count[ok] < wanted
            any_total[ok] += np.where(fresh[ok], value, 0.0)
            any_count[ok] += seen & fresh[ok]
            same = seen & (col_kind[gap_cols[ok] - k * per_day] == gap_kind[ok])
            total[ok] += np.where(same, value, 0.0)
            count[ok] += same
        # no earlier day of its kind: any day's
        total, count = np.where(count > 0, total, any_total), np.where(count > 0, count, any_count)
        estimate = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        guess.ravel()[flat] = estimate
        filled.ravel()[flat] = estimate
        known = ~np.isnan(flat_f.take(flat))
        back = (rows[known], gap_cols[known], flat_f.take(flat[known]) - estimate[known])
    return filled, guess, back


#: A register newly still may be hiding up to this share of its usual flow at that time of day (a
#: shop's busy hour is well above its mean hour) …
_NEWLY_STILL_SHARE = 1.5
#: … and one stalled, estimated as its usual flow, may be this share of it off either way.
_STALLED_SHARE = 0.5


def still_register_flow(
    block: SeriesBlock,
    flows: Flows,
    estimated: np.ndarray,
    config: DetectionConfig,
    smallest_step: np.ndarray | None = None,
    quiet: np.ndarray | None = None,
    burst_known_from: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, (R, T)): the flow the rows' customer registers may be hiding from the balance while
    they stand still (0 where they move); registers that hide nothing are left out.

    A register that stops at a shop's closing time shows as nothing in the balance until the shop
    would open; then the shop's day of use appears in the balance, like a main burst, until the
    register counts as stalled (``dma_stalled_days``) and is estimated. Still for
    ``dma_still_hours`` but not yet stalled, a register may hide ``_NEWLY_STILL_SHARE`` times its
    usual flow at that time (the mean at that slot on the earlier days of its kind, weekday,
    Saturday or Sunday, within ``dma_baseline_days``: a shop shut on Sundays hides nothing on a
    Sunday). Stalled, its estimate (``estimated``) may be ``_STALLED_SHARE`` of itself off. The DMA
    detector takes the largest of these in the DMA as explained where it is at least half a step
    (:func:`_explained`): households' flows are small beside a main burst, and only one register
    counts, so households away on holiday take nothing from the detector's reach.

    ``smallest_step`` (M, days): the smallest main burst the meter's DMA raises that day
    (:func:`smallest_main_burst_by_day`). Where a newly still register's mean flow over the
    ``dma_baseline_days`` before is under a ninth of it (its busiest hours taken as three times its
    mean: it could not hide half a step), it is not looked at. ``quiet``: :func:`still_for` of
    ``flows``, if known. ``burst_known_from``: as for :func:`customer_flow_parts`; a burst's
    intervals are left out of the usual flow from the day after the one they are on, if it was
    raised by then. Counted in, a household's night of 2,500 L/h made it "usually" draw 250 L/h at
    those hours on the next two weeks' nights, still as they were: a main burst of up to twice what
    it may hide was taken as explained."""
    f = flows.flow_l_h
    per_hour = 3600.0 / block.interval_s
    stalled_after = round(config.dma_stalled_days * 24.0 * per_hour)
    quiet = still_for(flows) if quiet is None else quiet
    stalled = quiet > stalled_after
    newly = (quiet >= round(config.dma_still_hours * per_hour)) & ~stalled
    layout = DayLayout.of(block)
    if smallest_step is not None:
        # by whole days: the meter's mean over the days before against the day's smallest step
        seen = ~np.isnan(f)
        day_sum = layout.day_sums(np.where(seen, f, 0.0))[:, :, None]
        day_n = layout.day_sums(seen.astype(np.float64))[:, :, None]
        total = prior_days_sum(day_sum, config.dma_baseline_days, np.float64)[:, :, 0]
        count = prior_days_sum(day_n, config.dma_baseline_days, np.float64)[:, :, 0]
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        with np.errstate(invalid="ignore"):  # NaN step: no inlet, or no history yet
            big_enough = _NEWLY_STILL_SHARE * 3.0 * mean >= 0.5 * smallest_step
        newly &= big_enough[:, layout.day_of_columns()]
    candidate = np.asarray(newly.any(axis=1))
    rows = np.flatnonzero(candidate | stalled.any(axis=1))
    hiding = np.zeros((rows.size, f.shape[1]))
    if rows.size == 0:
        return rows, hiding
    st = stalled[rows]
    hiding[st] = _STALLED_SHARE * estimated[rows][st]
    looked = np.flatnonzero(candidate[rows])
    if looked.size:
        fr = f[rows[looked]]
        observed = ~np.isnan(fr) & ~flows.spread[rows[looked]] & ~st[looked]
        if burst_known_from is not None:
            next_day = (layout.day_of_columns() + 1) * layout.per_day - layout.offset  # its first column
            observed &= burst_known_from[rows[looked]] >= next_day
        kind = layout.day_kind(block.timestamps)
        total = prior_days_sum_by_type(
            layout.to_days(np.where(observed, fr, 0.0), 0.0), config.dma_baseline_days, kind, np.float64
        )
        count = prior_days_sum_by_type(
            layout.to_days(observed.astype(np.float64), 0.0), config.dma_baseline_days, kind, np.float64
        )
        usual = layout.from_days(np.divide(total, count, out=np.zeros_like(total), where=count > 0))
        mine = newly[rows[looked]]
        hiding[looked] = np.where(mine, _NEWLY_STILL_SHARE * np.maximum(usual, 0.0), hiding[looked])
    keep = hiding.any(axis=1)
    return rows[keep], hiding[keep]


def still_for(flows: Flows) -> np.ndarray:
    """(M, T) int: intervals since the register last moved (0: it moved in this one)."""
    f = flows.flow_l_h
    moving = ~flows.still()  # unknown counts as moving
    cols = np.arange(1, f.shape[1] + 1, dtype=np.int32)
    last_move = np.maximum.accumulate(moving * cols, axis=1)  # 1 + the last column that moved (0: none)
    return cols - last_move


def max_by_group(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, T): the largest of the rows of ``values`` in each group (0 for a group without rows)."""
    return _reduce_by_group(np.maximum, values, codes, n_groups)


def _stalled(flows: Flows, window: int) -> np.ndarray:
    """(M, T): the register has not moved in the last ``window`` intervals (nor in this one)."""
    if window >= flows.flow_l_h.shape[1]:
        return np.zeros(flows.flow_l_h.shape, dtype=bool)
    return still_for(flows) > window


def sum_by_group(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, T): rows of ``values`` summed by their group code."""
    return _reduce_by_group(np.add, values, codes, n_groups)


def _reduce_by_group(reduce: np.ufunc, values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, T): rows of ``values`` reduced by ``reduce`` within each group code (0 for a group without rows)."""
    out = np.zeros((n_groups, values.shape[1]), dtype=np.float64)
    if values.shape[0] == 0:
        return out
    if np.all(codes[1:] >= codes[:-1]):  # meters usually come grouped by DMA: no reordering
        sorted_codes, ordered = codes, values
    else:
        order = np.argsort(codes, kind="stable")
        sorted_codes, ordered = codes[order], values[order]
    heads = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    out[sorted_codes[heads]] = reduce.reduceat(ordered, heads, axis=0)
    return out


def inlet_shaped_like_customers(inlet: np.ndarray, customers: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(D, T) the inlet's flow, where a gap in its reads was spread evenly (``spread``), reshaped:
    the customers' flow over the gap plus the gap's mean loss.

    Over a gap only the inlet's total is known. Spread evenly it makes the balance follow the
    customers upside down: a large user switching on inside the gap shows as losses rising by its
    flow, then falling below the baseline, which looks like a main burst and its repair. The losses
    are the steady part of the inflow, so the gap's share of them is spread evenly instead, and the
    customers' flow (read, or estimated from their own reads) gives the shape. The gap's total
    volume is unchanged."""
    out = inlet.copy()
    rows, cols = np.nonzero(spread & ~np.isnan(inlet) & ~np.isnan(customers))
    if rows.size == 0:
        return out
    run = np.cumsum(np.r_[True, (np.diff(cols) != 1) | (np.diff(rows) != 0)]) - 1
    loss = inlet[rows, cols] - customers[rows, cols]
    mean_loss = np.bincount(run, loss) / np.bincount(run)
    out[rows, cols] = customers[rows, cols] + mean_loss[run]
    return out
