"""Detection over the database: fetch a block of registers in bulk, detect, merge into stored alerts.

An incremental run looks at the newest ``history_days`` up to ``now`` on the interval grid, so every
alert it raises uses only readings up to ``now`` (detection is causal), and re-running over more data
finds the same episodes again, which :func:`merge_alerts` turns into updates, never duplicates. The
window slides, so a later run may date an episode an hour later (a new id) or from the window's
start: each run loads every alert last seen inside its window, not only the active ones, and opens
only what it detects in its newest ``opens_within`` (or what is still running), since the window's
oldest days are the detectors' history and have too little of their own
(``benchmarks/bench_detection_job.py`` replays the schedule beside one run); an ended episode
older than that opens too where some of its readings arrived after the previous run (a gateway's
spool after a week offline), since no run could have raised it in its own time.
Several collectors may schedule runs: an advisory lock makes them take turns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import psycopg

from collector import db
from collector.alert_store import alerts_to_merge, record_run, save_what_fits
from collector.detection.alerts import Alert
from collector.detection.config import DetectionConfig
from collector.detection.engine import detect
from collector.detection.lifecycle import AlertChanges, merge_alerts, to_merge
from collector.detection.series import LATE_READ_SHARE, SeriesBlock, installed_on_the_grid
from collector.floor_lag import DEFAULT_LAG, FloorLagWatch
from collector.schedule import PeriodicJob
from collector.unindexable import Unindexable
from collector.utility_zone import day_offset_s, utility_zone

log = logging.getLogger(__name__)
_LOCK_KEY = 0x64657465  # "dete"
#: Says, once per holder, that a transaction left open holds back where arrivals begin.
_FLOOR_WATCH = FloorLagWatch(log, "detection")
#: Says, once per meter or district, that its alerts are too long for the database's indexes.
_UNINDEXABLE = Unindexable(log)

# Every reading in the window, one row per meter: its readings packed as records of PostgreSQL's own
# binary forms (timestamptz_send: big-endian int64 microseconds since 2000-01-01; float8send), which
# NumPy reads without a Python step per reading, and the few readings that carry alarms, each as its
# instant's 8 bytes followed by the alarms' names. One record per reading keeps its fields together
# whatever order the aggregate takes, and however parallel workers' parts are put together.
# Returning each meter's 28 days as arrays of Python values, after taking the last reading of each
# interval in SQL, took 2.7 times as long (benchmarks/bench_detection_fetch.py).
# Only what the meters measured (or a person read or corrected): VEE's estimates fill gaps for
# billing, and the detectors treat a gap's flow as a gap (spread evenly, no evidence of flow, not
# history). Taken as reads, the estimates of 1% missing reads made the labelled fleets' false
# customer bursts 6 -> 39 (seed 12) and 7 -> 44 (seed 17), and raised two and three false main bursts.
_BLOCK_QUERY = """
SELECT meter_id,
       string_agg(timestamptz_send(ts) || float8send(volume_m3::float8)
                  || float8send(coalesce(reverse_volume_m3::float8, 'NaN')), '') AS records,
       array_agg(timestamptz_send(ts) || convert_to(array_to_string(alarms, ','), 'UTF8'))
           FILTER (WHERE alarms <> '{}') AS alarms
FROM readings
WHERE ts > %(first)s - make_interval(secs => %(step)s - %(late)s) AND ts <= %(until)s AND quality <> 'estimated'
GROUP BY meter_id
"""
#: Room for that aggregation to hold its groups without spilling to disk (the default 4 MB made the
#: fetch 1.7 times slower at 5,000 meters).
_BLOCK_WORK_MEM = "64MB"
#: The meters meterization has taken out and not fitted again, and when: their alerts end there.
_TAKEN_OUT = """
SELECT meter_id, max(removed_at) FROM meter_installations GROUP BY meter_id HAVING bool_and(removed_at IS NOT NULL)
"""
#: Per meter, the oldest and newest of its readings in a stretch of the window that arrived since
#: an instant (on the index of ``received_at``: only those are read). VEE's estimates are no reads.
_ARRIVED = """
SELECT meter_id, min(ts), max(ts) FROM readings
WHERE received_at >= %(since)s AND ts > %(first)s AND ts <= %(until)s AND quality <> 'estimated'
GROUP BY meter_id
"""
#: Where the readings that arrived after a run begin, asked before it reads them (collector
#: migration 0072): now, or the oldest open transaction's start if earlier. A reading's
#: ``received_at`` is its writing transaction's start, so what a transaction open during the run
#: commits after it is at or after this, however long it was open. Taking one twice only looks at
#: its episodes again.
_ARRIVALS_FROM = "SELECT open_transactions_floor(), clock_timestamp()"
#: Before runs recorded that floor (``arrivals_from``), a reading was taken to have arrived after
#: the previous run if it was received less than this before that run read the readings
#: (``seen_at``): a transaction open longer, begun before and committed after, was missed. Only the
#: first run after the migration, on such a record, still goes by it.
_ARRIVAL_MARGIN = timedelta(minutes=10)
_RECORD = np.dtype([("us", ">i8"), ("volume", ">f8"), ("reverse", ">f8")])
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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
    #: Each statement's limit, the wait for another collector's run included; the whole run is
    #: cut off at twice it (:mod:`collector.db`).
    statement_timeout_s: float = db.JOB_STATEMENT_TIMEOUT_S
    #: Where arrivals begin (``arrivals_from``) more than this before the database's clock is
    #: logged as a warning naming the session whose open transaction holds it there
    #: (:mod:`collector.floor_lag`): each run until it ends reads more readings as arrived.
    floor_lag_warning: timedelta = DEFAULT_LAG

    def __post_init__(self) -> None:
        if self.floor_lag_warning <= timedelta(0):
            raise ValueError(f"floor_lag_warning must be positive, not {self.floor_lag_warning}")


def grid_end(now: datetime, step: timedelta) -> datetime:
    """The newest instant on the interval grid at or before ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware UTC")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (now - epoch) // step * step


def window_grid(now: datetime, config: DetectionJobConfig) -> tuple[datetime, datetime, int]:
    """(first, last, count): the instants of a run's window ending at ``now``, on the interval grid."""
    last = grid_end(now, config.interval)
    count = int(timedelta(days=config.history_days) / config.interval) + 1
    return last - (count - 1) * config.interval, last, count


def fetch_block(conn: psycopg.Connection[Any], now: datetime, config: DetectionJobConfig) -> SeriesBlock:
    """Every known meter's registers on the grid ending at ``now`` (save those meterization took out
    before the window that were not read in it), in one query: in each interval
    (instant - step, instant], give or take :data:`LATE_READ_SHARE`, the last reading, as the
    register at that instant. VEE's estimates
    are left out: where a read is missing, the block has a gap, as the detectors expect."""
    step = config.interval
    first, last, count = window_grid(now, config)
    timestamps = np.datetime64(first.replace(tzinfo=None), "s") + np.arange(count) * np.timedelta64(
        int(step.total_seconds()), "s"
    )
    meters = conn.execute(
        "SELECT meter_id, coalesce(dma, 'unassigned'), role, bulk FROM meters ORDER BY meter_id"
    ).fetchall()
    index = {meter_id: i for i, (meter_id, *_) in enumerate(meters)}
    late = step * LATE_READ_SHARE
    # a read a little after the window's last instant stands for it, if it was there by ``now``
    until = min(now, last + late)
    params = {"first": first, "until": until, "step": step.total_seconds(), "late": late.total_seconds()}
    with conn.transaction():
        conn.execute(f"SET LOCAL work_mem = '{_BLOCK_WORK_MEM}'")
        rows = conn.cursor(binary=True).execute(_BLOCK_QUERY, params).fetchall()
    volume, reverse, alarm_bits = _on_the_grid(rows, index, count, first, step, late)
    # where meterization had each meter in its place: an exchanged meter's silence is no gap to estimate
    installations = conn.execute("SELECT meter_id, installed_at, removed_at FROM meter_installations").fetchall()
    installed = installed_on_the_grid(
        [(index[m], a, b) for m, a, b in installations if m in index], len(index), timestamps
    )
    block = SeriesBlock(
        meter_ids=np.array([m[0] for m in meters], dtype=str),
        dma=np.array([m[1] for m in meters], dtype=str),
        role=np.array([m[2] for m in meters], dtype=str),
        timestamps=timestamps,
        volume_m3=volume,
        alarms=alarm_bits,
        reverse_m3=reverse if not np.isnan(reverse).all() else None,
        bulk=np.array([m[3] for m in meters], dtype=bool),
        installed=installed,
        day_offset_s=day_offset_s(utility_zone(conn), step),  # households' days are local days
    )
    if installed is None:
        return block
    # meters taken out before the window and not read in it have nothing in it to detect: after years
    # of exchanges (an AMI rollout replaces every meter) they would be half the block
    return block.take(installed.any(axis=1) | ~np.isnan(volume).all(axis=1))


def _on_the_grid(
    rows: list[tuple[str, bytes, list[bytes] | None]],
    index: dict[str, int],
    count: int,
    first: datetime,
    step: timedelta,
    late: timedelta,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The rows of :data:`_BLOCK_QUERY` placed on the grid of ``count`` instants from ``first``:
    (registers, backward registers, alarm bits by name), each (meters, count), the meters in the
    order of ``index``. In each interval (instant - step + late, instant + late], the last reading
    stands for it, and an alarm is on if any of its readings carried it; a reading whose meter row
    was removed has nothing to be attributed to."""
    volume = np.full((len(index), count), np.nan)
    reverse = np.full((len(index), count), np.nan)  # NaN: no read, or a meter without a backward register
    alarm_bits: dict[str, np.ndarray] = {}
    rows = [r for r in rows if r[0] in index]
    if not rows:
        return volume, reverse, alarm_bits
    records = np.frombuffer(b"".join(r[1] for r in rows), _RECORD)
    row = np.repeat([index[r[0]] for r in rows], [len(r[1]) // _RECORD.itemsize for r in rows])
    step_us = step // _MICROSECOND
    first_us = (first + late - _PG_EPOCH) // _MICROSECOND
    slot = _interval_of(records["us"], first_us, step_us)
    order = np.lexsort((records["us"], slot, row))
    cell = row[order] * count + slot[order]
    chosen = order[np.r_[cell[1:] != cell[:-1], True]]  # the last reading of each interval
    volume[row[chosen], slot[chosen]] = records["volume"][chosen]
    reverse[row[chosen], slot[chosen]] = records["reverse"][chosen]
    # an interval's alarm is on if any reading in it carried it, not only the last one: a 15-minute
    # meter's tamper at :15 and :30, clear at :45, is an alarm all the same (it was stored in the
    # readings and never raised); the clear then ends it at the next interval's reading
    flagged: dict[str, tuple[list[int], list[int]]] = {}  # alarm → its readings' meter rows and instants
    for meter_id, _, alarms in rows:
        for record in alarms or ():
            us = int.from_bytes(record[:8], "big", signed=True)
            for name in filter(None, bytes(record[8:]).decode().split(",")):
                meters, instants = flagged.setdefault(name, ([], []))
                meters.append(index[meter_id])
                instants.append(us)
    for name, (meters, instants) in flagged.items():
        r, k = np.asarray(meters), _interval_of(np.asarray(instants, dtype=np.int64), first_us, step_us)
        inside = (k >= 0) & (k < count)
        alarm_bits.setdefault(name, np.zeros(volume.shape, dtype=bool))[r[inside], k[inside]] = True
    return volume, reverse, alarm_bits


_Micros = TypeVar("_Micros", int, np.ndarray)


def _interval_of(us: _Micros, first_us: int, step_us: int) -> _Micros:
    """The column of the interval (edge - step, edge] that instants ``us`` (microseconds since
    2000, as PostgreSQL counts) are in, on the grid of edges from ``first_us`` by ``step_us``."""
    return -((first_us - us) // step_us)


class BackRun(RuntimeError):
    """A run at an instant before the latest recorded run's: stored, it would rewind live alerts."""


def run_detection_once(
    conn: psycopg.Connection[Any],
    now: datetime,
    config: DetectionJobConfig | None = None,
    *,
    dry_run: dict[str, Alert] | None = None,
) -> AlertChanges:
    """One run at ``now``: detect over the window ending there and store the alerts' new states.

    A run at an instant before the latest recorded run's (a back-run over past data) would merge
    what that past window shows into the live alerts: an ongoing leak's ``last_seen`` and volume
    wound back, a resolved burst ongoing again and its closed enquiry reopened. It raises
    :class:`BackRun` instead, and writes nothing. A dry run (``dry_run``: alerts by id, none at
    first) merges into those alerts, updates them in place, and writes nothing to the database,
    at any instant: a back-run replays a period that way, each run on the last one's alerts."""
    config = config or DetectionJobConfig()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        previous = conn.execute(
            "SELECT run_at, coalesce(arrivals_from, seen_at - %s) FROM detection_runs ORDER BY run_at DESC LIMIT 1",
            (_ARRIVAL_MARGIN,),
        ).fetchone()
        if dry_run is None and previous is not None and now < previous[0]:
            raise BackRun(
                f"detection last ran at {previous[0].isoformat()}: a run at {now.isoformat()}, before it, "
                "would rewind the live alerts; replay the past as a dry run instead "
                "(aquami collector detect --out ALERTS.json)"
            )
        # only a stored run records where the next one's arrivals begin: a dry run asks nothing of the sessions
        row = conn.execute(_ARRIVALS_FROM).fetchone() if dry_run is None else None
        arrivals_from, seen_at = row or (None, None)
        if row is not None:  # one warning, naming it, when a transaction left open holds it back
            _FLOOR_WATCH.check(conn, row[0], row[1], config.floor_lag_warning)
        block = fetch_block(conn, now, config)
        if block.n_meters == 0:
            return AlertChanges()
        detected = detect(block, config.detection)
        since = block.time(0)
        opens_from = block.time(block.n_intervals - 1) - config.opens_within
        stored = to_merge(dry_run.values(), since) if dry_run is not None else alerts_to_merge(conn, since)
        arrived = None if dry_run is not None or previous is None else previous[1]
        changes = merge_alerts(
            stored,
            detected,
            now,
            opens_from=opens_from,
            removed=dict(conn.execute(_TAKEN_OUT).fetchall()),
            arrived=None if arrived is None else arrived_since(conn, block, arrived, opens_from),
            window_from=since,
        )
        if dry_run is not None:
            dry_run.update((a.alert_id, a) for a in changes.changed)
            return changes
        changes, refused = save_what_fits(conn, changes)
        _UNINDEXABLE.alerts_refused(refused)
        window = (block.time(0), block.time(block.n_intervals - 1))
        record_run(conn, now, window, block.n_meters, changes, seen_at, arrivals_from)
    return changes


def arrived_since(
    conn: psycopg.Connection[Any], block: SeriesBlock, since: datetime, until: datetime
) -> dict[str, tuple[datetime, datetime]]:
    """By subject (a meter, and its DMA as ``dma:…``): the oldest and newest instants, in the
    block's window up to ``until``, of its readings received at or after ``since`` (the database's
    clock, as ``readings.received_at``: the previous run's ``arrivals_from``).

    Per reading, a block does not say when it arrived, and the block's query is left as it is; this
    asks the readings' ``received_at`` index for the few that arrived since the previous run, and
    only of the window's older part (up to ``opens_from``, where an ended episode would otherwise not
    open): a gateway's spool after an outage, a person's corrected read. A span, not each instant:
    a spool is one stretch of a meter's reads."""
    rows = conn.execute(_ARRIVED, {"since": since, "first": block.time(0), "until": until}).fetchall()
    dma_of = dict(zip(block.meter_ids.tolist(), block.dma.tolist(), strict=True))
    spans: dict[str, tuple[datetime, datetime]] = {}
    for meter_id, oldest, newest in rows:
        subjects = [meter_id] if meter_id not in dma_of else [meter_id, f"dma:{dma_of[meter_id]}"]
        for subject in subjects:
            first, last = spans.get(subject, (oldest, newest))
            spans[subject] = (min(first, oldest), max(last, newest))
    return spans


class DetectionScheduler(PeriodicJob):
    """Runs detection every ``every`` in a thread, so a burst is raised within two read intervals."""

    name = "detection"

    def __init__(self, database_url: str, every: timedelta, config: DetectionJobConfig | None = None):
        super().__init__(every)
        self.database_url = database_url
        self.config = config or DetectionJobConfig()
        self.last_changes = AlertChanges()

    def work(self) -> None:
        with db.job_connection(self.database_url, self.config.statement_timeout_s) as conn:
            try:
                self.last_changes = run_detection_once(conn, datetime.now(UTC), self.config)
            except BackRun:  # another collector's run, begun after this one's, took the lock first
                log.info("detection: a later run came first; nothing left for this one")
                self.last_changes = AlertChanges()
                return
        if self.last_changes:
            log.info(
                "detection: %d opened, %d updated, %d resolved",
                len(self.last_changes.opened),
                len(self.last_changes.updated),
                len(self.last_changes.resolved),
            )
