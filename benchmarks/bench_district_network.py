"""Main-burst detection on a hydraulic network model, scored beside LeakDB's night-flow algorithm.

Each scenario is one DMA: WNTR simulates an EPANET network WNTR ships (Net3 by default, 92 junctions,
two sources, three tanks, pumps) for five weeks with hourly customer demand from the consumption
model, pressure-driven background leakage at every junction and main bursts on random pipes whose
flow follows the pressure there (:mod:`simulators.hydraulic_dma`). The scenarios go through
:func:`collector.detection.run_detection` together, and the district alerts are scored as
``bench_detection`` scores them (recall, false alarms, time to detect, start and volume) and the
LeakDB way (F1 over DMA-hours and the early-detection score), beside LeakDB's minimum-night-flow
algorithm on the same inlets. The first week is the detectors' warm-up: no burst starts in it, and
alerts raised in it are not scored.

    python -m benchmarks.bench_district_network               # 12 scenarios (a few minutes)
    python -m benchmarks.bench_district_network --quick       # 4 scenarios
    python -m benchmarks.bench_district_network --scenarios 1 --days 12   # CI's smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

import numpy as np

from benchmarks.bench_detection import GRACE, WARM_UP_DAYS, block_of, district_leakdb
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from collector.detection.scoring import KindScore, match_alerts, score_kind
from simulators.fleet import Fleet
from simulators.hydraulic_dma import NetworkDmaSpec, generate_network_dma


def scenario(args: tuple[str, int, int]) -> Fleet:
    network, seed, days = args
    return generate_network_dma(
        NetworkDmaSpec(
            network=network, seed=seed, days=days, dma=f"{network}-S{seed:03d}", first_burst_day=WARM_UP_DAYS
        )
    )


def merged(fleets: list[Fleet]) -> Fleet:
    """The scenarios as one fleet of several DMAs (they share their timestamps)."""
    return Fleet(
        meter_ids=np.concatenate([f.meter_ids for f in fleets]),
        dma=np.concatenate([f.dma for f in fleets]),
        role=np.concatenate([f.role for f in fleets]),
        timestamps=fleets[0].timestamps,
        volume_m3=np.vstack([f.volume_m3 for f in fleets]),
        ground_truth=sorted((e for f in fleets for e in f.ground_truth), key=lambda e: e.start),
        customer_class=np.concatenate([f.customer_class for f in fleets if f.customer_class is not None]),
        bulk=np.concatenate([f.bulk if f.bulk is not None else np.zeros(f.meter_ids.size, dtype=bool) for f in fleets]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 scenarios, for a smoke run")
    parser.add_argument("--scenarios", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1, help="the first scenario's seed")
    parser.add_argument("--network", default="Net3", help="an EPANET network WNTR ships, or an .inp path")
    parser.add_argument(
        "--days",
        type=int,
        default=35,
        help=f"simulated per scenario (default 35), the first {WARM_UP_DAYS} the warm-up",
    )
    args = parser.parse_args()
    count = 4 if args.quick else args.scenarios
    days = args.days
    t0 = time.perf_counter()
    jobs = [(args.network, args.seed + k, days) for k in range(count)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        fleet = merged(list(pool.map(scenario, jobs)))
    bursts = [e for e in fleet.ground_truth if e.event == "dma_burst"]
    print(
        f"{count} scenarios of {args.network} × {days} days: {len(bursts)} main bursts, "
        f"{int(np.sum(fleet.role == 'customer')):,} customer meters ({time.perf_counter() - t0:.0f} s of WNTR)"
    )
    result = run_detection(block_of(fleet), DetectionConfig())
    block = block_of(fleet)
    warm = block.time(0) + timedelta(days=WARM_UP_DAYS)
    end = block.time(block.n_intervals - 1)
    dma_days = count * (end - warm).total_seconds() / 86_400
    meter_days = float(np.sum(fleet.role == "customer")) * dma_days / count

    def scored(min_observed_h: float) -> KindScore:
        return score_kind(
            result.alerts,
            fleet.ground_truth,
            "dma_burst",
            data_end=end,
            meter_days=meter_days,
            grace=GRACE,
            scored_from=warm,
            min_observed_h=min_observed_h,
        )

    score, any_length = scored(24), scored(0)  # bench_detection scores bursts seen for a day or more
    (ours_f1, ours_sed), (mnf_f1, mnf_sed) = district_leakdb(fleet, result.alerts)
    shares = sorted(e.size / 1000 for e in bursts)
    print(f"burst flows {shares[0]:.0f}–{shares[-1]:.0f} m³/h (3–30% of the inlet's mean, at the pipe's pressure)")
    print()
    print("| main bursts on a WNTR network | value |")
    print("|---|---|")
    print(f"| recall (target ≥ 0.85) | {score.recall:.3f} ({score.detected}/{score.events}) |")
    print(f"| recall, bursts of any length | {any_length.recall:.3f} ({any_length.detected}/{any_length.events}) |")
    print(f"| precision | {score.precision:.2f} |")
    fa = score.false_alarms
    print(f"| false alarms per DMA-month | {fa / dma_days * 30:.2f} ({fa} in {dma_days:.0f} DMA-days) |")
    print(f"| median / p90 hours to detect | {score.median_delay_h:.1f} / {score.p90_delay_h:.1f} |")
    print(f"| start ≤ 1 h · volume ≤ 10% | {score.start_within_1h:.2f} · {score.volume_within_10pct:.2f} |")
    matches, false = match_alerts(result.alerts, fleet.ground_truth, "dma_burst", end, GRACE)
    for m in matches:
        e = m.event
        if m.alert is None and e.start >= warm:
            hours = f"{m.observed_h:.0f} h" + ("" if e.end is not None else ", still on")
            print(f"missed: {e.dma} {e.size / 1000:.0f} m³/h from {e.start:%d %b %H:%M} for {hours}")
    for a in false:
        if a.detected_at >= warm:
            raised = f"from {a.start:%d %b %H:%M}, raised {a.detected_at:%d %b %H:%M}"
            print(f"false alarm: {a.dma} {a.rate_l_h / 1000:.0f} m³/h {raised}")
    # the scenarios have no customer-side events: every customer alert is false. Most meters here
    # are blocks of households; the same detectors are run once more as if meterization had not
    # registered them as bulk meters
    unregistered = run_detection(dataclasses.replace(block, bulk=None), DetectionConfig()).alerts
    bulk_meters = int(np.sum(fleet.bulk)) if fleet.bulk is not None else 0
    print(f"| customer meters registered as bulk (blocks of households, bulk users) | {bulk_meters:,} |")
    for label, alerts in (("bulk meters registered", result.alerts), ("not registered", unregistered)):
        for period, first, last in (("the warm-up week (a go-live)", block.time(0), warm), ("after it", warm, end)):
            customer = [a for a in alerts if a.meter_id is not None and first <= a.detected_at < last]
            kinds = sorted({a.kind.value for a in customer})
            by_kind = ", ".join(f"{k} {sum(a.kind.value == k for a in customer)}" for k in kinds) or "none"
            in_period = float(np.sum(fleet.role == "customer")) * (last - first).total_seconds() / 86_400
            print(
                f"| customer alerts, {label}, {period} (no customer faults here) | {len(customer)}: "
                f"{len(customer) / in_period * 10_000:.1f} per 10,000 meter-days ({by_kind}) |"
            )
    print()
    print("| LeakDB scoring | F1 | early detection |")
    print("|---|---|---|")
    print(f"| aquami DMA balance | {ours_f1:.1f} | {ours_sed:.1f} |")
    print(f"| LeakDB MNF algorithm, same inlets | {mnf_f1:.1f} | {mnf_sed:.1f} |")
    print("| LeakDB MNF baseline (published, Hanoi network) | 56.5 | 45.9 |")


if __name__ == "__main__":
    main()
