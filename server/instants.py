"""Times as the API sends them: UTC instants, whatever offset they were read or given with.

psycopg gives a timestamptz in the session's TimeZone (a database set to the host's zone gives
"+11:00"), and a request's times keep the caller's offset; the README promises UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

from collector.batch_parser import FUTURE_MAX, TS_MIN


def in_utc(moment: datetime) -> datetime:
    """The instant in UTC; refused when its UTC date is outside years 1 to 9999, which PostgreSQL
    would store but no reader could load again."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time's UTC date must be within the years 1 to 9999") from None


#: A timezone-aware instant, held and sent in UTC.
UtcInstant = Annotated[AwareDatetime, AfterValidator(in_utc)]

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
ReadingInstant = Annotated[AwareDatetime, AfterValidator(in_utc), AfterValidator(within_reading_bounds)]
