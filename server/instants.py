"""Times as the API sends them: UTC instants, whatever offset they were read or given with.

psycopg gives a timestamptz in the session's TimeZone (a database set to the host's zone gives
"+11:00"), and a request's times keep the caller's offset; the README promises UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def in_utc(moment: datetime) -> datetime:
    """The instant in UTC; refused when its UTC date is outside years 1 to 9999, which PostgreSQL
    would store but no reader could load again."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time's UTC date must be within the years 1 to 9999") from None


#: A timezone-aware instant, held and sent in UTC.
UtcInstant = Annotated[AwareDatetime, AfterValidator(in_utc)]
