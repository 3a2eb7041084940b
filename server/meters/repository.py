"""All SQL about meters and readings, in one place."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row

from server.care.placement import placing_enquiries_once
from server.corrected_spans import span_step
from server.meters.districts import check_dmas
from server.snapshot import one_moment

#: The columns of a meter's latest reading (``latest.*`` in _METER_COLUMNS).
_LATEST_COLUMNS = "ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality, gateway_id"


def _latest_join(bound: str = "") -> str:
    """The meter's newest reading (``bound``: a further condition on its ``r.ts``), looked for only where
    it has any (collector migration 0067): for one without, the look probed every 7-day chunk of
    readings, newest first, to find nothing."""
    return f"""
LEFT JOIN LATERAL (
    SELECT {_LATEST_COLUMNS}
    FROM readings r WHERE m.has_readings AND r.meter_id = m.meter_id {bound} ORDER BY ts DESC LIMIT 1
) latest ON true
"""


# the gateways the meter is assigned to now (collector.meter_gateways), the latest assigned first
_ASSIGNED = """
LEFT JOIN LATERAL (
    SELECT array_agg(g.gateway_id ORDER BY g.since DESC, g.gateway_id) AS gateways
    FROM meter_gateways g WHERE g.meter_id = m.meter_id AND g.until IS NULL
) assigned ON true
"""

# the gateway's latest word on the meter's link: offline since then, or back online (events table)
_LINK = """
LEFT JOIN LATERAL (
    SELECT ts, event FROM events e
    WHERE e.meter_id = m.meter_id AND e.event IN ('meter_offline', 'meter_online')
    ORDER BY ts DESC LIMIT 1
) link ON true
"""

# last_gateway_id: the gateway that delivered the latest reading; where that reading is an estimate
# or a person's (no gateway), or there is none, the gateway assigned last. meters.last_gateway_id is
# the gateway the meter was first heard from, never updated (collector/store.py inserts it once):
# served as it was, it named the old gateway for good after a move (assign-meters) or a second receiver.
_METER_COLUMNS = """
m.meter_id, m.registered, m.dma, m.role, m.bulk, m.first_seen,
coalesce(latest.gateway_id, assigned.gateways[1], m.last_gateway_id) AS last_gateway_id,
coalesce(assigned.gateways, '{}') AS gateways,
latest.ts AS latest_ts, latest.volume_m3 AS latest_volume_m3, latest.flow_m3h AS latest_flow_m3h,
latest.reverse_volume_m3 AS latest_reverse_volume_m3, latest.alarms AS latest_alarms,
latest.quality AS latest_quality,
CASE WHEN link.event = 'meter_offline' THEN link.ts END AS offline_since
"""


def list_meters(
    conn: psycopg.Connection, after: str | None, limit: int, not_read_since: datetime | None = None
) -> list[dict[str, Any]]:
    """Meters by id after ``after``; with ``not_read_since``, only those with no reading at or
    after it (none at all, or their latest earlier): the meters that stopped communicating.

    Each meter's latest reading is looked for within _NEAR of now in the same query as the page's rows,
    then, for the listed meters that have readings and none there, further back in spans
    (:func:`_latest_in_spans`), all of them in each span's one query. ``not_read_since`` older than that
    first span is asked of the readings between it and there, in the same query. Every bound is a
    parameter, known when its query is planned, so that TimescaleDB plans only the chunks of readings
    (7 days each) it reaches: before, the one look with no bound planned every chunk of readings, once
    per list, and the list's cost grew with the database's history (benchmarks/bench_meters_list_plans.py).

    The answer is one moment's, as :func:`get_meter`'s: a page with a meter not read within _NEAR is asked
    again, its rows and the spans, in one read-only REPEATABLE READ transaction (server.snapshot); on a
    connection in a transaction, or not autocommit, in the caller's (the meters page's one moment).
    Before, the spans ran each in its own moment after the rows': a delivery stored between them (a
    reading this hour with the days a gateway's spool held back) listed a latest reading from those days,
    the latest at no moment. A page whose meters were all read within _NEAR (or have no readings) is
    answered by its first query alone, as before, with no transaction to open and end."""
    near = datetime.now(UTC) - _NEAR
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        return _meters_with_latest(conn, after, limit, not_read_since, near)  # in the caller's moment
    rows, further = _meters_read_near(conn, after, limit, not_read_since, near)  # its own moment, alone
    if not further:
        return rows
    with one_moment(conn):
        return _meters_with_latest(conn, after, limit, not_read_since, near)


def _meters_read_near(
    conn: psycopg.Connection, after: str | None, limit: int, not_read_since: datetime | None, near: datetime
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The page's rows (_METER_COLUMNS) with their latest readings at or after ``near``, in one query, and
    those of them whose latest may be older, by meter id: they have readings (``meters.has_readings``),
    none there."""
    joins, where = [_latest_join("AND r.ts >= %(near)s"), _ASSIGNED, _LINK], []
    if after is not None:
        where.append("m.meter_id > %(after)s")
    if not_read_since is not None:
        where.append("(latest.ts IS NULL OR latest.ts < %(since)s)")  # its latest, if within _NEAR
        if not_read_since < near:  # or read between then and _NEAR ago
            joins.append(_READ_BETWEEN)
            where.append("read_between.found IS NULL")
    rows: list[dict[str, Any]] = (
        conn.cursor(row_factory=dict_row)
        .execute(
            f"SELECT {_METER_COLUMNS}, m.has_readings AS _has_readings FROM meters m {' '.join(joins)} "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY m.meter_id LIMIT %(limit)s",
            {"after": after, "limit": limit, "since": not_read_since, "near": near},
            prepare=False,
        )
        .fetchall()
    )
    further = {row["meter_id"]: row for row in rows if row.pop("_has_readings") and row["latest_ts"] is None}
    return rows, further


def _meters_with_latest(
    conn: psycopg.Connection, after: str | None, limit: int, not_read_since: datetime | None, near: datetime
) -> list[dict[str, Any]]:
    """The page's rows with their latest readings wherever they are: at or after ``near``
    (:func:`_meters_read_near`), else further back in spans. Its queries see one moment only in a
    transaction that gives one (REPEATABLE READ)."""
    rows, further = _meters_read_near(conn, after, limit, not_read_since, near)
    if further:  # none within _NEAR (nor, listed as not read since, after ``not_read_since``): further back
        start = near if not_read_since is None else min(near, not_read_since)
        for meter_id, latest in _latest_in_spans(conn, further, _spans_back(start, start)).items():
            _take_latest(further[meter_id], latest)
    return rows


# Whether the meter has a reading in [since, near): with _latest_join's look at the readings since
# ``near``, whether it has any since ``since`` (list_meters' ``not_read_since``), between bounds known
# when the query is planned.
_READ_BETWEEN = """
LEFT JOIN LATERAL (
    SELECT true AS found FROM readings r
    WHERE m.has_readings AND r.meter_id = m.meter_id AND r.ts >= %(since)s AND r.ts < %(near)s LIMIT 1
) read_between ON true
"""


def _latest_in_spans(
    conn: psycopg.Connection, meter_ids: Iterable[str], spans: Iterable[tuple[datetime | None, datetime | None]]
) -> dict[str, dict[str, Any]]:
    """Each meter's latest reading (_LATEST_COLUMNS) in the first span (given newest first, ``[low, high)``,
    None: unbounded) holding any of its readings; a meter without any in them is left out. One query a
    span for all the meters not yet found, its bounds parameters, known when it is planned, so that it
    plans only the chunks of readings the span reaches; unprepared, as :func:`_read_in_spans`' are."""
    left, found = list(meter_ids), dict[str, dict[str, Any]]()
    cursor = conn.cursor(row_factory=dict_row)
    for low, high in spans:
        if not left:
            break
        bounds = "".join(
            [" AND r.ts >= %(low)s" if low is not None else "", " AND r.ts < %(high)s" if high is not None else ""]
        )
        rows = cursor.execute(
            f"SELECT u.meter_id AS _meter_id, latest.* FROM unnest(%(meters)s::text[]) u(meter_id) "
            f"CROSS JOIN LATERAL (SELECT {_LATEST_COLUMNS} FROM readings r WHERE r.meter_id = u.meter_id{bounds} "
            "ORDER BY r.ts DESC LIMIT 1) latest",
            {"meters": left, "low": low, "high": high},
            prepare=False,
        ).fetchall()
        found |= {row.pop("_meter_id"): row for row in rows}
        left = [meter_id for meter_id in left if meter_id not in found]
    return found


def _take_latest(row: dict[str, Any], latest: dict[str, Any]) -> None:
    """The meter's ``row`` (_METER_COLUMNS) given its latest reading, found after its query:
    last_gateway_id the reading's gateway where it has one, as _METER_COLUMNS' coalesce has it."""
    row |= {f"latest_{column}": latest[column] for column in latest if column != "gateway_id"}
    if latest["gateway_id"] is not None:
        row["last_gateway_id"] = latest["gateway_id"]


def get_meter(conn: psycopg.Connection, meter_id: str) -> dict[str, Any] | None:
    """The meter as the meters API has it (None: no row), its latest reading looked for within _NEAR
    of now first, in the same query, then further back in spans (:func:`_latest_in_spans`), each between
    bounds known when its query is planned. Before, the one look with no bound planned every chunk of
    readings: 3.7-4.0 ms of planning against 0.2-0.4 ms of running on three years of hourly reads (157
    chunks), for a meter read this week as for any.

    The answer is one moment's: a meter not read within _NEAR is asked again, its row and the spans, in
    one read-only REPEATABLE READ transaction (server.snapshot); on a connection in a transaction, or not
    autocommit, in the caller's (the meter page's one moment; another's isolation is its own). Before,
    the spans ran each in its own moment after the row's: a delivery stored between them (a reading this
    hour with the days a gateway's spool held back) answered a latest reading from those days, the latest
    at no moment. A meter read within _NEAR is answered by its first query alone, as before, with no
    transaction to open and end."""
    near = datetime.now(UTC) - _NEAR
    if not conn.autocommit or conn.info.transaction_status != TransactionStatus.IDLE:
        return _meter_with_latest(conn, meter_id, near)  # in the caller's transaction (the meter page's moment)
    found = _meter_read_near(conn, meter_id, near)  # each statement its own moment: this one, alone
    if found is None or not found[1]:
        return None if found is None else found[0]
    with one_moment(conn):
        return _meter_with_latest(conn, meter_id, near)


def _meter_read_near(conn: psycopg.Connection, meter_id: str, near: datetime) -> tuple[dict[str, Any], bool] | None:
    """The meter's row (_METER_COLUMNS; None: no row) with its latest reading at or after ``near``, in one
    query, and whether its latest may be older: it has readings (``meters.has_readings``), none there."""
    row: dict[str, Any] | None = (
        conn.cursor(row_factory=dict_row)
        .execute(
            f"SELECT {_METER_COLUMNS}, m.has_readings AS _has_readings FROM meters m "
            f"{_latest_join('AND r.ts >= %(near)s')} {_ASSIGNED} {_LINK} WHERE m.meter_id = %(meter_id)s",
            {"meter_id": meter_id, "near": near},
            prepare=False,
        )
        .fetchone()
    )
    if row is None:
        return None
    return row, row.pop("_has_readings") and row["latest_ts"] is None


def _meter_with_latest(conn: psycopg.Connection, meter_id: str, near: datetime) -> dict[str, Any] | None:
    """The meter's row with its latest reading wherever it is: at or after ``near`` (:func:`_meter_read_near`),
    else further back in spans. Its queries see one moment only in a transaction that gives one
    (REPEATABLE READ)."""
    found = _meter_read_near(conn, meter_id, near)
    if found is None:
        return None
    row, further = found
    if further:  # not read within _NEAR: further back
        older = _latest_in_spans(conn, [meter_id], _spans_back(near, near))
        if older:
            _take_latest(row, older[meter_id])
    return row


def first_reading(conn: psycopg.Connection, meter_id: str) -> dict[str, Any] | None:
    """The meter's oldest stored reading (None: it has none, or no row of ``meters``). ``meters.first_seen``
    is when its row was made (registered, or first heard on the network), not this: a meter registered
    after its readings were loaded, or ahead of its first one, has the two far apart.

    Looked for only where it has readings, as the latest is (:func:`_latest_join`), in spans from the
    oldest instant on (:func:`_spans_forward`), each between bounds known when its query is planned: the
    first ends a little after the day of the meter's first stored consumption (its first interval's
    closing read is on that day, the reading before it earlier; without any, after ``first_seen``), so
    that only the chunks of readings up to there are planned; the span reaching past now is the last,
    unbounded above (a meter flagged as having readings that has none looked in every span to the
    calendar's 5-year reach, those after now too). Nothing records where a meter's readings begin: a
    meter whose history begins late in the database still plans every chunk before its beginning,
    where the one look with no bound planned every chunk of all (3.7-4.0 ms on 157 weekly chunks,
    against 0.2-0.4 ms of running)."""
    found = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT m.has_readings, coalesce((SELECT min(c.day) FROM consumption_daily c"
            " WHERE c.meter_id = m.meter_id), m.first_seen) FROM meters m WHERE m.meter_id = %s",
            (meter_id,),
        )
        .fetchone()
    )
    if found is None or not found[0]:
        return None
    spans = _spans_forward(found[1], datetime.now(UTC))
    first = _read_in_spans(conn, meter_id, "ts, volume_m3, quality", spans, 1, oldest=True)
    return first[0] if first else None


def meter_exists(conn: psycopg.Connection, meter_id: str) -> bool:
    return conn.execute("SELECT 1 FROM meters WHERE meter_id = %s", (meter_id,)).fetchone() is not None


#: When a reading's person overrode a check (quality_overrode): the edit's, which sets received_at to now().
OVERRODE_AT = "CASE WHEN quality_overrode IS NOT NULL THEN received_at END AS quality_overrode_at"


def list_readings(
    conn: psycopg.Connection,
    meter_id: str,
    start: datetime | None,
    end: datetime | None,
    after: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Readings in ``[start, end)``, oldest first, after the cursor ``after`` (keyset paging)."""
    return conn.execute(
        f"""
        SELECT ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality, quality_by, quality_by_key_id,
               quality_reason, quality_overrode, {OVERRODE_AT}
        FROM readings
        WHERE meter_id = %(meter_id)s
          AND (%(start)s::timestamptz IS NULL OR ts >= %(start)s)
          AND (%(end)s::timestamptz IS NULL OR ts < %(end)s)
          AND (%(after)s::timestamptz IS NULL OR ts > %(after)s)
        ORDER BY ts LIMIT %(limit)s
        """,
        {"meter_id": meter_id, "start": start, "end": end, "after": after, "limit": limit},
    ).fetchall()  # type: ignore[return-value]


def fleet_summary(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM meters) AS meters, "
        "(SELECT count(*) FROM readings WHERE ts > now() - interval '1 hour') AS readings_last_hour, "
        "(SELECT max(ts) FROM readings) AS newest"
    ).fetchone()
    return dict(row) if row else {}


def register_meters(
    conn: psycopg.Connection, meters: list[tuple[str, str | None, str]], bulk: Collection[str] | None = ()
) -> None:
    """Record meters as installed (meter id, DMA, role): what meterization does when it fits one.
    The meters in ``bulk`` supply many premises (a block of flats); the others one. ``bulk=None``
    says nothing about it: meters already recorded keep theirs (a file without the column). Raises
    ValueError, writing nothing, for a DMA over ``DMA_MAX_LENGTH`` characters (server.meters.districts)."""
    check_dmas((meter_id, dma) for meter_id, dma, _ in meters)
    keep = bulk is None
    # In the collector's order, byte by byte (collector.store._REGISTER_METERS): in the file's, it
    # deadlocked with a collector recording the same new meters. A stable sort: a meter listed twice
    # still takes its last row.
    in_byte_order = sorted(meters, key=lambda meter: meter[0].encode())
    with conn.cursor() as cur:
        cur.executemany(
            # a meter recorded now has no readings yet (collector migration 0067); one recorded before keeps its own
            "INSERT INTO meters (meter_id, registered, dma, role, bulk, has_readings) "
            "VALUES (%s, true, %s, %s, %s, false) "
            "ON CONFLICT (meter_id) DO UPDATE SET registered = true, dma = EXCLUDED.dma, role = EXCLUDED.role, "
            f"bulk = {'meters.bulk' if keep else 'EXCLUDED.bulk'}",
            [(meter_id, dma, role, not keep and meter_id in (bulk or ())) for meter_id, dma, role in in_byte_order],
        )


@dataclass(frozen=True)
class Installation:
    """Where a meter was fitted, as meterization's job cards have it: from ``installed_at`` to
    ``removed_at`` (None: still there), with the registers read on the cards at each (None: not
    read; billing then takes the meter's own reads nearest)."""

    meter_id: str
    service_point_id: str
    dma: str | None  # of a service point not known yet
    installed_at: datetime
    removed_at: datetime | None = None
    initial_register_m3: Decimal | None = None
    final_register_m3: Decimal | None = None
    row: int = 0  # the file's line its row begins on, to name it in a refusal (0: not read from a file)


# The file's installations as arrays, one statement each however many (one per row took 12 s for
# 50,000): an installation is known by its meter and when it was fitted.
_FILE = """unnest(%(meters)s::text[], %(installed)s::timestamptz[], %(points)s::text[], %(removed)s::timestamptz[],
           %(initial)s::numeric[], %(final)s::numeric[])
    AS f(meter_id, installed_at, service_point_id, removed_at, initial_register_m3, final_register_m3)"""
_NEW_POINTS = """
INSERT INTO service_points (service_point_id, dma)
SELECT DISTINCT ON (point) point, dma FROM unnest(%(points)s::text[], %(dmas)s::text[]) AS f(point, dma)
ORDER BY point, dma
ON CONFLICT DO NOTHING
"""
#: A service point is in the district of the meter in place there (an installation not removed: the
#: constraints allow one per meter and one per point), as the file names it: a premises moved to
#: another DMA, or a district too long stored before register-meters refused them, kept the district
#: the point was first added in. A meter given no district says nothing of its point's.
_POINTS_FOLLOW_METERS = """
UPDATE service_points p SET dma = m.dma
FROM meter_installations i JOIN meters m USING (meter_id)
WHERE i.service_point_id = p.service_point_id AND i.removed_at IS NULL
  AND m.meter_id = ANY(%(meters)s::text[]) AND m.dma IS NOT NULL AND p.dma IS DISTINCT FROM m.dma
"""
#: The columns an installation recorded again takes from the file, where the file has them: a file
#: without removals or job-card registers says nothing about them (recorded again, it wiped them).
OPTIONAL_INSTALLATION_COLUMNS = ("removed_at", "initial_register_m3", "final_register_m3")
_RECORD_AGAIN = f"""
UPDATE meter_installations m SET service_point_id = f.service_point_id,
    removed_at = CASE WHEN %(removed_at)s THEN f.removed_at ELSE m.removed_at END,
    initial_register_m3 = CASE WHEN %(initial_register_m3)s THEN f.initial_register_m3 ELSE m.initial_register_m3 END,
    final_register_m3 = CASE WHEN %(final_register_m3)s THEN f.final_register_m3 ELSE m.final_register_m3 END
FROM {_FILE}
WHERE m.meter_id = f.meter_id AND m.installed_at = f.installed_at
"""
_RECORD_NEW = f"""
INSERT INTO meter_installations
    (service_point_id, meter_id, installed_at, removed_at, initial_register_m3, final_register_m3)
SELECT f.service_point_id, f.meter_id, f.installed_at, f.removed_at, f.initial_register_m3, f.final_register_m3
FROM {_FILE}
WHERE NOT EXISTS (SELECT 1 FROM meter_installations m WHERE m.meter_id = f.meter_id AND m.installed_at = f.installed_at)
"""
_OVERLAP_RULE = "a meter is in one place at a time, and a place has one meter at a time"
#: server migration 0057's check on an installation's times
_WITHIN_STORED_YEARS = "meter_installations_within_stored_years"
#: A meter in two places, or two meters at one place, at once, among the installations of the given
#: meters and service points (the constraints of migration 0010 say so only where btree_gist
#: exists). Two equality joins, not one on either column: that one could not be hashed, and compared
#: every pair of a whole utility's installations.
_OVERLAPS = """
SELECT a.meter_id, a.service_point_id, a.installed_at, b.meter_id, b.service_point_id, b.installed_at
FROM meter_installations a JOIN meter_installations b
  ON b.meter_id = a.meter_id AND a.installation_id < b.installation_id
 AND tstzrange(a.installed_at, a.removed_at) && tstzrange(b.installed_at, b.removed_at)
WHERE a.meter_id IN (SELECT unnest(%(meters)s::text[]))
UNION ALL
SELECT a.meter_id, a.service_point_id, a.installed_at, b.meter_id, b.service_point_id, b.installed_at
FROM meter_installations a JOIN meter_installations b
  ON b.service_point_id = a.service_point_id AND a.installation_id < b.installation_id
 AND tstzrange(a.installed_at, a.removed_at) && tstzrange(b.installed_at, b.removed_at)
WHERE a.service_point_id IN (SELECT unnest(%(points)s::text[]))
LIMIT 1
"""
#: Where the database's constraints refused an overlap (naming no row), the file is recorded again
#: into a copy of the installations it concerns, without them, and the overlap looked for there.
_AS_RECORDED = "installations_as_recorded"
_COPY_CONCERNED = (
    f"CREATE TEMP TABLE {_AS_RECORDED} (LIKE meter_installations INCLUDING DEFAULTS)",
    f"""INSERT INTO {_AS_RECORDED} SELECT * FROM meter_installations
WHERE meter_id IN (SELECT unnest(%(meters)s::text[])) OR service_point_id IN (SELECT unnest(%(points)s::text[]))""",
)


def add_service_points(conn: psycopg.Connection, installations: list[Installation]) -> None:
    """Add the service points of ``installations`` not known yet, each in its installation's DMA, as
    :func:`record_installations` adds them first (done before it, it adds none again): a job card
    gives way to a refresh with them written (server.meters.meters_file)."""
    conn.execute(
        _NEW_POINTS, {"points": [i.service_point_id for i in installations], "dmas": [i.dma for i in installations]}
    )


def record_installations(
    conn: psycopg.Connection,
    installations: list[Installation],
    given: Collection[str] = OPTIONAL_INSTALLATION_COLUMNS,
) -> None:
    """Record where meters were fitted. An installation is known by its meter and when it was
    fitted: recorded again, it takes the new service point, and the removal and registers among
    ``given`` (the others stay as recorded); a row that overlaps one installation of its meter at its
    service point recorded at another time, which the file does not list, corrects that one's time
    (:func:`_installed_at_corrected`). A service point not yet known is added in the meter's
    DMA. Raises ValueError where a meter would be in two places at once, or two meters at one place,
    naming the installations' rows of the file (:attr:`Installation.row`; the caller's transaction
    then stores nothing), and before writing for a DMA over
    ``DMA_MAX_LENGTH`` characters."""
    check_dmas((i.meter_id, i.dma) for i in installations)
    meters = sorted({i.meter_id for i in installations})
    # a removal recorded, then the fitting after it: the meters' enquiries are placed once both are
    # written, not told "no longer fitted anywhere" between the two
    with placing_enquiries_once(conn, meters=meters) as cur:
        arrays: dict[str, Any] = {column: column in given for column in OPTIONAL_INSTALLATION_COLUMNS}
        arrays |= {
            "meters": [i.meter_id for i in installations],
            "points": [i.service_point_id for i in installations],
            "dmas": [i.dma for i in installations],
            "installed": [i.installed_at for i in installations],
            "removed": [i.removed_at for i in installations],
            "initial": [i.initial_register_m3 for i in installations],
            "final": [i.final_register_m3 for i in installations],
        }
        cur.execute(_NEW_POINTS, arrays)
        corrected = _installed_at_corrected(cur, installations, given)
        try:  # removals first: a meter's replacement may start where its removal is recorded now
            with conn.transaction():  # a savepoint: a refused overlap is looked for after it, to name its rows
                # an installation time corrected moves in two steps, its span first narrowed to what it
                # shares with the file's, then widened to it once the other rows have their removals: no
                # step overlaps another installation (the constraints are checked row by row)
                _move_corrected(cur, corrected, widen=False)
                cur.execute(_RECORD_AGAIN, arrays)
                if corrected:
                    _move_corrected(cur, corrected, widen=True)
                    cur.execute(_RECORD_AGAIN, arrays)  # the cards and removal of those moved
                cur.execute(_RECORD_NEW, arrays)
        except psycopg.errors.ExclusionViolation as error:
            found = _overlap_unconstrained(cur, arrays, corrected)
            raise ValueError(
                _overlap_said(found, installations) if found else f"{_OVERLAP_RULE}: {error.diag.message_detail}"
            ) from None
        except psycopg.errors.CheckViolation as error:
            if error.diag.constraint_name != _WITHIN_STORED_YEARS:
                raise
            # the file's times are in the years (stored_time): an installation stored before server
            # migration 0057, recorded again and keeping its own removal, is outside them
            raise ValueError(
                "an installation recorded again keeps a removal stored outside the years 1900 to 9998 in UTC, "
                "which a database session west or east of UTC cannot load: give its removed_at in the file, "
                "or correct it (SELECT * FROM stored_times_out_of_bounds)"
            ) from None
        cur.execute("ANALYZE meter_installations")  # a large file changes the table: plan the check on it
        clash = cur.execute(_OVERLAPS, arrays).fetchone()
    if clash:
        raise ValueError(_overlap_said(clash, installations))


@dataclass(frozen=True)
class _Corrected:
    """An installation recorded before whose installation time a file's row corrects."""

    installation_id: int
    installed_at: datetime  # as recorded
    removed_at: datetime | None  # as recorded
    new_installed_at: datetime
    new_removed_at: datetime | None  # the file's, or as recorded where the file has no removed_at


def _installed_at_corrected(
    cur: psycopg.Cursor[Any], installations: list[Installation], given: Collection[str]
) -> list[_Corrected]:
    """The installations recorded before whose ``installed_at`` the file corrects: a row whose meter
    has no installation recorded at its time, but exactly one at the same service point, which the file
    does not list, that the row overlaps (a job card's date typed wrong, corrected: recorded as a new
    installation, it was refused as the meter in two places at once, and no command could correct
    it). Only a row that would otherwise be refused as an overlap is so taken."""
    meters = sorted({i.meter_id for i in installations})
    recorded = cur.execute(
        "SELECT installation_id, meter_id, service_point_id, installed_at, removed_at FROM meter_installations "
        "WHERE meter_id = ANY(%s)",
        (meters,),
    ).fetchall()
    known = {(row[1], row[3]) for row in recorded}
    of_meter: dict[str, list[tuple[Any, ...]]] = {}  # by meter: a first load of 50,000 meters looks at none
    for row in recorded:
        of_meter.setdefault(row[1], []).append(row)
    listed = {(i.meter_id, i.installed_at) for i in installations}
    corrected: dict[int, _Corrected] = {}
    for i in installations:
        if (i.meter_id, i.installed_at) in known:
            continue
        found = []
        for installation_id, meter_id, point, since, until in of_meter.get(i.meter_id, ()):
            end = i.removed_at if "removed_at" in given else until
            if (
                point == i.service_point_id
                and (meter_id, since) not in listed
                and (until is None or i.installed_at < until)
                and (end is None or since < end)
            ):
                found.append(_Corrected(installation_id, since, until, i.installed_at, end))
        if len(found) == 1 and found[0].installation_id not in corrected:
            corrected[found[0].installation_id] = found[0]
    return list(corrected.values())


def _move_corrected(
    cur: psycopg.Cursor[Any], corrected: list[_Corrected], *, widen: bool, table: str = "meter_installations"
) -> None:
    """Move each corrected installation to the file's times, one step of two (server.corrected_spans)."""
    for c in corrected:
        since, until = span_step((c.installed_at, c.removed_at), (c.new_installed_at, c.new_removed_at), widen=widen)
        cur.execute(
            f"UPDATE {table} SET installed_at = %s, removed_at = %s WHERE installation_id = %s",
            (since, until, c.installation_id),
        )


def _overlap_unconstrained(
    cur: psycopg.Cursor[Any], arrays: dict[str, Any], corrected: list[_Corrected]
) -> tuple[Any, ...] | None:
    """Two installations that overlap once the file is recorded (:data:`_OVERLAPS`' row), recorded
    into a copy of the installations of its meters and service points without the constraints that
    refused it; None if none (a writer in between). The caller's transaction then stores nothing."""
    create, copy = _COPY_CONCERNED
    cur.execute(create)
    cur.execute(copy, arrays)
    _move_corrected(cur, corrected, widen=True, table=_AS_RECORDED)  # as recorded, the times corrected
    for statement in (_RECORD_AGAIN, _RECORD_NEW, _OVERLAPS):
        cur.execute(statement.replace("meter_installations", _AS_RECORDED), arrays)
    found = cur.fetchone()
    cur.execute(f"DROP TABLE {_AS_RECORDED}")
    return found


def _overlap_said(clash: tuple[Any, ...], installations: list[Installation]) -> str:
    """The overlap ``clash`` (:data:`_OVERLAPS`' row) in words, after the rows of the file it is
    between: an installation recorded is the file's row with its meter and installation time (that
    row recorded it, new or again); of a file, one of no row was recorded before."""
    rows: dict[tuple[str, datetime], list[int]] = {}
    for i in installations:
        if i.row:
            rows.setdefault((i.meter_id, i.installed_at), []).append(i.row)
    sides = [(str(clash[0]), str(clash[1]), clash[2]), (str(clash[3]), str(clash[4]), clash[5])]
    sides.sort(key=lambda side: min(rows.get((side[0], side[2]), [sys.maxsize])))  # the file's first
    (meter, point, since), (other, other_point, other_since) = sides
    named = sorted({*rows.get((meter, since), []), *rows.get((other, other_since), [])})
    said = (
        f"{_OVERLAP_RULE}: meter {meter} at {point} from {since.astimezone(UTC).isoformat()} overlaps "
        f"meter {other} at {other_point} from {other_since.astimezone(UTC).isoformat()}"
    )
    if not rows:  # not read from a file
        return said
    if not named:
        return f"{said}, both recorded before"
    before = "" if rows.get((other, other_since)) else ", recorded before"
    return f"{_rows(named)}: {said}{before}"


def _rows(named: list[int]) -> str:
    """``row 3``, ``rows 3 and 5``, ``rows 3, 4 and 5``."""
    if len(named) == 1:
        return f"row {named[0]}"
    return f"rows {', '.join(map(str, named[:-1]))} and {named[-1]}"


#: The file's job cards that contradict the meter's own reads next to them (server migration 0054's
#: forward_difference: a register below the one before it by more than VEE's tolerance): an
#: installation card above the fitted meter's first read, a removal card below its last read. An
#: installation's reads are those from its installed_at to its removed_at, both included, as billing
#: counts them (server.billing.repository.determinant_lines, where a read at either instant takes the
#: card's place): the installation card's look took the first read after installed_at, so a read at
#: that instant counted for the removal card's look and the pair's, and not for it (a card pair going
#: backwards with a read at the installation's instant was said by none). ``at_instant``: the read is at
#: the card's own instant.
_CARDS_AGAINST_READS = """
SELECT f.row, f.meter_id, 'initial_register_m3', f.initial, r.ts, r.volume_m3, r.ts = f.installed_at
FROM unnest(%(rows)s::int[], %(meters)s::text[], %(installed)s::timestamptz[], %(removed)s::timestamptz[],
            %(initial)s::numeric[]) AS f(row, meter_id, installed_at, removed_at, initial)
JOIN meters m ON m.meter_id = f.meter_id AND m.has_readings  -- (a first load's meters have none: no look)
CROSS JOIN LATERAL (
    SELECT ts, volume_m3 FROM readings
    WHERE meter_id = f.meter_id AND ts >= f.installed_at AND ts <= coalesce(f.removed_at, 'infinity')
    ORDER BY ts LIMIT 1
) r
WHERE f.initial IS NOT NULL AND forward_difference(f.initial, r.volume_m3) IS NULL
UNION ALL
SELECT f.row, f.meter_id, 'final_register_m3', f.final, r.ts, r.volume_m3, r.ts = f.removed_at
FROM unnest(%(rows)s::int[], %(meters)s::text[], %(installed)s::timestamptz[], %(removed)s::timestamptz[],
            %(final)s::numeric[]) AS f(row, meter_id, installed_at, removed_at, final)
JOIN meters m ON m.meter_id = f.meter_id AND m.has_readings
CROSS JOIN LATERAL (
    SELECT ts, volume_m3 FROM readings
    WHERE meter_id = f.meter_id AND ts >= f.installed_at AND ts <= f.removed_at
    ORDER BY ts DESC LIMIT 1
) r
WHERE f.final IS NOT NULL AND forward_difference(r.volume_m3, f.final) IS NULL
UNION ALL
-- a card pair contradicting itself, the removal's register below the installation's with no read
-- between (with one, the two looks above say which card the reads contradict)
SELECT f.row, f.meter_id, 'final_register_m3', f.final, NULL, f.initial, false
FROM unnest(%(rows)s::int[], %(meters)s::text[], %(installed)s::timestamptz[], %(removed)s::timestamptz[],
            %(initial)s::numeric[], %(final)s::numeric[]) AS f(row, meter_id, installed_at, removed_at, initial, final)
WHERE f.initial IS NOT NULL AND f.final IS NOT NULL AND forward_difference(f.initial, f.final) IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM readings WHERE meter_id = f.meter_id AND ts >= f.installed_at AND ts <= f.removed_at
  )
ORDER BY 1, 3 DESC
"""


def recorded_cards(
    conn: psycopg.Connection, meter_ids: list[str]
) -> dict[tuple[str, datetime], tuple[Decimal | None, Decimal | None]]:
    """The job cards' registers recorded for these meters, by meter and installation time: what
    :func:`cards_changed` compares a file's with."""
    rows = conn.execute(
        "SELECT meter_id, installed_at, initial_register_m3, final_register_m3 FROM meter_installations "
        "WHERE meter_id = ANY(%s)",
        (meter_ids,),
    ).fetchall()
    return {(meter_id, since): (initial, final) for meter_id, since, initial, final in rows}


def cards_changed(
    installations: list[Installation], before: dict[tuple[str, datetime], tuple[Decimal | None, Decimal | None]]
) -> list[Installation]:
    """The installations whose job-card registers a file records anew (new, or other than recorded):
    the ones :func:`cards_against_reads` looks at, so a fleet's file recorded again as it was costs no
    look at its reads (20,000 meters with a year of reads: some 3-5 s)."""
    return [
        i
        for i in installations
        if (i.initial_register_m3 is not None or i.final_register_m3 is not None)
        and before.get((i.meter_id, i.installed_at)) != (i.initial_register_m3, i.final_register_m3)
    ]


def cards_against_reads(conn: psycopg.Connection, installations: list[Installation]) -> list[str]:
    """What a clerk is told of the job cards given that contradict the meter's reads next to them,
    or, with no read between, each other (a removal register below the installation's), one line each
    (none: all agree, or no read is there yet). They are recorded all the same (the
    read may be the wrong one, and a card is entered before the new meter's first read comes), but
    billing cannot count the water between card and read: the line's consumption is unknown until one
    of them is corrected. A read at the card's own instant is said as such: billing takes that read in
    the card's place, so it counts, but one of the two is wrong. Before, the file was recorded without
    a word and the bill said it later."""
    found = conn.execute(
        _CARDS_AGAINST_READS,
        {
            "rows": [i.row for i in installations],
            "meters": [i.meter_id for i in installations],
            "installed": [i.installed_at for i in installations],
            "removed": [i.removed_at for i in installations],
            "initial": [i.initial_register_m3 for i in installations],
            "final": [i.final_register_m3 for i in installations],
        },
    ).fetchall()
    said = []
    for row, meter_id, column, card, ts, volume, at_instant in found:
        where = f"row {row}: " if row else ""
        if ts is None:  # the pair: no read between the cards
            said.append(
                f"{where}final_register_m3 {card} is below the card's initial_register_m3 {volume}, with no read "
                f"of {meter_id} between: a register does not go backwards, billing cannot count the meter's water "
                "(the line's consumption unknown) until a card is corrected"
            )
            continue
        when = ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if at_instant:  # billing takes the read at the card's instant, not the card: it counts, one is wrong
            side, end = (
                (f"above {meter_id}'s read at its installation", "opens")
                if column == "initial_register_m3"
                else (f"below {meter_id}'s read at its removal", "closes")
            )
            said.append(
                f"{where}{column} {card} is {side}, {volume} m³ at {when}, the same instant: billing {end} the "
                "installation on the read, not the card; correct whichever is wrong"
            )
            continue
        side = (
            f"above {meter_id}'s first read after its installation"
            if column == "initial_register_m3"
            else f"below {meter_id}'s last read before its removal"
        )
        said.append(
            f"{where}{column} {card} is {side}, {volume} m³ at {when}: "
            "billing cannot count the water between them (the line's consumption unknown) until the card or the read "
            "is corrected"
        )
    return said


def place_service_points(conn: psycopg.Connection, meter_ids: list[str]) -> None:
    """Put the service points the given meters are in place at in those meters' districts, once
    both the meters and their installations are recorded (register-meters): a meter registered
    again in another district moves its point with it; one whose removal the file records leaves
    its old point where it was."""
    conn.execute(_POINTS_FOLLOW_METERS, {"meters": meter_ids})


def get_reading(conn: psycopg.Connection, meter_id: str, ts: datetime) -> dict[str, Any] | None:
    return conn.execute(  # type: ignore[return-value]
        "SELECT ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality, quality_by, quality_by_key_id, "
        f"quality_reason, quality_overrode, {OVERRODE_AT} FROM readings WHERE meter_id = %s AND ts = %s",
        (meter_id, ts),
    ).fetchone()


def readings_newest_first(
    conn: psycopg.Connection, meter_id: str, before: datetime | None, limit: int, newest: datetime | None = None
) -> list[dict[str, Any]]:
    """The meter's readings newest first, before the cursor ``before`` (keyset paging): the meter
    page's latest readings, where :func:`list_readings` pages forward from the oldest. ``newest`` is
    where the newest are expected (the meter's latest reading, as the page has it; None: now): a hint
    only, the readings are the same whatever it is. Looked for in spans back from there
    (:func:`_spans_back`), each between bounds known when its query is planned: before, the one look
    with no bound on the newest page planned every chunk of readings (3.7-4.0 ms on 157 weekly chunks,
    against 0.2-0.4 ms of running)."""
    start = before if before is not None else newest if newest is not None else datetime.now(UTC)
    columns = (
        "ts, volume_m3, flow_m3h, reverse_volume_m3, alarms, quality, quality_by, quality_by_key_id,"
        f" quality_reason, quality_overrode, {OVERRODE_AT}"
    )
    return _read_in_spans(conn, meter_id, columns, _spans_back(start, before), limit)


#: A look in spans (:func:`_spans_back`, :func:`_spans_forward`) takes each twice the last, from _NEAR,
#: up to this one; past it, all the rest at once. About five years in nine looks: a meter silent for
#: years costs a few more queries than one look, each planning its own chunks.
_WIDEST = timedelta(days=7 * 2**8)


def _edges(start: datetime, *, back: bool) -> Iterator[datetime]:
    """Instants further and further from ``start`` (``back``: before it; else after), _NEAR from it
    first, then each step twice the last, up to _WIDEST or the calendar's end (Python's years 1 to 9999)."""
    step, edge = _NEAR, start
    while step <= _WIDEST:
        try:
            edge = edge - step if back else edge + step
        except OverflowError:
            return
        yield edge
        step *= 2


def _spans_back(start: datetime, high: datetime | None) -> Iterator[tuple[datetime | None, datetime | None]]:
    """``[low, high)`` spans (None: unbounded) newest first that together hold every instant before
    ``high`` (None: every instant): from _NEAR before ``start`` (not after ``high``) to ``high``, then
    each further back (:func:`_edges`), the last unbounded below."""
    for edge in _edges(start, back=True):
        yield edge, high
        high = edge
    yield None, high


def _spans_forward(start: datetime, until: datetime) -> Iterator[tuple[datetime | None, datetime | None]]:
    """``[low, high)`` spans (None: unbounded) oldest first that together hold every instant: up to
    _NEAR after ``start``, then each further on (:func:`_edges`) up to the first reaching past ``until``
    (now), which is the last, unbounded above. Before, the spans went on past now one by one to the
    calendar's reach: a meter flagged as having readings that has none ran all ten, each finding nothing.
    The last still finds a reading dated ahead of ``until`` (a gateway's clock ahead)."""
    low: datetime | None = None
    for edge in _edges(start, back=False):
        if edge > until:
            break
        yield low, edge
        low = edge
    yield low, None


def _read_in_spans(
    conn: psycopg.Connection,
    meter_id: str,
    columns: str,
    spans: Iterable[tuple[datetime | None, datetime | None]],
    limit: int,
    *,
    oldest: bool = False,
) -> list[dict[str, Any]]:
    """The meter's first ``limit`` readings (``columns``) newest first (``oldest``: oldest first), asked
    of each span in turn (given in that order, together holding every instant the look may find) until
    ``limit`` are found: the same readings as one look at them all. Each span's bounds are parameters,
    known when its query is planned, so that TimescaleDB plans only the chunks of readings (7 days
    each) they reach; a bound the query worked out itself, or none, laid out every chunk (see
    _DAILY_DAYS). Unprepared, as daily_consumption's looks are: a prepared query's generic plan lays
    them all out again."""
    found: list[dict[str, Any]] = []
    cursor = conn.cursor(row_factory=dict_row)
    for low, high in spans:
        where = ["meter_id = %(meter_id)s"]
        if low is not None:
            where.append("ts >= %(low)s")
        if high is not None:
            where.append("ts < %(high)s")
        query = (
            f"SELECT {columns} FROM readings WHERE {' AND '.join(where)} "
            f"ORDER BY ts {'ASC' if oldest else 'DESC'} LIMIT %(limit)s"
        )
        params = {"meter_id": meter_id, "low": low, "high": high, "limit": limit - len(found)}
        found += cursor.execute(query, params, prepare=False).fetchall()
        if len(found) >= limit:
            break
    return found


# Each read the page needs is looked for between bounds known before its query is planned, so that
# TimescaleDB plans only the chunks (7 days of readings each) those bounds reach: bounds the query
# works out itself (a subquery, a lateral join's installed_at) are not known when it is planned, and
# the planner then laid out every chunk of readings for each of the query's six looks at them (1,257
# chunk scans in a database holding three years of reads, 49 ms a page against 3.5 ms in one holding
# a month, whatever the meter's own history). Hence :func:`daily_consumption` asks in steps: the
# installations' reads that their job cards' water runs from or to (:func:`_card_changes`), the days
# shown (_DAILY_DAYS), the read before them (:func:`_nearest_read`), then the days (_DAILY). Each is
# run unprepared (psycopg prepares a query run five times on a connection, as the server's pooled ones
# are): PostgreSQL may then plan it once for any bounds, every chunk laid out again (1.6 ms against 0.2
# for the read before the days, in the benchmark: benchmarks/bench_meter_page_days.py).
_GOOD = (
    "NOT EXISTS (SELECT 1 FROM register_discontinuities b WHERE b.meter_id = r.meter_id AND b.ts = r.ts "
    "AND b.kind = 'bad_read')"
)

#: How far from the end it starts at a look for the nearest read first reaches (then, found none, the
#: whole range): a chunk's span, so that the look plans one or two chunks, a meter read hourly or daily.
_NEAR = timedelta(days=7)

# The job cards' water as the parameters give it (:func:`_card_changes`): each card's instant closing
# it, and the registers between which forward_difference counts it.
_CARDS = """
zone AS (SELECT utility_timezone() AS z),
changes AS (
    SELECT c.closing, forward_difference(c.from_m3, c.to_m3) AS card_m3
    FROM unnest(%(closings)s::timestamptz[], %(froms)s::numeric[], %(tos)s::numeric[]) AS c(closing, from_m3, to_m3)
    WHERE forward_difference(c.from_m3, c.to_m3) IS NOT NULL  -- else billing's unknown
),
cards AS (
    SELECT date_trunc('day', closing - interval '1 microsecond', zone.z) AS day, sum(card_m3) AS card_m3
    FROM zone, changes GROUP BY 1
)"""

# The days the page shows: the ``days`` local days up to the meter's newest stored day or card's day
# (fewer when its oldest is later); none when it has neither. ``first_day`` and ``after_last_day`` are
# the instants they begin and end at.
_DAILY_DAYS = f"""
WITH {_CARDS},
newest AS (
    SELECT max(day) AS day, min(day) AS oldest
    FROM (SELECT day FROM consumption_daily WHERE meter_id = %(meter_id)s
          UNION ALL SELECT day FROM cards) d
),
days AS (
    SELECT d::date AS date, (d::date)::timestamp AT TIME ZONE zone.z AS day,
           (d::date + 1)::timestamp AT TIME ZONE zone.z AS next_day
    FROM zone, newest, LATERAL (
        SELECT ((newest.day AT TIME ZONE zone.z)::date)::timestamp AS last,
               ((newest.oldest AT TIME ZONE zone.z)::date)::timestamp AS first
    ) l, generate_series(greatest(l.last - (%(days)s - 1) * interval '1 day', l.first), l.last, interval '1 day') d
)
SELECT min(date) AS first_date, max(date) AS last_date, min(day) AS first_day, max(next_day) AS after_last_day
FROM days
"""

# The meter's stored daily consumption (collector: refresh_consumption) over the days _DAILY_DAYS gives
# (``first_date`` to ``last_date``), every day listed (NULL columns: no interval the day counts closed
# that day), with, for each quality other than actual, how many of the day's counted intervals (those in
# `intervals`, as the refresh chose them) a reading of that quality closed, so that they add up to
# `not_actual` (an interval belongs to the day of its closing read less 1 µs, as consumption_hourly
# counts it). A day is the utility's (utility_timezone()). ``before`` is the meter's last read at or
# before the first day's start (none: that start).
#
# The days hold the meter's job cards as billing bills them (server.billing.repository.
# determinant_lines), so they add up to the bills: an installation's reads are those from its
# installed_at to its removed_at, both included, a read at either instant taking the card's place.
# The stored days leave out the intervals billing bills to no one (collector migration 0076): the one
# from a meter's read before an installation (fitted again, or read before it was fitted) to its first
# read in it, the one from its last read in an installation to the next, and those to and from a bad
# read that begins or ends an installation. Before, the stored days held them and the page took them
# out itself; the DMA balance and anything else reading the tables counted them. The cards' water is
# :func:`_card_changes`'.
_DAILY = f"""
WITH {_CARDS},
days AS (
    SELECT d::date AS date, (d::date)::timestamp AT TIME ZONE zone.z AS day,
           (d::date + 1)::timestamp AT TIME ZONE zone.z AS next_day
    FROM zone, generate_series(%(first_date)s::date::timestamp, %(last_date)s::date::timestamp, interval '1 day') d
),
spans AS (  -- as the refresh gives them to left_out_between_installations (collector migration 0076)
    SELECT coalesce(array_agg(tstzrange(s.installed_at, s.removed_at, '[]')), '{{}}') AS spans
    FROM installation_spans(ARRAY[%(meter_id)s]) s
),
closing AS (  -- the days' reads and the one before them, each with the read before it, as the refresh pairs them
    SELECT r.ts, r.quality, b.ts IS NOT NULL AS bad,
           lag(r.ts) OVER w AS prev_ts, lag(b.ts IS NOT NULL) OVER w AS prev_bad
    FROM readings r
    LEFT JOIN register_discontinuities b ON b.meter_id = r.meter_id AND b.ts = r.ts AND b.kind = 'bad_read'
    WHERE r.meter_id = %(meter_id)s AND r.ts <= %(after_last_day)s AND r.ts >= %(before)s
    WINDOW w AS (ORDER BY r.ts)
),
qualities AS (
    -- the reads closing the intervals the days count, as the refresh counts them: a read after another,
    -- its interval not one an installation reaches and none holds whole
    SELECT date_trunc('day', r.ts - interval '1 microsecond', zone.z) AS day, r.quality, count(*) AS n
    FROM zone, spans, closing r
    WHERE r.quality <> 'actual' AND r.prev_ts IS NOT NULL AND r.ts > %(first_day)s
      -- asked only of an interval no installation holds whole, or with a bad read at an end: no other can
      -- be left out, and asking it of each of a month's hourly reads cost 0.2 ms a read
      AND NOT ((r.bad OR r.prev_bad OR NOT EXISTS (SELECT 1 FROM unnest(spans.spans) s
                                                   WHERE r.prev_ts >= lower(s) AND r.ts <= upper(s)))
               AND left_out_between_installations(%(meter_id)s, r.prev_ts, r.ts, r.prev_bad, r.bad, spans.spans))
    GROUP BY 1, 2
),
day_qualities AS (
    SELECT day, jsonb_object_agg(quality, n) AS qualities FROM qualities GROUP BY day
)
SELECT days.date, days.day,
       CASE WHEN cards.card_m3 IS NOT NULL THEN coalesce(c.consumption_m3 + cards.card_m3, cards.card_m3)
            WHEN c.intervals > 0 THEN c.consumption_m3 END AS consumption_m3,
       cards.card_m3, c.intervals, c.not_actual, c.unknown,
       coalesce(q.qualities, '{{}}') AS qualities
FROM days LEFT JOIN consumption_daily c ON c.meter_id = %(meter_id)s AND c.day = days.day
LEFT JOIN cards ON cards.day = days.day
LEFT JOIN day_qualities q ON q.day = days.day
ORDER BY days.date
"""


def _nearest_read(
    conn: psycopg.Connection,
    meter_id: str,
    after: datetime | None,
    before: datetime | None,
    *,
    newest: bool,
    before_included: bool = True,
    good: bool = True,
) -> tuple[datetime, Decimal] | None:
    """The meter's read (its instant and register) nearest ``before`` (``newest``) or ``after`` among
    those from ``after`` (None: the first) to ``before`` (None: the last; included or not), only good
    ones (no bad_read discontinuity: VEE's) when ``good``. Looked for first within _NEAR of that end,
    then over the whole range: the bounds are parameters, known when the query is planned, so that
    TimescaleDB plans only the chunks they reach (see _DAILY_DAYS)."""

    def look(low: datetime | None, high: datetime | None) -> tuple[datetime, Decimal] | None:
        where = ["meter_id = %(meter_id)s"]
        if low is not None:
            where.append("ts >= %(low)s")
        if high is not None:
            where.append("ts <= %(high)s" if before_included else "ts < %(high)s")
        if good:
            where.append(_GOOD)
        query = (
            f"SELECT ts, volume_m3 FROM readings r WHERE {' AND '.join(where)} "
            f"ORDER BY ts {'DESC' if newest else 'ASC'} LIMIT 1"
        )
        params = {"meter_id": meter_id, "low": low, "high": high}
        row = conn.cursor(row_factory=tuple_row).execute(query, params, prepare=False).fetchone()
        return None if row is None else (row[0], row[1])

    near: tuple[datetime | None, datetime | None] | None = None
    if newest and before is not None:
        near = (before - _NEAR if after is None else max(before - _NEAR, after), before)
    elif not newest and after is not None:
        near = (after, after + _NEAR if before is None else min(after + _NEAR, before))
    if near is not None:
        found = look(*near)
        if found is not None or near == (after, before):
            return found
    return look(after, before)


def _has_good_read_at(conn: psycopg.Connection, meter_id: str, ts: datetime | None) -> bool:
    """Whether the meter has a good read (no bad_read discontinuity) at ``ts`` (None: no)."""
    if ts is None:
        return False
    query = f"SELECT 1 FROM readings r WHERE meter_id = %(meter_id)s AND ts = %(ts)s AND {_GOOD}"
    return conn.execute(query, {"meter_id": meter_id, "ts": ts}, prepare=False).fetchone() is not None


def _card_changes(
    conn: psycopg.Connection, meter_id: str
) -> tuple[list[datetime], list[Decimal | None], list[Decimal | None]]:
    """The meter's job cards' water, as billing bills it, as three lists: the instant closing each card's
    interval, and the registers its water runs from and to (forward_difference counts it; _CARDS).

    - An installation card with no good read at its instant opens the installation: the water from its
      initial_register_m3 to the installation's first good read, on that read's day (NEM12 places it in
      that read's hour).
    - A removal card with no good read at its instant closes the installation: the water from the
      installation's last good read (none: its installation card; none either: nothing, as billing opens
      on no read before the installation, another installation's) to its final_register_m3, on the
      removal's day.

    A card above the read after it (forward_difference NULL) adds nothing: billing cannot count it either.
    A bad read (VEE's) opens and closes nothing, as in billing."""
    installations = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT installed_at, removed_at, initial_register_m3, final_register_m3"
            " FROM meter_installations WHERE meter_id = %s",
            (meter_id,),
        )
        .fetchall()
    )
    closings: list[datetime] = []
    froms: list[Decimal | None] = []
    tos: list[Decimal | None] = []
    for installed_at, removed_at, initial, final in installations:
        if initial is not None and not _has_good_read_at(conn, meter_id, installed_at):
            first = _nearest_read(conn, meter_id, installed_at, removed_at, newest=False)
            if first is not None:
                closings.append(first[0])
                froms.append(initial)
                tos.append(first[1])
        if final is not None and removed_at is not None and not _has_good_read_at(conn, meter_id, removed_at):
            last = _nearest_read(conn, meter_id, installed_at, removed_at, newest=True, before_included=False)
            closings.append(removed_at)
            froms.append(initial if last is None else last[1])
            tos.append(final)
    return closings, froms, tos


def daily_consumption(conn: psycopg.Connection, meter_id: str, days: int) -> list[dict[str, Any]]:
    """The meter's stored daily consumption, oldest day first, over the ``days`` days up to its newest
    stored day, or from its oldest (none: no consumption stored yet): ``date`` (the utility's day),
    ``consumption_m3``, and the counts of intervals ``intervals``, ``not_actual`` (those closed by a
    reading other than actual) and ``unknown`` as consumption_daily has them (None on a day no interval
    it counts closed), with the job cards' water as billing bills it (:func:`_card_changes`: an
    installation card's to the installation's first read, on that read's day; a removal card's from the
    last read, on the removal's day; the interval across an installation is none of the stored days',
    collector migration 0076): ``card_m3`` that water on its day (else None), and ``qualities``: for each
    quality other than actual (estimated, substituted, edited), how many of the intervals in
    ``intervals`` a reading of that quality closed (``{"edited": 2}``), a reading whose interval the day
    leaves out not among them; they add up to ``not_actual`` unless a reading's quality changed after the
    day was stored. Asked in steps, each read between bounds known before its query is planned (_DAILY_DAYS)."""
    closings, froms, tos = _card_changes(conn, meter_id)
    cards = {"meter_id": meter_id, "closings": closings, "froms": froms, "tos": tos}
    bounds = conn.cursor(row_factory=dict_row).execute(_DAILY_DAYS, {**cards, "days": days}, prepare=False).fetchone()
    if bounds is None or bounds["first_date"] is None:
        return []  # no day stored yet
    first_day = bounds["first_day"]
    before = _nearest_read(conn, meter_id, None, first_day, newest=True, good=False)
    params = {**cards, **bounds, "before": first_day if before is None else before[0]}
    return conn.execute(_DAILY, params, prepare=False).fetchall()  # type: ignore[return-value]
