"""Where meterization had each meter in its place, on the block's grid: the vectorised
``installed_on_the_grid`` against the definition, cell by cell."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.detection.series import installed_on_the_grid

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)

# instants around a 12-interval grid, to the second, some exactly on it
moments = st.one_of(
    st.none(),
    st.integers(-4 * 900, 16 * 900).map(lambda s: T0 + timedelta(seconds=s)),
    st.integers(-4, 16).map(lambda k: T0 + k * STEP),
)


def _definition(installations: list[tuple[int, datetime | None, datetime | None]], meters: int) -> np.ndarray:
    """In place over the interval (t - step, t] if some of it lies in [installed, removed)."""
    listed = {row for row, _, _ in installations}
    out = np.zeros((meters, 12), dtype=bool)
    for m in range(meters):
        for j in range(12):
            end = T0 + j * STEP
            start = end - STEP
            out[m, j] = m not in listed or any(
                row == m
                and (since is None or since < end)  # fitted before the interval ended …
                and (until is None or until > start)  # … and taken out after it began
                for row, since, until in installations
            )
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), moments, moments).filter(lambda i: i[1] is None or i[2] is None or i[2] > i[1]),
        max_size=6,
    )
)
def test_the_grid_is_the_definition_cell_by_cell(
    installations: list[tuple[int, datetime | None, datetime | None]],
) -> None:
    timestamps = np.datetime64(T0.replace(tzinfo=None), "s") + np.arange(12) * np.timedelta64(900, "s")
    got = installed_on_the_grid(installations, 4, timestamps)
    if not installations:
        assert got is None
        return
    assert got is not None
    np.testing.assert_array_equal(got, _definition(installations, 4))
