"""Customer bursts raised "within one read interval", pooled over many labelled fleets and burst by burst.

The burst counterpart of :mod:`benchmarks.leak_errors`: ``bench_detection`` takes minutes of CPU a
seed, while the leak and burst detectors alone (:func:`collector.detection.engine.leaks_and_bursts`,
the engine's own step: a burst later seen to be a leak becomes that leak) take seconds. Scored as
``bench_detection`` scores customer bursts (begun after the warm-up week, seen for two intervals,
raised no later than :func:`~benchmarks.bench_detection.burst_deadline`), its figures are that row's
count, and its false bursts (raised after the warm-up where no burst was) that row's. With
``--events`` it lists each burst raised late or not at all: the meter's class (residential,
commercial, irrigation; bulk for a block of flats), whether the meter was still being learned,
whether a leak alert of the meter was open, the minutes of the burst in its partial first interval,
and the meter's flows around the start with, under each, the highest flow at that time of day
(± ``burst_time_of_day_minutes``) on the ``burst_history_days`` days before; then the meter's
highest flow over those days and what the rules needed; and the false bursts. With
``--look-alikes`` it counts, for each burst raised late, the ordinary meter-days of the fleet (meters
without any fault) with an hour as far above the meter's use as the burst's first whole interval and
the hour before as far above its own: what a rule loose enough to raise that burst in time would
raise besides (:func:`look_alike_lines`), by the ratios to the busiest flows and by the deviations
above the time of day that the ``burst_z`` rules measure.

    python -m benchmarks.burst_errors --seeds 11-16              # the tuning seeds, pooled
    python -m benchmarks.burst_errors --seeds 12 --events        # what seed 12 raises late
    python -m benchmarks.burst_errors --seeds 11-16 --look-alikes        # what catching them would cost
    python -m benchmarks.burst_errors --set burst_slot_excess_l_h=250   # a threshold tried
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta

import numpy as np

from benchmarks.bench_detection import (
    GRACE,
    WARM_UP_DAYS,
    block_of,
    burst_deadline,
    customers_of,
    in_chunks,
    labelled_fleet_spec,
)
from benchmarks.reverse_flow_errors import fleet_arguments
from collector.detection.alerts import Alert
from collector.detection.burst import (
    _history_max,
    _interval_before,
    _RareRules,
    _slot_thresholds,
    held_flow,
    window_intervals,
)
from collector.detection.common import Clock
from collector.detection.config import DetectionConfig
from collector.detection.engine import leaks_and_bursts
from collector.detection.flows import DayLayout, interval_flows
from collector.detection.scoring import Match, match_alerts
from collector.detection.series import SeriesBlock
from simulators.fleet import generate_fleet

KIND = "burst"
#: Intervals listed before and after the burst's first whole interval.
BEFORE, AFTER = 4, 3


@dataclass(frozen=True)
class BurstRun:
    """One seed's bursts: each scored burst with its alert (or None) and its deadline, every burst
    and leak alert of the customer meters, the false bursts, and what the listing needs."""

    customers: SeriesBlock
    matches: list[Match]  # bursts begun after the warm-up, seen two intervals, with a deadline
    deadlines: list[datetime]  # each match's
    alerts: list[Alert]  # burst alerts
    leaks: list[Alert]  # leak alerts
    false: list[Alert]  # burst alerts raised after the warm-up where no burst was
    meter_days: float  # customer meter-days after the warm-up
    customer_class: dict[str, str]  # meter → residential | commercial | irrigation (+ " bulk")
    faulty: frozenset[str]  # meters with any fault of the fleet's ground truth (leak, burst, stuck…)

    def in_time(self, i: int) -> bool:
        a = self.matches[i].alert
        return a is not None and a.detected_at <= self.deadlines[i]

    @property
    def found(self) -> int:
        return sum(self.in_time(i) for i in range(len(self.matches)))


def run_seed(seed: int, *, meters: int, days: int, config: DetectionConfig) -> BurstRun:
    """The leak and burst detectors alone on the benchmark's labelled fleet of ``seed``, over the
    customer meters in the engine's chunks; the burst alerts matched to the fleet's bursts as
    ``bench_detection.score_fleet`` scores them."""
    fleet = generate_fleet(labelled_fleet_spec(meters, days, seed))
    block = block_of(fleet)
    customers = customers_of(block)
    alerts = in_chunks(customers, config, leaks_and_bursts)
    bursts = [a for a in alerts if a.kind.value == KIND]
    warm = block.time(0) + timedelta(days=WARM_UP_DAYS)
    end = block.time(block.n_intervals - 1)
    matches, false = match_alerts(bursts, fleet.ground_truth, KIND, end, GRACE)
    due = burst_deadline(fleet, window_intervals(block.interval_s, config))
    min_observed_h = 2 * block.interval_s / 3600
    scored: list[Match] = []
    deadlines: list[datetime] = []
    for m in matches:
        limit = due(m.event)
        if m.event.start >= warm and m.observed_h >= min_observed_h and limit is not None:
            scored.append(m)
            deadlines.append(limit)
    classes = fleet.customer_class if fleet.customer_class is not None else np.full(fleet.meter_ids.size, "?")
    bulk = fleet.bulk if fleet.bulk is not None else np.zeros(fleet.meter_ids.size, dtype=bool)
    customer_class = {
        str(m): str(c) + (" bulk" if b else "")
        for m, c, b in zip(fleet.meter_ids.tolist(), classes.tolist(), bulk.tolist(), strict=True)
    }
    return BurstRun(
        customers=customers,
        matches=scored,
        deadlines=deadlines,
        alerts=bursts,
        leaks=[a for a in alerts if a.kind.value == "leak"],
        false=[a for a in false if a.detected_at >= warm],
        meter_days=customers.n_meters * (end - warm).total_seconds() / 86_400,
        customer_class=customer_class,
        faulty=frozenset(str(e.meter_id) for e in fleet.ground_truth if e.meter_id is not None),
    )


def late(run: BurstRun) -> list[int]:
    """The indices of the bursts not raised by their deadline (late, or not at all), in order."""
    return [i for i in range(len(run.matches)) if not run.in_time(i)]


def event_lines(run: BurstRun, config: DetectionConfig) -> list[str]:
    """Each burst raised late or not at all, in four lines: the truth beside the alert (class,
    learning, a leak alert open, minutes in the partial first interval, reads late); the meter's
    flows (L/h) around the start, each under the hour it began (its first whole interval marked
    ``*``); under each, the highest flow at that time of day on the days before; and the meter's
    highest flow on those days."""
    lines = []
    row_of = {m: i for i, m in enumerate(run.customers.meter_ids.tolist())}
    clock = Clock.of(run.customers)
    interval_h = run.customers.interval_s / 3600
    reach = max(1, round(config.burst_time_of_day_minutes * 60 / run.customers.interval_s))
    per_day = 86_400 // run.customers.interval_s
    k = config.burst_history_days
    for i in late(run):
        m, limit = run.matches[i], run.deadlines[i]
        a, e = m.alert, m.event
        meter = str(e.meter_id)
        one = run.customers.take(np.array([row_of[meter]]))
        flows = interval_flows(one, config)
        f = flows.flow_l_h[0].copy()
        f[flows.spread[0]] = np.nan
        began = clock.column(e.start)  # the read closing the interval it began in (burst_deadline's)
        whole = began + 1  # the read closing its first whole interval: f[whole] is that interval's flow
        partial_min = (clock.at(began) - e.start).total_seconds() / 60
        days_read = np.unique(np.flatnonzero(~np.isnan(f[:whole])) // per_day).size
        learning = days_read < config.burst_learning_days
        leak_open = any(
            lk.meter_id == meter and lk.start <= e.start + timedelta(hours=1) and (lk.ended_at or limit) >= e.start
            for lk in run.leaks
        )
        if a is None:
            raised = "not raised"
        else:
            reads_late = (a.detected_at - limit).total_seconds() / run.customers.interval_s
            raised = f"raised {a.detected_at:%m-%d %H:%M} ({reads_late:+.0f} reads)"
        lines.append(
            f"  {meter} {run.customer_class.get(meter, '?'):<16} {e.size:6.0f} L/h from {e.start:%m-%d %H:%M} "
            f"({partial_min:.0f} min in its first interval) | due {limit:%m-%d %H:%M} | {raised} | "
            f"learning {'yes' if learning else 'no'} | leak alert {'yes' if leak_open else 'no'}"
        )
        span = np.arange(max(whole - BEFORE, 1), min(whole + AFTER + 1, f.size))
        hours = [clock.at(int(j) - 1) for j in span]
        mark = ["*" if j == whole else " " for j in span]
        busiest = []
        for j in span.tolist():
            past = [j - d * per_day + s for d in range(1, k + 1) for s in range(-reach, reach + 1)]
            seen = f[[p for p in past if 0 <= p < j - 1]]
            busiest.append(float(np.nanmax(seen)) if np.any(~np.isnan(seen)) else float("nan"))
        lines.append(
            "    flow:    " + " ".join(f"{t:%H}h{s}{f[j]:5.0f}" for t, s, j in zip(hours, mark, span, strict=True))
        )
        lines.append("    busiest: " + " ".join(f"{t:%H}h {b:5.0f}" for t, b in zip(hours, busiest, strict=True)))
        history = f[max(whole - 1 - k * per_day, 0) : max(whole - 2, 0)]
        highest = float(np.nanmax(history)) if np.any(~np.isnan(history)) else float("nan")
        pairs = np.fmin(history[1:], history[:-1])
        highest_pair = float(np.nanmax(pairs)) if np.any(~np.isnan(pairs)) else float("nan")
        z_first, z_whole = (
            _z_above_time_of_day(one, flows.flow_l_h[0], f, j, config, reach) for j in (whole - 1, whole)
        )
        lines.append(
            f"    highest hour of the {k} days before {highest:.0f} L/h, pair {highest_pair:.0f}; first whole "
            f"interval {f[whole]:.0f} = {f[whole] / highest if highest > 0 else float('inf'):.2f}× highest "
            f"(interval {interval_h:g} h), {z_whole:.1f} sd above its time of day, the partial one {z_first:.1f}"
        )
    return lines


def _z_above_time_of_day(
    one: SeriesBlock, raw: np.ndarray, f: np.ndarray, j: int, config: DetectionConfig, reach: int
) -> float:
    """How many standard deviations interval ``j``'s flow is above the mean at its time of day on
    the days before, as the burst rules' ``burst_z`` measures it (``_RareRules``, on the flows held
    over the burst window; ``raw``: the meter's flows, ``f``: with its spread intervals unknown)."""
    w = window_intervals(one.interval_s, config)
    layout = DayLayout.of(one)
    single_days = layout.to_days(held_flow(f[None, :], w), fill=np.nan)
    current = layout.to_days(held_flow(raw[None, :], w), fill=np.nan)
    rules = _RareRules(single_days, current, np.zeros(single_days.shape[:2], dtype=bool), config, reach, w)
    day, slot = divmod(j + layout.offset, layout.per_day)
    return float(rules._z(np.array([0]), np.array([day]), np.array([slot]))[0])


def look_alike_lines(run: BurstRun, config: DetectionConfig) -> list[str]:
    """What catching each late burst within one interval would cost: the meter-days of the fleet's
    meters without any fault, after the warm-up, with an interval at least as far above the meter's
    use as the burst's first whole interval was (as many times the busiest flow at its time of day
    on earlier days, and the meter's highest over ``burst_history_days``, and above
    ``burst_min_l_h``) and the interval before it at least as far above its own time of day's busiest
    as the burst's partial first interval. A rule loose enough to raise the burst in time raises
    each of them too: each is a false alarm, unless the rules raise it already."""
    block = run.customers
    flows = interval_flows(block, config)
    f = flows.flow_l_h.copy()
    f[flows.spread] = np.nan
    layout = DayLayout.of(block)
    current = layout.to_days(f, fill=np.nan)
    reach = max(1, round(config.burst_time_of_day_minutes * 60 / block.interval_s))
    no_history = np.zeros(current.shape[:2], dtype=bool)
    with np.errstate(invalid="ignore"):  # (a factor of 0, a rule switched off, times a meter's -inf)
        _, _, around = _slot_thresholds(current, no_history, config, reach)
    highest = _history_max(current, config.burst_history_days, 2)[:, :, None]
    before, around_before = _interval_before(current, np.nan), _interval_before(around, np.inf)
    warm = (WARM_UP_DAYS * 86_400 // block.interval_s + layout.offset) // layout.per_day
    ordinary = np.array([m not in run.faulty for m in block.meter_ids.tolist()])
    ordinary_days = ordinary[:, None] & (np.arange(current.shape[1]) >= warm)[None, :]
    row_of = {m: i for i, m in enumerate(block.meter_ids.tolist())}
    clock = Clock.of(block)
    deviations = _Deviations(block, flows.flow_l_h, f, ordinary_days, config, reach)
    lines = []
    for i in late(run):
        e = run.matches[i].event
        r = row_of[str(e.meter_id)]
        day, slot = divmod(clock.column(e.start) + 1 + layout.offset, layout.per_day)
        w, p = float(current[r, day, slot]), float(before[r, day, slot])
        by_slot, by_high = w / max(float(around[r, day, slot]), 1.0), w / max(float(highest[r, day, 0]), 1.0)
        p_slot = p / max(float(around_before[r, day, slot]), 1.0)
        with np.errstate(invalid="ignore"):
            alike = (
                (current >= np.maximum(config.burst_min_l_h, by_slot * around))
                & (current >= by_high * highest)
                & (before >= p_slot * around_before)
            )
        days = int((alike.any(axis=2) & ordinary_days).sum())
        z_whole, z_partial, by_z = deviations.alike(r, day, slot)
        lines.append(
            f"  {e.meter_id} {run.customer_class.get(str(e.meter_id), '?'):<16} {e.size:6.0f} L/h: first whole "
            f"interval {w:.0f} = {by_slot:.2f}× its time of day's busiest, {by_high:.2f}× the highest; the partial "
            f"one {p:.0f} = {p_slot:.2f}× its busiest | ordinary meter-days alike: {days} "
            f"({days / run.meter_days * 10_000:.2f} per 10,000 meter-days); by deviations ({z_whole:.1f} sd above "
            f"its time of day, the partial one {z_partial:.1f}): "
            + (f"{by_z} ({by_z / run.meter_days * 10_000:.2f})" if by_z is not None else "n/a")
        )
    return lines


class _Deviations:
    """The deviations measure of the burst rules (``burst_z``, ``burst_pair_z``: :class:`_RareRules`)
    on the fleet's ordinary meter-days: each interval above ``burst_min_l_h`` (no rule fires below
    it), its deviations above its time of day and those of the burst window before it. A rule on
    deviations loose enough to raise a burst in time raises every interval at least as far above its
    time of day, its window before at least as far above its own, whatever it is to the meter's
    highest flow: other meter-days than the ratios to the busiest flows count (seeds 21–26: a
    household's burst 8.6 deviations up, none alike by ratios, 5 by deviations; a shop's 3.7 up, 1
    and 45)."""

    def __init__(
        self,
        block: SeriesBlock,
        raw: np.ndarray,
        f: np.ndarray,
        ordinary_days: np.ndarray,
        config: DetectionConfig,
        reach: int,
    ) -> None:
        w = window_intervals(block.interval_s, config)
        layout = DayLayout.of(block)
        single_days = layout.to_days(held_flow(f, w), fill=np.nan)
        current = layout.to_days(held_flow(raw, w), fill=np.nan)
        no_history = np.zeros(current.shape[:2], dtype=bool)
        self.rules = _RareRules(single_days, current, no_history, config, reach, w)
        with np.errstate(invalid="ignore"):
            rows, days, slots = np.nonzero(ordinary_days[:, :, None] & (current > config.burst_min_l_h))
        self.rows, self.days, self.slots = rows, days, slots
        self.z = self.rules._z(rows, days, slots)
        self.z_before = self._before(rows, days, slots)

    def _before(self, rows: np.ndarray, days: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """The deviations of the burst window before each interval (-inf before the block's first)."""
        per_day = self.rules.shape[2]
        flat = days * per_day + slots - self.rules.window
        before_days, before_slots = np.divmod(np.maximum(flat, 0), per_day)
        return np.where(flat >= 0, self.rules._z(rows, before_days, before_slots), -np.inf)

    def alike(self, row: int, day: int, slot: int) -> tuple[float, float, int | None]:
        """A burst's first whole interval (``row``, ``day``, ``slot``): its deviations, its partial
        one's, and the ordinary meter-days with an interval as far up and the one before as far up
        as the partial one (None where the burst's interval is unknown)."""
        at = (np.array([row]), np.array([day]), np.array([slot]))
        z_whole, z_partial = float(self.rules._z(*at)[0]), float(self._before(*at)[0])
        if not np.isfinite(z_whole):  # a lost read: no measure of the burst to compare with
            return z_whole, z_partial, None
        hit = (self.z >= z_whole) & (self.z_before >= z_partial)
        return z_whole, z_partial, int(np.unique(self.rows[hit] * self.rules.shape[1] + self.days[hit]).size)


def false_lines(run: BurstRun) -> list[str]:
    """Each false burst (raised after the warm-up where no burst was): meter, class, rate, start, raised."""
    return [
        f"  false: {a.meter_id} {run.customer_class.get(str(a.meter_id), '?'):<16} {a.rate_l_h:6.0f} L/h from "
        f"{a.start:%m-%d %H:%M} | raised {a.detected_at:%m-%d %H:%M}"
        for a in sorted(run.false, key=lambda a: a.detected_at)
    ]


def pooled_line(found: int, events: int, false: int, meter_days: float) -> str:
    """The pooled figures: bursts raised within one interval, and false bursts per 10,000 meter-days."""
    share = found / events if events else float("nan")
    per_10k = false / meter_days * 10_000 if meter_days else float("nan")
    return (
        f"customer bursts within one interval {found}/{events} ({share:.3f}); "
        f"false bursts {false} ({per_10k:.2f} per 10,000 meter-days)"
    )


def config_with(settings: list[str]) -> DetectionConfig:
    """The default config with ``name=value`` settings of its numeric fields (a threshold to try)."""
    types = {f.name: f.type for f in fields(DetectionConfig)}
    changes: dict[str, float | int] = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        if types.get(name) not in ("float", "int"):
            raise SystemExit(f"--set {setting}: {name!r} is no numeric field of DetectionConfig")
        try:
            changes[name] = int(value) if types[name] == "int" else float(value)
        except ValueError:
            raise SystemExit(f"--set {setting}: {value!r} is not a number") from None
    return replace(DetectionConfig(), **changes)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser)
    parser.add_argument("--events", action="store_true", help="list each burst raised late or not at all")
    parser.add_argument(
        "--look-alikes", action="store_true", help="what catching each late burst in time would cost in false alarms"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a DetectionConfig threshold to try"
    )
    args = parser.parse_args()
    config = config_with(args.set)
    t0 = time.process_time()
    found = events = false = 0
    meter_days = 0.0
    for seed in args.seeds:
        run = run_seed(seed, meters=args.meters, days=args.days, config=config)
        print(f"seed {seed}: " + pooled_line(run.found, len(run.matches), len(run.false), run.meter_days), flush=True)
        if args.events:
            print("\n".join(event_lines(run, config) + false_lines(run)), flush=True)
        if args.look_alikes:
            print("\n".join(look_alike_lines(run, config)), flush=True)
        found, events, false, meter_days = (
            found + run.found,
            events + len(run.matches),
            false + len(run.false),
            meter_days + run.meter_days,
        )
    seeds = ", ".join(map(str, args.seeds))
    print()
    print(f"Seeds {seeds} pooled ({time.process_time() - t0:.0f} s CPU):")
    print(pooled_line(found, events, false, meter_days))


if __name__ == "__main__":
    main()
