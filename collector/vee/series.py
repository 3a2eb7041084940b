"""Many meters' readings as flat arrays sorted by (meter, ts): the shape every VEE rule works on.

Times are float seconds since the epoch (µs resolution is kept exactly by float64 for centuries);
volumes are float64, which is exact enough to *judge* a reading. Values written back (estimates)
are rounded to the register's resolution and stored as numeric.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from collector.vee.config import VeeConfig

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Series:
    meter_ids: list[str]  # distinct meters, index = meter code
    meter: I64  # meter code per reading
    ts: F64  # epoch seconds
    volume: F64
    flow: F64  # NaN when not reported
    reverse: F64  # NaN when not reported
    reverse_alarm: B
    received: F64  # epoch seconds of arrival
    quality: npt.NDArray[np.str_]
    max_flow: F64  # per reading, from the meter or the default
    capacity: F64  # register capacity per reading
    edited_estimate: B  # an edited reading whose history holds no actual: a person's correction of a guess

    def __len__(self) -> int:
        return len(self.ts)

    def without(self, drop: B) -> Series:
        """The same series without the readings in ``drop`` (meter codes unchanged)."""
        keep = ~drop
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name != "meter_ids"})

    def with_reads(self, other: Series) -> Series:
        """This series and ``other``'s readings (same meter codes), in order."""
        both: dict[str, Any] = {
            f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
            for f in fields(self)
            if f.name != "meter_ids"
        }
        order = np.lexsort((both["ts"], both["meter"]))
        return replace(self, **{name: values[order] for name, values in both.items()})

    @classmethod
    def from_arrays(
        cls,
        meter_ids: list[str],
        meter: I64,
        ts: F64,
        volume: F64,
        config: VeeConfig,
        *,
        flow: F64 | None = None,
        reverse: F64 | None = None,
        reverse_alarm: B | None = None,
        received: F64 | None = None,
        quality: npt.NDArray[np.str_] | None = None,
        max_flow: F64 | None = None,
        capacity: F64 | None = None,
        edited_estimate: B | None = None,
    ) -> Series:
        n = len(ts)
        nan = np.full(n, np.nan)
        order = np.lexsort((ts, meter))

        def pick(a: npt.NDArray[Any] | None, default: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return (default if a is None else np.asarray(a))[order]

        return cls(
            meter_ids=meter_ids,
            meter=np.asarray(meter, dtype=np.int64)[order],
            ts=np.asarray(ts, float)[order],
            volume=np.asarray(volume, float)[order],
            flow=pick(flow, nan),
            reverse=pick(reverse, nan),
            reverse_alarm=pick(reverse_alarm, np.zeros(n, bool)),
            received=pick(received, np.asarray(ts, float)),
            quality=pick(quality, np.full(n, "actual")),
            max_flow=pick(max_flow, np.full(n, config.default_max_flow_m3h)),
            capacity=pick(capacity, np.full(n, config.default_register_capacity_m3)),
            edited_estimate=pick(edited_estimate, np.zeros(n, bool)),
        )


QUALITIES = ("actual", "estimated", "substituted", "edited")

# Every column fixed-width and never NULL, so binary COPY rows all have one size and NumPy reads
# the whole stream as a structured array, with no Python object per reading.
_COLUMNS = """
    k.code, r.ts, r.volume_m3::float8, coalesce(r.flow_m3h, 'NaN'),
    coalesce(r.reverse_volume_m3::float8, 'NaN'), 'reverse_flow' = ANY (r.alarms), r.received_at,
    (array_position(ARRAY['actual', 'estimated', 'substituted', 'edited'], r.quality) - 1)::int2,
    CASE WHEN r.quality = 'edited' THEN NOT EXISTS (
        SELECT 1 FROM reading_history h WHERE h.meter_id = r.meter_id AND h.ts = r.ts AND h.quality = 'actual'
    ) ELSE false END
"""
# The reads in [start, end), and each meter's last read before ``start``: a gap that opened before
# the load (a meter silent 40 days, its round loading 30) has its opening read, and is estimated or
# flagged; before, neither. The look for that read (newest first) is made only for a meter that has
# readings (``meters.has_readings``, collector migration 0067): for one without, it probed every
# 7-day chunk of readings to find nothing, in every round.
LOAD_QUERY = f"""
    SELECT {_COLUMNS}
    FROM readings r JOIN vee_meter_codes k USING (meter_id)
    WHERE r.ts >= {{start}} AND r.ts < {{end}}
    UNION ALL
    SELECT {_COLUMNS}
    FROM vee_meter_codes k JOIN meters m ON m.meter_id = k.meter_id AND m.has_readings CROSS JOIN LATERAL (
        SELECT * FROM readings x WHERE x.meter_id = k.meter_id AND x.ts < {{start}} ORDER BY x.ts DESC LIMIT 1
    ) r
"""
_LOAD = f"COPY ({LOAD_QUERY}) TO STDOUT (FORMAT BINARY)"
# Per meter, not per reading: its limits, in code order.
_METER_LIMITS = """
SELECT k.meter_id, coalesce(m.max_flow_m3h::float8, {max_flow}), coalesce(m.register_capacity_m3::float8, {capacity})
FROM vee_meter_codes k JOIN meters m USING (meter_id)
ORDER BY k.code
"""
_FIELDS = [
    ("code", ">i4"),
    ("ts", ">i8"),  # timestamptz as PostgreSQL sends it: microseconds since 2000-01-01 UTC
    ("volume", ">f8"),
    ("flow", ">f8"),
    ("reverse", ">f8"),
    ("reverse_alarm", "?"),
    ("received", ">i8"),
    ("quality", ">i2"),
    ("edited_estimate", "?"),
]
_ROW = np.dtype(
    [("fields", ">i2")] + [item for name, kind in _FIELDS for item in ((f"{name}_len", ">i4"), (name, kind))]
)
_HEADER = 19  # PGCOPY signature, flags, header extension length


def load_series(
    conn: psycopg.Connection, start: datetime, end: datetime, config: VeeConfig, meters: list[str] | None = None
) -> Series:
    """Every reading in [start, end) of ``meters`` (all when None), and each one's last reading
    before ``start``: one binary COPY, read by NumPy
    and put in order there (``Series.from_arrays``). A 30-day load of 5,010 meters (3.6M readings)
    took 14.9 s when the query sorted them, joined each to its meter's limits and turned its two
    instants into seconds; 7.3 s without (the limits come once per meter, the instants as sent)."""
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS vee_meter_codes")
        cur.execute(
            "CREATE TEMP TABLE vee_meter_codes AS SELECT meter_id, (row_number() OVER (ORDER BY meter_id) - 1)::int4 "
            "AS code FROM meters WHERE %(meters)s::text[] IS NULL OR meter_id = ANY (%(meters)s)",
            {"meters": meters},
        )
        cur.execute("ANALYZE vee_meter_codes")
        defaults = {
            "max_flow": sql.Literal(float(config.default_max_flow_m3h)),
            "capacity": sql.Literal(float(config.default_register_capacity_m3)),
        }
        limits = cur.execute(sql.SQL(_METER_LIMITS).format(**defaults)).fetchall()
        meter_ids = [row[0] for row in limits]
        max_flow = np.array([row[1] for row in limits], dtype=float)
        capacity = np.array([row[2] for row in limits], dtype=float)
        query = sql.SQL(_LOAD).format(start=sql.Literal(start), end=sql.Literal(end))
        buffer = bytearray()
        with cur.copy(query) as copy:
            for block in copy:
                buffer += block
    return _parsed(buffer, meter_ids, max_flow, capacity, config)


# The read before each of some reads of a series (measured only: not VEE's estimates, when the
# second parameter is true), meters by code in vee_meter_codes
_BEFORE = f"""COPY (
    SELECT {_COLUMNS}
    FROM unnest(%s::int4[], %s::float8[]) AS s(code, ts_epoch) JOIN vee_meter_codes k USING (code)
    CROSS JOIN LATERAL (
        SELECT * FROM readings x WHERE x.meter_id = k.meter_id AND x.ts < to_timestamp(s.ts_epoch)
        AND NOT (%s AND x.quality = 'estimated') ORDER BY x.ts DESC LIMIT 1
    ) r
) TO STDOUT (FORMAT BINARY)"""


def load_reads_before(
    conn: psycopg.Connection, series: Series, idx: npt.NDArray[np.intp], config: VeeConfig, *, measured: bool = False
) -> Series:
    """The reading of its meter just before each reading ``idx`` of ``series`` (loaded by
    :func:`load_series` on ``conn``, whose ``vee_meter_codes`` it uses), where there is one, or
    the ``measured`` one (not VEE's estimate): one look per read, newest first."""
    buffer = bytearray()
    if len(idx):
        params = (series.meter[idx].tolist(), series.ts[idx].tolist(), measured)
        with conn.cursor().copy(_BEFORE, params) as copy:
            for block in copy:
                buffer += block
    codes = len(series.meter_ids)
    max_flow, capacity = np.zeros(codes), np.zeros(codes)
    max_flow[series.meter], capacity[series.meter] = series.max_flow, series.capacity
    return _parsed(buffer, series.meter_ids, max_flow, capacity, config)


def _parsed(buffer: bytearray, meter_ids: list[str], max_flow: F64, capacity: F64, config: VeeConfig) -> Series:
    """The readings of a binary COPY of :data:`_COLUMNS` (no rows: an empty buffer)."""
    if not buffer:
        return Series.from_arrays(meter_ids, np.zeros(0, np.int64), np.zeros(0), np.zeros(0), config)
    body = bytes(buffer[_HEADER:-2])  # without the header and the -1 trailer
    rows = np.frombuffer(body, dtype=_ROW)
    if len(rows) and (rows["fields"] != len(_FIELDS)).any():
        raise RuntimeError("unexpected binary COPY layout")
    code = rows["code"].astype(np.int64)
    return Series.from_arrays(
        meter_ids,
        code,
        _epoch_seconds(rows["ts"]),
        rows["volume"].astype(float),
        config,
        flow=rows["flow"].astype(float),
        reverse=rows["reverse"].astype(float),
        reverse_alarm=rows["reverse_alarm"].astype(bool),
        received=_epoch_seconds(rows["received"]),
        quality=np.array(QUALITIES)[rows["quality"]],
        max_flow=max_flow[code],
        capacity=capacity[code],
        edited_estimate=rows["edited_estimate"].astype(bool),
    )


_PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z in Unix seconds


def _epoch_seconds(pg_microseconds: np.ndarray) -> F64:
    """Unix seconds of timestamptz values as binary COPY sends them (converted here, not by
    ``extract(epoch …)`` once per reading in the query)."""
    whole, micro = np.divmod(pg_microseconds.astype(np.int64), 1_000_000)
    return (whole + _PG_EPOCH_S).astype(float) + micro / 1e6
