"""Times as the API sends them: UTC instants, whatever offset they were read or given with.

psycopg gives a timestamptz in the session's TimeZone (a database set to the host's zone gives
"+11:00"), and a request's times keep the caller's offset; the README promises UTC.

A time a request gives is held to the shape a stored time is (:func:`aquami.stored_times.shape_problem`)
before pydantic reads it: pydantic takes ``_`` (or ``t``) between a date and its time, and a bare
number as seconds (or, past 2e10, milliseconds) since 1970, so ``from=20261102`` was 1970-08-23
and ``from=1700000000`` 2023-11-14, with no error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from aquami.stored_times import shape_problem
from collector.batch_parser import FUTURE_MAX, TS_MIN


def in_utc(moment: datetime) -> datetime:
    """The instant in UTC; refused when its UTC date is outside years 1 to 9999, which PostgreSQL
    would store but no reader could load again."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time's UTC date must be within the years 1 to 9999") from None


#: A date-time whose UTC offset has a space for its sign: ``2026-12-07T11:00:00+11:00`` put into a URL's
#: query as it is, whose ``+`` the server reads as a space (application/x-www-form-urlencoded).
_OFFSET_SIGN_AS_SPACE = re.compile(
    r"[0-9]{4}-?[0-9]{2}-?[0-9]{2}[Tt ][0-9]{2}(:?[0-9]{2}(:?[0-9]{2}([.,][0-9]+)?)?)? [0-9]{2}(:?[0-9]{2})?"
)
PLUS_READ_AS_SPACE = (
    "has a space where its UTC offset's + would be: a URL's query reads + as a space, so write it %2B "
    "there (or give the time in UTC, ending Z)"
)


def offset_problem(text: str) -> str | None:
    """:data:`PLUS_READ_AS_SPACE` when ``text`` is a date-time whose offset's ``+`` came as a space;
    None otherwise. Before, pydantic said "unexpected extra characters at the end of the input" and a
    billing period "is not a date or a date-time", neither naming the ``+``."""
    return PLUS_READ_AS_SPACE if _OFFSET_SIGN_AS_SPACE.fullmatch(text) else None


def written_as_iso(value: object) -> object:
    """``value`` if it is no text, or text in a stored time's shape; refused otherwise (a number,
    which pydantic reads as seconds or milliseconds since 1970 by its size, is refused too)."""
    if isinstance(value, str):
        problem = shape_problem(value) or offset_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is a number: a time is ISO 8601 text with a UTC offset")
    return value


#: A timezone-aware instant, written as ISO 8601 with T (or a space) and any fraction on the
#: seconds only, held and sent in UTC.
UtcInstant = Annotated[AwareDatetime, BeforeValidator(written_as_iso), AfterValidator(in_utc)]

#: The earliest reading time the collector stores (its ``TS_MIN`` is naive UTC text, compared with
#: the readings' own UTC text).
READING_TS_MIN = datetime.fromisoformat(TS_MIN).replace(tzinfo=UTC)


def within_reading_bounds(moment: datetime) -> datetime:
    """A person's reading time held to the collector's bounds for meters' readings: a reading
    dated 2099 became the meter's latest (its register "going back" from 107 to 5 m³) and one dated
    year 1 the first of its history, which the collector dead-letters when a meter sends them."""
    if moment < READING_TS_MIN:
        raise ValueError(f"a reading's time must be on or after {READING_TS_MIN:%Y-%m-%d} (UTC)")
    latest = datetime.now(UTC) + FUTURE_MAX
    if moment > latest:
        raise ValueError(f"a reading's time must be no later than a day from now ({latest:%Y-%m-%dT%H:%M:%SZ})")
    return moment


#: The time of a reading a person supplies or corrects: a UTC instant within the collector's bounds.
ReadingInstant = Annotated[
    AwareDatetime, BeforeValidator(written_as_iso), AfterValidator(in_utc), AfterValidator(within_reading_bounds)
]
