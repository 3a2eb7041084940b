"""The two-step move of a corrected span (server.corrected_spans): narrowed, it lies within both the
recorded and the corrected span; widened, it is the corrected span."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from server.corrected_spans import span_step

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_HOURS = st.integers(min_value=0, max_value=1000)


@st.composite
def _spans(draw: st.DrawFn) -> tuple[datetime, datetime | None]:
    since = T0 + timedelta(hours=draw(_HOURS))
    length = draw(st.none() | st.integers(min_value=1, max_value=1000))
    return since, None if length is None else since + timedelta(hours=length)


def _within(inner: tuple[datetime, datetime | None], outer: tuple[datetime, datetime | None]) -> bool:
    (since, until), (outer_since, outer_until) = inner, outer
    ends_within = outer_until is None or (until is not None and until <= outer_until)
    return since >= outer_since and ends_within


@given(_spans(), _spans())
def test_narrowed_lies_within_both_and_widened_is_the_corrected(
    recorded: tuple[datetime, datetime | None], corrected: tuple[datetime, datetime | None]
) -> None:
    assert span_step(recorded, corrected, widen=True) == corrected
    narrowed = span_step(recorded, corrected, widen=False)
    assert _within(narrowed, recorded) and _within(narrowed, corrected)
    # and it is the whole of what they share: its start the later start, its end the earlier end
    assert narrowed[0] == max(recorded[0], corrected[0])
    ends = [end for end in (recorded[1], corrected[1]) if end is not None]
    assert narrowed[1] == (min(ends) if ends else None)
