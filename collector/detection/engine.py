"""Run every detector over a block: customers in chunks of meters (bounded memory), then the DMAs,
then the customers' still registers against their DMA's balance (stuck or an empty house)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from collector.detection.alarms import meter_alarm_alerts
from collector.detection.alerts import Alert, AlertKind, make_alert_id
from collector.detection.balance import (
    DmaBalance,
    customer_flow_parts,
    inlet_shaped_like_customers,
    max_by_group,
    still_for,
    still_register_flow,
    sum_by_group,
)
from collector.detection.bulk import detect_bulk_leaks
from collector.detection.burst import detect_bursts
from collector.detection.common import Clock
from collector.detection.config import DetectionConfig
from collector.detection.district import detect_dma_bursts
from collector.detection.district_bars import smallest_main_burst_by_day
from collector.detection.district_revised import (
    balance_without,
    dmas_to_measure_again,
    resumed_stalled_cells,
    revised_volumes,
)
from collector.detection.flows import DayLayout, Flows, interval_flows
from collector.detection.hourly_leaks import leaks_seen_hourly
from collector.detection.leak import detect_leaks
from collector.detection.leak_under_burst import bursts_above_leak_free_use
from collector.detection.register import detect_reverse_flow, detect_stuck
from collector.detection.series import CUSTOMER, INLET, SeriesBlock, UnreadMeters
from collector.detection.stuck import Balance, StillRuns, detect_stuck_confirmed, still_runs

#: ``progress(stage, done, total)``: called as chunks finish.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DetectionResult:
    alerts: list[Alert]
    balance: DmaBalance


def run_detection(
    block: SeriesBlock,
    config: DetectionConfig | None = None,
    progress: Progress | None = None,
    unread: UnreadMeters | None = None,
) -> DetectionResult:
    """``unread``: meters listed beside the block's without a reading, left off its grid: their DMAs
    are in the balance, their customers counted, and an inlet of them in place makes its DMA's
    inflow unknown, as a row of missing reads in the block would."""
    config = config or DetectionConfig()
    unread = unread or UnreadMeters(*(np.array([], dtype=str),) * 3, np.zeros(0, dtype=bool))
    dmas, codes = np.unique(np.concatenate([block.dma.astype(str), unread.dma.astype(str)]), return_inverse=True)
    dma_code, unread_code = codes[: block.n_meters], codes[block.n_meters :]
    n_dma, t = dmas.shape[0], block.n_intervals
    customers_sum = np.zeros((n_dma, t))
    still_max = np.zeros((n_dma, t))
    estimated_sum = np.zeros((n_dma, t))
    # the registers as they are where the balance above estimated them, and when that was known
    raw_correction = np.zeros((n_dma, t))
    raw_known = np.zeros((n_dma, t), dtype=np.int64)
    # the estimates of stalled registers that moved again (households back home), for main bursts'
    # volumes measured again without them (see collector.detection.district_revised)
    resumed = np.zeros((n_dma, t))
    runs: list[StillRuns] = []
    alerts: list[Alert] = []
    customer_rows = np.flatnonzero(block.role == CUSTOMER)
    inlet_rows = np.flatnonzero(block.role == INLET)
    has_inlet = np.zeros(n_dma, dtype=bool)
    has_inlet[dma_code[inlet_rows]] = True
    inflow_unread = np.zeros(n_dma, dtype=bool)  # an inlet in place never read: the inflow is unknown
    inflow_unread[unread_code[unread.in_place & (unread.role == INLET)]] = True
    has_inlet |= inflow_unread
    inlet_part = block.take(inlet_rows)
    inlet_flows = interval_flows(inlet_part, config)
    # an inlet meter not in its place (exchanged for another), unread, passed no water
    inlet_l_h = np.where(inlet_part.not_installed() & np.isnan(inlet_flows.flow_l_h), 0.0, inlet_flows.flow_l_h)
    # a customer register can explain a DMA step only if it draws a good part of the smallest step
    # the DMA detector raises (see still_register_flow): the rest need not be looked at
    with np.errstate(invalid="ignore"):
        inflow = sum_by_group(inlet_l_h, dma_code[inlet_rows], n_dma)  # NaN where a read is missing
    inflow[~has_inlet | inflow_unread] = np.nan  # no inlet, or one unread: no DMA detection
    smallest_step = smallest_main_burst_by_day(inflow, DayLayout.of(block), config)
    size = max(1, config.chunk_meters)
    chunks = [customer_rows[lo : lo + size] for lo in range(0, customer_rows.shape[0], size)]
    done = 0
    # chunks are independent; NumPy releases the GIL inside its loops, so threads share the cores
    with ThreadPoolExecutor(max_workers=max(1, config.workers)) as pool:
        for rows, (found, filled, estimated, (back, back_known), still, still_flow, back_home) in zip(
            chunks,
            pool.map(lambda rows: _customer_chunk(block.take(rows), config, smallest_step[dma_code[rows]]), chunks),
            strict=True,
        ):
            alerts += found
            customers_sum += sum_by_group(filled, dma_code[rows], n_dma)
            hiding_rows, hiding = still_flow
            np.maximum(still_max, max_by_group(hiding, dma_code[rows[hiding_rows]], n_dma), out=still_max)
            estimated_sum += sum_by_group(estimated, dma_code[rows], n_dma)
            if back[0].size:
                where = (dma_code[rows[back[0]]], back[1])
                raw_correction += np.bincount(np.ravel_multi_index(where, (n_dma, t)), back[2], n_dma * t).reshape(
                    n_dma, t
                )
                np.maximum.at(raw_known, where, back_known)
            runs.append(still.shifted(rows))
            if back_home[0].size:
                at = np.ravel_multi_index((dma_code[rows[back_home[0]]], back_home[1]), (n_dma, t))
                resumed += np.bincount(at, back_home[2], n_dma * t).reshape(n_dma, t)
            done += rows.shape[0]
            if progress is not None:
                progress("customer meters", done, customer_rows.shape[0])
    inlet_sum = np.full((n_dma, t), np.nan)
    known = np.tile(np.arange(t, dtype=np.int32), (n_dma, 1))
    if inlet_rows.size:
        part, flows = inlet_part, inlet_flows
        alerts += detect_reverse_flow(part, flows, config)
        alerts += detect_stuck(part, flows, config)
        alerts += meter_alarm_alerts(part, flows, config)
        codes = dma_code[inlet_rows]
        with np.errstate(invalid="ignore"):
            # a DMA's inflow is unknown where any of its inlets' is
            nan_count = sum_by_group(np.isnan(inlet_l_h).astype(np.float64), codes, n_dma)
            total = sum_by_group(np.nan_to_num(inlet_l_h), codes, n_dma)
        inlet_sum = np.where(has_inlet[:, None] & (nan_count == 0), total, np.nan)
        spread = sum_by_group(flows.spread.astype(np.float64), codes, n_dma) > 0
        inlet_sum = inlet_shaped_like_customers(inlet_sum, customers_sum, spread)
        for i, code in enumerate(codes.tolist()):  # one inlet, or the latest of several
            known[code] = np.maximum(known[code], flows.known_idx[i])
    inlet_sum[inflow_unread] = np.nan
    balance = DmaBalance(
        dmas=dmas,
        timestamps=block.timestamps,
        interval_s=block.interval_s,
        inlet_l_h=inlet_sum,
        customers_l_h=customers_sum,
        estimated_l_h=estimated_sum,
        known_idx=known,
        n_customers=np.bincount(dma_code[customer_rows], minlength=n_dma)
        + np.bincount(unread_code[unread.role == CUSTOMER], minlength=n_dma),
        still_l_h=still_max,
        day_offset_s=block.day_offset_s,
        unread=_unread_by_dma(block, dma_code, unread, unread_code, n_dma),
    )
    dma_alerts = detect_dma_bursts(balance, config) if inlet_rows.size and t > 1 else []
    alerts += _revised_for_households_back(dma_alerts, balance, resumed, config)
    known_at = np.maximum(known, raw_known)
    residual = balance.losses_l_h - raw_correction
    layout = DayLayout.of(block)
    daily = layout.to_days(residual, fill=np.nan).mean(axis=2)  # NaN where any interval is unknown
    alerts += detect_stuck_confirmed(
        block,
        StillRuns.concat(runs, layout.per_day),
        dma_code,
        Balance(dmas, residual, known_at, daily, has_inlet, dma_alerts),
        config,
    )
    if progress is not None:
        progress("district meter areas", n_dma, n_dma)
    alerts.sort(key=lambda a: (a.detected_at, a.kind.value, a.subject))
    return DetectionResult(alerts, balance)


def _revised_for_households_back(
    dma_alerts: list[Alert], balance: DmaBalance, resumed: np.ndarray, config: DetectionConfig
) -> list[Alert]:
    """The main bursts with their volumes measured again on the balance without the estimates of
    stalled registers that have moved again since (:mod:`collector.detection.district_revised`);
    detection itself stays on the balance as known at the time."""
    if not dma_alerts or not config.dma_revise_back_home or not resumed.any():
        return dma_alerts
    dma_row = {str(d): i for i, d in enumerate(balance.dmas.tolist())}
    rows = dmas_to_measure_again(dma_alerts, resumed, dma_row)
    if rows.size == 0:
        return dma_alerts
    remeasured = detect_dma_bursts(balance_without(balance, rows, resumed), config)
    clock = Clock(balance.timestamps, balance.interval_s, balance.day_offset_s)
    per_day = DayLayout.of_grid(balance.timestamps, balance.interval_s, balance.day_offset_s).per_day
    return revised_volumes(dma_alerts, remeasured, resumed, dma_row, clock, per_day, config)


def detect(block: SeriesBlock, config: DetectionConfig | None = None, progress: Progress | None = None) -> list[Alert]:
    """Every alert the block's readings raise, sorted by ``detected_at``."""
    return run_detection(block, config, progress).alerts


def _unread_by_dma(
    block: SeriesBlock, dma_code: np.ndarray, unread: UnreadMeters, unread_code: np.ndarray, n_dma: int
) -> tuple[tuple[str, ...], ...]:
    """Per DMA, the meters without a reading that were in their place over some of the block (a
    meter exchanged before the block began passed no water in it: nothing is missing): the block's
    rows of nothing but missing reads, and ``unread``."""
    empty = np.isnan(block.volume_m3).all(axis=1)
    if block.installed is not None:
        empty &= block.installed.any(axis=1)
    names: list[list[str]] = [[] for _ in range(n_dma)]
    for row in np.flatnonzero(empty).tolist():
        names[dma_code[row]].append(str(block.meter_ids[row]))
    for i in np.flatnonzero(unread.in_place).tolist():
        names[unread_code[i]].append(str(unread.meter_ids[i]))
    return tuple(tuple(sorted(mine)) for mine in names)


ChunkResult = tuple[
    list[Alert],
    np.ndarray,
    np.ndarray,
    tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    StillRuns,
    tuple[np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray],
]


def _customer_chunk(part: SeriesBlock, config: DetectionConfig, smallest_step: np.ndarray) -> ChunkResult:
    flows = interval_flows(part, config)
    alerts = leaks_and_bursts(part, flows, config)
    alerts += detect_reverse_flow(part, flows, config)
    alerts += meter_alarm_alerts(part, flows, config)
    quiet = still_for(flows)
    known_from = _burst_cells(part, [a for a in alerts if a.kind is AlertKind.BURST])
    filled, estimated, back = customer_flow_parts(part, flows, config, quiet, known_from)
    # stuck registers are told from empty houses by the DMA balance, once all chunks are in
    back_known = flows.known_idx[back[0], back[1]]
    hiding = still_register_flow(part, flows, estimated, config, smallest_step, quiet, known_from)
    none = np.zeros(0, dtype=np.int64)
    back_home = resumed_stalled_cells(flows, quiet, estimated, config) if config.dma_revise_back_home else (none,) * 3
    return alerts, filled, estimated, (back, back_known), still_runs(part, flows, config), hiding, back_home


def leaks_and_bursts(part: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    """The leak and burst alerts of a chunk of customer meters: the two detectors, and what each
    kind's alerts tell about the other's (a leak seen again through the household's use is no
    burst, a burst later seen to be a leak is that leak, ...). The leak benchmark
    (``benchmarks.leak_errors``) runs this alone."""
    leaks = _leaks(part, flows, config)
    bursts = _without_leaks_seen_through_use(detect_bursts(part, flows, config), leaks, config)
    bursts, leaks = _bursts_found_to_be_leaks(bursts, leaks, config)
    leaks = _without_burst_runs(leaks, bursts)
    bursts = bursts_above_leak_free_use(bursts, leaks, part, flows, config)
    return bursts + [_as_burst(a) if a.rate_l_h >= config.burst_min_l_h else a for a in leaks]


def _leaks(part: SeriesBlock, flows: Flows, config: DetectionConfig) -> list[Alert]:
    """Continuous flow behind the meters that supply one premise; behind a bulk meter (a block of
    flats), where continuous flow may be the many households' ordinary use, see :mod:`bulk`."""
    if not part.is_bulk.any():
        leaks = detect_leaks(part, flows, config)
        return leaks + leaks_seen_hourly(part, leaks, config)
    single = np.flatnonzero(~part.is_bulk)
    leaks = detect_leaks(part.take(single), flows.take(single), config) if single.size else []
    if single.size:
        leaks += leaks_seen_hourly(part.take(single), leaks, config)
    return leaks + detect_bulk_leaks(part, flows, config)


def _burst_cells(block: SeriesBlock, bursts: list[Alert]) -> np.ndarray | None:
    """(M, T) int: for each interval a burst at that meter flowed through, the column from which
    that burst was known (its detection); elsewhere int32's largest (never). None without bursts."""
    if not bursts:
        return None
    known_from = np.full((block.n_meters, block.n_intervals), np.iinfo(np.int32).max, dtype=np.int32)
    row_of = {m: i for i, m in enumerate(block.meter_ids.tolist())}
    clock = Clock.of(block)
    for burst in bursts:
        first, last = clock.column(burst.start), clock.column(burst.ended_at or burst.last_seen) + 1
        cells = known_from[row_of[burst.meter_id], first:last]
        np.minimum(cells, clock.column(burst.detected_at), out=cells)
    return known_from


def _as_burst(leak: Alert) -> Alert:
    """Continuous flow at a burst's rate is a burst (one the meter's busy hours hid at first)."""
    alert_id = make_alert_id(AlertKind.BURST, leak.meter_id, leak.dma, leak.detected_at)
    return leak.replace(kind=AlertKind.BURST, alert_id=alert_id)


def _by_meter(alerts: list[Alert]) -> dict[str | None, list[Alert]]:
    by_meter: dict[str | None, list[Alert]] = {}
    for alert in alerts:
        by_meter.setdefault(alert.meter_id, []).append(alert)
    return by_meter


def _without_leaks_seen_through_use(bursts: list[Alert], leaks: list[Alert], config: DetectionConfig) -> list[Alert]:
    """Drop burst alerts that are a leak already raised, seen again on top of the meter's use.

    A leak of 150-200 L/h lifts each of the meter's busy hours by as much, and the burst rules see
    the evening's use on top of it as a flow far above anything the meter carried before. Where a
    leak (below a burst's least rate) on the same meter was raised no later than a burst it
    overlaps, and the burst adds less than the leak itself and less than a burst's least rate to
    it, the burst is that leak: no earlier run raised the burst alone, so nothing is left open. A
    burst raised first stays (a shop's leak shows only after closing, its busy afternoon having
    raised the burst), and so does a burst on top of a small leak."""
    by_meter = _by_meter(leaks)
    return [
        burst
        for burst in bursts
        if not any(
            leak.rate_l_h < config.burst_min_l_h
            and leak.detected_at <= burst.detected_at
            and burst.overlaps(leak)
            and burst.rate_l_h < min(2.0 * leak.rate_l_h, leak.rate_l_h + config.burst_min_l_h)
            for leak in by_meter.get(burst.meter_id, [])
        )
    ]


def _bursts_found_to_be_leaks(
    bursts: list[Alert], leaks: list[Alert], config: DetectionConfig
) -> tuple[list[Alert], list[Alert]]:
    """Bursts that later reads show to be a leak become that leak (same alert, kind ``leak``).

    A shop's busy afternoon on top of a 180 L/h leak raises a burst that day; only after closing
    does the flow show as continuous, and the leak detector raises it. Where such a leak (below a
    burst's least rate) overlaps a burst raised earlier on the same meter, and the burst itself
    measures below a burst's least rate, the episode is a leak (if the leak was already flowing when
    the burst was raised: a leak that began after it is an episode of its own, and took the burst's
    time and volume away, starting after it was raised): it keeps the burst's ``alert_id``
    and ``detected_at`` (when it was first raised, and the enquiry it raised) and takes the leak's
    kind and figures. The lifecycle updates the stored alert's kind with the rest."""
    by_meter = _by_meter(leaks)
    kept_bursts: list[Alert] = []
    absorbed: set[str] = set()
    for burst in bursts:
        leak = next(
            (
                leak
                for leak in by_meter.get(burst.meter_id, [])
                if leak.alert_id not in absorbed
                and leak.rate_l_h < config.burst_min_l_h
                and burst.rate_l_h < config.burst_min_l_h
                and burst.detected_at < leak.detected_at
                and leak.start <= burst.detected_at  # flowing when the burst was raised: its flow
                and burst.overlaps(leak)
            ),
            None,
        )
        if leak is None:
            kept_bursts.append(burst)
            continue
        absorbed.add(leak.alert_id)
        evidence = tuple(sorted({*burst.evidence, *leak.evidence}))
        kept_bursts.append(leak.replace(alert_id=burst.alert_id, detected_at=burst.detected_at, evidence=evidence))
    return kept_bursts, [leak for leak in leaks if leak.alert_id not in absorbed]


def _without_burst_runs(leaks: list[Alert], bursts: list[Alert]) -> list[Alert]:
    """Drop continuous-flow alerts that a burst at the same meter explains.

    A burst running through the night is continuous flow too, and the leak detector raises it as
    well. Only a burst already flowing when the leak was raised can explain it: a shop's busy
    afternoon taken for a burst days into a leak raised long before leaves that leak standing."""
    by_meter = _by_meter(bursts)
    kept = []
    for leak in leaks:
        explained = any(
            b.start <= leak.detected_at and (b.ended_at is None or leak.start <= b.ended_at)
            for b in by_meter.get(leak.meter_id, [])
        )
        if not explained:
            kept.append(leak)
    return kept


__all__ = ["DetectionResult", "Progress", "detect", "run_detection"]
