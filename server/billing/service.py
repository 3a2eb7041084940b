"""Billing rules: billing periods, determinants from lines, CSV layouts."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Any

from aquami.stored_times import NO_TIME, shape_problem
from collector.vee.config import VeeConfig
from server.billing.schemas import Determinant, DeterminantLine, LeakOnLine, RegisterRead
from server.billing.spreadsheet import inert_text
from server.decimals import fixed_point, volume_m3
from server.instants import offset_problem
from server.problems import Problem

# Weakest first: a determinant is as good as its weakest read.
#: Weakest first. ``missing``: a line with no read either side to bill from (a meter fitted and not
#: read yet), weaker than any read; an account with such a line was a 500 (no quality weakest knew).
QUALITY_ORDER = ("missing", "estimated", "substituted", "edited", "actual")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")  # fullmatch, ASCII digits: "2026-11\n" named November too


def _beyond_the_calendar(text: str) -> Problem:
    return Problem(400, f"{text!r} is outside the years 1 to 9999 in UTC", title="Invalid period")


def _moment(text: str, zone: tzinfo) -> datetime:
    not_a_moment = Problem(400, f"{text!r} is not a date or a date-time", title="Invalid period")
    try:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            return datetime.combine(date.fromisoformat(text), time(), zone).astimezone(UTC)
        problem = shape_problem(text) or offset_problem(text)  # as a stored time: T or a space after the date,
        if problem == NO_TIME:  # a fraction on the seconds; and a "+" the query string read as a space
            raise not_a_moment
        if problem is not None:  # "12.5", ISO 8601's 12:30, was read as half a second past 12:00
            raise Problem(400, f"{text!r} {problem}", title="Invalid period")
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise not_a_moment from None
    except OverflowError:
        raise _beyond_the_calendar(text) from None
    if moment.tzinfo is None:
        raise Problem(400, f"{text!r} has no UTC offset", title="Invalid period")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _beyond_the_calendar(text) from None


def parse_period(period: str, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """``2026-02`` (a calendar month) or ``start/end`` (ISO 8601 dates or date-times, end exclusive).

    Months and bare dates are the utility's local calendar (``zone``): in Europe/London, ``2026-07``
    starts at 2026-06-30T23:00Z. Date-times carry their own offset. Both ends come back in UTC.
    """
    month = _MONTH.fullmatch(period)
    if month:
        year, number = int(month[1]), int(month[2])
        if not 1 <= number <= 12:
            raise Problem(400, f"{period!r}: no month {number}", title="Invalid period")
        try:
            start = datetime(year, number, 1, tzinfo=zone).astimezone(UTC)
            end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone).astimezone(UTC)
        except (ValueError, OverflowError):
            raise _beyond_the_calendar(period) from None
        return start, end
    first, slash, second = period.partition("/")
    if not slash:
        raise Problem(400, f"{period!r}: use YYYY-MM or START/END (ISO 8601)", title="Invalid period")
    start, end = _moment(first, zone), _moment(second, zone)
    if end <= start:
        raise Problem(400, "the period's end must be after its start", title="Empty period")
    return start, end


def period_label(start: datetime, end: datetime, zone: tzinfo = UTC) -> str:
    """An export's period for its file name, from the parsed period (never its text, which may hold
    any character): ``2026-11`` for a month of ``zone``, ``20261101-20261115`` for its whole days
    (end exclusive), else the UTC instants (``20261101T063000Z-20261101T183000Z``)."""
    try:
        first, last = start.astimezone(zone), end.astimezone(zone)
    except OverflowError:  # a period at the calendar's edge, in a zone ahead of UTC
        first, last = start.astimezone(UTC), end.astimezone(UTC)
    if first.time() == last.time() == time():
        if first.day == last.day == 1 and (last.year * 12 + last.month) - (first.year * 12 + first.month) == 1:
            return f"{first.year:04d}-{first.month:02d}"
        return f"{_compact_date(first)}-{_compact_date(last)}"
    return f"{_compact_instant(start)}-{_compact_instant(end)}"


def _compact_date(moment: datetime) -> str:
    return f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"  # (strftime's %Y writes year 1 as "1")


def _compact_instant(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{_compact_date(utc)}T{utc.hour:02d}{utc.minute:02d}{utc.second:02d}Z"


def weakest(qualities: Iterable[str | None]) -> str:
    present = [q for q in qualities if q is not None]
    if not present:
        return "missing"
    return min(present, key=QUALITY_ORDER.index)


#: An opening or closing read further than the meter's own read interval (VEE writes it: collector
#: migration 0059; this, VEE's configured one, until it has) from its line's start or end leaves part
#: of the line unmeasured.
READ_INTERVAL_S = VeeConfig().expected_interval_s


def _distance_s(read_ts: datetime | None, boundary: datetime) -> int | None:
    """Whole seconds between a line's boundary and its read (rounded up: 1 µs late is late)."""
    if read_ts is None:
        return None
    return math.ceil(abs((boundary - read_ts).total_seconds()))


def line_issues(row: dict[str, Any], read_interval_s: int = READ_INTERVAL_S) -> list[str]:
    """Why a line is not fit to bill as it is (empty: it is): its consumption unknown, an opening or
    closing read more than the meter's read interval (the row's ``read_interval_s``, else the one
    given) from the line's start or end, no read yet at or after the line's end (its closing register
    is not final: a read for the time before the end may still arrive), or what VEE found in its
    intervals that a person must check (repository ``_VEE_ISSUES``)."""
    read_interval_s = row.get("read_interval_s") or read_interval_s
    issues = [] if row["consumption_m3"] is not None else ["consumption_unknown"]
    opening = _distance_s(row["opening_ts"], row["w_from"])
    closing = _distance_s(row["closing_ts"], row["w_to"])
    if opening is not None and opening > read_interval_s:
        issues.append("opening_read_far")
    if closing is not None and closing > read_interval_s:
        issues.append("closing_read_far")
    if row["closing_ts"] is not None and not row["read_after_end"]:
        issues.append("no_read_after_end")
    return issues + list(row.get("vee_issues") or [])


#: A line is ``estimated`` when at least this share of its consumption lies in intervals VEE
#: estimated, whatever its opening and closing reads: between two actual reads the total is the
#: registers' difference, but a month 90% estimated (a 10-day silence) has hours, which a leak
#: adjustment or an hourly tariff rests on, that are VEE's, not the meter's.
MATERIAL_ESTIMATED_SHARE = Decimal("0.1")


def estimated_share(row: dict[str, Any]) -> Decimal | None:
    """The line's estimated water over its consumption, to 3 places; None unless the consumption is
    known and above 0."""
    consumption, estimated = row["consumption_m3"], row.get("estimated_m3")
    if consumption is None or estimated is None or consumption <= 0:
        return None
    return (estimated / consumption).quantize(Decimal("0.001"))


def line_quality(row: dict[str, Any]) -> str:
    """The weaker of the line's opening and closing reads, and ``estimated`` when a material share
    (:data:`MATERIAL_ESTIMATED_SHARE`) of its consumption is: with no consumption above 0, any
    estimated water."""
    quality = weakest((row["opening_quality"], row["closing_quality"]))
    share, estimated = estimated_share(row), row.get("estimated_m3")
    if share is not None and share >= MATERIAL_ESTIMATED_SHARE:
        return "estimated"
    if share is None and estimated:
        return "estimated"
    return quality


def leak_water_m3(spans: Iterable[tuple[datetime, datetime, Decimal]]) -> Decimal | None:
    """The water a line's leaks and bursts lost, each (start, end, rate in L/h), to the litre (m³ to 3
    places, halves up as PostgreSQL's round): at each moment the largest rate among those flowing
    then, so a burst during a leak counts the burst's rate while it runs and the leak's before and
    after, never both (summed, the alerts' volumes count the overlap's water twice). Alerts that
    do not overlap give the sum of their volumes, rounded once. None without any span."""
    spans = list(spans)
    if not spans:
        return None
    edges = sorted({edge for start, end, _ in spans for edge in (start, end)})
    litres_seconds = Decimal(0)
    for lo, hi in pairwise(edges):
        rate = max((r for start, end, r in spans if start <= lo and end >= hi), default=None)
        if rate is not None:
            litres_seconds += rate * Decimal((hi - lo) // timedelta(microseconds=1)) / 1_000_000
    return (litres_seconds / 3_600_000).quantize(Decimal("0.001"), ROUND_HALF_UP)


def _leaks(row: dict[str, Any]) -> dict[str, Any]:
    """A line's leaks and bursts as listed, and the water they lost together (:func:`leak_water_m3`)."""
    leaks = [dict(leak) for leak in row.get("leaks") or []]
    exact = [Decimal(leak.pop("exact_rate_l_h", None) or str(leak["rate_l_h"])) for leak in leaks]
    listed = [LeakOnLine(**leak) for leak in leaks]
    lost = leak_water_m3((leak.start, leak.end, rate) for leak, rate in zip(listed, exact, strict=True))
    return {"leaks": listed, "leak_estimated_m3": lost}


def determinants(rows: Sequence[dict[str, Any]]) -> list[Determinant]:
    by_account: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_account.setdefault(row["account_id"], []).append(row)
    result = []
    for account_id, account_rows in by_account.items():
        lines = [
            DeterminantLine(
                service_point_id=r["service_point_id"],
                meter_id=r["meter_id"],
                start=r["w_from"],
                end=r["w_to"],
                opening=None
                if r["opening_ts"] is None
                else RegisterRead(ts=r["opening_ts"], volume_m3=r["opening_volume_m3"], quality=r["opening_quality"]),
                closing=None
                if r["closing_ts"] is None
                else RegisterRead(ts=r["closing_ts"], volume_m3=r["closing_volume_m3"], quality=r["closing_quality"]),
                opening_distance_s=_distance_s(r["opening_ts"], r["w_from"]),
                closing_distance_s=_distance_s(r["closing_ts"], r["w_to"]),
                consumption_m3=volume_m3(r["consumption_m3"]),
                estimated_m3=volume_m3(r.get("estimated_m3")),
                actual_m3=volume_m3(r.get("actual_m3")),
                estimated_share=estimated_share(r),
                quality=line_quality(r),
                as_of=r["as_of"],
                complete=not line_issues(r),
                issues=line_issues(r),
                **_leaks(r),
            )
            for r in account_rows
        ]
        known = [line.consumption_m3 for line in lines]
        complete = all(line.complete for line in lines)
        total = sum((c for c in known if c is not None), Decimal(0)) if None not in known else None
        quality = weakest(line.quality for line in lines)
        if total is None:
            quality = "missing" if quality == "actual" else quality
        as_of = max((line.as_of for line in lines if line.as_of is not None), default=None)
        result.append(
            Determinant(
                account_id=account_id,
                consumption_m3=total,
                complete=complete,
                quality=quality,
                as_of=as_of,
                lines=lines,
            )
        )
    return result


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):  # ids, names, reasons: free text from people and other systems
        return inert_text(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return fixed_point(value)
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    writer.writerows([_text(v) for v in row] for row in rows)
    return out.getvalue()


READ_COLUMNS = (
    "ts",
    "service_point_id",
    "meter_id",
    "volume_m3",
    "quality",
    "quality_by",
    "quality_reason",
    "vee_flags",
    "received_at",
    # last, where a column added later goes: an import that reads the columns by position reads on
    "quality_by_key_id",
)


def with_removed(rows: Sequence[dict[str, Any]], removed: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A changed_since CSV's rows: the reads written or revised, and each read removed as a row of
    quality ``removed`` without a volume, its who and why, and ``received_at`` when it was removed;
    by (ts, meter_id)."""
    gone = [
        {
            "ts": r["ts"],
            "service_point_id": r["service_point_id"],
            "meter_id": r["meter_id"],
            "volume_m3": None,
            "quality": "removed",
            "quality_by": r["removed_by"],
            "quality_reason": r["removed_reason"],
            "vee_flags": [],
            "received_at": r["removed_at"],
            "quality_by_key_id": None,
        }
        for r in removed
    ]
    return sorted([*rows, *gone], key=lambda r: (r["ts"], r["meter_id"]))


DETERMINANT_COLUMNS = (
    "account_id",
    "period_start",
    "period_end",
    "service_point_id",
    "meter_id",
    "line_start",
    "line_end",
    "opening_ts",
    "opening_volume_m3",
    "opening_quality",
    "closing_ts",
    "closing_volume_m3",
    "closing_quality",
    "consumption_m3",
    "account_consumption_m3",
    "account_quality",
    "account_complete",
    "leak_estimated_m3",
    "line_complete",
    "line_issues",
    "opening_distance_s",
    "closing_distance_s",
    "as_of",
    "estimated_m3",
    "estimated_share",
    "line_quality",
)


def determinant_csv_rows(items: Sequence[Determinant], start: datetime, end: datetime) -> list[list[Any]]:
    rows = []
    for d in items:
        for line in d.lines:
            o, c = line.opening, line.closing
            rows.append(
                [
                    d.account_id,
                    start,
                    end,
                    line.service_point_id,
                    line.meter_id,
                    line.start,
                    line.end,
                    o and o.ts,
                    o and o.volume_m3,
                    o and o.quality,
                    c and c.ts,
                    c and c.volume_m3,
                    c and c.quality,
                    line.consumption_m3,
                    d.consumption_m3,
                    d.quality,
                    str(d.complete).lower(),
                    line.leak_estimated_m3,
                    str(line.complete).lower(),
                    line.issues,
                    line.opening_distance_s,
                    line.closing_distance_s,
                    line.as_of,
                    line.estimated_m3,
                    line.estimated_share,
                    line.quality,
                ]
            )
    return rows
