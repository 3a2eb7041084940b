"""Large leaks' estimated starts and volumes, pooled over many labelled fleets and event by event.

The leak counterpart of :mod:`benchmarks.reverse_flow_errors` (whose seeds, error tallies and table
row it shares): ``bench_detection`` takes minutes of CPU a seed, while the leak and burst detectors
alone (:func:`collector.detection.engine.leaks_and_bursts`, the engine's own step, bursts included
because a burst later seen to be a leak becomes that leak) take seconds. Scored as
``bench_detection`` scores leaks of 10 L/h and more (after the warm-up week, observed for 48 h, any
time to detect): its figures are that row's "start ≤ 1 h" and "volume ≤ 10%". With ``--events`` it
lists each leak whose start is more than an hour off or volume more than 10%, with the meter's flows
around the true start and, under each, its median flow at that time of day on the days before.

    python -m benchmarks.leak_errors --seeds 11-16              # the tuning seeds, pooled
    python -m benchmarks.leak_errors --seeds 12 --events        # what seed 12 gets wrong
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import numpy as np

from benchmarks.bench_detection import GRACE, WARM_UP_DAYS, block_of, customers_of, in_chunks, labelled_fleet_spec
from benchmarks.reverse_flow_errors import (
    SeedRun,
    fleet_arguments,
    not_found_line,
    off_target,
    print_pooled,
    report_seeds,
)
from collector.detection.common import Clock, usual_flow_at_same_time
from collector.detection.config import DetectionConfig
from collector.detection.engine import leaks_and_bursts
from collector.detection.flows import interval_flows
from collector.detection.scoring import match_alerts
from simulators.fleet import generate_fleet

KIND = "leak"
#: bench_detection's "leak ≥ 10 L/h" row: the sizes scored, and how long a leak must have lasted
#: within the data to count.
SIZES = (10.0, float("inf"))
MIN_OBSERVED_H = 48.0
#: Intervals listed before and after a leak's true start.
BEFORE, AFTER = 6, 4


def run_seed(seed: int, *, meters: int, days: int, config: DetectionConfig) -> SeedRun:
    """The leak and burst detectors alone on the benchmark's labelled fleet of ``seed``, over the
    customer meters in the engine's chunks; the leak alerts matched to the fleet's leaks of 10 L/h
    and more begun after the warm-up and seen for 48 h."""
    fleet = generate_fleet(labelled_fleet_spec(meters, days, seed))
    block = block_of(fleet)
    customers = customers_of(block)
    alerts = [a for a in in_chunks(customers, config, leaks_and_bursts) if a.kind.value == KIND]
    warm = block.time(0) + timedelta(days=WARM_UP_DAYS)
    end = block.time(block.n_intervals - 1)
    matches, _ = match_alerts(alerts, fleet.ground_truth, KIND, end, GRACE)
    least, most = SIZES
    scored = [
        m for m in matches if m.event.start >= warm and least <= m.event.size < most and m.observed_h >= MIN_OBSERVED_H
    ]
    return SeedRun(customers, scored, alerts)


def event_lines(run: SeedRun, config: DetectionConfig) -> list[str]:
    """One leak found with its start more than an hour off or its volume more than 10% (or not
    found), in three lines: the truth beside the alert; the meter's flows (L/h) from ``BEFORE``
    intervals before the one the leak began in to ``AFTER`` after it, each under the hour it began
    (the leak's own interval marked ``*``); and the meter's median flow at those times of day on
    the ``leak_history_days`` days before."""
    lines = []
    row_of = {m: i for i, m in enumerate(run.customers.meter_ids.tolist())}
    clock = Clock.of(run.customers)
    for m in off_target(run.matches):
        a, e = m.alert, m.event
        if a is None:
            lines.append(not_found_line(m))
            continue
        true_l = e.size * m.observed_h
        off_h = (a.start - e.start).total_seconds() / 3600.0
        lines.append(
            f"  {e.meter_id} rate {e.size:6.1f} est {a.rate_l_h:6.1f} L/h | start {e.start:%m-%d %H:%M} est "
            f"{a.start:%m-%d %H:%M} ({off_h:+.1f} h) | raised {a.detected_at:%m-%d %H:%M} | "
            f"volume {a.volume_l:.0f} L for {true_l:.0f} ({a.volume_l / true_l - 1:+.0%})"
        )
        one = run.customers.take(np.array([row_of[str(e.meter_id)]]))
        flows = interval_flows(one, config)
        f, spread = flows.flow_l_h[0], flows.spread[0]
        began = clock.column(e.start)  # the interval the leak began in ends with this column's read
        span = np.arange(max(began - BEFORE, 1), min(began + AFTER + 1, f.size))
        usual = usual_flow_at_same_time(f, spread, span, clock, config.leak_history_days)
        hours = [clock.at(int(j) - 1) for j in span]
        mark = ["*" if j == began else " " for j in span]
        lines.append(
            "    flow:  " + " ".join(f"{t:%H}h{s}{f[j]:5.0f}" for t, s, j in zip(hours, mark, span, strict=True))
        )
        lines.append("    usual: " + " ".join(f"{t:%H}h {u:5.0f}" for t, u in zip(hours, usual, strict=True)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser)
    parser.add_argument("--events", action="store_true", help="list each leak more than 1 h or 10%% off")
    args = parser.parse_args()
    config = DetectionConfig()
    t0 = time.process_time()
    pooled = report_seeds(
        args.seeds,
        lambda seed: run_seed(seed, meters=args.meters, days=args.days, config=config),
        (lambda run: event_lines(run, config)) if args.events else None,
    )
    seeds = ", ".join(map(str, args.seeds))
    title = f"Leaks of 10 L/h and more, seeds {seeds} pooled ({time.process_time() - t0:.0f} s CPU):"
    print_pooled(title, "leak ≥ 10 L/h", pooled)


if __name__ == "__main__":
    main()
