"""The collector's run ``--at`` hours after the last reading stored: an open main burst is seen until
that reading, as on the files (``district_overlap._seen_until``), against a real TimescaleDB."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from benchmarks.bench_detection import block_of as fleet_block
from benchmarks.bench_detection_fetch import load
from collector.detection.alerts import AlertKind
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection_job import DetectionJobConfig, fetch_block
from simulators.fleet import FleetSpec, generate_fleet


def test_the_jobs_run_hours_after_the_last_reading_adds_no_water_to_an_open_main_burst(
    migrated_database_url: str,
) -> None:
    """Seed 11's small fleet, stored; its DMA001 main burst (346 L/h) open at the last readings
    (01-18 23:00). The job's block at 06:00 the next day has its grid on to 06:00, no read there:
    the burst was last seen at 06:00 with 12,110 L (9,688 L at 23:00), an hour of water more for
    every hour the run came later. Now the same ``last_seen`` and volume at 23:00 and at 06:00."""
    spec = FleetSpec(
        meters=400, days=14, seed=11, meters_per_dma=200, leak_fraction=0.05, burst_fraction=0.02,
        reverse_flow_fraction=0.01, stuck_fraction=0.01, dma_bursts=2, missing_read_fraction=0.01,
    )  # fmt: skip
    fleet = generate_fleet(spec)
    load(migrated_database_url, fleet)
    last_read = fleet_block(fleet).time(-1)
    open_bursts = {}
    with psycopg.connect(migrated_database_url) as conn:
        for now in (last_read, last_read + timedelta(hours=7)):
            block = fetch_block(conn, now, DetectionJobConfig(history_days=28))
            open_bursts[now] = {
                a.alert_id: (a.last_seen, round(a.volume_l, 3))
                for a in detect(block, DetectionConfig())
                if a.kind is AlertKind.DMA_BURST and a.ended_at is None
            }
    at_last_read = open_bursts[last_read]
    assert at_last_read["dma_burst/dma:DMA001/20260118T000000Z"][0] == last_read
    assert open_bursts[last_read + timedelta(hours=7)] == at_last_read
