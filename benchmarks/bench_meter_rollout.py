"""Main bursts during an AMI rollout: meters exchanged for new ones, with and without meterization's record.

A rollout replaces most of a district's meters within weeks. Each exchanged meter stops being read
and its replacement starts; to the DMA balance an unread customer meter is a missing read, and its
use is estimated on beside its replacement's reads, so the household counts twice. Meterization's
installations and removals (``meter_installations``, or ``installed_at``/``removed_at`` in
``aquami detect``'s METERS.csv) tell the detectors that the old meter passed no water.

The benchmark's labelled fleet (:mod:`benchmarks.bench_detection`) has a share of its customer
meters without faults exchanged at random hours over two weeks (a new meter has none of the old
one's faults), and main bursts are scored three ways in the same run: the fleet as it was (no
exchanges), the exchanges unrecorded, and the exchanges recorded.

    python -m benchmarks.bench_meter_rollout [--seed N] [--share 0.3] [--quick] [--meters N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from datetime import timedelta

import numpy as np

from benchmarks.bench_detection import GRACE, WARM_UP_DAYS, block_of, labelled_fleet_spec
from collector.detection.config import DetectionConfig
from collector.detection.engine import run_detection
from collector.detection.scoring import KindScore, score_kind
from collector.detection.series import CUSTOMER, SeriesBlock
from simulators.fleet import Fleet, generate_fleet


def with_exchanges(
    fleet: Fleet, share: float, first_day: int, last_day: int, rng: np.random.Generator
) -> tuple[SeriesBlock, SeriesBlock]:
    """(unrecorded, recorded): the fleet's block with ``share`` of its fault-free customer meters
    exchanged at random hours from ``first_day`` to ``last_day``. The old meter is read until the
    exchange, the new one (``<old id>-NEW``, its register the old one's: any offset will do) from
    it; ``recorded`` carries meterization's installations, ``unrecorded`` the same reads without."""
    block = block_of(fleet)
    faulty = {e.meter_id for e in fleet.ground_truth if e.meter_id}
    eligible = np.flatnonzero((block.role == CUSTOMER) & ~np.isin(block.meter_ids, sorted(faulty)))
    old = np.sort(rng.choice(eligible, int(share * eligible.size), replace=False))
    at = rng.integers(first_day * 24 * 3600 // block.interval_s, last_day * 24 * 3600 // block.interval_s, old.size)
    columns = np.arange(block.n_intervals)
    after = columns[None, :] > at[:, None]  # the intervals after the one the exchange falls in
    volume = block.volume_m3.copy()
    volume[old] = np.where(after, np.nan, volume[old])
    new = np.where(columns[None, :] >= at[:, None], block.volume_m3[old], np.nan)
    installed = np.ones((block.n_meters + old.size, block.n_intervals), dtype=bool)
    installed[old] = ~after
    installed[block.n_meters :] = columns[None, :] >= at[:, None]
    unrecorded = SeriesBlock(
        meter_ids=np.r_[block.meter_ids, np.char.add(block.meter_ids[old], "-NEW")],
        dma=np.r_[block.dma, block.dma[old]],
        role=np.r_[block.role, block.role[old]],
        timestamps=block.timestamps,
        volume_m3=np.vstack([volume, new]),
        bulk=None if block.bulk is None else np.r_[block.bulk, block.bulk[old]],
        day_offset_s=block.day_offset_s,
    )
    recorded = dataclasses.replace(unrecorded, installed=installed)
    return unrecorded, recorded


def main_bursts(fleet: Fleet, block: SeriesBlock, config: DetectionConfig) -> KindScore:
    warm = block.time(0) + timedelta(days=WARM_UP_DAYS)
    end = block.time(block.n_intervals - 1)
    customer_days = float(np.sum(fleet.role == CUSTOMER)) * (end - warm).total_seconds() / 86_400
    return score_kind(
        run_detection(block, config).alerts,
        fleet.ground_truth,
        "dma_burst",
        data_end=end,
        meter_days=customer_days,
        grace=GRACE,
        scored_from=warm,
        size_range=(0.0, float("inf")),
        min_observed_h=24,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller fleet, for a smoke run")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--share", type=float, default=0.3, help="share of fault-free customer meters exchanged")
    parser.add_argument("--meters", type=int, default=0, help="customer meters (default 10,000, --quick 3,000)")
    args = parser.parse_args()
    meters, days = (3000, 28) if args.quick else (10_000, 35)
    meters = args.meters or meters
    first_day, last_day = WARM_UP_DAYS + 3, min(days - 3, WARM_UP_DAYS + 17)
    t0 = time.perf_counter()
    fleet = generate_fleet(labelled_fleet_spec(meters, days, args.seed))
    unrecorded, recorded = with_exchanges(fleet, args.share, first_day, last_day, np.random.default_rng(args.seed))
    exchanged = recorded.n_meters - fleet.meter_ids.size
    print(
        f"fleet: {meters:,} customer meters × {days} days hourly, seed {args.seed}; {exchanged:,} exchanged "
        f"on days {first_day}–{last_day} ({time.perf_counter() - t0:.1f} s)"
    )
    config = DetectionConfig()
    rows = [
        ("no exchanges", main_bursts(fleet, block_of(fleet), config)),
        ("exchanges, unrecorded", main_bursts(fleet, unrecorded, config)),
        ("exchanges, recorded by meterization", main_bursts(fleet, recorded, config)),
    ]
    print()
    print("| main bursts (DMA) | found | false alarms | start ≤ 1 h | volume ≤ 10% | median hours to detect |")
    print("|---|---|---|---|---|---|")
    for label, s in rows:
        print(
            f"| {label} | {s.detected}/{s.events} | {s.false_alarms} | {s.start_within_1h:.2f} "
            f"| {s.volume_within_10pct:.2f} | {s.median_delay_h:.1f} |"
        )
    base, blind, seen = (s for _, s in rows)
    print()
    print(
        f"Recorded against unrecorded: recall {seen.recall:.2f} against {blind.recall:.2f}, false alarms "
        f"{seen.false_alarms} against {blind.false_alarms}; against no exchanges: recall ratio "
        f"{seen.recall / base.recall if base.recall else float('nan'):.2f}."
    )


if __name__ == "__main__":
    main()
