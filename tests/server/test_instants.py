"""The API's times (server.instants) are read only as ISO 8601 writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from server.instants import ReadingInstant, UtcInstant

instants = TypeAdapter(UtcInstant)
moments = st.builds(
    lambda t, minutes: t.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30)),
    st.integers(-14 * 60, 14 * 60),
)


@given(moments, st.sampled_from("Tt "), st.characters(exclude_categories=["Cs"]).filter(lambda c: c not in "Tt "))
def test_a_time_is_read_with_t_or_a_space_between_date_and_time_and_refused_with_any_other(
    moment: datetime, good: str, other: str
) -> None:
    """pydantic took ``_`` there (``2026-11-02_12:00:00Z`` as 12:00). ``t`` is RFC 3339's ``T`` in
    lower case (its §5.6 note), read as stored times read it (aquami.stored_times)."""
    written = moment.isoformat(sep=good)
    assert instants.validate_python(written) == moment and instants.validate_python(written).tzinfo == UTC
    with pytest.raises(ValidationError, match="is no ISO 8601 time"):
        instants.validate_python(moment.isoformat(sep=other))


@given(st.integers(0, 10**13))
def test_a_bare_number_is_no_time(number: int) -> None:
    """pydantic read it as seconds (past 2e10 milliseconds) since 1970: ``20261102`` was 1970-08-23."""
    for adapter in (instants, TypeAdapter(ReadingInstant)):
        with pytest.raises(ValidationError, match="is no ISO 8601 time"):
            adapter.validate_python(str(number))
        with pytest.raises(ValidationError, match="is a number"):
            adapter.validate_python(number)


ahead_of_utc = st.builds(
    lambda t, minutes: t.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(9998, 12, 30)),
    st.integers(1, 14 * 60),
)


@given(ahead_of_utc, st.sampled_from(["seconds", "minutes", "microseconds"]))
def test_an_offset_whose_plus_a_url_read_as_a_space_is_named_with_what_to_write(moment: datetime, spec: str) -> None:
    """``from=2026-12-07T11:00:00+11:00`` put into a URL as it is reaches the server as
    ``2026-12-07T11:00:00 11:00`` (a query string reads ``+`` as a space): pydantic said "unexpected
    extra characters at the end of the input", which names neither the ``+`` nor what to write. Now
    the refusal says to write it %2B, or to give the time in UTC; the time written right is read as
    it was, its ``+`` kept or as %2B decoded."""
    written = moment.isoformat(timespec=spec)
    assert instants.validate_python(written) == datetime.fromisoformat(written)
    with pytest.raises(ValidationError, match=r"UTC offset's \+ would be.*write it %2B"):
        instants.validate_python(written.replace("+", " "))
