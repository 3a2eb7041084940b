"""The live detection job replayed hour by hour on a labelled fleet, beside one run over its window.

``bench_detection`` scores one detection run over a whole fleet. The collector works differently:
every hour it detects over the newest ``history_days`` of reads and merges what it finds into the
alerts it stores (:func:`collector.detection_job.run_detection_once`). Each alert it opens raises an
enquiry, a job for someone. This replays that schedule in memory over the last ``--days`` of a
fleet: the same detectors on the same sliding window, the same merge
(:func:`collector.detection.lifecycle.merge_alerts`, with ``opens_from`` as the job sets it), and
the stored alerts each run loads chosen as :func:`collector.alert_store.alerts_to_merge` chooses
them (active, dismissed and still running, or last seen inside the window). It prints:

* the alerts the job opened over the period (after its first run, which opens the window's
  backlog), against the alerts one run over the final window raised in the period: the ratio
  should be about 1 (more means episodes opened twice, or opened on too little history);
* the job's alerts that one run does not have, and the other way round, by kind;
* the time per hourly run.

    python -m benchmarks.bench_detection_job               # 10,000 meters, the last 2 days
    python -m benchmarks.bench_detection_job --days 7      # the last week (about 10 minutes)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta

from benchmarks.bench_detection import block_of
from collector.detection.alerts import Alert
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.lifecycle import merge_alerts, to_merge
from collector.detection.series import SeriesBlock
from collector.detection_job import DetectionJobConfig
from simulators.fleet import FleetSpec, generate_fleet


def replay_job(
    block: SeriesBlock, hours: int, job: DetectionJobConfig, config: DetectionConfig
) -> tuple[dict[str, Alert], int, float]:
    """(stored alerts by id, alerts opened after the first run, mean seconds per run) of the job
    run every hour over the block's last ``hours``."""
    end = block.time(block.n_intervals - 1)
    stored: dict[str, Alert] = {}
    opened_later, seconds, runs = 0, 0.0, 0
    for hour in range(hours, -1, -1):
        now = end - timedelta(hours=hour)
        started = time.perf_counter()
        window = block.until(now).since(now - timedelta(days=job.history_days))
        found = detect(window, config)
        since = window.time(0)
        loaded = to_merge(stored.values(), since)
        changes = merge_alerts(loaded, found, now, opens_from=now - job.opens_within, window_from=since)
        seconds += time.perf_counter() - started
        runs += 1
        if hour < hours:
            opened_later += len(changes.opened)
        stored.update((a.alert_id, a) for a in changes.changed)
    return stored, opened_later, seconds / runs


def _unmatched(alerts: Iterable[Alert], others: list[Alert]) -> Counter[str]:
    """By kind, the ``alerts`` no alert of ``others`` about the same thing overlaps."""
    return Counter(a.kind.value for a in alerts if not any(a.key == b.key and a.overlaps(b) for b in others))


@dataclasses.dataclass(frozen=True)
class JobComparison:
    opened_by_job: int  # after its first run
    raised_by_one_run: int  # detected in the same period
    job_only: Counter[str]  # the job's alerts of the period one run has no overlapping alert for, by kind
    one_run_only: Counter[str]  # the other way round
    seconds_per_run: float


def compare(block: SeriesBlock, hours: int, job: DetectionJobConfig, config: DetectionConfig) -> JobComparison:
    """The job replayed over the block's last ``hours`` beside one run over its final window."""
    stored, opened_later, per_run = replay_job(block, hours, job, config)
    end = block.time(block.n_intervals - 1)
    first_run = end - timedelta(hours=hours)
    one_run = detect(block.since(end - timedelta(days=job.history_days)), config)
    in_period = [a for a in one_run if a.detected_at > first_run]
    job_in_period = [a for a in stored.values() if a.detected_at > first_run]
    return JobComparison(
        opened_by_job=opened_later,
        raised_by_one_run=len(in_period),
        job_only=_unmatched(job_in_period, one_run),
        one_run_only=_unmatched(in_period, list(stored.values())),
        seconds_per_run=per_run,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=2.0, help="days replayed hour by hour, at the fleet's end")
    args = parser.parse_args()
    job, config = DetectionJobConfig(), DetectionConfig()
    spec = FleetSpec(
        meters=args.meters, days=job.history_days + int(args.days) + 1, seed=args.seed, leak_fraction=0.02,
        burst_fraction=0.01, reverse_flow_fraction=0.005, stuck_fraction=0.005,
        dma_bursts=max(2, args.meters // 250), missing_read_fraction=0.01,
    )  # fmt: skip
    block = block_of(generate_fleet(spec))
    hours = int(args.days * 24)
    print(f"fleet: {args.meters:,} meters × {spec.days} days; the job replayed every hour over the last {hours} h")
    result = compare(block, hours, job, config)
    print(f"alerts the job opened after its first run: {result.opened_by_job}")
    print(f"alerts one run over the final window raised in the period: {result.raised_by_one_run}")
    print(f"ratio: {result.opened_by_job / max(result.raised_by_one_run, 1):.2f} (goal: about 1)")
    print(f"job's alerts raised in the period that one run has not: {dict(result.job_only)}")
    print(f"one run's alerts in the period the job never raised: {dict(result.one_run_only)}")
    print(f"seconds per hourly run (detect and merge, in memory): {result.seconds_per_run:.2f}")


if __name__ == "__main__":
    main()
