"""Hourly interval consumption in the AEMO NEM12 layout (MDFF), for MDM-style integrations.

Records: 100 header, 200 per data stream (here: a meter at a service point, the service point id
standing in for the NMI, the meter id its MeterSerialNumber), 300 per day with 24 hourly values in
kilolitres (= m³), 400 where a day mixes qualities (its 300 record then carries ``V``), 900 end.

A service point has one 300 record per day and suffix, whichever meters it had that day. The day a
meter is exchanged is the new meter's (AEMO: a new MeterSerialNumber applies on and from the
IntervalDate the meter is replaced): in the new meter's 200 record, its hours before the exchange
the old meter's water, after it the new one's, and the hour of the exchange both meters' parts
(summed, flagged the weaker of the two). A meter with no day of its own in the file (fitted and
removed within a day another meter was fitted on, or removed on the file's first day) has no 200
record: each hour holding its water names it in its ReasonDescription (ReasonCode 0). The water only
the job cards' registers measure, from a removed meter's last read to its removal and from a fitted
meter's installation to its first read, is in the hour the removal, or that first read, closes in,
as the determinants bill it: that hour is ``S18`` (substituted from an alternate source), "the
removal (installation) job card's register", and "accumulated since" the last read or the
installation when that is more than 1.5 hours before; a card above the read next to it (by more than
VEE's backwards tolerance, 0.0005 m³: server migration 0054) leaves its hour null (``N``), as it
leaves the determinant's consumption unknown: the card or the read is wrong, so the water between
them is unknown, and an hour's value with a part unknown is unknown, as for an interval unknown (the
other meter's part of an exchange's hour with it). A meter fitted and removed without a read in
between has the two cards' difference in the hour its removal closes in, as its determinant bills it
(before, no hour held it). A card is left out where the meter was read at its removal, or at its
installation (that read's interval already holds the water, and the determinant closes or opens on
that read). A meter read before it was fitted (a refurbished meter re-fitted at another service point,
its reads from there) has the installation's water from its first read at or after the installation,
as the determinant opens on it: the interval from the earlier installation's last read to it is no
installation's. Each installation's water ends at its removal and begins at its installation, whatever
hour they fall in: a re-fit within the removal's hour leaves the new installation's reads of that hour,
and the interval across the re-fit, out of the earlier one's (before, its whole last hour was its, and
a read after the removal in that hour left the removal card out). A bad read opens and closes nothing,
as in billing (before, a bad read at the installation opened it). Before, the installation card was
left out whenever the meter had a read before its installation, and that interval was in the new
installation's hours (a re-fit with a card of 9.900 m³ and a first read of 10.000, the meter at 150 m³
where it was before: that hour null, the NMI 0.100 m³ below its determinant).

With ``account=``, a change of tenant splits as the determinants split it (repository.determinant_lines):
at the last read at or before the change, the outgoing tenant's closing read and the incoming one's
opening read. An hour that read falls inside of is each side's part in its file (a move-out read at
10:30: 10:00-10:30 the outgoing tenant's, 10:30-11:00 the incoming one's); without a read at the
change, the interval it falls in is the incoming tenant's. Before, the change's whole hour was in the
outgoing tenant's file (its hours up to the one its agreement ended in, the incoming tenant's from the
next), so neither file held its determinant's water (hourly reads, a move at 10:30: 0.11 m³ against
0.100, and 0.13 against 0.140).

Streams: an interval value is a volume, never negative; the direction is the stream's (AEMO's
NMISuffix: ``E`` what the network delivers, ``B`` what flows back into it). ``E1`` (RegisterID 1)
holds each hour's net water when it went forward through the meter, ``B1`` (RegisterID 2) when it
went back (backflow), each 0 in the other's hours, so E1 - B1 is the hour's consumption and the
file's E1 less its B1 the net a determinant bills. A meter has its ``B1`` stream (NMIConfiguration
``E1B1``) in a file whose days hold an hour of backflow, else only ``E1``. Before, a backflow hour
was a negative value in E1 (``-0.04`` flagged ``A``). Hourly consumption is net: an hour with 0.03
m³ forward and 0.04 m³ back is 0.01 m³ in B1.

Quality and method (the MDFF specification's quality flag and two-digit method flag, substitution
types 11-19 of remotely read interval metering, installation types 1-4):

- ``A`` actual; ``N`` null (no data yet, or consumption unknown).
- aquami's ``estimated`` reads fill a gap between two actual reads after the fact. In NEM terms
  that is a substitution, not a forward estimate (``E`` is for data not yet collected, which aquami
  never makes): ``S17`` (linear) for VEE's linear estimates, ``S15`` (average like day) for its
  profile estimates, which are the meter's own mean use at that hour of the week.
- ``substituted`` (a read a person obtained otherwise, e.g. on a site visit): ``S18`` (alternate).
- ``edited`` (a person's correction, final): ``F16`` (agreed).
- A gap VEE did not estimate (it crosses a register step, or is too long): its hours are ``N``
  (null, value 0) and the hour its closing read ends holds the whole gap's water, the register's
  difference. The MDFF specification (AEMO, "Meter Data File Format Specification NEM12 & NEM13",
  300 record, QualityMethod) has no flag for an interval summed over earlier ones: an interval
  value is that interval's energy, and ``A`` would vouch that the gap's water passed in that hour.
  So that hour is ``S18`` (substituted from an alternate source: the register), its description
  saying from when it accumulates: an MDM substituting the null hours itself must take that
  volume off this hour, or count it twice.
S and F carry a reason code: 0 (free text) with the reason recorded with the read.

Deviation from the AEMO NEM12 rules, deliberate: the interval length is 60 minutes (aquami's
consumption is hourly; AEMO lists 5, 15 and 30), and NMI and suffix are aquami's identifiers.
Days are the utility's time zone at standard time, i.e. a fixed offset all year, as AEMO's NEM time
is: a NEM12 day always has 24 hours, also when the local clocks change. An hour of standard time
takes the ``consumption_hourly`` local hour that begins at the same instant, which there is all
year when the clocks go forward by whole hours. A zone whose clocks go forward by part of an hour
(Australia/Lord_Howe: 30 minutes) is refused (:class:`ZoneNotExportable`): each of its summer
hours falls across two standard-time hours, which hourly consumption cannot split (the export
gave every summer hour as null data).

Values come from ``consumption_hourly`` (collector: refresh_consumption); an hour's quality is the
weakest among the reads that close it. A 300 record's UpdateDateTime is when the newest of the day's
reads arrived (``received_at``; before, the export's time, so a day revised by a late read looked
like any other), or, if later, when a job card or agreement that may move the day's meter into or out
of the file was recorded (server migration 0052's log, as a determinant's as_of: a move-out dated back
or an exchange entered late revises a day without a read, as a job card's register corrected does, logged
since server migration 0063; before, the day kept its reads' time); the
export's time for a day without reads.

The file is streamed (:func:`prepare`, then :func:`nem12_chunks`): every error is found before
its first byte, and the hours come through a server-side cursor, a service point's records at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from itertools import groupby
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import tuple_row

from aquami.contracts.reads import IDENTIFIER_MAX_LENGTH, IDENTIFIER_PATTERN, is_identifier
from collector.utility_zone import daylight_saving_shift, standard_offset, utility_zone_name
from collector.vee.config import VeeConfig
from server.billing.spreadsheet import inert_text

# (quality, quality_by) → quality flag and method flag; quality_by names VEE's method or a person.
VEE_METHODS = {"vee:linear": "S17", "vee:profile": "S15"}
#: An hour holding a gap's water (see the module's docstring): substituted from the register.
ACCUMULATED = "accumulated"
#: A read closing more than this after the read before (1.5 h: VEE's gap_factor of NEM12's hour)
#: holds water of hours before its own. Measured against NEM12's 60-minute interval, not the meter's
#: own read interval (collector/vee/intervals.py): a daily meter's hour holds its whole day, and
#: ``A`` would vouch that the day's water passed in that hour; it is ``S18`` "accumulated since …".
GAP_S = 3600 * VeeConfig().gap_factor
QUALITY_METHODS = {
    "actual": "A",
    "missing": "N",
    "estimated": "S15",
    "substituted": "S18",
    "edited": "F16",
    ACCUMULATED: "S18",
}
FREE_TEXT_REASON = "0"

# Each stream (a meter at a service point) with the window [lo, hi) it is exported for: its
# installation, and with an account, that installation within the account's agreement there, so a
# tenant's file never carries the hours of the tenant before or after (NULL hi: still open).
_STREAMS = """
streams AS (
    SELECT mi.service_point_id, mi.meter_id, mi.installed_at, mi.removed_at, mi.initial_register_m3,
           mi.final_register_m3,
           greatest(mi.installed_at, sa.start_at) AS lo,  -- greatest and least pass over NULLs:
           least(mi.removed_at, sa.end_at) AS hi             -- no agreement asked for, or one still open
    FROM meter_installations mi
    LEFT JOIN service_agreements sa
        ON %(account)s::text IS NOT NULL AND sa.service_point_id = mi.service_point_id AND sa.account_id = %(account)s
    WHERE mi.installed_at < %(to)s AND (mi.removed_at IS NULL OR mi.removed_at > %(from)s)
      AND (%(account)s::text IS NULL OR (sa.start_at < %(to)s AND (sa.end_at IS NULL OR sa.end_at > %(from)s)))
), windows AS (
    SELECT * FROM streams WHERE hi IS NULL OR hi > lo
)"""
# The streams with an id NEM12 cannot write (is_identifier: the pattern, up to 64 characters), in the
# file's order: a cheap query before the file starts, so the API can still answer 409.
_UNWRITABLE = f"""
WITH {_STREAMS}
SELECT DISTINCT service_point_id, meter_id FROM windows
WHERE NOT (service_point_id ~ %(pattern)s AND length(service_point_id) <= %(length)s
           AND meter_id ~ %(pattern)s AND length(meter_id) <= %(length)s)
ORDER BY 1, 2
"""
# A read VEE found to be a bad read (collector/vee/rules.py) is no register to open or close on, as in
# billing (repository._NOT_BAD): ``r`` a read.
_GOOD = (
    "NOT EXISTS (SELECT 1 FROM register_discontinuities b "
    "WHERE b.meter_id = r.meter_id AND b.ts = r.ts AND b.kind = 'bad_read')"
)
# A window's ends that are an agreement's (a tenant moving in or out, not a meter fitted or removed):
# the account's water there is what its determinant bills, the intervals closing after the last read at
# or before the agreement's start, up to the last read at or before its end (repository.determinant_lines;
# a bad read is none). ``split_lo`` / ``split_hi``: those reads (the agreement's own instant without one),
# NULL where the window's end is the installation's. An hour the split falls inside of is the two sides'
# (:data:`_HOURLY`'s ``edges``); the others are whole hours of one side. A read at ``installed_at`` itself
# is the installation's, and opens a tenant's water as billing's opening read does (``ts >= installed_at``;
# before, ``>``, which fell back to the agreement's instant: no read lies between the two, so each side had
# the same intervals either way, tests/server/test_nem12_split_as_billed.py).
#
# A meter read before its installation (a reused meter, read at its earlier service point) opens the
# installation's water on its first read at or after ``installed_at``, as the determinants do: ``split_lo``
# is that read (infinity without one in the installation), so the interval from the earlier
# installation's last read to it, and the earlier installation's reads in the hour it was fitted in,
# are not this window's (:data:`_HOURLY`'s ``edges`` splits the hour it falls inside of). So does an
# installation whose first read at or after ``installed_at`` is a bad read: its first good read opens it.
#
# A window ending at a removal with a read after it in the removal's hour (the meter re-fitted within
# that hour) or a bad read as its last read closes on its last good read at or before the removal:
# ``split_hi`` is that read, so the next installation's reads in that hour, and the interval across the
# re-fit, are not this window's (before, its whole last hour was).
_SPLITS = f"""
splits AS MATERIALIZED (  -- worked out once a window, not once an hour of it
    SELECT w.*,
           greatest(
               CASE WHEN %(account)s::text IS NOT NULL AND w.lo > w.installed_at THEN coalesce(
                   (SELECT max(r.ts) FROM readings r
                    WHERE r.meter_id = w.meter_id AND r.ts <= w.lo AND r.ts >= w.installed_at AND {_GOOD}),
                   w.lo) END,
               CASE WHEN EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = w.meter_id AND r.ts < w.installed_at)
                         OR NOT coalesce((SELECT {_GOOD} FROM readings r
                                          WHERE r.meter_id = w.meter_id AND r.ts >= w.installed_at
                                          ORDER BY r.ts LIMIT 1), true)
               THEN coalesce(
                   (SELECT min(r.ts) FROM readings r
                    WHERE r.meter_id = w.meter_id AND r.ts >= w.installed_at
                      AND r.ts <= coalesce(w.removed_at, 'infinity') AND {_GOOD}),
                   'infinity') END
           ) AS split_lo,
           CASE WHEN %(account)s::text IS NOT NULL AND w.hi < coalesce(w.removed_at, 'infinity') THEN coalesce(
               (SELECT max(r.ts) FROM readings r WHERE r.meter_id = w.meter_id AND r.ts <= w.hi AND r.ts >= w.lo
                  AND {_GOOD}),
               w.hi)
                WHEN w.hi = w.removed_at AND (
                    EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = w.meter_id AND r.ts > w.removed_at
                              AND r.ts <= date_trunc('hour', w.removed_at - interval '1 microsecond', %(zone)s::text)
                                          + interval '1 hour')
                    OR NOT coalesce((SELECT {_GOOD} FROM readings r
                                     WHERE r.meter_id = w.meter_id AND r.ts <= w.removed_at AND r.ts >= w.lo
                                     ORDER BY r.ts DESC LIMIT 1), true))
                THEN coalesce(
               (SELECT max(r.ts) FROM readings r WHERE r.meter_id = w.meter_id AND r.ts <= w.hi AND r.ts >= w.lo
                  AND {_GOOD}),
               w.lo) END AS split_hi
    FROM windows w
)"""
# A meter's hours' flags (``s`` its window in :data:`_HOURLY`): each hour's weakest interval, from the
# period's reads and the meter's last one before it. An hour's value is each read closing in it less the
# read before: both decide its quality (the hour after an estimated gap, closed by an actual read, holds
# the estimate too); a read closing a gap longer than %(gap)s seconds (VEE's) says where the gap began.
# One row an interval, its two reads side by side from one pass (before, a row for each read on each
# side of it: twice the rows sorted and grouped, half the export's time in the database). Worked out
# for one meter at a time, beside its ``consumption_hourly`` rows, all in memory: before, the whole
# fleet's at once, its 1.44 million hours (2,000 meters' month) grouped where the planner expected a
# few thousand, so their join spilled to disk in 16 batches and the fleet's sorts in 130 and 70 MB.
_METER_QUALITY = """
SELECT DISTINCT ON (hour) hour, quality, quality_by, quality_reason,  -- the hour's weakest interval (its first
       min(gap_from) OVER hour AS gap_from, max(received_at) OVER hour AS received_at  -- when as weak)
FROM (
    -- the utility's zone as a parameter, read once (utility_timezone() here ran once per row: 2-3x slower);
    -- each interval's weaker read (the closing one when as strong)
    SELECT date_trunc('hour', closing - interval '1 microsecond', %(zone)s::text) AS hour, closing,
           gap_from, greatest(received_at, p_received_at) AS received_at, least(weakness, p_weakness) AS weakness,
           CASE WHEN p_weakness < weakness THEN p_quality ELSE quality END AS quality,
           CASE WHEN p_weakness < weakness THEN p_quality_by ELSE quality_by END AS quality_by,
           CASE WHEN p_weakness < weakness THEN p_quality_reason ELSE quality_reason END AS quality_reason
    FROM (
        SELECT ts AS closing, quality, quality_by, quality_reason, received_at, weakness,
               CASE WHEN ts - lag(ts) OVER w > make_interval(secs => %(gap)s) THEN lag(ts) OVER w END AS gap_from,
               lag(weakness) OVER w AS p_weakness, lag(quality) OVER w AS p_quality,
               lag(quality_by) OVER w AS p_quality_by, lag(quality_reason) OVER w AS p_quality_reason,
               lag(received_at) OVER w AS p_received_at
        FROM (  -- the period's reads, and the meter's last one before it: one scan, in order
            SELECT r.ts, r.quality, r.quality_by, r.quality_reason, r.received_at,
                   CASE r.quality WHEN 'estimated' THEN 0 WHEN 'substituted' THEN 1 WHEN 'edited' THEN 2 ELSE 3 END
                       AS weakness
            FROM readings r
            WHERE r.meter_id = s.meter_id AND r.ts <= %(to)s
              AND r.ts >= coalesce((SELECT max(p.ts) FROM readings p WHERE p.meter_id = s.meter_id
                                                                       AND p.ts <= %(from)s), %(from)s)
        ) weighed
        WINDOW w AS (ORDER BY ts)
    ) sides
    WHERE closing > %(from)s AND closing <= %(to)s
) ranked
WINDOW hour AS (PARTITION BY hour)
ORDER BY hour, weakness, closing
"""
_HOURLY = f"""
WITH {_STREAMS}, {_SPLITS}, cards AS (
    -- the job cards' water: from the removal's last read to its register, in the hour the removal closes
    -- in, where the window ends at the removal (none if the meter was read at the removal: that read
    -- closes the determinant; a read after it, in the same hour or not, is the next installation's, whose
    -- intervals ``split_hi`` keeps out of this window), and from the installation's register to its first
    -- read, in the hour that read closes in, where the window holds that read and no read of the
    -- installation precedes its start (none if the meter was read at its installation: that read opens
    -- the determinant; a read before it is an earlier installation's). A bad read is no register to
    -- open or close on, as in billing: the cards reach past it. With an account, a tenant moving in
    -- between the card and the read next to it has the card's water, as its determinant bills it
    SELECT w.service_point_id, w.meter_id, w.lo, w.hi,
           date_trunc('hour', w.removed_at - interval '1 microsecond', %(zone)s::text) AS hour,
           forward_difference(p.volume_m3, w.final_register_m3) AS m3, p.ts AS since, w.removed_at AS closing,
           'the removal job card''s register' AS card
    FROM windows w
    CROSS JOIN LATERAL (SELECT r.ts, r.volume_m3 FROM readings r
                        WHERE r.meter_id = w.meter_id AND r.ts < w.removed_at AND {_GOOD}
                        ORDER BY r.ts DESC LIMIT 1) p
    WHERE w.hi = w.removed_at AND w.final_register_m3 IS NOT NULL AND p.ts >= w.installed_at
      AND w.removed_at > %(from)s AND w.removed_at <= %(to)s
      AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = w.meter_id AND r.ts = w.removed_at AND {_GOOD})
    UNION ALL
    SELECT w.service_point_id, w.meter_id, w.lo, w.hi,
           date_trunc('hour', f.ts - interval '1 microsecond', %(zone)s::text),
           forward_difference(w.initial_register_m3, f.volume_m3), w.installed_at, f.ts,
           'the installation job card''s register'
    FROM windows w
    CROSS JOIN LATERAL (SELECT r.ts, r.volume_m3 FROM readings r
                        WHERE r.meter_id = w.meter_id AND r.ts > w.installed_at AND {_GOOD} ORDER BY r.ts LIMIT 1) f
    WHERE f.ts > w.lo AND w.initial_register_m3 IS NOT NULL AND (w.hi IS NULL OR f.ts <= w.hi)
      AND f.ts > %(from)s AND f.ts <= %(to)s
      AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = w.meter_id AND r.ts = w.installed_at AND {_GOOD})
    UNION ALL
    -- an installation never read: from the installation's register to the removal's, in the hour the
    -- removal closes in, where the window ends at the removal, as its determinant bills the two cards
    SELECT w.service_point_id, w.meter_id, w.lo, w.hi,
           date_trunc('hour', w.removed_at - interval '1 microsecond', %(zone)s::text),
           forward_difference(w.initial_register_m3, w.final_register_m3), w.installed_at, w.removed_at,
           'the installation and removal job cards'' registers (no read between)'
    FROM windows w
    WHERE w.hi = w.removed_at AND w.initial_register_m3 IS NOT NULL AND w.final_register_m3 IS NOT NULL
      AND w.removed_at > %(from)s AND w.removed_at <= %(to)s
      AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.meter_id = w.meter_id
                      AND r.ts >= w.installed_at AND r.ts <= w.removed_at AND {_GOOD})
)
, edges AS (
    -- an hour an agreement's split read falls inside of (a move-out at 10:30 with a read at 10:30: the
    -- tenant moving out has 10:00-10:30, the one moving in 10:30-11:00): the intervals of the hour on
    -- the window's side of it, from the reads, as consumption_hourly sums them
    SELECT e.service_point_id, e.meter_id, e.lo, e.hi, e.hour,
           coalesce(sum(d.c) FILTER (WHERE d.closing), 0) AS consumption_m3,
           count(*) FILTER (WHERE d.closing AND d.c IS NULL) AS unknown,
           -- the weakest of the reads either side of its intervals, as an hour's quality is
           (array_agg(d.quality ORDER BY d.weakness))[1] AS quality,
           (array_agg(d.quality_by ORDER BY d.weakness))[1] AS quality_by,
           (array_agg(d.quality_reason ORDER BY d.weakness))[1] AS quality_reason,
           min(d.gap_from) AS gap_from, max(d.received_at) AS received_at
    FROM (
        SELECT DISTINCT s.*, date_trunc('hour', split, %(zone)s::text) AS hour  -- both ends in one hour: once
        FROM splits s CROSS JOIN LATERAL (VALUES (s.split_lo), (s.split_hi)) v(split)
        WHERE split IS NOT NULL AND split <> date_trunc('hour', split, %(zone)s::text)
    ) e
    CROSS JOIN LATERAL (
        SELECT i.c, i.gap_from, v.*,
               CASE v.quality WHEN 'estimated' THEN 0 WHEN 'substituted' THEN 1 WHEN 'edited' THEN 2 ELSE 3 END
                   AS weakness
        FROM (
            SELECT r.ts, r.received_at, r.quality, r.quality_by, r.quality_reason,
                   interval_consumption(r.volume_m3, lag(r.volume_m3) OVER w, dc.ts IS NOT NULL, dc.consumption_m3)
                       AS c,
                   CASE WHEN r.ts - lag(r.ts) OVER w > make_interval(secs => %(gap)s) THEN lag(r.ts) OVER w END
                       AS gap_from,
                   lag(r.ts) OVER w AS prev_ts, lag(r.received_at) OVER w AS prev_received_at,
                   lag(r.quality) OVER w AS prev_quality, lag(r.quality_by) OVER w AS prev_quality_by,
                   lag(r.quality_reason) OVER w AS prev_quality_reason
            FROM readings r
            LEFT JOIN register_discontinuities dc ON dc.meter_id = r.meter_id AND dc.ts = r.ts
            WHERE r.meter_id = e.meter_id AND r.ts <= e.hour + interval '1 hour'
              AND r.ts >= (SELECT coalesce(max(p.ts), e.hour) FROM readings p WHERE p.meter_id = e.meter_id
                                                                              AND p.ts <= e.hour)
            WINDOW w AS (ORDER BY r.ts)
        ) i
        CROSS JOIN LATERAL (VALUES (true, i.quality, i.quality_by, i.quality_reason, i.received_at),
                                   (false, i.prev_quality, i.prev_quality_by, i.prev_quality_reason,
                                    i.prev_received_at)) v(closing, quality, quality_by, quality_reason, received_at)
        WHERE i.prev_ts IS NOT NULL AND i.ts > e.hour
          AND i.ts > coalesce(e.split_lo, '-infinity') AND i.ts <= coalesce(e.split_hi, 'infinity')
    ) d
    WHERE e.hour >= %(from)s AND e.hour < %(to)s
    GROUP BY 1, 2, 3, 4, 5
)
, recorded AS (
    -- the days of the file a job card or an agreement recorded may have revised (server migration 0052's
    -- log: a span in which the meter may have joined or left an account), each day the latest of them, as
    -- a determinant line's as_of takes them (repository._MEMBERSHIP_RECORDED): with an account, that
    -- account's; without, any account's at the service point. Days are 24 hours of standard time from
    -- %(from)s (a fixed offset: '1 day' would follow the session's zone)
    SELECT w.service_point_id, w.meter_id, w.lo, w.hi,
           %(from)s::timestamptz + interval '24 hours' * d AS day, max(c.recorded_at) AS recorded_at
    FROM (SELECT DISTINCT service_point_id, meter_id, lo, hi FROM windows) w
    JOIN account_membership_changes c
      ON c.meter_id = w.meter_id AND c.service_point_id = w.service_point_id
     AND (%(account)s::text IS NULL OR c.account_id = %(account)s)
     AND c.from_ts < %(to)s AND c.to_ts > %(from)s
    CROSS JOIN LATERAL generate_series(
        floor(extract(epoch FROM greatest(c.from_ts, %(from)s) - %(from)s) / 86400)::int,
        ceil(extract(epoch FROM least(c.to_ts, %(to)s) - %(from)s) / 86400)::int - 1) d
    GROUP BY 1, 2, 3, 4, 5
)
, extras AS (  -- the rows beside a window's hours: an hour a split read falls inside of, a job card's water,
               -- a day a record may have revised; few, gathered a window at a time, each column an array
    SELECT service_point_id, meter_id, lo, hi, hour, consumption_m3, (unknown > 0)::int AS unknown, quality,
           quality_by, quality_reason, gap_from, received_at, NULL::text AS card, NULL::timestamptz AS recorded_at
    FROM edges
    UNION ALL
    SELECT service_point_id, meter_id, lo, hi, hour, m3, (m3 IS NULL)::int, 'substituted'::text, NULL::text, card,
           CASE WHEN closing - since > make_interval(secs => %(gap)s) THEN since END, NULL::timestamptz, card,
           NULL::timestamptz
    FROM cards
    UNION ALL  -- a day's start in ``hour``, when a record that may have revised it was last recorded
    SELECT service_point_id, meter_id, lo, hi, day, NULL::numeric, NULL::int, NULL::text, NULL::text, NULL::text,
           NULL::timestamptz, NULL::timestamptz, NULL::text, recorded_at
    FROM recorded
), extra AS (
    SELECT service_point_id, meter_id, lo, hi, array_agg(hour) AS hours, array_agg(consumption_m3) AS m3s,
           array_agg(unknown) AS unknowns, array_agg(quality) AS qualities, array_agg(quality_by) AS bys,
           array_agg(quality_reason) AS reasons, array_agg(gap_from) AS gaps, array_agg(received_at) AS arrivals,
           array_agg(card) AS cards, array_agg(recorded_at) AS records
    FROM extras
    GROUP BY 1, 2, 3, 4
)
-- instants as whole seconds (an hour's start) or microseconds (the window, a read's arrival) since 1970: see Row
SELECT s.service_point_id, s.meter_id, (extract(epoch FROM s.lo) * 1000000)::bigint AS lo,
       (extract(epoch FROM s.hi) * 1000000)::bigint AS hi, extract(epoch FROM h.hour)::bigint AS hour,
       h.consumption_m3, h.unknown, h.quality, h.quality_by, h.quality_reason, h.gap_from,
       (extract(epoch FROM h.received_at) * 1000000)::bigint AS received_at, h.card, h.recorded_at
-- the windows in the file's order, so that only each meter's hours are sorted (before, the whole fleet's at
-- once, 130 MB on disk for 2,000 meters' month); a window is one (service point, meter, lo, hi)
FROM (SELECT s.*, x.hours, x.m3s, x.unknowns, x.qualities, x.bys, x.reasons, x.gaps, x.arrivals, x.cards, x.records
      FROM splits s
      LEFT JOIN extra x ON x.service_point_id = s.service_point_id AND x.meter_id = s.meter_id AND x.lo = s.lo
                       AND x.hi IS NOT DISTINCT FROM s.hi
      ORDER BY s.service_point_id, s.meter_id) s
LEFT JOIN LATERAL (
    -- a meter's hours from the one its window starts in (when the window starts at its installation:
    -- a meter fitted at 10:30 measured the water of 10:30-11:00, the meter it replaced that of 10:00-10:30)
    -- up to the one its window ends in; at an agreement's end, the whole hours of its side of the split
    -- read (an hour the split falls inside of is in ``edges``)
    SELECT c.hour, c.consumption_m3, c.unknown, q.quality, q.quality_by, q.quality_reason, q.gap_from,
           q.received_at, NULL::text AS card, NULL::timestamptz AS recorded_at
    FROM consumption_hourly c
    LEFT JOIN ({_METER_QUALITY}) q ON q.hour = c.hour
    WHERE c.meter_id = s.meter_id AND c.hour >= %(from)s AND c.hour < %(to)s
      AND CASE WHEN s.split_lo IS NOT NULL THEN c.hour >= s.split_lo
               ELSE c.hour >= s.lo OR (s.lo = s.installed_at AND c.hour > s.lo - interval '1 hour')
          END
      AND CASE WHEN s.split_hi IS NOT NULL THEN c.hour + interval '1 hour' <= s.split_hi
               ELSE s.hi IS NULL OR c.hour < s.hi
          END
    UNION ALL
    SELECT * FROM unnest(s.hours, s.m3s, s.unknowns, s.qualities, s.bys, s.reasons, s.gaps, s.arrivals, s.cards,
                         s.records)
) h ON true
ORDER BY 1, 2, 5
"""
#: Rows per round trip of the export's server-side cursor: memory stays that of a few meters' month.
FETCH_ROWS = 2000


def _method(quality: str, quality_by: str | None) -> str:
    if quality == "estimated" and quality_by in VEE_METHODS:
        return VEE_METHODS[quality_by]
    return QUALITY_METHODS[quality]


def _reason(method: str, reason: str | None) -> tuple[str, str]:
    """Reason code and description: required for S and F, free text (code 0) from the read's reason."""
    if method[0] not in "SF":
        return "", ""
    text = inert_text(
        " ".join((reason or "no reason recorded").replace(",", ";").split())
    )  # opened in spreadsheets too
    return FREE_TEXT_REASON, text[:240]


@lru_cache(maxsize=65536)
def _value(value: Decimal) -> str:
    """An interval value as NEM12 writes it, without trailing zeros (remembered: a file's values repeat,
    and equal Decimals, 0.010 and 0.01, write alike)."""
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


class ZoneNotExportable(ValueError):
    """The utility's time zone has no NEM12 export: its summer hours are not standard-time hours."""


def check_exportable(zone: ZoneInfo) -> None:
    """Raises :class:`ZoneNotExportable` for a zone whose clocks go forward by part of an hour."""
    shift = daylight_saving_shift(zone)
    if shift % timedelta(hours=1):
        raise ZoneNotExportable(
            f"the utility's time zone {zone} puts its clocks forward by {shift.total_seconds() / 60:.0f} minutes"
            " in summer: each summer hour would fall across two of NEM12's standard-time hours, which hourly"
            " consumption cannot split; NEM12 is exported for zones whose clocks change by whole hours"
        )


def standard_time(zone: ZoneInfo) -> timezone:
    """The zone's offset without daylight saving, as a fixed zone."""
    return timezone(standard_offset(zone))


_ZERO = Decimal(0)
_NO_DATA = (_ZERO, "missing", None, None)


#: A market participant's id in the 100 (header) record: up to ten letters and digits. Anything else
#: (a comma, a line break) would add fields or records to the file.
PARTICIPANT_ID = r"^[A-Za-z0-9]{1,10}$"


@dataclass(frozen=True)
class Nem12Export:
    """An export checked and laid out (:func:`prepare`), ready to stream (:func:`nem12_chunks`)."""

    day0: datetime  # the first day's start, in the zone's standard time
    zone_name: str  # the utility's zone in the database, which consumption_hourly's hours follow
    days: int
    stamp: datetime
    account: str | None
    sender: str
    receiver: str


def prepare(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    *,
    zone: ZoneInfo = ZoneInfo("UTC"),
    account: str | None = None,
    sender: str = "AQUAMI",
    receiver: str = "BILLING",
    now: datetime | None = None,
) -> Nem12Export:
    """Everything that can make an export fail, checked before its first byte: raises
    :class:`ZoneNotExportable` for a zone whose clocks change by part of an hour, ValueError for a
    participant id that is none or a service point or meter id NEM12 cannot write, and OverflowError
    for days past the year 9999."""
    check_exportable(zone)
    for role, participant in (("sender", sender), ("receiver", receiver)):
        if not re.fullmatch(PARTICIPANT_ID, participant):
            raise ValueError(f"{role} {participant!r} is no participant id: up to 10 letters and digits")
    fixed = standard_time(zone)
    day0 = start.astimezone(fixed).replace(hour=0, minute=0, second=0, microsecond=0)
    days = max(1, (end.astimezone(fixed) - day0 + timedelta(days=1) - timedelta(microseconds=1)).days)
    stamp = (now or datetime.now(UTC)).astimezone(fixed)
    export = Nem12Export(day0, utility_zone_name(conn), days, stamp, account, sender, receiver)
    params = {**_params(export), "pattern": IDENTIFIER_PATTERN, "length": IDENTIFIER_MAX_LENGTH}
    with conn.cursor(row_factory=tuple_row) as cur:  # whatever rows the connection makes (the API's: dicts)
        for service_point, meter in cur.execute(_UNWRITABLE, params).fetchall():
            _check_ids(service_point, meter)
    return export


def _params(export: Nem12Export) -> dict[str, Any]:
    end = export.day0 + timedelta(days=export.days)
    return {"from": export.day0, "to": end, "account": export.account, "gap": GAP_S, "zone": export.zone_name}


def _check_ids(service_point: str, meter: str) -> None:
    for name, value in (("service point", service_point), ("meter", meter)):
        if not is_identifier(value):  # a comma or a line break would add fields or records
            raise ValueError(f"{name} id {value!r} cannot be written in NEM12: rename it (letters, digits, . _ : -)")


def nem12_chunks(conn: psycopg.Connection, export: Nem12Export) -> Iterator[str]:
    """The file, a service point (its 200 records and their days) at a time: the hours come through a server-side
    cursor, :data:`FETCH_ROWS` a round trip, ordered by service point and meter, so memory holds a
    few meters' hours, never the whole fleet's (100,000 meters' month: killed past 9 GB)."""
    with conn.transaction(), conn.cursor(name="nem12_export", row_factory=tuple_row) as cur:
        # no JIT for this query: its cost is counted a window at a time (2,000 meters' month: 1.8 million), so
        # PostgreSQL compiled it with inlining and optimisation, 2 s before its first row; each window's work
        # is small, which compiled code does not speed up (measured: benchmarks/bench_nem12.py). This
        # transaction's only (SET LOCAL), and no other setting: the query sorts one meter's hours at a time.
        conn.execute("SET LOCAL jit = off")
        cur.execute(_HOURLY, _params(export))  # declared (a round trip) before the first chunk: see the API's
        yield f"100,NEM12,{export.stamp:%Y%m%d%H%M},{export.sender},{export.receiver}\r\n"
        for service_point, rows in groupby(_fetched(cur), key=_SERVICE_POINT):
            yield "".join(line + "\r\n" for line in _service_point_lines(export, service_point, rows))
    yield "900\r\n"


def _fetched(cur: psycopg.ServerCursor[Row]) -> Iterator[Row]:
    while rows := cur.fetchmany(FETCH_ROWS):
        yield from rows


#: A row of :data:`_HOURLY`, as fetched (tuples: a dict a row made the export about a tenth slower):
#: service point, meter, window (lo, hi), hour, consumption_m3, unknown, quality, quality_by,
#: quality_reason, gap_from, received_at, card, recorded_at. The hour (a day's start in a ``recorded`` row)
#: is its start in seconds since 1970, an int: the keys of the hours a service point's days are looked up
#: in (48 a day) compare as ints, where instants of two time zones (the session's, the file's standard
#: time) compared through their UTC offsets, two fifths of the export's time in Python. The window's ends
#: and the read's arrival, on every row, are microseconds since 1970, ints: a timestamp read from its
#: text on every row took more than the rest of its row (only a day's newest arrival becomes one again).
Row = tuple[Any, ...]
_SERVICE_POINT = itemgetter(0)
_METER = itemgetter(1)
Cell = tuple[Decimal, str, str | None, str | None]  # an hour's value, quality, quality_by and reason
Window = tuple[int, int | None]  # lo, hi: microseconds since 1970 (:data:`Row`)


@dataclass
class _Meter:
    """A meter's part of a service point's file: its windows there and its hours within them."""

    meter_id: str
    windows: set[Window]
    hours: dict[int, Cell]  # by hour's start, as seconds since 1970 (:data:`Row`)
    arrived: dict[int, int]  # an hour's newest read's arrival (either side of its intervals), in microseconds
    cards: dict[int, Cell]  # the job cards' water (at its installation and removal) by hour
    recorded: dict[int, datetime]  # by day's start: when a job card or agreement touching it was recorded


def _meter(meter_id: str, rows: Iterable[Row]) -> _Meter:
    meter = _Meter(meter_id, set(), {}, {}, {}, {})
    hours, arrived = meter.hours, meter.arrived
    window = None
    for _, _, lo, hi, hour, m3, unknown, quality, quality_by, reason, gap_from, received_at, card, recorded_at in rows:
        if window is None or lo != window[0] or hi != window[1]:  # a window's rows come together: added once
            window = (lo, hi)
            meter.windows.add(window)
        if recorded_at is not None:  # a day's row of _HOURLY's ``recorded``: no hour's water
            meter.recorded[hour] = recorded_at
            continue
        if hour is None:
            continue
        if card is not None:  # from a job card's register: substituted from an alternate source
            why = card
            if gap_from is not None:
                why = f"{why}; accumulated since {gap_from.astimezone(UTC):%Y-%m-%dT%H:%MZ}"
            water: Cell = _NO_DATA if unknown else (m3, "substituted", None, why)
            meter.cards[hour] = _merged([meter.cards[hour], water]) if hour in meter.cards else water
            continue
        # two windows sharing an hour: the newer of their arrivals (microseconds since 1970, so 0 is none)
        if received_at is not None and received_at > arrived.get(hour, 0):
            arrived[hour] = received_at
        if unknown or gap_from is not None or quality is None:
            cell = _hour_cell(m3, unknown, quality, quality_by, reason, gap_from)
        else:  # most hours: _hour_cell's, without the call
            cell = (m3, quality, quality_by, reason)
        # two windows of the meter here may share an hour (removed at 00:15, fitted back at 00:18):
        # each holds its own intervals of it, summed as an exchange's hour is
        hours[hour] = _merged([hours[hour], cell]) if hour in hours else cell
    return meter


def _hour_cell(
    m3: Decimal,
    unknown: int,
    quality: str | None,
    quality_by: str | None,
    reason: str | None,
    gap_from: datetime | None,
) -> Cell:
    """A window's part of an hour, from its row of :data:`_HOURLY`."""
    if unknown:  # an interval of the hour unknown: null data, its value 0, not the part known
        return _NO_DATA
    quality = quality or "actual"
    if gap_from is not None and quality not in ("edited", "substituted"):  # a gap's water, summed
        why = f"accumulated since {gap_from.astimezone(UTC):%Y-%m-%dT%H:%MZ}; the hours before are null"
        if quality == "estimated":  # a less-than-hourly meter's missing read, which VEE estimated
            why = f"estimated ({quality_by}); {why}"
        return (m3, ACCUMULATED, None, why)
    return (m3, quality, quality_by, reason)


#: Which of two meters' flags an hour both measured (a meter exchange's) takes: the weakest.
_WEAKNESS = {"missing": 0, ACCUMULATED: 1, "estimated": 1, "substituted": 2, "edited": 3, "actual": 4}


def _merged(cells: list[Cell]) -> Cell:
    """An hour measured by more than one meter of a service point (the hour a meter was exchanged in:
    the old meter's water before the exchange, the new one's after): their sum, flagged as the
    weakest of them; null data if either is unknown."""
    if len(cells) == 1:
        return cells[0]
    weakest = min(cells, key=lambda cell: _WEAKNESS[cell[1]])
    if weakest[1] == "missing":
        return _NO_DATA
    return (sum((cell[0] for cell in cells), Decimal(0)), *weakest[1:])


def _service_point_lines(export: Nem12Export, service_point: str, rows: Iterable[Row]) -> Iterator[str]:
    """A service point's (an NMI's) 200 records and their days' 300 (and 400) records, from its rows.

    One 300 record per day and stream of the NMI, however many meters it had that day: a day a meter
    was exchanged is the new meter's (AEMO: the new MeterSerialNumber applies on and from the
    IntervalDate the meter is replaced), each of its hours holding the water of the meter installed
    then, the exchange's hour both meters' parts. Each meter's 200 record carries the days it is
    the latest installed of, in the order the meters were installed. Before, each meter had its
    own 300 record for the exchange day, the other meter's hours null in it: two records for one
    NMI, suffix and day, of which an MDM keeps one (and loses the other meter's water) or sums."""
    meters = [_meter(meter_id, meter_rows) for meter_id, meter_rows in groupby(rows, key=_METER)]
    for meter in meters:
        _check_ids(service_point, meter.meter_id)  # checked before the file began (prepare); renamed since?
    meters.sort(key=lambda m: (min(lo for lo, _ in m.windows), m.meter_id))
    hours: dict[int, Cell] = {}
    shared: dict[int, list[Cell]] = {}  # the hours more than one cell holds (an exchange's, a card's)
    arrived: dict[int, int] = {}
    recorded: dict[int, datetime] = {}  # a day's record holds every meter's water of the day: any's counts
    for meter in meters:
        for part in (meter.hours, meter.cards):
            if not hours:  # (the first meter's hours: none shared yet)
                hours.update(part)
                continue
            for hour, cell in part.items():
                if hour in hours:
                    shared.setdefault(hour, [hours[hour]]).append(cell)
                else:
                    hours[hour] = cell
        if not arrived:
            arrived.update(meter.arrived)
        else:
            for hour, at in meter.arrived.items():
                arrived[hour] = max(at, arrived.get(hour, at))
        for day_start, when in meter.recorded.items():
            recorded[day_start] = max(when, recorded.get(day_start, when))
    for hour, hour_cells in shared.items():
        hours[hour] = _merged(hour_cells)
    owner: dict[int, str] = {}  # each day of the file the service point has: the meter installed last that day
    for d in range(export.days):
        start = _seconds(export.day0 + timedelta(days=d)) * 1_000_000  # microseconds, as the windows are
        end = start + 86_400_000_000
        fitted = [(lo, m.meter_id) for m in meters for lo, hi in m.windows if lo < end and (hi is None or hi > start)]
        if fitted:
            owner[d] = max(fitted)[1]
    declared = set(owner.values())  # the serials of the file's 200 records at this NMI
    carried: dict[int, set[str]] = {}  # the hours holding water of a meter with no 200 record here
    for meter in meters:
        if meter.meter_id not in declared:
            for hour in (*meter.hours, *meter.cards):
                carried.setdefault(hour, set()).add(meter.meter_id)
    undeclared = {hour: sorted(ids) for hour, ids in carried.items()}
    backflow = any(cell[0] < 0 for cell in hours.values())
    streams = (FORWARD, REVERSE) if backflow else (FORWARD,)
    configuration = "".join(stream.suffix for stream in streams)
    for meter in meters:
        days = [d for d, meter_id in owner.items() if meter_id == meter.meter_id]
        if not days:  # no day of its own (see _declared): its water is in the day of the meter fitted last
            continue
        for stream in streams:
            yield (
                f"200,{service_point},{configuration},{stream.register},{stream.suffix},{stream.data_stream},"
                f"{meter.meter_id},KL,60,"
            )
            yield from _day_records(export, days, hours, arrived, recorded, undeclared, stream)


@dataclass(frozen=True)
class Stream:
    """A data stream of a meter: its NMISuffix, RegisterID and MDMDataStreamIdentifier, and which
    way of an hour's net water it carries. NEM12's interval values are volumes, never negative:
    AEMO names flows by their direction to or from the network, ``E`` what the network delivers
    (consumption, here water forward through the meter) and ``B`` what comes back into it (here
    water back through the meter, backflow)."""

    suffix: str
    register: str
    data_stream: str
    sign: int  # +1: the hour's net water when forward, -1: when backward

    def value(self, net: Decimal) -> Decimal:
        """The stream's part of an hour's net water: E1 - B1 is the net, each is 0 or more."""
        if self.sign > 0:
            return net if net > 0 else _ZERO
        return -net if net < 0 else _ZERO


FORWARD = Stream("E1", "1", "N1", +1)
REVERSE = Stream("B1", "2", "N2", -1)


@lru_cache(maxsize=65536)
def _forward_text(net: Decimal) -> str:
    """An hour's net water as the E1 stream writes it (:meth:`Stream.value`, :func:`_value`), remembered."""
    return _value(FORWARD.value(net))


@lru_cache(maxsize=65536)
def _reverse_text(net: Decimal) -> str:
    """An hour's net water as the B1 stream writes it, remembered."""
    return _value(REVERSE.value(net))


def _day_records(
    export: Nem12Export,
    days: Iterable[int],
    hours: dict[int, Cell],
    arrived: dict[int, int],
    recorded: dict[int, datetime],
    undeclared: dict[int, list[str]],
    stream: Stream,
) -> Iterator[str]:
    """A stream's 300 (and 400) records, a day at a time: the days of the file (0 its first) given,
    those its meter has within its windows (before the meter or the tenant, or after, it has none).
    ``arrived``: each hour's newest read's arrival; ``recorded``: by day, when a job card or agreement
    that may have revised it was last recorded (:func:`_updated`). ``undeclared``: the hours holding
    water of meters with no 200 record in the file (:func:`_declared`)."""
    written = _forward_text if stream.sign > 0 else _reverse_text
    for d in days:
        day = export.day0 + timedelta(days=d)
        start = _seconds(day)
        keys = range(start, start + 86400, 3600)
        cells = [hours.get(key, _NO_DATA) for key in keys]
        stamp = _updated(export, [arrived.get(key) for key in keys], recorded.get(start))
        if undeclared:
            marks = [
                _mark(quality, by, why, tuple(undeclared.get(key, ())))
                for key, (_, quality, by, why) in zip(keys, cells, strict=True)
            ]
        else:  # (most service points: every meter has its 200 record)
            marks = [_mark(quality, by, why, ()) for _, quality, by, why in cells]
        values = ",".join([written(cell[0]) for cell in cells])
        if len(set(marks)) == 1:
            method, code, text = marks[0]
            yield f"300,{day:%Y%m%d},{values},{method},{code},{text},{stamp:%Y%m%d%H%M%S},"
            continue
        yield f"300,{day:%Y%m%d},{values},V,,,{stamp:%Y%m%d%H%M%S},"
        run_start = 0
        for h in range(1, 25):
            if h == 24 or marks[h] != marks[run_start]:
                method, code, text = marks[run_start]
                yield f"400,{run_start + 1},{h},{method},{code},{text}"
                run_start = h


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _seconds(instant: datetime) -> int:
    """An instant as the file's rows give their hours (:data:`Row`): whole seconds since 1970."""
    return int(instant.timestamp())


@lru_cache(maxsize=4096)
def _mark(quality: str, quality_by: str | None, why: str | None, meters: tuple[str, ...]) -> tuple[str, str, str]:
    """An hour's method, reason code and description (:func:`_declared`), remembered: a file's hours
    repeat a few flags and reasons, each now worked out once rather than for every hour it flags."""
    return _declared(_method(quality, quality_by), why, list(meters))


def _declared(method: str, why: str | None, meters: list[str]) -> tuple[str, str, str]:
    """An hour's method, reason code and description, naming the ``meters`` whose water it holds that
    have no 200 record in the file. A day's 300 record is the meter's fitted last that day (the new
    MeterSerialNumber applies on and from the IntervalDate of the replacement), so a meter fitted and
    removed within a day another meter was fitted on (or one removed on the file's first day) owns no
    day: its water is in that day's record, under the other serial. Before, nothing in the file named
    it. Now each hour holding its water says so in the 300 (or 400) record's ReasonDescription, with
    ReasonCode 0 (free text): for an ``A`` hour a reason is information, not a substitution. A null
    hour holds no water, and names none."""
    if not meters or method == "N":
        return (method, *_reason(method, why))
    note = "with the water of meter " + " and meter ".join(meters) + " (no 200 record of its own in this file)"
    if method[0] not in "SF":
        return method, FREE_TEXT_REASON, note[:240]
    code, text = _reason(method, why)
    return method, code, f"{text[: max(0, 238 - len(note))]}; {note}"[-240:]


def _updated(export: Nem12Export, arrivals: list[int | None], recorded: datetime | None) -> datetime:
    """A day's UpdateDateTime: when the newest read its values rest on arrived (a late read, an edit
    or VEE's estimates change it, so an MDM sees the day was revised), or, if later, when a job card or
    agreement that may move the day's meter into or out of the file was last recorded (``recorded``: a
    move-out dated back, an exchange entered late, which change the day without writing a read), as a
    determinant line's as_of is; in the file's standard time. The export's time for a day without reads,
    as before: a record alone does not stand for one (a day with no reads has no water either way)."""
    latest = max((a for a in arrivals if a is not None), default=None)  # microseconds since 1970
    if latest is None:
        return export.stamp
    newest = _EPOCH + timedelta(microseconds=latest)
    if recorded is not None and recorded > newest:
        newest = recorded
    return newest.astimezone(export.stamp.tzinfo)


def nem12_file(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    *,
    zone: ZoneInfo = ZoneInfo("UTC"),
    account: str | None = None,
    sender: str = "AQUAMI",
    receiver: str = "BILLING",
    now: datetime | None = None,
) -> str:
    """A NEM12 file for the whole days, in ``zone``'s standard time, that [start, end) touches, as
    one string (for tests and small exports; the API and ``aquami bill nem12`` stream it). Raises
    what :func:`prepare` raises."""
    export = prepare(conn, start, end, zone=zone, account=account, sender=sender, receiver=receiver, now=now)
    return "".join(nem12_chunks(conn, export))
