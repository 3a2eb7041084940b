"""The hourly detection run against the database: fetching its window beside a plain fetch of the same
rows, and the detectors on what was fetched.

Every hourly run of the detection job (:mod:`collector.detection_job`) reads every meter's registers
over the newest ``history_days`` (28) from TimescaleDB, one query (``fetch_block``: the last reading
in each hour of the grid, as arrays per meter), then runs the detectors on that block. Over a
utility's whole fleet that fetch is the run's largest read, and it is repeated every hour.

- ``fetch_block``: the job's own query and the arrays it fills.
- baselines, the same registers into the same arrays:
  - plain ``COPY``: binary ``COPY`` of the window's readings out (``meter_id, ts, volume_m3``), each
    row placed as it comes: the straightforward fetch, which trusts every reading to sit on the
    grid (the job's query takes the last in each hour, wherever they sit);
  - arrays in SQL: the query ``fetch_block`` had before, which took the last reading of each hour
    in SQL (``DISTINCT ON``) and returned each meter's window as arrays of values.
- detection: ``collector.detection.engine.detect`` on the fetched block, for the run's other half.

Readings are a labelled fleet's (``simulators.fleet``: 1% of reads missing), on the hourly grid,
loaded with binary ``COPY``. Needs TimescaleDB, started as the test fixtures start it
(tests/services.py; ``AQUAMI_TEST_DATABASE_URL`` points at another).

    python -m benchmarks.bench_detection_fetch [--meters 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import psycopg

from collector.detection.engine import detect
from collector.detection.series import SeriesBlock
from collector.detection_job import DetectionJobConfig, fetch_block, window_grid
from collector.migrate import migrate
from simulators.fleet import Fleet, FleetSpec, generate_fleet
from tests.services import admin_url, create_database, drop_database


def load(url: str, fleet: Fleet) -> int:
    """The fleet's meters and readings into a migrated database; the number of readings."""
    rows = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY meters (meter_id, registered, dma, role) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "bool", "text", "text"])
            for meter in zip(fleet.meter_ids.tolist(), fleet.dma.tolist(), fleet.role.tolist(), strict=True):
                copy.write_row((meter[0], True, meter[1], meter[2]))
        stamps = [t.replace(tzinfo=UTC) for t in fleet.timestamps.astype("datetime64[us]").tolist()]
        with cur.copy("COPY readings (meter_id, ts, volume_m3) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "timestamptz", "numeric"])
            for meter_id, registers in zip(fleet.meter_ids.tolist(), fleet.volume_m3, strict=True):
                for ts, value in zip(stamps, registers.tolist(), strict=True):
                    if value == value:  # a missing read is NaN
                        copy.write_row((meter_id, ts, Decimal(f"{value:.3f}")))
                        rows += 1
        conn.commit()
    return rows


@contextmanager
def fleet_database(fleet: Fleet) -> Iterator[str]:
    """A fresh migrated database holding the fleet (loaded, analysed, its size printed), dropped after."""
    server = admin_url()
    db = create_database(server)
    try:
        migrate(db)
        started = time.perf_counter()
        rows = load(db, fleet)
        meters = int(np.sum(fleet.role == "customer"))
        print(f"{meters} meters, {rows:,} readings loaded in {time.perf_counter() - started:.0f} s", flush=True)
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("ANALYZE readings")
        yield db
    finally:
        drop_database(server, db)


def _no_registers(conn: psycopg.Connection, count: int) -> tuple[dict[str, int], np.ndarray]:
    """(each meter's row, in ``fetch_block``'s order; (M, count) registers, all unknown)."""
    meters = [m for (m,) in conn.execute("SELECT meter_id FROM meters ORDER BY meter_id")]
    return {meter_id: i for i, meter_id in enumerate(meters)}, np.full((len(meters), count), np.nan)


def plain_fetch(conn: psycopg.Connection, now: datetime, config: DetectionJobConfig) -> np.ndarray:
    """The window's readings by binary COPY, each placed on the grid by its timestamp: (M, T) m3."""
    step = config.interval
    first, last, count = window_grid(now, config)
    index, volume = _no_registers(conn, count)
    step_s = step.total_seconds()
    with conn.cursor() as cur:
        query = "COPY (SELECT meter_id, ts, volume_m3::float8 FROM readings WHERE ts > %s AND ts <= %s) TO STDOUT"
        with cur.copy(query + " (FORMAT BINARY)", (first - step, last)) as copy:
            copy.set_types(["text", "timestamptz", "float8"])
            for meter_id, ts, value in copy.rows():
                volume[index[meter_id], int((ts - first).total_seconds() // step_s)] = value
    return volume


_ARRAYS_IN_SQL = """
SELECT meter_id, array_agg(slot ORDER BY slot), array_agg(volume_m3::float8 ORDER BY slot)
FROM (
    SELECT DISTINCT ON (meter_id, slot) meter_id, slot, volume_m3
    FROM (
        SELECT meter_id, volume_m3, ts, ceil(extract(epoch FROM ts - %(first)s) / %(step)s)::int AS slot
        FROM readings
        WHERE ts > %(first)s - make_interval(secs => %(step)s) AND ts <= %(last)s
    ) binned
    ORDER BY meter_id, slot, ts DESC
) last_in_slot
GROUP BY meter_id
"""


def arrays_in_sql_fetch(conn: psycopg.Connection, now: datetime, config: DetectionJobConfig) -> np.ndarray:
    """The registers as ``fetch_block`` fetched them before: (M, T) m3."""
    first, last, count = window_grid(now, config)
    index, volume = _no_registers(conn, count)
    params = {"first": first, "last": last, "step": config.interval.total_seconds()}
    for meter_id, slots, volumes in conn.execute(_ARRAYS_IN_SQL, params).fetchall():
        volume[index[meter_id], slots] = volumes
    return volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each fetch, in turns; median")
    args = parser.parse_args()

    config = DetectionJobConfig()
    spec = FleetSpec(
        meters=args.meters, days=config.history_days + 2, seed=args.seed, leak_fraction=0.02, burst_fraction=0.01,
        missing_read_fraction=0.01,
    )  # fmt: skip
    fleet = generate_fleet(spec)
    now = fleet.timestamps[-1].astype("datetime64[us]").item().replace(tzinfo=UTC)
    with fleet_database(fleet) as db, psycopg.connect(db) as conn:
        seconds: dict[str, list[float]] = {"fetch_block": [], "plain COPY": [], "arrays in SQL": []}
        block: SeriesBlock | None = None
        for attempt in range(args.repeat):  # in turns, so all see the same (shared, noisy) machine
            t0 = time.perf_counter()
            block = fetch_block(conn, now, config)
            seconds["fetch_block"].append(time.perf_counter() - t0)
            for name, fetch in (("plain COPY", plain_fetch), ("arrays in SQL", arrays_in_sql_fetch)):
                t0 = time.perf_counter()
                volume = fetch(conn, now, config)
                seconds[name].append(time.perf_counter() - t0)
                if not np.array_equal(np.nan_to_num(block.volume_m3, nan=-1), np.nan_to_num(volume, nan=-1)):
                    # another block is other work: no speed to compare
                    raise SystemExit(f"round {attempt + 1}: the {name} fetch gives other volumes than fetch_block")
            laps = ", ".join(f"{name} {s[-1]:.2f} s" for name, s in seconds.items())
            print(f"[{attempt + 1}] {laps}", flush=True)
        assert block is not None
        t0 = time.perf_counter()
        alerts = detect(block, config.detection)
        detect_s = time.perf_counter() - t0
    median = {name: statistics.median(s) for name, s in seconds.items()}
    job = median["fetch_block"]
    cells = block.n_meters * block.n_intervals
    print(f"window: {block.n_meters} meters × {block.n_intervals} hours = {cells:,} cells; all fetches agree")
    print(f"fetch_block {job:.2f} s ({cells / job:,.0f} cells/s), median of {args.repeat}")
    for name in ("plain COPY", "arrays in SQL"):
        print(f"  {name} fetch {median[name]:.2f} s: fetch_block is {median[name] / job:.1f}× faster")
    share = job / (job + detect_s)
    print(f"detection on the block {detect_s:.2f} s ({len(alerts)} alerts): the fetch is {share:.0%} of the run")


if __name__ == "__main__":
    main()
