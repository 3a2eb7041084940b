"""The care desk's list of enquiries (server migration 0048): the ones being worked first, urgent to
low and the newest first within each, then the closed ones, newest first; filtered by status,
priority, category and source, and paged by keyset.

The order is the index enquiries_care_desk_idx, read backwards: ``enquiry_care_rank`` (4 urgent,
3 high, 2 normal, 1 low, 0 closed), then ``opened_at``, then ``enquiry_id``, all descending. A page
ends at a :class:`Position`, and the next one starts after it, so a page costs the rows it shows
however many enquiries there are, and an enquiry raised or closed meanwhile moves no other row to
another page. The enquiry that moves is another matter: its rank is in the key, so one raised to
urgent, or reopened, while a person pages on is above the pages still to come (the walk would skip
it), and one closed meanwhile comes again among the closed (shown twice). Rather than an immutable
key, which would drop the desk's order, a walk carries where it started (:func:`walk_started`: the
oldest transaction its first page could not see), and each later page lists what transactions since
then changed and is now above it (:func:`moved_above`), and marks its own rows they changed: every
enquiry the filters keep when a walk ends was on one of its pages after its last change, or was
listed so. A page reads its rows, that list and where the walk began as of one moment
(server.snapshot, server.web.care_desk), so an enquiry changed while the page is read is on it once.

A filter on status or priority narrows the ranks the index is read over (closed: 0; any other
status: 1 to 4; a priority: its rank, and 0 unless a status other than closed is asked).
A filter on source reads enquiries_care_desk_by_source_idx (server migration 0053), the same order
within each source, so a page of one source reads none of the others'; a filter on priority,
enquiries_care_desk_by_priority_idx (0055), the same order within each priority; a filter on meter,
enquiries_care_desk_by_meter_idx (0059), the same order within each meter, so a page of one meter's
enquiries reads its own rows whatever else it is filtered by (a meter has few enquiries).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import psycopg
from psycopg.rows import tuple_row

from server.care.repository import ENQUIRY_COLUMNS
from server.care.schemas import EnquiryPriority, EnquirySource, EnquiryStatus

STATUSES: tuple[str, ...] = get_args(EnquiryStatus)
PRIORITIES: tuple[str, ...] = get_args(EnquiryPriority)
SOURCES: tuple[str, ...] = get_args(EnquirySource)
#: enquiry_care_rank's numbers (server migration 0048), by the word a page's position says.
RANKS = {"urgent": 4, "high": 3, "normal": 2, "low": 1, "closed": 0}
_WORD = {rank: word for word, rank in RANKS.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TOKEN = re.compile(r"(urgent|high|normal|low|closed)\.(-?[0-9]{1,18})\.([1-9][0-9]{0,17})")
_SINCE = re.compile(r"x[0-9]{1,20}")
_XID8_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: its last enquiry's place in the order. Written in a link's ``after`` as
    ``high.1772424000123456.42``: the rank's word, when it was opened (microseconds since
    1970-01-01 UTC, exactly as stored), and its id."""

    rank: int
    opened_at: datetime
    enquiry_id: int

    def token(self) -> str:
        micros = (self.opened_at - _EPOCH) // _MICROSECOND
        return f"{_WORD[self.rank]}.{micros}.{self.enquiry_id}"

    @classmethod
    def parse(cls, token: str) -> Position | None:
        """The position a link's ``after`` names, or None when it names none."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        word, micros, enquiry_id = match.groups()
        try:
            opened_at = _EPOCH + int(micros) * _MICROSECOND
        except OverflowError:
            return None
        if int(enquiry_id) > 2**63 - 1:
            return None
        return cls(RANKS[word], opened_at, int(enquiry_id))

    @classmethod
    def of(cls, row: dict[str, Any]) -> Position:
        rank = 0 if row["status"] == "closed" else RANKS[row["priority"]]
        return cls(rank, row["opened_at"], row["enquiry_id"])


@dataclass(frozen=True, slots=True)
class DeskFilter:
    """What the desk is asked to show; None is any."""

    status: str | None = None
    priority: str | None = None
    category: str | None = None
    source: str | None = None
    meter: str | None = None
    account: str | None = None

    def ranks(self) -> tuple[int, int]:
        """The lowest and highest enquiry_care_rank an enquiry it keeps can have."""
        low, high = 0, 4
        if self.status == "closed":
            high = 0
        elif self.status is not None:
            low = 1
        if self.priority is not None and high > 0:
            high = RANKS[self.priority]
            low = high if low > 0 else 0
        return low, high

    def rank_is_priority(self) -> bool:
        """Whether the ranks say the priority: a status other than closed, with a priority, keeps one
        rank, that priority's (a priority is NOT NULL and one of the four: server migration 0030). The
        query then leaves ``priority = …`` out: the planner, taking it for a further filter on that
        rank, counted a thirtieth of the rows (6 of 200 open urgent ones among 20,000 enquiries), and
        read all of them through a bitmap and sorted them for a page of 51 (on 150,000, 3,093 open
        high ones); without it, the page reads enquiries_care_desk_by_status_idx (server migration
        0058) from that status and rank, its statistics on status and rank counting them right."""
        return self.priority is not None and self.status is not None and self.status != "closed"


def desk_page(
    conn: psycopg.Connection, asked: DeskFilter, after: Position | None, limit: int, since: int | None = None
) -> list[dict[str, Any]]:
    """Up to ``limit`` enquiries in the desk's order, after ``after`` (the start when None); each row's
    ``changed``: a transaction at or after ``since`` wrote it (false without ``since``)."""
    return _in_desk_order(conn, asked, after, "<", [], {"since": since}, limit)


def _in_desk_order(
    conn: psycopg.Connection,
    asked: DeskFilter,
    position: Position | None,
    side: Literal["<", ">="],
    where: list[str],
    values: dict[str, Any],
    limit: int,
) -> list[dict[str, Any]]:
    """Up to ``limit`` enquiries the filter keeps, on the ``side`` of ``position`` (``<``: after it in
    the desk's order; ``>=``: at it or above), and the ``where`` conditions (on ``values``) too, in the
    desk's order. Each row's ``changed``: a transaction at or after ``values``' ``since`` (if any)
    wrote it.

    After a position is written ``<=`` the id before its own (ids are whole numbers, so the same rows):
    the planner judges a row comparison by its first column alone, and ``rank < 0`` (a page among the
    closed ones) looked like no row at all, so every index that holds the order looked as cheap, and
    it took enquiries_care_desk_idx for a page filtered by source or priority, reading the other
    sources' or priorities' rows; ``rank <= 0`` looks like all the closed ones, as many as there may be."""
    low, high = asked.ranks()
    conditions = ["enquiry_care_rank(status, priority) BETWEEN %(low)s AND %(high)s", *where]
    keyset: dict[str, Any] = {}
    if position is not None:
        after = side == "<"
        conditions.append(
            f"(enquiry_care_rank(status, priority), opened_at, enquiry_id) {'<=' if after else '>='}"
            " (%(rank)s, %(at)s, %(id)s)"
        )
        keyset = {
            "rank": position.rank,
            "at": position.opened_at,
            "id": position.enquiry_id - 1 if after else position.enquiry_id,
        }
    for column in ("status", "priority", "category", "source"):
        if getattr(asked, column) is not None and not (column == "priority" and asked.rank_is_priority()):
            conditions.append(f"{column} = %({column})s")
    if asked.meter is not None:
        conditions.append("meter_id = %(meter)s")
    if asked.account is not None:  # an account has few enquiries: read through enquiries_account_idx
        conditions.append("account_id = %(account)s")
    return conn.execute(  # type: ignore[return-value]
        f"""
        SELECT {ENQUIRY_COLUMNS}, coalesce(changed_xact >= %(since)s::text::xid8, false) AS changed
        FROM enquiries
        WHERE {" AND ".join(conditions)}
        ORDER BY enquiry_care_rank(status, priority) DESC, opened_at DESC, enquiry_id DESC
        LIMIT %(limit)s
        """,
        {
            "low": low,
            "high": high,
            "status": asked.status,
            "priority": asked.priority,
            "category": asked.category,
            "source": asked.source,
            "meter": asked.meter,
            "account": asked.account,
            **keyset,
            "since": None,
            **values,
            "limit": limit,
        },
    ).fetchall()


def walk_started(conn: psycopg.Connection) -> int:
    """Where a walk through the list starts, for its first page to say in its links (``since``): the
    oldest transaction the database still runs, as the xmin of ``pg_current_snapshot()``, or the next
    to come when none runs. Each enquiry records the transaction that last wrote it (``changed_xact``,
    server migration 0056, by trigger, whoever writes), and a change this first page does not see was
    written by a transaction at or after that one: one still running then, or one that had not yet
    written (its id is given at its first write, after every running one's). Asked in the page's
    moment (server.snapshot: a REPEATABLE READ transaction, whose ``pg_current_snapshot()`` is the one
    all its queries read), it is the oldest transaction the page itself cannot see: the changes counted
    since are exactly those the page does not show. Asked on its own before the page's read (as it was
    before the desk read in one moment), a change committed between the two was shown on the first
    page and counted since too: listed again on the next as changed since, which it was not.

    Any role may ask it: before, the walk began at the start of the oldest transaction open in
    pg_stat_activity, and a role sees other roles' there only as superuser or pg_read_all_stats
    (a server on its own role missed detection's changes, as updated_at is its transaction's start)."""
    with conn.cursor(row_factory=tuple_row) as cur:  # whatever rows the connection makes (the pages': dicts)
        row = cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
    assert row is not None
    return int(row[0])


def moved_above(
    conn: psycopg.Connection, asked: DeskFilter, after: Position, since: int, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` enquiries the filter keeps that a transaction at or after ``since`` wrote (changed
    or raised) and are now above ``after`` in the desk's order, or at it (the previous page's last row):
    the ones a walk started at ``since`` would otherwise not show (raised to a higher priority, reopened,
    raised meanwhile), or showed before they changed. In the desk's order, read over the rows above the
    page (0.4-4 ms a page up to the 60th among 150,000 enquiries; an index on updated_at did no better)."""
    return _in_desk_order(conn, asked, after, ">=", ["changed_xact >= %(since)s::text::xid8"], {"since": since}, limit)


def since_token(since: int) -> str:
    """``since`` as a link writes it: ``x`` and the transaction's id (``x1234``). Before server
    migration 0056 a link's ``since`` was an instant, microseconds since 1970, without the ``x``."""
    return f"x{since}"


def parse_since(token: str) -> int | None:
    """The transaction a link's ``since`` names, or None when it names none."""
    if _SINCE.fullmatch(token) is None or int(token[1:]) > _XID8_MAX:
        return None
    return int(token[1:])


def categories(conn: psycopg.Connection) -> list[str]:
    """The categories enquiries are filed under: people's services' and detection's (server
    migration 0043's open311_service_list), in that list's order."""
    rows = conn.execute(
        "SELECT category FROM open311_service_list GROUP BY category ORDER BY min(position), category"
    ).fetchall()
    return [row["category"] for row in rows]  # type: ignore[call-overload]
