"""All SQL about billing: reads and determinants per account, over service agreements and meter
installations (server migration 0010). A meter counts for an account only while both the
agreement and the installation are in force, clipped to the requested period.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import tuple_row

from collector.floor_lag import DEFAULT_LAG, FloorLagWatch
from collector.utility_zone import utility_zone_name
from server.problems import Problem

log = logging.getLogger(__name__)
#: Says, once per holder, that a transaction left open holds back the pulls' next_changed_since.
_FLOOR_WATCH = FloorLagWatch(log, "billing")

# The periods in which a meter's reads belong to an account: agreement ∩ installation ∩ [from, to).
_WINDOWS = """
SELECT sa.account_id, sa.service_point_id, mi.meter_id,
       mi.installed_at, mi.removed_at, mi.initial_register_m3, mi.final_register_m3,
       greatest(sa.start_at, mi.installed_at, %(from)s) AS w_from,
       least(coalesce(sa.end_at, 'infinity'), coalesce(mi.removed_at, 'infinity'), %(to)s) AS w_to
FROM service_agreements sa
JOIN meter_installations mi ON mi.service_point_id = sa.service_point_id
WHERE (%(account)s::text IS NULL OR sa.account_id = %(account)s)
  AND (%(after_account)s::text IS NULL OR sa.account_id > %(after_account)s)
  AND sa.start_at < %(to)s AND (sa.end_at IS NULL OR sa.end_at > %(from)s)
  AND mi.installed_at < %(to)s AND (mi.removed_at IS NULL OR mi.removed_at > %(from)s)
"""


# Leaks and bursts detected behind a line's meter while it counted for the account (not dismissed):
# what billing's leak adjustments start from. The volume is the alert's rate over the overlap,
# rounded to the litre; an estimate, labelled as one.
_LEAKS = """
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'alert_id', a.alert_id, 'kind', a.kind, 'status', a.status,
           'start', greatest(a.start, spans.w_from), 'end', least(coalesce(a.ended_at, a.last_seen), spans.w_to),
           'rate_l_h', round(a.rate_l_h::numeric, 3),
           'exact_rate_l_h', a.rate_l_h::numeric::text,  -- the rate the volume is figured from (service.leak_water_m3)
           'estimated_volume_m3', round(a.rate_l_h::numeric / 1000 * extract(epoch FROM
               least(coalesce(a.ended_at, a.last_seen), spans.w_to) - greatest(a.start, spans.w_from)) / 3600, 3)::text
       ) ORDER BY a.start), '[]'::jsonb)  -- the volume as text: JSON numbers would come back as floats
FROM alerts a
WHERE a.meter_id = spans.meter_id AND a.kind IN ('leak', 'burst') AND a.status <> 'dismissed'
  AND a.start < spans.w_to AND coalesce(a.ended_at, a.last_seen) > spans.w_from
"""


# A read VEE found to be a bad read (collector/vee/rules.py) is no register to bill from: an opening
# or closing read is the read next to it (consumption counts the water across it all the same).
_NOT_BAD = (
    "NOT EXISTS (SELECT 1 FROM register_discontinuities b "
    "WHERE b.meter_id = r.meter_id AND b.ts = r.ts AND b.kind = 'bad_read')"
)

# What VEE found in the intervals a line's consumption sums, (first_ts, last_ts], that a person must
# check before billing it: a register replacement no installation job card of the meter confirms
# (none begins between the read before the step and the step), and water over the meter's maximum
# flow (a burst, or a misread).
_VEE_ISSUES = """
SELECT coalesce(array_agg(DISTINCT issue ORDER BY issue), '{}') FROM (
    SELECT 'unconfirmed_replacement' AS issue FROM register_discontinuities dc
    WHERE dc.meter_id = spans.meter_id AND dc.kind = 'replacement' AND dc.ts > spans.first_ts AND dc.ts <= spans.last_ts
      AND NOT EXISTS (
          SELECT 1 FROM meter_installations mi
          WHERE mi.meter_id = dc.meter_id AND mi.installed_at <= dc.ts
            AND mi.installed_at > (SELECT max(p.ts) FROM readings p WHERE p.meter_id = dc.meter_id AND p.ts < dc.ts))
    UNION ALL
    SELECT 'over_max_flow' FROM vee_flags f
    WHERE f.meter_id = spans.meter_id AND f.rule = 'over_max_flow' AND f.ts > spans.first_ts AND f.ts <= spans.last_ts
) issues
"""


# A line's consumption between its first and last stored reads split by whether VEE estimated it:
# the same intervals and values as meter_consumption(meter, first, last) (collector migration 0015;
# its sum is estimated + not_estimated), an interval (previous read, read] estimated when either of
# its reads is an estimate (as NEM12 flags an hour by the weaker of the reads it lies between).
# ``known``: no interval unknown (meter_consumption NULL); true, with nothing, for one read or none.
# And ``newest_received_at``, the latest arrival among the reads the line rests on (its ``as_of``),
# from the opening read (else the line's start) to the first read at or after its end (or the
# closing read, if later): a range holding [first_ts, last_ts], so one scan of the meter's reads
# answers both (asked apart, the as_of read each of their pages again: 1.9x the query's pages at 500
# accounts, benchmarks/bench_determinants.py). An interval's previous read is the same in the wider
# range, so the intervals (first_ts, last_ts] sum as they did alone.
_SPLIT = """
SELECT max(d.received_at) AS newest_received_at,
       bool_and(d.c IS NOT NULL) FILTER (WHERE d.interval_of_line) IS NOT FALSE AS known,
       sum(d.c) FILTER (WHERE d.interval_of_line AND d.estimated) AS estimated,
       sum(d.c) FILTER (WHERE d.interval_of_line AND NOT d.estimated) AS not_estimated
FROM (
    SELECT r.received_at, r.ts > spans.first_ts AND r.ts <= spans.last_ts AS interval_of_line,
           interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3) AS c,
           r.quality = 'estimated' OR lag(r.quality) OVER w = 'estimated' AS estimated
    FROM readings r
    LEFT JOIN register_discontinuities dc ON dc.meter_id = r.meter_id AND dc.ts = r.ts
    WHERE r.meter_id = spans.meter_id AND r.ts >= coalesce(spans.opening_ts, spans.w_from)
      AND r.ts <= greatest(coalesce(spans.after_end_ts, spans.w_to), spans.closing_ts)
    WINDOW w AS (ORDER BY r.ts)
) d
"""


# A read of a span in which its meter's membership of the account changed since (an agreement or a
# job card recorded late, server migration 0052): changed for the billing system's copy though the
# read itself was not written (``r`` a read, ``w`` the account's window it lies in).
_JOINED = """
SELECT 1 FROM account_membership_changes c
WHERE c.account_id = w.account_id AND c.recorded_at >= %(since)s
  AND c.meter_id = r.meter_id AND r.ts >= c.from_ts AND r.ts < c.to_ts
"""

# The reads that left the account since: in a span logged since, of a meter that no longer counts
# for the account at the read's time. The key, who recorded the change and when. And a read deleted
# since (as in account_removed) in such a span: the copy may hold it, and neither the account's
# windows now (it left them) nor its readings (it is gone) would name it.
_LEFT = """
SELECT r.ts, c.service_point_id, r.meter_id, c.recorded_at AS removed_at, c.recorded_by AS removed_by,
       'no longer counts for the account: an agreement or installation recorded since' AS removed_reason
FROM account_membership_changes c
JOIN readings r ON r.meter_id = c.meter_id AND r.ts >= greatest(c.from_ts, %(from)s) AND r.ts < least(c.to_ts, %(to)s)
WHERE c.account_id = %(account)s AND c.recorded_at >= %(since)s
  AND r.ts >= %(from)s AND r.ts < %(to)s  -- as the join says, but bounds the planner can read readings by
  AND NOT EXISTS (SELECT 1 FROM w WHERE w.meter_id = r.meter_id AND r.ts >= w.w_from AND r.ts < w.w_to)
UNION ALL
SELECT h.ts, c.service_point_id, h.meter_id, h.superseded_at, h.superseded_by, h.superseded_reason
FROM account_membership_changes c
JOIN reading_history h ON h.meter_id = c.meter_id
 AND h.ts >= greatest(c.from_ts, %(from)s) AND h.ts < least(c.to_ts, %(to)s)
WHERE c.account_id = %(account)s AND c.recorded_at >= %(since)s AND h.ts >= %(from)s AND h.ts < %(to)s
  AND h.superseded_quality = 'deleted' AND h.superseded_at >= %(since)s
  AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = h.meter_id AND r.ts = h.ts)
"""


# When an agreement or a job card that may change whether the line's meter counts for its account
# within the period was last recorded (server migration 0052's log): a move-out dated back, or a meter
# exchange entered late, moves the line's start or end, and with it what the line bills, without a
# read being written; and (server migration 0063) a job card's register corrected, which changes the
# water across an exchange without one. Part of the line's as_of, as its reads' arrivals are.
_MEMBERSHIP_RECORDED = """
SELECT max(c.recorded_at) FROM account_membership_changes c
WHERE c.account_id = spans.account_id AND c.meter_id = spans.meter_id
  AND c.from_ts < %(to)s AND c.to_ts > %(from)s
"""


def account_exists(conn: psycopg.Connection, account_id: str) -> bool:
    return conn.execute("SELECT 1 FROM accounts WHERE account_id = %s", (account_id,)).fetchone() is not None


def changes_floor(conn: psycopg.Connection, lag: timedelta = DEFAULT_LAG) -> datetime:
    """The instant a later pull's ``changed_since`` may start from: now, or the start of the oldest
    transaction still open in the database if earlier. A read's ``received_at`` is its writing
    transaction's start (``now()``), and a removal's ``superseded_at`` its own moment, so whatever a
    transaction open now writes, committed after this pull read the database, is at or after it.
    Asked before the pull's reads (each statement sees what was committed when it began): a
    transaction it missed was still open here.

    Asked of ``open_transactions_floor()`` (collector migration 0072, which detection shares), which
    reads pg_stat_activity as its owner: a server on its own role sees other roles' transactions
    there with no start, and took its own now() past an ingest or VEE transaction still open. A 500
    naming the grant when the owner cannot see every session either: a floor past an unseen
    transaction loses its reads.

    A floor more than ``lag`` behind the database's clock is logged as a warning naming the session
    that holds it, once per session (:mod:`collector.floor_lag`): a session left idle in a
    transaction makes every pull until it ends send more again."""
    try:
        with conn.cursor(row_factory=tuple_row) as cur:  # whatever rows the connection makes (the API's: dicts)
            row = cur.execute("SELECT open_transactions_floor(), clock_timestamp()").fetchone()
    except psycopg.errors.InsufficientPrivilege as error:
        raise Problem(500, error.diag.message_primary or str(error), title="Bad setting") from None
    assert row is not None
    floor, clock = row
    _FLOOR_WATCH.check(conn, floor, clock, lag)
    return floor


def database_clock(conn: psycopg.Connection) -> datetime:
    """The database's clock, which dates every read's ``received_at`` (its transaction's start)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    clock: datetime = row[0]
    return clock


def account_reads(
    conn: psycopg.Connection,
    account_id: str,
    start: datetime,
    end: datetime,
    after: tuple[datetime, str] | None,
    limit: int | None,
    changed_since: datetime | None = None,
) -> list[dict[str, Any]]:
    """The account's meters' reads in [start, end), by (ts, meter_id), after the keyset cursor; with
    ``changed_since``, only those written or revised at or after it (``received_at``)."""
    return conn.execute(  # type: ignore[return-value]
        f"""
        WITH w AS ({_WINDOWS})
        SELECT r.ts, w.service_point_id, r.meter_id, r.volume_m3, r.quality, r.quality_by, r.quality_by_key_id,
               r.quality_reason,
               coalesce((SELECT array_agg(f.rule ORDER BY f.rule) FROM vee_flags f
                         WHERE f.meter_id = r.meter_id AND f.ts = r.ts), '{{}}') AS vee_flags,
               r.received_at
        FROM w JOIN readings r ON r.meter_id = w.meter_id AND r.ts >= w.w_from AND r.ts < w.w_to
        WHERE w.w_from < w.w_to AND r.ts >= %(from)s AND r.ts < %(to)s  -- (the planner's bounds: see _LEFT)
          AND (%(after_ts)s::timestamptz IS NULL OR (r.ts, r.meter_id) > (%(after_ts)s, %(after_meter)s))
          AND (%(since)s::timestamptz IS NULL OR r.received_at >= %(since)s OR EXISTS ({_JOINED}))
        ORDER BY r.ts, r.meter_id
        LIMIT %(limit)s
        """,
        {
            "account": account_id,
            "after_account": None,
            "from": start,
            "to": end,
            "limit": limit,
            "after_ts": after[0] if after else None,
            "after_meter": after[1] if after else None,
            "since": changed_since,
        },
    ).fetchall()


def account_removed(
    conn: psycopg.Connection,
    account_id: str,
    start: datetime,
    end: datetime,
    changed_since: datetime,
    after: tuple[datetime, str] | None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The account's meters' reads in [start, end) removed at or after ``changed_since`` (an estimate
    VEE deleted when a read came into its gap, an edited estimate giving way to the meter's read)
    and not stored again since, from reading_history (collector migration 0013), and the reads
    that no longer count for the account since (an agreement or a job card recorded late, server
    migration 0052): their keys, by (ts, meter_id) after ``after``, the first ``limit``."""
    return conn.execute(  # type: ignore[return-value]
        f"""
        WITH w AS ({_WINDOWS}), removed AS (
            SELECT h.ts, w.service_point_id, h.meter_id,
                   h.superseded_at AS removed_at, h.superseded_by AS removed_by, h.superseded_reason AS removed_reason
            FROM w JOIN reading_history h ON h.meter_id = w.meter_id AND h.ts >= w.w_from AND h.ts < w.w_to
            WHERE w.w_from < w.w_to AND h.ts >= %(from)s AND h.ts < %(to)s
              AND h.superseded_quality = 'deleted' AND h.superseded_at >= %(since)s
              AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = h.meter_id AND r.ts = h.ts)
            UNION ALL {_LEFT}
        )
        SELECT DISTINCT ON (ts, meter_id) * FROM removed
        WHERE (%(after_ts)s::timestamptz IS NULL OR (ts, meter_id) > (%(after_ts)s, %(after_meter)s))
        ORDER BY ts, meter_id, removed_at DESC
        LIMIT %(limit)s
        """,
        {
            "account": account_id,
            "after_account": None,
            "from": start,
            "to": end,
            "since": changed_since,
            "after_ts": after[0] if after else None,
            "after_meter": after[1] if after else None,
            "limit": limit,
        },
    ).fetchall()


#: The span of time a changed_since page first looks in from where it starts (:func:`changes_page`),
#: and how much wider each next look is.
FIRST_SPAN = timedelta(hours=1)
SPAN_GROWTH = 4
MOST_GROWTH = 16


def changes_page(
    conn: psycopg.Connection,
    account_id: str,
    start: datetime,
    end: datetime,
    changed_since: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A changed_since page's reads (:func:`account_reads`) and removed keys (:func:`account_removed`),
    after ``after``, the first ``limit`` of each, together ``limit`` or more unless the period ends
    first: so the first ``limit`` keys of the two merged are the period's.

    Each is asked for over a span of time from the page's start, FIRST_SPAN wide, then over the next
    span, wider, while they hold fewer than ``limit`` keys together (SPAN_GROWTH times, or as many
    times as keys were lacking, up to MOST_GROWTH), until the period's end: a pull with few changes
    reads the period once, in a few spans. Asked over the whole period, each page found every key
    left in it and kept the first ``limit``: a move-out dated back removes reads by the hundred
    thousand (a landlord's 1,000 units read hourly, 20 days back: 480,000), and each of its pages cost
    about 0.8 s (benchmarks/bench_billing_move_out.py). A span holds the same keys as the whole period
    has in it (the account's windows, the logged spans and the removals are clipped to it), and every
    key past it comes after every key in it."""
    rows: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    until, span = after[0] if after is not None else start, FIRST_SPAN
    while True:
        begin, until = until, end if end - until <= span else until + span
        rows += account_reads(conn, account_id, begin, until, after, limit, changed_since)
        gone += account_removed(conn, account_id, begin, until, changed_since, after, limit)
        found = len(rows) + len(gone)
        if found >= limit or until == end:
            return rows[:limit], gone[:limit]
        span *= min(max(SPAN_GROWTH, limit // (found + 1)), MOST_GROWTH)


def first_keys(
    conn: psycopg.Connection, items: Sequence[tuple[datetime, str]], removed: Sequence[tuple[datetime, str]], limit: int
) -> tuple[int, int, tuple[datetime, str] | None]:
    """Of two lists of keys, each in the database's (ts, meter_id) order, how many of each are among
    the first ``limit`` of both merged, and the last of those: merged by the database, whose
    collation orders meter ids (Python's order of strings may differ, and a page would then skip
    or repeat a key)."""
    keys = [*items, *removed]
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            """
            WITH page AS (
                SELECT ts, meter_id, n FROM unnest(%s::timestamptz[], %s::text[]) WITH ORDINALITY AS k(ts, meter_id, n)
                ORDER BY ts, meter_id LIMIT %s
            )
            SELECT count(*) FILTER (WHERE n <= %s), count(*) FILTER (WHERE n > %s),
                   (SELECT n FROM page ORDER BY ts DESC, meter_id DESC LIMIT 1)
            FROM page
            """,
            ([k[0] for k in keys], [k[1] for k in keys], limit, len(items), len(items)),
        ).fetchone()
    assert row is not None
    return row[0], row[1], keys[row[2] - 1] if row[2] is not None else None


def determinant_lines(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    account_id: str | None,
    after_account: str | None,
    accounts_limit: int | None,
) -> list[dict[str, Any]]:
    """One line per (account, service point, meter) in the period, with opening and closing reads.

    Opening: the last read of the installation at or before the window's start (at or after
    ``installed_at``: a read exactly at the installation is its register then, and wins over the card);
    or the register written on the installation job card (``initial_register_m3``) at ``installed_at``,
    when it is recorded and no read of the installation lies between it and the window's start (as a
    meter silent for a month opens the next period on its last read, however old: a card opens every
    period up to the one of the fitted meter's first read, whose line then bills the water from the
    card to it); otherwise the first read in the window (``opening_distance_s`` says how far from the
    start, ``opening_read_far`` when beyond the meter's read interval). A read from before the
    installation never opens a line: a refurbished meter re-fitted elsewhere took it at its earlier
    service point, and the new customer was billed from it (its earlier register, 150 m³, against 10
    after the refurbishment). Closing,
    the same way round: the last read at or before the window's end, or the removal job card's
    ``final_register_m3`` at ``removed_at`` when the window ends at the removal. Job-card reads have
    the quality ``substituted`` (a read a person obtained otherwise). Without them, the water used
    between installation and first read, or last read and removal, would be billed to no one.

    Consumption: the intervals between the first and last stored reads of the line, as
    ``meter_consumption`` counts them (collector migration 0015, register differences corrected for
    rollovers, replacements and reverse flow; :data:`_SPLIT`), plus the register difference from a
    job-card opening to the first read and from the last read to a job-card closing; NULL if an
    interval is unknown or a job card is above the next read by more than VEE's backwards tolerance
    (``forward_difference``, server migration 0054: within it, the registers' difference).
    ``estimated_m3``: of it, the intervals either of whose reads is an estimate (:data:`_SPLIT`);
    ``actual_m3``: the rest, the job cards' parts with it, so the two sum to the consumption; both
    NULL exactly when the consumption is.

    ``read_after_end``: a read (or the removal's job card) at or after the window's end. Without one
    the closing register is not final: a read in the spool for the hour before the end may still
    arrive and become it (October billed at 00:30 closing at 23:00 with 7.430 m³, and at 02:30,
    the 00:00 read in, closing at 00:00 with 8.040 m³; November opened at 00:00, so 0.61 m³ was
    billed to no one). ``as_of``: the latest ``received_at`` of the meter's reads from the opening
    read to the first read at or after the end (those the line's registers, consumption and
    completeness rest on), or when an agreement or job card changing whether the meter counts for the
    account in the period was last recorded, if later (:data:`_MEMBERSHIP_RECORDED`): a later
    ``as_of`` for the same line says it was revised.
    """
    return conn.execute(  # type: ignore[return-value]
        f"""
        WITH w AS ({_WINDOWS}),
        accounts_page AS (
            SELECT DISTINCT account_id FROM w WHERE w_from < w_to ORDER BY account_id LIMIT %(limit)s
        ),
        lines AS (
            SELECT w.*, o.ts AS opening_ts, o.volume_m3 AS opening_volume_m3, o.quality AS opening_quality,
                   c.ts AS closing_ts, c.volume_m3 AS closing_volume_m3, c.quality AS closing_quality
            FROM w JOIN accounts_page USING (account_id)
            LEFT JOIN LATERAL (
                SELECT * FROM (
                    -- a read of this installation only: one before it was fitted was taken where
                    -- the meter was before (a reused meter's earlier service point and customer)
                    (SELECT ts, volume_m3, quality, 0 AS pref FROM readings r
                     WHERE meter_id = w.meter_id AND ts <= w.w_from AND ts >= w.installed_at AND {_NOT_BAD}
                     ORDER BY ts DESC LIMIT 1)
                    UNION ALL
                    -- the installation card, the register known at the installation: it opens every
                    -- window until the installation's first read, as a silent meter's last read does
                    -- (a read after the installation and at or before the start is later, and wins)
                    SELECT w.installed_at, w.initial_register_m3, 'substituted', 1
                    WHERE w.initial_register_m3 IS NOT NULL
                    UNION ALL
                    (SELECT ts, volume_m3, quality, 2 FROM readings r
                     WHERE meter_id = w.meter_id AND ts > w.w_from AND ts <= w.w_to AND {_NOT_BAD} ORDER BY ts LIMIT 1)
                ) candidates ORDER BY pref = 2, ts DESC, pref LIMIT 1
            ) o ON true
            LEFT JOIN LATERAL (
                SELECT * FROM (
                    (SELECT ts, volume_m3, quality, 0 AS pref FROM readings r
                     WHERE meter_id = w.meter_id AND ts <= w.w_to AND ts > o.ts AND {_NOT_BAD} ORDER BY ts DESC LIMIT 1)
                    UNION ALL
                    SELECT w.removed_at, w.final_register_m3, 'substituted', 1
                    WHERE w.w_to = w.removed_at AND w.final_register_m3 IS NOT NULL AND w.removed_at > o.ts
                ) candidates ORDER BY ts DESC, pref LIMIT 1
            ) c ON true
            WHERE w.w_from < w.w_to
        ),
        -- The stored reads at each end of a line: where the line's opening or closing is a job card,
        -- the first or last stored read inside it.
        spans AS (
            SELECT l.*, f.ts AS first_ts, f.volume_m3 AS first_volume_m3,
                   z.ts AS last_ts, z.volume_m3 AS last_volume_m3, e.after_end_ts
            FROM lines l
            LEFT JOIN LATERAL (
                SELECT ts, volume_m3 FROM readings r
                WHERE meter_id = l.meter_id AND ts >= l.opening_ts AND ts <= l.closing_ts AND {_NOT_BAD}
                ORDER BY ts LIMIT 1
            ) f ON true
            LEFT JOIN LATERAL (
                SELECT ts, volume_m3 FROM readings r
                WHERE meter_id = l.meter_id AND ts >= l.opening_ts AND ts <= l.closing_ts AND {_NOT_BAD}
                ORDER BY ts DESC LIMIT 1
            ) z ON true
            LEFT JOIN LATERAL (
                SELECT ts AS after_end_ts FROM readings r
                WHERE meter_id = l.meter_id AND ts >= l.w_to AND {_NOT_BAD} ORDER BY ts LIMIT 1
            ) e ON true
        )
        SELECT account_id, service_point_id, meter_id, w_from, w_to,
               opening_ts, opening_volume_m3, opening_quality, closing_ts, closing_volume_m3, closing_quality,
               ({_LEAKS}) AS leaks, ({_VEE_ISSUES}) AS vee_issues,
               (SELECT m.read_interval_s FROM meters m WHERE m.meter_id = spans.meter_id) AS read_interval_s,
               closing_ts >= w_to OR after_end_ts IS NOT NULL AS read_after_end,
               greatest(
                   split.newest_received_at,  -- (_SPLIT)
                   ({_MEMBERSHIP_RECORDED})
               ) AS as_of,
               cards.m3 + CASE WHEN split.known THEN coalesce(split.estimated, 0) + coalesce(split.not_estimated, 0) END
                   AS consumption_m3,
               CASE WHEN cards.m3 IS NOT NULL AND split.known THEN coalesce(split.estimated, 0) END AS estimated_m3,
               cards.m3 + CASE WHEN split.known THEN coalesce(split.not_estimated, 0) END AS actual_m3
        FROM spans
        LEFT JOIN LATERAL ({_SPLIT}) split ON true
        -- The job cards' part: from a job-card opening to the first stored read and from the last to a
        -- job-card closing (0 at a stored read's end), or between the two cards when no read lies
        -- between; NULL without a closing, or when a card is above the next read (beyond 0.0005 m³).
        CROSS JOIN LATERAL (
            SELECT CASE
                       WHEN first_ts IS NULL THEN forward_difference(opening_volume_m3, closing_volume_m3)
                       ELSE forward_difference(opening_volume_m3, first_volume_m3)
                            + forward_difference(last_volume_m3, closing_volume_m3)
                   END AS m3
        ) cards
        ORDER BY account_id, w_from, meter_id
        """,
        {"account": account_id, "after_account": after_account, "from": start, "to": end, "limit": accounts_limit},
    ).fetchall()


def utility_timezone(conn: psycopg.Connection) -> ZoneInfo:
    """The utility's time zone (collector migration 0020): local days and months are its calendar."""
    name = utility_zone_name(conn)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # PostgreSQL knows a name this Python's tzdata lacks
        raise Problem(500, f"the utility's time zone {name!r} is unknown to the server", title="Bad setting") from None
