"""VEE's hourly round against the database: loading its readings beside the query it had before and
a plain COPY of the same rows.

``aquami collector run`` runs a VEE round every hour (:func:`collector.vee.rounds.vee_round`): VEE
over the newest two days, each meter measured against its own profile from the 28 days before, then
the consumption refreshed. Most of a round is loading those 30 days of every meter
(:func:`collector.vee.series.load_series`).

- ``load_series``: aquami's load (one binary COPY, rows put in order by NumPy, each meter's limits
  fetched once, instants as PostgreSQL sends them).
- baselines, the same readings:
  - the query before: the rows sorted in SQL, each joined to its meter's limits, each instant turned
    into seconds by ``extract(epoch …)``;
  - plain ``COPY`` of ``meter_id, ts, volume_m3`` in binary, each row decoded by psycopg: shipping
    the rows alone, row by row.
- the first round (every meter new: it finds their read intervals and estimates every gap loaded),
  then a whole round an hour later, the hourly work, and the share of it that is the load.

Readings are a labelled fleet's (``simulators.fleet``, 1% of reads missing, so there are gaps to
estimate). Needs TimescaleDB, started as the test fixtures start it (tests/services.py;
``AQUAMI_TEST_DATABASE_URL`` points at another).

    python -m benchmarks.bench_vee [--meters 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg import sql

from benchmarks.bench_detection_fetch import fleet_database
from collector.vee.config import VeeConfig
from collector.vee.rounds import ROUND_DAYS, vee_round
from collector.vee.series import _HEADER, QUALITIES, Series, load_series
from simulators.fleet import FleetSpec, generate_fleet

_SORTED_AND_JOINED = """
COPY (
    SELECT k.code, extract(epoch FROM r.ts)::float8, r.volume_m3::float8, coalesce(r.flow_m3h, 'NaN'),
           coalesce(r.reverse_volume_m3::float8, 'NaN'), 'reverse_flow' = ANY (r.alarms),
           extract(epoch FROM r.received_at)::float8,
           (array_position(ARRAY['actual', 'estimated', 'substituted', 'edited'], r.quality) - 1)::int2,
           coalesce(m.max_flow_m3h::float8, {max_flow}), coalesce(m.register_capacity_m3::float8, {capacity})
    FROM ({rows}) r JOIN vee_meter_codes k USING (meter_id) JOIN meters m USING (meter_id)
    ORDER BY k.code, r.ts
) TO STDOUT (FORMAT BINARY)
"""
# The rows every load takes: the readings in [start, end), and each meter's last one before start
# (the opening read of a gap that began before the load; load_series's look-back).
_ROWS = """
    SELECT * FROM readings WHERE ts >= {start} AND ts < {end}
    UNION ALL
    SELECT x.* FROM meters m CROSS JOIN LATERAL (
        SELECT * FROM readings r WHERE r.meter_id = m.meter_id AND r.ts < {start} ORDER BY r.ts DESC LIMIT 1
    ) x
    WHERE m.has_readings
"""
_BEFORE_FIELDS = [
    ("code", ">i4"), ("ts", ">f8"), ("volume", ">f8"), ("flow", ">f8"), ("reverse", ">f8"), ("reverse_alarm", "?"),
    ("received", ">f8"), ("quality", ">i2"), ("max_flow", ">f8"), ("capacity", ">f8"),
]  # fmt: skip
_BEFORE_ROW = np.dtype(
    [("fields", ">i2")] + [item for name, kind in _BEFORE_FIELDS for item in ((f"{name}_len", ">i4"), (name, kind))]
)


def load_before(conn: psycopg.Connection, start: datetime, end: datetime, config: VeeConfig) -> Series:
    """``load_series`` as it was: the sort, the join and the conversions in SQL (over the same rows,
    the look-back's included)."""
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS vee_meter_codes")
        cur.execute(
            "CREATE TEMP TABLE vee_meter_codes AS "
            "SELECT meter_id, (row_number() OVER (ORDER BY meter_id) - 1)::int4 AS code FROM meters"
        )
        cur.execute("ANALYZE vee_meter_codes")
        cur.execute("SELECT set_config('work_mem', '256MB', true)")
        meter_ids = [row[0] for row in cur.execute("SELECT meter_id FROM vee_meter_codes ORDER BY code")]
        query = sql.SQL(_SORTED_AND_JOINED).format(
            max_flow=sql.Literal(float(config.default_max_flow_m3h)),
            capacity=sql.Literal(float(config.default_register_capacity_m3)),
            rows=sql.SQL(_ROWS).format(start=sql.Literal(start), end=sql.Literal(end)),
        )
        buffer = bytearray()
        with cur.copy(query) as copy:
            for block in copy:
                buffer += block
    conn.commit()
    rows = np.frombuffer(bytes(buffer[_HEADER:-2]), dtype=_BEFORE_ROW)
    return Series.from_arrays(
        meter_ids, rows["code"].astype(np.int64), rows["ts"].astype(float), rows["volume"].astype(float), config,
        flow=rows["flow"].astype(float), reverse=rows["reverse"].astype(float),
        reverse_alarm=rows["reverse_alarm"].astype(bool), received=rows["received"].astype(float),
        quality=np.array(QUALITIES)[rows["quality"]], max_flow=rows["max_flow"].astype(float),
        capacity=rows["capacity"].astype(float),
    )  # fmt: skip


def plain_copy(conn: psycopg.Connection, start: datetime, end: datetime) -> int:
    """The same readings' ``meter_id, ts, volume_m3`` (the look-back's too) by binary COPY, row by row: how many."""
    count = 0
    with conn.cursor() as cur:
        rows = sql.SQL(_ROWS).format(start=sql.Literal(start), end=sql.Literal(end))
        query = sql.SQL("COPY (SELECT meter_id, ts, volume_m3 FROM ({rows}) r) TO STDOUT (FORMAT BINARY)").format(
            rows=rows
        )
        with cur.copy(query) as copy:
            copy.set_types(["text", "timestamptz", "numeric"])
            for _ in copy.rows():
                count += 1
    conn.commit()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each load, in turns; median")
    args = parser.parse_args()

    config = VeeConfig()
    spec = FleetSpec(meters=args.meters, days=config.profile_lookback_days + ROUND_DAYS + 2, seed=args.seed,
                     missing_read_fraction=0.01)  # fmt: skip
    fleet = generate_fleet(spec)
    now = fleet.timestamps[-1].astype("datetime64[us]").item().replace(tzinfo=UTC)
    end = now + timedelta(hours=1)
    start = end - timedelta(days=ROUND_DAYS + config.profile_lookback_days)
    with fleet_database(fleet) as db:
        with psycopg.connect(db) as conn:
            seconds: dict[str, list[float]] = {"load_series": [], "the query before": [], "plain COPY": []}
            for attempt in range(args.repeat):  # in turns, so all see the same (shared, noisy) machine
                t0 = time.perf_counter()
                ours = load_series(conn, start, end, config)
                conn.commit()
                seconds["load_series"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                before = load_before(conn, start, end, config)
                seconds["the query before"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                copied = plain_copy(conn, start, end)
                seconds["plain COPY"].append(time.perf_counter() - t0)
                same = bool(
                    np.array_equal(ours.meter, before.meter)
                    and np.allclose(ours.ts, before.ts, rtol=0, atol=1e-6)
                    and np.array_equal(ours.volume, before.volume)
                    and np.array_equal(ours.max_flow, before.max_flow)
                )
                if not same or copied != len(ours.ts):  # other rows are other work: no speed to compare
                    raise SystemExit(
                        f"round {attempt + 1}: the loads disagree: load_series {len(ours.ts):,} readings, the query "
                        f"before {len(before.ts):,} ({'the same' if same else 'other'} values), plain COPY {copied:,}"
                    )
                laps = ", ".join(f"{name} {s[-1]:.2f} s" for name, s in seconds.items())
                print(f"[{attempt + 1}] {laps}", flush=True)
        # the first round finds every meter's read interval and estimates all the gaps of its load
        # (30 days: every meter is new, as at a go-live); the rounds after it, the hourly work, estimate
        # the gaps closing in their two days
        t0 = time.perf_counter()
        first = vee_round(db, now, config)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = vee_round(db, now + timedelta(hours=1), config)
        round_s = time.perf_counter() - t0
    median = {name: statistics.median(s) for name, s in seconds.items()}
    ours_s = median["load_series"]
    print(f"{len(ours.ts):,} readings over {ROUND_DAYS + config.profile_lookback_days} days; the loads agree")
    print(f"load_series {ours_s:.2f} s, median of {args.repeat}")
    for name in ("the query before", "plain COPY"):
        print(f"  {name} {median[name]:.2f} s: load_series is {median[name] / ours_s:.1f}× faster")
    assert first is not None and done is not None
    print(
        f"the first round, every meter new, {first_s:.2f} s ({first['estimates']:,} estimates, "
        f"{first['consumption_hourly_rows']:,} consumption rows)"
    )
    print(
        f"a whole round an hour later {round_s:.2f} s ({done['estimates']:,} estimates, "
        f"{done['consumption_hourly_rows']:,} consumption rows): the load is {ours_s / round_s:.0%} of it"
    )


if __name__ == "__main__":
    main()
