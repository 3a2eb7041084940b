"""Main bursts' estimated starts and volumes, pooled over many labelled fleets and event by event.

The district counterpart of :mod:`benchmarks.leak_errors` and :mod:`benchmarks.reverse_flow_errors`
(whose seeds, error tallies and table row it shares): ``bench_detection`` takes minutes of CPU a
seed; the DMA balance needs the customer detectors (a customer's raised burst is left out of its
estimated reads), so this runs the engine once (:func:`collector.detection.engine.run_detection`,
a few seconds a fleet) and scores only its main bursts, as ``bench_detection`` scores them (after
the warm-up week, observed for 24 h, any time to detect): its figures are that row's "start ≤ 1 h"
and "volume ≤ 10%", and the false main bursts it prints are that row's false alarms. With
``--events`` it lists each main burst whose start is more than an hour off or volume more than 10%,
with its DMA's balance around its start and its end (the excess over the balance's usual level at
that time of day) and the other main bursts of that DMA it overlaps.

    python -m benchmarks.district_errors --seeds 11-16              # the tuning seeds, pooled
    python -m benchmarks.district_errors --seeds 17 --events        # what seed 17 gets wrong
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from benchmarks.bench_detection import GRACE, WARM_UP_DAYS, block_of, labelled_fleet_spec
from benchmarks.reverse_flow_errors import (
    SeedRun,
    fleet_arguments,
    not_found_line,
    off_target,
    print_pooled,
    report_seeds,
)
from collector.detection.alerts import Alert
from collector.detection.balance import DmaBalance
from collector.detection.common import Clock, nanmedian_last
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from collector.detection.flows import DayLayout
from collector.detection.scoring import Match, TruthEvent, match_alerts
from simulators.fleet import generate_fleet

KIND = "dma_burst"
#: bench_detection's "district (DMA) burst ≥ 3%" row: how long a burst must have lasted within the data to count.
MIN_OBSERVED_H = 24.0
#: Intervals listed before and after a burst's true start, and its true end.
BEFORE, AFTER = 4, 4


@dataclass(frozen=True)
class DistrictRun(SeedRun):
    """A seed's run (``customers`` is the whole block, inlets too), with the DMAs' balance the
    detector searched and its main bursts that matched no burst (false alarms after the warm-up)."""

    balance: DmaBalance
    false_alarms: list[Alert]
    every: list[Match]  # every main burst of the fleet, the warm-up's too, with its alert (or None)


def run_seed(seed: int, *, meters: int, days: int, config: DetectionConfig) -> DistrictRun:
    """The engine on the benchmark's labelled fleet of ``seed``; its main-burst alerts matched to
    the fleet's main bursts begun after the warm-up and seen for 24 h."""
    fleet = generate_fleet(labelled_fleet_spec(meters, days, seed))
    block = block_of(fleet)
    result = run_detection(block, config)
    alerts = [a for a in result.alerts if a.kind.value == KIND]
    warm = block.time(0) + timedelta(days=WARM_UP_DAYS)
    end = block.time(block.n_intervals - 1)
    matches, false = match_alerts(alerts, fleet.ground_truth, KIND, end, GRACE)
    scored = [m for m in matches if m.event.start >= warm and m.observed_h >= MIN_OBSERVED_H]
    return DistrictRun(block, scored, alerts, result.balance, [a for a in false if a.detected_at >= warm], matches)


def _usual(losses: np.ndarray, layout: DayLayout, day: int, days: int) -> np.ndarray:
    """(per_day,) the balance's median at each time of day over the ``days`` days before ``day``
    (NaN where none is known)."""
    history = layout.to_days(losses[None, :], np.nan)[0, max(day - days, 0) : day]
    return nanmedian_last(history.T) if history.shape[0] else np.full(layout.per_day, np.nan)


def _cells(excess: np.ndarray, clock: Clock, at: int) -> str:
    """The excess (L/h) from ``BEFORE`` intervals before column ``at`` to ``AFTER`` after it, each
    under the hour its interval began (``at``'s own marked ``*``)."""
    span = range(max(at - BEFORE, 1), min(at + AFTER + 1, excess.size))
    return " ".join(f"{clock.at(j - 1):%H}h{'*' if j == at else ' '}{excess[j]:6.0f}" for j in span)


def _when(t: datetime | None) -> str:
    return "open" if t is None else f"{t:%m-%d %H:%M}"


def event_lines(run: DistrictRun, config: DetectionConfig) -> list[str]:
    """One main burst found with its start more than an hour off or its volume more than 10% (or
    not found), in up to four lines: the truth beside the alert; the DMA's balance (L/h over its
    usual level at that time of day on the ``dma_baseline_days`` before the burst began) around
    the interval it began in (marked ``*``), and around the one it was repaired in (or "open" if
    it ran past the data); and the other main bursts of the DMA that overlap it, with their alerts."""
    balance = run.balance
    row_of = {str(d): i for i, d in enumerate(balance.dmas.tolist())}
    clock = Clock(balance.timestamps, balance.interval_s, balance.day_offset_s)
    layout = DayLayout.of_grid(balance.timestamps, balance.interval_s, balance.day_offset_s)
    data_end = clock.at(balance.timestamps.shape[0] - 1)
    alert_of = {id(m.event): m.alert for m in run.every}
    lines = []
    for m in off_target(run.matches):
        a, e = m.alert, m.event
        if a is None:
            lines.append(not_found_line(m).replace(" None ", f" {e.dma} "))
            continue
        true_end = e.end if e.end is not None and e.end <= data_end else None
        true_l = e.size * m.observed_h
        off_h = (a.start - e.start).total_seconds() / 3600.0
        lines.append(
            f"  {e.dma} rate {e.size:6.0f} est {a.rate_l_h:6.0f} L/h | start {e.start:%m-%d %H:%M} est "
            f"{a.start:%m-%d %H:%M} ({off_h:+.1f} h) | end {_when(true_end)} est {_when(a.ended_at)} | "
            f"raised {a.detected_at:%m-%d %H:%M} | volume {a.volume_l:.0f} L for {true_l:.0f} "
            f"({a.volume_l / true_l - 1:+.0%})"
        )
        d = row_of[e.dma]
        losses = balance.losses_l_h[d]
        began = clock.column(e.start)  # the interval the burst began in ends with this column's read
        usual = _usual(losses, layout, layout.day_of(began), config.dma_baseline_days)
        excess = losses - usual[(layout.offset + np.arange(losses.size)) % layout.per_day]
        lines.append(f"    start: {_cells(excess, clock, began)}")
        ended = "open" if true_end is None else _cells(excess, clock, clock.column(true_end))
        lines.append(f"    end:   {ended}")
        others = [
            o.event for o in run.every if o.event is not e and o.event.dma == e.dma and _overlap(o.event, e, data_end)
        ]
        if others:
            lines.append("    with:  " + "; ".join(_other(o, alert_of.get(id(o))) for o in others))
    return lines


def _overlap(a: TruthEvent, b: TruthEvent, data_end: datetime) -> bool:
    return a.start < (b.end or data_end) and b.start < (a.end or data_end)


def _other(e: TruthEvent, alert: Alert | None) -> str:
    found = (
        "no alert" if alert is None else f"est {alert.rate_l_h:.0f} L/h {_when(alert.start)}–{_when(alert.ended_at)}"
    )
    return f"{e.size:.0f} L/h {e.start:%m-%d %H:%M}–{_when(e.end)} ({found})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser)
    parser.add_argument("--events", action="store_true", help="list each main burst more than 1 h or 10%% off")
    args = parser.parse_args()
    config = DetectionConfig()
    t0 = time.process_time()
    false = 0

    def run_one(seed: int) -> DistrictRun:
        nonlocal false
        run = run_seed(seed, meters=args.meters, days=args.days, config=config)
        false += len(run.false_alarms)
        return run

    pooled = report_seeds(args.seeds, run_one, (lambda run: event_lines(run, config)) if args.events else None)
    seeds = ", ".join(map(str, args.seeds))
    title = (
        f"Main bursts, seeds {seeds} pooled ({time.process_time() - t0:.0f} s CPU; "
        f"{false} false main bursts after the warm-up):"
    )
    print_pooled(title, "main burst (DMA)", pooled)


if __name__ == "__main__":
    main()
