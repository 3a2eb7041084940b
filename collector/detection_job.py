"""Detection over the database: fetch a block of registers in bulk, detect, merge into stored alerts.

An incremental run looks at the newest ``history_days`` up to ``now`` on the interval grid, so every
alert it raises uses only readings up to ``now`` (detection is causal), and re-running over more data
finds the same episodes again, which :func:`merge_alerts` turns into updates, never duplicates. The
window slides, so a later run may date an episode an hour later (a new id) or from the window's
start: each run loads every alert last seen inside its window, not only the active ones, and opens
only what it detects in its newest ``opens_within`` (or what is still running), since the window's
oldest days are the detectors' history and have too little of their own
(``benchmarks/bench_detection_job.py`` replays the schedule beside one run).
Several collectors may schedule runs: an advisory lock makes them take turns.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from collector.alert_store import alerts_to_merge, record_run, save_changes
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.lifecycle import AlertChanges, merge_alerts
from collector.detection.series import SeriesBlock

log = logging.getLogger(__name__)
_LOCK_KEY = 0x64657465  # "dete"

# The last reading in each interval (instant - step, instant], as the register at that instant.
_BLOCK_QUERY = """
SELECT meter_id,
       array_agg(slot ORDER BY slot) AS slots,
       array_agg(volume_m3::float8 ORDER BY slot) AS volumes,
       array_agg(array_to_string(alarms, ',') ORDER BY slot) AS alarms,
       array_agg(coalesce(reverse_volume_m3::float8, 'NaN') ORDER BY slot) AS reverse_volumes
FROM (
    SELECT DISTINCT ON (meter_id, slot) meter_id, slot, volume_m3, alarms, reverse_volume_m3
    FROM (
        SELECT meter_id, volume_m3, alarms, reverse_volume_m3, ts,
               ceil(extract(epoch FROM ts - %(first)s) / %(step)s)::int AS slot
        FROM readings
        WHERE ts > %(first)s - make_interval(secs => %(step)s) AND ts <= %(last)s
    ) binned
    ORDER BY meter_id, slot, ts DESC
) last_in_slot
GROUP BY meter_id
"""


@dataclass(frozen=True)
class DetectionJobConfig:
    interval: timedelta = timedelta(hours=1)
    #: How far back each run looks: the detectors' longest history (leak: 21 days) plus margin.
    history_days: int = 28
    #: Only episodes detected in the newest part of the window, or still running, open alerts: the
    #: older part is there as the detectors' history (leak and stuck: 21 days, burst: 14) and has
    #: too little of its own. Each run opens what it detects in this much of its window. Six days,
    #: not 28 - 21: the leak detector's history is the 21 whole days before an interval's day, and
    #: the window begins at the hour of ``now``, so its first day is partial; an episode detected
    #: on the zone's first day was measured against 20 days and a part (seed 19, the day's replay:
    #: a 5.5 L/h "leak" dated six days back, which the run with that day whole does not raise).
    opens_within: timedelta = timedelta(days=6)
    detection: DetectionConfig = field(default_factory=DetectionConfig)


def grid_end(now: datetime, step: timedelta) -> datetime:
    """The newest instant on the interval grid at or before ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware UTC")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (now - epoch) // step * step


def fetch_block(conn: psycopg.Connection[Any], now: datetime, config: DetectionJobConfig) -> SeriesBlock:
    """Every known meter's registers on the grid ending at ``now``, in one query."""
    step = config.interval
    last = grid_end(now, step)
    count = int(timedelta(days=config.history_days) / step) + 1
    first = last - (count - 1) * step
    timestamps = np.datetime64(first.replace(tzinfo=None), "s") + np.arange(count) * np.timedelta64(
        int(step.total_seconds()), "s"
    )
    meters = conn.execute("SELECT meter_id, coalesce(dma, 'unassigned'), role FROM meters ORDER BY meter_id").fetchall()
    index = {meter_id: i for i, (meter_id, _, _) in enumerate(meters)}
    volume = np.full((len(meters), count), np.nan)
    reverse = np.full((len(meters), count), np.nan)  # NaN: no read, or a meter without a backward register
    alarm_bits: dict[str, np.ndarray] = {}
    rows = conn.execute(_BLOCK_QUERY, {"first": first, "last": last, "step": step.total_seconds()}).fetchall()
    for meter_id, slots, volumes, alarms, reverse_volumes in rows:  # one row per meter, arrays inside
        row = index.get(meter_id)
        if row is None:
            continue  # a reading whose meter row was removed; nothing to attribute it to
        volume[row, slots] = volumes
        reverse[row, slots] = reverse_volumes
        for slot, names in zip(slots, alarms, strict=True):
            for name in filter(None, names.split(",")):
                alarm_bits.setdefault(name, np.zeros((len(meters), count), dtype=bool))[row, slot] = True
    return SeriesBlock(
        meter_ids=np.array([m[0] for m in meters], dtype=str),
        dma=np.array([m[1] for m in meters], dtype=str),
        role=np.array([m[2] for m in meters], dtype=str),
        timestamps=timestamps,
        volume_m3=volume,
        alarms=alarm_bits,
        reverse_m3=reverse if not np.isnan(reverse).all() else None,
    )


def run_detection_once(
    conn: psycopg.Connection[Any], now: datetime, config: DetectionJobConfig | None = None
) -> AlertChanges:
    """One run at ``now``: detect over the window ending there and store the alerts' new states."""
    config = config or DetectionJobConfig()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        block = fetch_block(conn, now, config)
        if block.n_meters == 0:
            return AlertChanges()
        detected = detect(block, config.detection)
        changes = merge_alerts(
            alerts_to_merge(conn, block.time(0)),
            detected,
            now,
            opens_from=block.time(block.n_intervals - 1) - config.opens_within,
        )
        save_changes(conn, changes)
        window = (block.time(0), block.time(block.n_intervals - 1))
        record_run(conn, now, window, block.n_meters, changes)
    return changes


class DetectionScheduler:
    """Runs detection every ``every`` in a thread, so a burst is raised within two read intervals."""

    def __init__(self, database_url: str, every: timedelta, config: DetectionJobConfig | None = None):
        self.database_url = database_url
        self.every = every
        self.config = config or DetectionJobConfig()
        self.runs = 0
        self.last_changes = AlertChanges()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="detection", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.database_url) as conn:
                    self.last_changes = run_detection_once(conn, datetime.now(UTC), self.config)
                self.runs += 1
                if self.last_changes:
                    log.info(
                        "detection: %d opened, %d updated, %d resolved",
                        len(self.last_changes.opened),
                        len(self.last_changes.updated),
                        len(self.last_changes.resolved),
                    )
            except psycopg.Error as error:
                log.warning("detection run failed (%s); next try in %s", error, self.every)
            self._stop.wait(self.every.total_seconds())
