"""The hourly detection job, replayed in memory on a labelled fleet, opens what one run raises."""

from __future__ import annotations

from benchmarks.bench_detection import block_of
from benchmarks.bench_detection_job import compare
from collector.detection.config import DetectionConfig
from collector.detection_job import DetectionJobConfig
from simulators.fleet import FleetSpec, generate_fleet


def test_a_day_of_hourly_runs_opens_the_alerts_one_run_raises_in_it_and_no_others() -> None:
    """2,000 meters, the job run every hour over the last day of 30. Each run's window slides an
    hour: old episodes are dated anew, and its oldest days have little history of their own. The
    alerts opened over the day are the ones a single run over the final window raised in it, each
    once (before the job opened only what its newest week shows, it opened 37 here, for 2)."""
    spec = FleetSpec(
        meters=2000, days=30, seed=3, leak_fraction=0.02, burst_fraction=0.01, reverse_flow_fraction=0.005,
        stuck_fraction=0.005, dma_bursts=8, missing_read_fraction=0.01,
    )  # fmt: skip
    result = compare(block_of(generate_fleet(spec)), 24, DetectionJobConfig(), DetectionConfig())
    assert result.raised_by_one_run >= 1
    assert result.opened_by_job == result.raised_by_one_run
    assert not result.job_only and not result.one_run_only
