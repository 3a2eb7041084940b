"""Times a person supplies in a file that the product stores (an agreement's start and end in
ACCOUNTS.csv, a meter's fitting and removal in METERS.csv): read as the UTC instant they name, or
refused with one line saying why.

Bounds: PostgreSQL stores a timestamptz from 4713 BC on, but hands it out in the session's
TimeZone, which every client sets as it likes (a BI tool its own, a database its host's zone), up
to 167 hours from UTC (``UTC+167`` is a valid POSIX zone). 0001-01-01T00:00Z is 0001-12-31 16:07 BC
in America/Los_Angeles, and 9999-12-31T23:00Z is in the year 10000 east of UTC: psycopg (Python's
datetime holds the years 1 to 9999) cannot load either, so every query that met such a row failed,
in such a session, for whoever ran it. A stored time is held to the years 1900 to 9998 in UTC, a
year from either end of the calendar, which every session shows within it whatever its zone; no
utility's customer or meter record is older, and an agreement still running has no end at all.

A date and its time are written with ``T`` (or a space) between them: any other character there,
which Python's ``fromisoformat`` takes, is refused. Blanks around a time (spaces, tabs: ``,
2026-01-01T00:00Z`` from a hand-edited file) are dropped, as around a name; a line break anywhere
in it is refused, as in a name: a quoted field that runs over two lines is a broken file, not a time.

Fractions: ISO 8601 allows a decimal fraction (``.`` or ``,``) on the last field written, and only a
fraction of a second is taken: Python's ``fromisoformat`` read ``12.5`` (ISO's 12:30) and ``12:00.5``
(12:00:30) as half a second past 12:00, and ``12:00:00.`` as 12:00, so those are refused. Digits past
the microsecond (``.123456789``, from a system writing nanoseconds) are taken and the time truncated
to the microsecond PostgreSQL holds, towards the past, moving it by less than a microsecond and never
across a second, a day or the years' ends; PostgreSQL itself rounds (``9998-12-31T23:59:59.9999999Z``
would be 9999-01-01). ``aquami detect``'s READINGS.csv times are read with the same rules
(:func:`shape_problem`) and truncated to the second it works in.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

#: The earliest time stored, and the first one past the latest (exclusive): the years 1900 to 9998.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
PAST_LATEST = datetime(9999, 1, 1, tzinfo=UTC)
#: What ends a line, in the csv module or in Unicode (str.splitlines)
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
#: Between a date and its time. Python 3.11's ``fromisoformat`` takes any one character there
#: ("2026-01-01x00:00Z", "2026-01-01€00:00Z"); ISO 8601 has "T", RFC 3339 allows a space.
_DATE_TIME_SEPARATOR = re.compile(r"[0-9][Tt ][0-9]")
_FRACTION_MARK = re.compile(r"[.,]")
#: The seconds (extended ``hh:mm:ss`` or basic ``hhmmss``) and their fraction, one digit at least
_SECONDS_AND_FRACTION = re.compile(r"[0-9]{2}(:?)[0-9]{2}\1[0-9]{2}[.,][0-9]+")


class StoredTimeError(ValueError):
    """Why a text is no time to store, in one line starting with the text as written (repr)."""


def stored_time(text: str) -> datetime:
    """The instant ``text`` (ISO 8601 with a UTC offset) names, in UTC, within the years 1900 to
    9998; StoredTimeError otherwise."""
    if LINE_BREAKS.intersection(text):
        raise StoredTimeError(
            f"{text!r} has a line break: a time is one line (a quoted field over two is a broken file)"
        )
    outside = StoredTimeError(
        f"{text!r} is outside the years 1900 to 9998 in UTC, which a database session in any time zone can show"
    )
    try:
        moment = aware_utc(text.strip(" \t"))
    except OverflowError:
        raise outside from None
    except ValueError as problem:
        raise StoredTimeError(f"{text!r} {problem}") from None
    if not EARLIEST <= moment < PAST_LATEST:
        raise outside
    return moment


def aware_utc(bare: str, *, naive_utc: bool = False) -> datetime:
    """The instant ``bare`` (a time less its outer blanks, ISO 8601 with a UTC offset) names, in UTC:
    read in a stored time's shape (:func:`shape_problem`); a ValueError saying what is wrong, without
    the text (the caller says it), otherwise, and an OverflowError for one outside the years 1 to
    9999 once in UTC (0001-01-01T00:00+01:00 is in the year 0, 9999-12-31T23:00-02:00 in 10000).
    ``naive_utc``: a time without an offset is in UTC (a command's option), not refused (a file's)."""
    problem = shape_problem(bare)
    if problem is not None:
        raise ValueError(problem)
    try:
        moment = datetime.fromisoformat(bare)
    except ValueError:
        raise ValueError(NO_TIME) from None
    if moment.tzinfo is None:
        if not naive_utc:
            raise ValueError("needs a UTC offset (Z or +hh:mm)")
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


NO_TIME = "is no ISO 8601 time"


def shape_problem(bare: str) -> str | None:
    """Why ``bare`` (a time less its outer blanks) would not be read as written, before Python's
    ``fromisoformat`` reads it: a character other than ``T`` or a space between its date and time, or
    a fraction on anything but its seconds (or with no digit); None otherwise."""
    separator = _DATE_TIME_SEPARATOR.search(bare) if bare.isascii() else None
    if separator is None:
        return NO_TIME
    time = bare[separator.start() + 2 :]
    if _FRACTION_MARK.search(time):
        seconds = _SECONDS_AND_FRACTION.match(time)
        if seconds is None or _FRACTION_MARK.search(time, seconds.end()):
            return (
                "has a fraction on no seconds, or one with no digit: ISO 8601 reads 12.5 as 12:30, which was "
                "read as half a second past 12:00; write hh:mm:ss, and any fraction on the seconds"
            )
    return None
