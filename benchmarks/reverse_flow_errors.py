"""Reverse flow's estimated starts and volumes, pooled over many labelled fleets and event by event.

``bench_detection`` scores every kind on one seed, and takes minutes of CPU for it (the whole engine
twice, the throughput run). The reverse-flow detector alone takes about a second per fleet, so this
runs only it, on the same labelled fleets (``labelled_fleet_spec``) and scored the same way (after the
warm-up week, ``match_alerts`` with the benchmark's grace: its figures are ``bench_detection``'s
"start ≤ 1 h" and "volume ≤ 10%" of the reverse-flow rows), over as many seeds as asked. It prints
each seed's figures, the pooled row of README's "How far off the rest are" table, and with
``--events`` each event whose start is more than an hour off or volume more than 10%, with the net
register's flows around it: what a change to the estimates must be judged on, since one seed has
only about 40 such flows and a rule that moves two of them moves its share by 0.05. With ``--causes``
it puts each volume miss down to its cause and says how much of the volume the hourly net register
could have told at all (:mod:`benchmarks.reverse_flow_causes`).

    python -m benchmarks.reverse_flow_errors --seeds 11-16                 # the tuning seeds, pooled
    python -m benchmarks.reverse_flow_errors --seeds 19 --events           # what seed 19 gets wrong
    python -m benchmarks.reverse_flow_errors --seeds 11-19 --backward-registers
    python -m benchmarks.reverse_flow_errors --seeds 11-16 --causes         # why volumes miss
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

import numpy as np

from benchmarks.bench_detection import GRACE, WARM_UP_DAYS, block_of, customers_of, in_chunks, labelled_fleet_spec
from benchmarks.reverse_flow_causes import cause, register_edges
from collector.detection.alerts import Alert
from collector.detection.config import DetectionConfig
from collector.detection.flows import interval_flows
from collector.detection.register import detect_reverse_flow
from collector.detection.scoring import Match, match_alerts
from collector.detection.series import SeriesBlock
from simulators.fleet import generate_fleet

KIND = "reverse_flow"


def parse_seeds(text: str) -> list[int]:
    """``11-16,19`` → [11, 12, 13, 14, 15, 16, 19]; ranges inclusive, each seed once, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is no seed or range of seeds (11-16)") from None
        if first < 0 or last < first:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: a range runs from a seed (0 or more) up to another")
        seeds += [s for s in range(first, last + 1) if s not in seeds]
    return seeds


@dataclass
class Errors:
    """Start errors (hours) and volume errors (share of the true volume) of the events found."""

    start_h: list[float] = field(default_factory=list)
    volume: list[float] = field(default_factory=list)
    events: int = 0

    def add(self, matches: list[Match]) -> None:
        self.events += len(matches)
        for m in matches:
            start, volume = m.start_error_h, m.volume_error
            if start is not None and volume is not None:
                self.start_h.append(start)
                self.volume.append(volume)

    def within(self, start_h: float, volume: float) -> tuple[float, float]:
        """(share of found events whose start is within ``start_h``, share whose volume is within ``volume``)."""
        s, v = np.asarray(self.start_h), np.asarray(self.volume)
        if s.size == 0:
            return float("nan"), float("nan")
        return float(np.mean(s <= start_h)), float(np.mean(v <= volume))

    def table_row(self, label: str) -> str:
        """The row of README's "How far off the rest are" table: found, start within 1/2/3 h and its
        p90, volume within 10/15/20% and its p90."""
        s, v = np.asarray(self.start_h), np.asarray(self.volume)
        if s.size == 0:
            return f"| {label} | 0 | – | – | – | – | – | – | – | – |"
        starts = " | ".join(f"{np.mean(s <= h):.3f}" for h in (1.0, 2.0, 3.0))
        volumes = " | ".join(f"{np.mean(v <= share):.3f}" for share in (0.10, 0.15, 0.20))
        return (
            f"| {label} | {s.size} | {starts} | {np.percentile(s, 90):.1f} h | {volumes} | "
            f"{100 * np.percentile(v, 90):.1f}% |"
        )


@dataclass(frozen=True)
class SeedRun:
    customers: SeriesBlock
    matches: list[Match]  # events that began after the warm-up, each with its alert (or None)
    alerts: list[Alert]


def off_target(matches: list[Match]) -> list[Match]:
    """The events missed, or found with their start more than an hour off or their volume more than
    10% (the targets the "start ≤ 1 h" and "volume ≤ 10%" figures count), in order."""
    return [m for m in matches if m.alert is None or (m.start_error_h or 0.0) > 1.0 or (m.volume_error or 0.0) > 0.10]


def not_found_line(m: Match) -> str:
    """An event no alert found, as the reports list it."""
    return f"  {m.event.meter_id} {m.event.size:6.1f} L/h from {m.event.start:%m-%d %H:%M}: not found"


def fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the fleets: ``--seeds``, ``--meters``, ``--days``."""
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("11-16"), help="e.g. 11-16,19 (default 11-16)")
    parser.add_argument("--meters", type=int, default=10_000, help="customer meters per fleet (default 10,000)")
    parser.add_argument("--days", type=int, default=35, help="days per fleet (default 35)")


def run_seed(seed: int, *, meters: int, days: int, backward_registers: bool, config: DetectionConfig) -> SeedRun:
    """The reverse-flow detector alone on the benchmark's labelled fleet of ``seed``, over the
    customer meters in the engine's chunks, matched to the fleet's reverse flows."""
    fleet = generate_fleet(labelled_fleet_spec(meters, days, seed))
    block = block_of(fleet, backward_registers=backward_registers)
    customers = customers_of(block)
    alerts = in_chunks(customers, config, detect_reverse_flow)
    warm = block.time(0) + timedelta(days=WARM_UP_DAYS)
    end = block.time(block.n_intervals - 1)
    matches, _ = match_alerts(alerts, fleet.ground_truth, KIND, end, GRACE)
    return SeedRun(customers, [m for m in matches if m.event.start >= warm], alerts)


def event_lines(run: SeedRun, config: DetectionConfig) -> list[str]:
    """One event found with its start more than an hour off or its volume more than 10%, in two
    lines: the truth beside the alert, and the net register's flows (L/h, negative backwards) from
    the interval before the event to two after it, each under the hour it began."""
    lines = []
    row_of = {m: i for i, m in enumerate(run.customers.meter_ids.tolist())}
    seconds = run.customers.timestamps.astype("datetime64[s]").astype(np.int64)
    data_end = run.customers.time(run.customers.n_intervals - 1)
    for m in off_target(run.matches):
        a, e = m.alert, m.event
        if a is None:
            lines.append(not_found_line(m))
            continue
        true_end = min(e.end or data_end, data_end)
        alert_end = a.ended_at or a.last_seen
        open_ = "" if a.ended_at else " (open)"
        true_l = e.size * m.observed_h
        lines.append(
            f"  {e.meter_id} rate {e.size:6.1f} est {a.rate_l_h:6.1f} L/h | start {e.start:%m-%d %H:%M} est "
            f"{a.start:%m-%d %H:%M} | end {true_end:%m-%d %H:%M} est {alert_end:%m-%d %H:%M}{open_} | "
            f"volume {a.volume_l:.0f} L for {true_l:.0f} ({a.volume_l / true_l - 1:+.0%})"
        )
        one = run.customers.take(np.array([row_of[str(e.meter_id)]]))
        flow = interval_flows(one, config).flow_l_h[0]
        lo = max(int(np.searchsorted(seconds, int(e.start.timestamp()))) - 1, 1)
        hi = min(int(np.searchsorted(seconds, int(true_end.timestamp()))) + 2, flow.size)
        begins = run.customers.timestamps[lo - 1 : hi - 1].astype("datetime64[h]").astype(object)
        cells = " ".join(f"{t:%H}h {x:.0f}" for t, x in zip(begins, flow[lo:hi], strict=True))
        lines.append(f"    net: {cells}")
    return lines


@dataclass
class Causes:
    """Found flows on the net register, pooled: how many the register pins within 10% whatever the
    household drew (at the true rate), how many would be within 10% at the true rate on the alerts'
    own starts and ends, or at the alerts' rates over the true spans, and the causes of the volume
    misses (:func:`benchmarks.reverse_flow_causes.cause`)."""

    found: int = 0
    within: int = 0
    pinned: int = 0
    true_rate: int = 0
    true_span: int = 0
    misses: Counter[str] = field(default_factory=Counter)
    pinned_misses: int = 0

    def add(self, run: SeedRun, config: DetectionConfig) -> None:
        found = [m for m in run.matches if m.alert is not None and m.volume_error is not None]
        if not found:
            return
        row_of = {m: i for i, m in enumerate(run.customers.meter_ids.tolist())}
        rows = np.array(sorted({row_of[str(m.event.meter_id)] for m in found}))
        flows = interval_flows(run.customers.take(rows), config)
        at = {int(r): i for i, r in enumerate(rows.tolist())}
        ends_s = run.customers.timestamps.astype("datetime64[s]").astype(np.int64).astype(np.float64)
        data_end = float(ends_s[-1])
        for m in found:
            a, e = m.alert, m.event
            assert a is not None and m.volume_error is not None
            i = at[row_of[str(e.meter_id)]]
            end = min(e.end.timestamp(), data_end) if e.end is not None else data_end
            edges = register_edges(
                flows.flow_l_h[i], ends_s, e.start.timestamp(), end, e.size, float(flows.step_flow_l_h[i, 0])
            )
            true_l = e.size * m.observed_h
            span_h = ((a.ended_at or a.last_seen) - a.start).total_seconds() / 3600.0
            self.found += 1
            self.within += m.volume_error <= 0.10
            self.pinned += edges is not None and edges.pinned(e.size, true_l)
            self.true_rate += abs(e.size * span_h - true_l) <= 0.10 * true_l
            self.true_span += abs(a.rate_l_h * m.observed_h - true_l) <= 0.10 * true_l
            if m.volume_error > 0.10:
                self.pinned_misses += edges is not None and edges.pinned(e.size, true_l)
                self.misses["no backward interval in the flow" if edges is None else cause(m, edges, data_end)] += 1

    def lines(self) -> list[str]:
        n = max(self.found, 1)
        lines = [
            f"{self.found} flows found; volume within 10%: the detector {self.within / n:.3f}; pinned by the "
            f"net register whatever the household drew (true rate) {self.pinned / n:.3f}; at the true rate on "
            f"the alerts' starts and ends {self.true_rate / n:.3f}; at the alerts' rates over the true spans "
            f"{self.true_span / n:.3f}",
            f"volume misses ({sum(self.misses.values())}, {self.pinned_misses} of them pinned by the register), "
            "by cause:",
        ]
        lines += [f"  {count:4d} {name}" for name, count in self.misses.most_common()]
        return lines


#: A seed's run: the events and alerts :func:`report_seeds` scores, and whatever its report lists beside them.
Run = TypeVar("Run", bound=SeedRun)


def report_seeds(seeds: list[int], run_one: Callable[[int], Run], events: Callable[[Run], list[str]] | None) -> Errors:
    """Run each seed (``run_one``), print its figures (and, with ``events``, its events off
    target) as it ends, and return the errors of all of them pooled."""
    pooled = Errors()
    for seed in seeds:
        run = run_one(seed)
        errors = Errors()
        errors.add(run.matches)
        pooled.add(run.matches)
        start, volume = errors.within(1.0, 0.10)
        print(
            f"seed {seed}: found {len(errors.start_h)}/{errors.events}, start ≤ 1 h {start:.3f}, "
            f"volume ≤ 10% {volume:.3f}",
            flush=True,
        )
        if events is not None:
            print("\n".join(events(run)), flush=True)
    return pooled


def print_pooled(title: str, kind: str, pooled: Errors) -> None:
    """The pooled row of README's "How far off the rest are" table, under ``title``."""
    print()
    print(title)
    print("| kind | found | start ≤ 1 h | ≤ 2 h | ≤ 3 h | p90 | volume ≤ 10% | ≤ 15% | ≤ 20% | p90 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(pooled.table_row(kind))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser)
    parser.add_argument("--backward-registers", action="store_true", help="read the meters' backward registers")
    parser.add_argument("--events", action="store_true", help="list each event more than 1 h or 10%% off")
    parser.add_argument("--causes", action="store_true", help="put each volume miss down to its cause (net register)")
    args = parser.parse_args()
    if args.causes and args.backward_registers:
        parser.error("--causes reads the net register: leave out --backward-registers")
    config = DetectionConfig()
    causes = Causes()

    def run_one(seed: int) -> SeedRun:
        backward = args.backward_registers
        run = run_seed(seed, meters=args.meters, days=args.days, backward_registers=backward, config=config)
        if args.causes:
            causes.add(run, config)
        return run

    t0 = time.process_time()
    pooled = report_seeds(args.seeds, run_one, (lambda run: event_lines(run, config)) if args.events else None)
    register = "backward register" if args.backward_registers else "net register"
    seeds = ", ".join(map(str, args.seeds))
    title = f"Reverse flow on the {register}, seeds {seeds} pooled ({time.process_time() - t0:.0f} s CPU):"
    print_pooled(title, f"reverse flow, {register}", pooled)
    if args.causes:
        print()
        print("\n".join(causes.lines()))


if __name__ == "__main__":
    main()
