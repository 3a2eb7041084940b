"""The page rounds a float figure as PostgreSQL's ``round(x::numeric, places)`` does, the rounding an
enquiry's subject uses for the same alert's rate."""

from __future__ import annotations

import psycopg
from hypothesis import example, given, settings
from hypothesis import strategies as st

from server.web.rounding import rounded

# ties (n/20 is x.x5; n/200 is x.xx5), the ones '%.1f' rounded to even or below, and any finite float
_FIGURES = st.one_of(
    st.integers(-(10**7), 10**7).map(lambda n: n / 20),
    st.integers(-(10**7), 10**7).map(lambda n: n / 200),
    st.floats(allow_nan=False, allow_infinity=False),
)


def test_a_figure_is_rounded_as_postgresql_rounds_it(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:

        @settings(max_examples=600, deadline=None)
        @given(value=_FIGURES, places=st.integers(0, 3))
        @example(value=0.25, places=1)  # '%.1f': 0.2; PostgreSQL: 0.3
        @example(value=12.25, places=1)
        @example(value=0.35, places=1)  # binary 0.34999…: '%.1f' 0.3; PostgreSQL: 0.4
        @example(value=0.24999999999999997, places=1)  # 0.25 in PostgreSQL's 15 digits, so 0.3
        @example(value=-0.04, places=1)  # "0.0", not "-0.0"
        @example(value=1.7976931348623157e308, places=1)
        @example(value=5e-324, places=3)
        def agrees(value: float, places: int) -> None:
            row = conn.execute("SELECT round(%s::float8::numeric, %s)::text", (value, places)).fetchone()
            assert row is not None
            assert rounded(value, places) == row[0], value

        agrees()
