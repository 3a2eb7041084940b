"""Record accounts and the service agreements that tie each to a service point for a period, from
``ACCOUNTS.csv`` (``aquami server register-accounts``): what the utility's customer system knows and
billing needs. Billing's determinants are per account: without them they were always empty, as only
the demo inserted accounts.

Columns: ``account_id,name,service_point_id,start_at`` and optionally ``end_at`` and
``billing_cycle``. Times are ISO 8601 with a UTC offset; periods are half-open, ``end_at`` empty for
an agreement still running. A service point must be known (``register-meters`` records them with
the meters fitted there). An agreement is known by its service point and start: recorded again, it
takes the file's account and end. A row whose start is not recorded but that overlaps one agreement
recorded before of the same account at the same service point, which the file does not list, is that
agreement with its start corrected (a move-in's date typed wrong: recorded as a new agreement, it was
refused as an overlap, and no command could correct it). Two agreements on one service point may not overlap. A name or
billing cycle with a line break is refused (a bill prints it on one line), as is a time with one (a
broken file) or outside the years 1900 to 9998 in UTC (aquami.stored_times), and so are two rows that
record one agreement or one account differently (refuse_conflicts). The file is recorded whole
or not at all; a row that cannot be recorded is named by the line it starts on.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from aquami.contracts.reads import is_identifier
from aquami.stored_times import LINE_BREAKS as LINE_BREAKS  # a name, billing cycle or time with one is refused
from aquami.stored_times import StoredTimeError, stored_time
from server.care.placement import placing_enquiries_once
from server.corrected_spans import span_step

REQUIRED = ("account_id", "name", "service_point_id", "start_at")
OPTIONAL = ("end_at", "billing_cycle")
NAME_MAX = 200


class AccountsFileError(ValueError):
    """A file that cannot be recorded; the message names the file, the row and the column."""


@dataclass(frozen=True, slots=True)
class Agreement:
    account_id: str
    name: str
    service_point_id: str
    start_at: datetime
    end_at: datetime | None
    billing_cycle: str | None
    line: int = 0  # the line its row starts on in the file (0: not read from a file)


class CheckedAgreements(tuple[Agreement, ...]):
    """Agreements that refuse_conflicts has passed: made only by :func:`checked` (a tuple of
    frozen agreements, so nothing can be added or changed after the check). record_accounts checks
    any other sequence itself; given these, it does not check them again (the second pass over a
    file's rows took 0.7 s of CPU for 100,000 rows)."""

    __slots__ = ()


def checked(agreements: Sequence[Agreement], source: str = "") -> CheckedAgreements:
    """The agreements, once refuse_conflicts (``source`` prefixing its message) has passed them."""
    refuse_conflicts(agreements, source)
    return CheckedAgreements(agreements)


def read_accounts_csv(path: Path) -> CheckedAgreements:
    """The file's agreements; AccountsFileError for the first row that cannot be recorded, named by
    the line it starts on (a quoted field may run over several lines; blank lines count too)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AccountsFileError(f"{path}: {error}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:  # (before: Python's "'utf-8' codec can't decode byte 0xff in position 49")
        line = data.count(b"\n", 0, error.start) + 1
        raise AccountsFileError(f"{path}: row {line}: not UTF-8 ({error.reason}): save the file as UTF-8") from None
    # the csv module's own line ends (and quoted fields over several lines), not str.splitlines',
    # which split a quoted field's line break off (the reader joined "Ann<LF>Smith" as "AnnSmith")
    # and ended a row at any of Unicode's line separators (U+2028 in a name)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        columns = next(reader, [])
    except csv.Error as error:
        raise AccountsFileError(f"{path}: row 1: {error}") from None
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise AccountsFileError(f"{path}: missing column(s) {', '.join(missing)} (needs {','.join(REQUIRED)})")
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise AccountsFileError(f"{path}: unknown column(s) {', '.join(unknown)}")
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:  # (before, the last of them was read and the others dropped)
        raise AccountsFileError(f"{path}: column(s) named twice: {', '.join(twice)}")
    agreements = []
    while True:
        line = reader.line_num + 1
        where = f"{path}: row {line}"
        try:
            fields = next(reader, None)
        except csv.Error as error:
            raise AccountsFileError(f"{where}: {error}") from None
        if fields is None:
            break
        if not fields:  # a blank line
            continue
        if len(fields) != len(columns):
            raise AccountsFileError(f"{where}: {len(columns)} columns expected")
        row = dict(zip(columns, fields, strict=True))
        for column in ("account_id", "service_point_id"):
            if not is_identifier(row[column]):
                raise AccountsFileError(
                    f"{where}: {column} {row[column]!r} is no identifier (letters, digits and . _ : -, at most 64)"
                )
        for column in ("name", "billing_cycle"):
            if LINE_BREAKS.intersection(row.get(column) or ""):
                raise AccountsFileError(f"{where}: {column} {row[column]!r} has a line break: it is one line on a bill")
        name = row["name"].strip()
        if not name or len(name) > NAME_MAX or "\x00" in name:
            raise AccountsFileError(f"{where}: name: 1 to {NAME_MAX} characters, no NUL")
        start = _instant(row["start_at"], "start_at", where)
        end = _instant(row["end_at"], "end_at", where) if row.get("end_at") else None
        if end is not None and end <= start:
            raise AccountsFileError(f"{where}: end_at must be after start_at")
        cycle = (row.get("billing_cycle") or "").strip() or None
        agreements.append(Agreement(row["account_id"], name, row["service_point_id"], start, end, cycle, line))
    return checked(agreements, f"{path}: ")


def refuse_conflicts(agreements: Sequence[Agreement], source: str = "") -> None:
    """Raise AccountsFileError, naming both rows and what differs, for two rows that record one
    agreement (its service point and start) with another account or end, or one account with
    another name or billing cycle: which one was meant cannot be told (the last listed was recorded).
    Rows alike are one agreement or account, as if listed once. Two agreements on one service point
    at once are refused likewise."""
    agreements_at: dict[tuple[str, datetime], tuple[int, Agreement]] = {}
    accounts: dict[str, tuple[int, Agreement]] = {}
    for index, a in enumerate(agreements):
        first_index, first = agreements_at.setdefault((a.service_point_id, a.start_at), (index, a))
        differ = _differences(first, a, ("account_id", "end_at"))
        if differ:
            raise AccountsFileError(
                f"{source}{_row(first_index, first)} and {_row(index, a)} record the agreement on "
                f"{a.service_point_id} from {_shown(a.start_at)} differently: {differ}"
            )
        first_index, first = accounts.setdefault(a.account_id, (index, a))
        differ = _differences(first, a, ("name", "billing_cycle"))
        if differ:
            raise AccountsFileError(
                f"{source}{_row(first_index, first)} and {_row(index, a)} record account {a.account_id} "
                f"differently: {differ}"
            )
    # two of them on one service point at once (the database refuses them too, but names no row): in
    # start order on each service point, one overlaps another only if it overlaps the next
    in_order = sorted(agreements_at.items(), key=lambda item: item[0])
    for ((point, start), earlier), ((next_point, next_start), later) in itertools.pairwise(in_order):
        end = earlier[1].end_at
        if point == next_point and (end is None or end > next_start):
            (first_index, first), (index, then) = sorted((earlier, later), key=lambda pair: pair[0])
            raise AccountsFileError(
                f"{source}{_row(first_index, first)} and {_row(index, then)}: two agreements on one service "
                f"point at once: {point} from {_shown(start)}, {_running(end)}, and from {_shown(next_start)}"
            )


def _differences(first: Agreement, then: Agreement, fields: tuple[str, ...]) -> str:
    return "; ".join(
        f"{field} {_shown(getattr(first, field))} and {_shown(getattr(then, field))}"
        for field in fields
        if getattr(first, field) != getattr(then, field)
    )


def _row(index: int, agreement: Agreement) -> str:
    return f"row {agreement.line}" if agreement.line else f"agreement {index + 1}"


def _shown(value: str | datetime | None) -> str:
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return repr(value)


def _instant(text: str, column: str, where: str) -> datetime:
    """The time in UTC, within the years every database session can show (aquami.stored_times)."""
    try:
        return stored_time(text)
    except StoredTimeError as error:
        still = (
            " (an agreement still running has end_at empty)" if column == "end_at" and "outside" in str(error) else ""
        )
        raise AccountsFileError(f"{where}: {column} {error}{still}") from None


_OVERLAP = """
SELECT a.service_point_id, a.start_at, b.start_at
FROM service_agreements a JOIN service_agreements b
  ON a.service_point_id = b.service_point_id AND a.agreement_id < b.agreement_id
 AND tstzrange(a.start_at, a.end_at) && tstzrange(b.start_at, b.end_at)
WHERE a.service_point_id = ANY(%s)
LIMIT 1
"""


@dataclass(frozen=True)
class StartCorrected:
    """An agreement recorded before whose start the file corrects (:func:`_starts_corrected`)."""

    agreement_id: int
    start_at: datetime  # as recorded
    end_at: datetime | None


def _starts_corrected(
    conn: psycopg.Connection, agreements: Sequence[Agreement], points: list[str]
) -> dict[tuple[str, datetime], StartCorrected]:
    """The file's agreements (by service point and start) that correct the start of one recorded
    before: no agreement of that start is recorded at the point, and exactly one recorded there of
    the same account, which the file does not list, overlaps the row. Only a row that would otherwise
    be refused as an overlap is so taken: what was recorded before is unchanged."""
    listed = {(a.service_point_id, a.start_at) for a in agreements}
    stored: dict[str, list[tuple[int, str, datetime, datetime | None]]] = {}
    for agreement_id, account_id, point, start, end in conn.execute(
        "SELECT agreement_id, account_id, service_point_id, start_at, end_at FROM service_agreements "
        "WHERE service_point_id = ANY(%s) ORDER BY service_point_id, start_at",
        (points,),
    ):
        stored.setdefault(point, []).append((agreement_id, account_id, start, end))
    recorded = {(point, start) for point, rows in stored.items() for _, _, start, _ in rows}
    corrected: dict[tuple[str, datetime], StartCorrected] = {}
    for a in agreements:
        key = (a.service_point_id, a.start_at)
        if key in recorded or key in corrected:
            continue
        same = [
            StartCorrected(agreement_id, start, end)
            for agreement_id, account_id, start, end in stored.get(a.service_point_id, ())
            if account_id == a.account_id
            and (a.service_point_id, start) not in listed
            and (end is None or a.start_at < end)
            and (a.end_at is None or start < a.end_at)
        ]
        if len(same) == 1 and all(c.agreement_id != same[0].agreement_id for c in corrected.values()):
            corrected[key] = same[0]
    return corrected


def _refuse_overlaps_with_stored(
    conn: psycopg.Connection,
    agreements: Sequence[Agreement],
    points: list[str],
    corrected: Collection[tuple[str, datetime]] = (),
) -> None:
    """AccountsFileError, naming the row, for an agreement of the file that would overlap one recorded
    before that the file does not list (one it lists takes the file's account and end, and the file's
    rows were checked against each other: refuse_conflicts; one whose start it corrects, ``corrected``,
    by service point and start as recorded, takes its start too). Left to the database, the refusal
    named the service point and both starts, but not the row."""
    listed = {(a.service_point_id, a.start_at) for a in agreements} | set(corrected)
    stored: dict[str, list[tuple[str, datetime, datetime | None]]] = {}
    for account_id, point, start, end in conn.execute(
        "SELECT account_id, service_point_id, start_at, end_at FROM service_agreements "
        "WHERE service_point_id = ANY(%s) ORDER BY service_point_id, start_at",
        (points,),
    ):
        if (point, start) not in listed:  # (in the session's zone: said in UTC, as the file's are)
            stored.setdefault(point, []).append((account_id, start.astimezone(UTC), end and end.astimezone(UTC)))
    for index, a in enumerate(agreements):
        for account_id, start, end in stored.get(a.service_point_id, ()):
            if (end is None or a.start_at < end) and (a.end_at is None or start < a.end_at):
                raise AccountsFileError(
                    f"{_row(index, a)}: two agreements on one service point at once: {a.service_point_id} "
                    f"from {_shown(a.start_at)}, {_running(a.end_at)}, and, recorded before and not in the "
                    f"file, account {account_id}'s from {_shown(start)}, {_running(end)}"
                )


def _correct_starts(
    cur: psycopg.Cursor[tuple[object, ...]],
    agreements: Sequence[Agreement],
    corrected: dict[tuple[str, datetime], StartCorrected],
    *,
    widen: bool,
) -> None:
    """Move each corrected agreement to the file's account, start and end, one step of two
    (server.corrected_spans)."""
    for a in agreements:
        c = corrected.get((a.service_point_id, a.start_at))
        if c is None:
            continue
        start, end = span_step((c.start_at, c.end_at), (a.start_at, a.end_at), widen=widen)
        cur.execute(
            "UPDATE service_agreements SET account_id = %s, start_at = %s, end_at = %s WHERE agreement_id = %s",
            (a.account_id, start, end, c.agreement_id),
        )


def _unknown_points(agreements: Sequence[Agreement], known: set[str]) -> str:
    """What is said of service points no meter is fitted at: each named with the row it is first
    given on, as every other refusal names its row (before, the points alone: in a file of
    thousands of rows, the one mistyped had to be searched for)."""
    first: dict[str, str] = {}
    for index, a in enumerate(agreements):
        if a.service_point_id not in known:
            first.setdefault(a.service_point_id, _row(index, a))
    (point, row), *others = first.items()
    more = ", ".join(f"{other} at {where}" for other, where in others[:9])
    more = f" (and {len(others)} more: {more}{', …' if len(others) > 9 else ''})" if others else ""
    return f"{row}: unknown service point {point}{more}: register-meters records service points with their meters"


def _running(end: datetime | None) -> str:
    return "still running" if end is None else f"until {_shown(end)}"


def record_accounts(conn: psycopg.Connection, agreements: Sequence[Agreement]) -> tuple[int, int]:
    """Record the accounts and agreements in the caller's transaction: (accounts, agreements) written.
    Raises AccountsFileError for an unknown service point, overlapping agreements or two that
    conflict (refuse_conflicts, unless they are CheckedAgreements, which passed it already, as a
    file's rows do in read_accounts_csv; the caller's transaction then stores nothing)."""
    if not isinstance(agreements, CheckedAgreements):
        agreements = checked(agreements)
    points = sorted({a.service_point_id for a in agreements})
    known = {
        row[0]
        for row in conn.execute(
            "SELECT service_point_id FROM service_points WHERE service_point_id = ANY(%s)", (points,)
        )
    }
    if len(known) < len(points):
        raise AccountsFileError(_unknown_points(agreements, known))
    corrected = _starts_corrected(conn, agreements, points)
    _refuse_overlaps_with_stored(conn, agreements, points, {(point, c.start_at) for (point, _), c in corrected.items()})
    latest = {a.account_id: a for a in agreements}  # an account listed again is alike (refuse_conflicts)
    # The agreements are written in several statements, a move-out before the move-in: the enquiries
    # of these service points are placed once the whole file is written, not after each statement,
    # which told a moved enquiry "no account" between the two.
    with placing_enquiries_once(conn, points=points) as cur:
        cur.executemany(
            "INSERT INTO accounts (account_id, name, billing_cycle) VALUES (%s, %s, %s) "
            "ON CONFLICT (account_id) DO UPDATE SET name = excluded.name, billing_cycle = excluded.billing_cycle",
            [(a.account_id, a.name, a.billing_cycle) for a in latest.values()],
        )
        try:
            # a start corrected moves in two steps, its span first narrowed to what it shares with
            # the file's, then widened to it once every other agreement has its end: no step
            # overlaps another agreement whatever the order (the file's spans overlap none)
            _correct_starts(cur, agreements, corrected, widen=False)
            # the agreements recorded before, in the file's order (a move-out's end before the next
            # tenant's start moves); then the new ones, in one statement (one each took 20 s for 50,000).
            # So a new tenant's agreement may be listed before the move-out it follows (refused while
            # each row was written in turn): the result is the same in any order, as an update moves
            # only an end and an overlap is of an end past a start (README, the accounts file).
            unrecorded = [
                a
                for a in agreements
                if not cur.execute(
                    "UPDATE service_agreements SET account_id = %s, end_at = %s "
                    "WHERE service_point_id = %s AND start_at = %s",
                    (a.account_id, a.end_at, a.service_point_id, a.start_at),
                ).rowcount
            ]
            _correct_starts(cur, agreements, corrected, widen=True)
            # one listed twice is one agreement (alike: refuse_conflicts)
            new = [
                a
                for key, a in {(a.service_point_id, a.start_at): a for a in unrecorded}.items()
                if key not in corrected
            ]
            cur.execute(
                "INSERT INTO service_agreements (account_id, service_point_id, start_at, end_at) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])",
                (
                    [a.account_id for a in new],
                    [a.service_point_id for a in new],
                    [a.start_at for a in new],
                    [a.end_at for a in new],
                ),
            )
        except psycopg.errors.ExclusionViolation as error:
            raise AccountsFileError(
                f"two agreements on one service point at once: {error.diag.message_detail}"
            ) from None
        clash = cur.execute(_OVERLAP, (points,)).fetchone()  # where btree_gist is missing (the embedded database)
        if clash:
            point, first, second = clash
            raise AccountsFileError(
                f"two agreements on one service point at once: {point} from {first.isoformat()} "
                f"and from {second.isoformat()}"
            )
    return len(latest), len({(a.service_point_id, a.start_at) for a in agreements})
