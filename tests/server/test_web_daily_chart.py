"""The meter page's daily bar chart (server.web.daily_chart), drawn from any stored days."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from server.web.daily_chart import MIN_BAR, PLOT_BOTTOM, PLOT_TOP, WIDTH, chart

_VOLUME = st.none() | st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False)


def _rows(volumes: list[Decimal | None]) -> list[dict[str, Any]]:
    first = date(2026, 3, 1)
    return [
        {
            "date": first + timedelta(days=i),
            "consumption_m3": volume,
            "intervals": None if volume is None else 24,
            "not_actual": None if volume is None else 0,
            "unknown": None if volume is None else 0,
            "qualities": {},
        }
        for i, volume in enumerate(volumes)
    ]


@given(st.lists(_VOLUME, min_size=1, max_size=31))
def test_bars_stand_on_the_baseline_in_day_order_inside_the_box_and_rank_as_the_days(
    volumes: list[Decimal | None],
) -> None:
    drawn = chart(_rows(volumes))
    assert drawn is not None
    days = drawn.days
    assert [d.volume_m3 for d in days] == volumes  # the figures shown are the stored ones
    known = [v for v in volumes if v is not None]
    assert drawn.total_m3 == sum(known, Decimal(0)) and drawn.highest_m3 == max(known, default=Decimal(0))
    for before, after in pairwise(days):
        assert before.x + before.width <= after.x  # no overlap, oldest on the left
    for d in days:
        assert d.x >= 0 and d.x + d.width <= WIDTH + 0.01
        if d.volume_m3 is None:
            assert d.height == 0 and d.mark == "no-data"
            continue
        assert d.y >= PLOT_TOP - 0.01 and abs(d.y + d.height - PLOT_BOTTOM) < 0.02
        assert d.height >= MIN_BAR  # a day with reads, even of no water, is a bar
        if d.volume_m3 == drawn.highest_m3 and drawn.highest_m3 > 0:
            assert abs(d.y - PLOT_TOP) < 0.02  # the highest day reaches the top
    with_reads = [d for d in days if d.volume_m3 is not None]
    for a in with_reads:
        for b in with_reads:
            if a.volume_m3 is not None and b.volume_m3 is not None and a.volume_m3 < b.volume_m3:
                assert a.height <= b.height


def test_no_days_is_no_chart() -> None:
    assert chart([]) is None


def test_a_day_says_what_was_not_actual() -> None:
    rows = _rows([Decimal("0.5"), Decimal("0.25"), Decimal("0.1"), None])
    rows[1] |= {"not_actual": 2, "qualities": {"estimated": 1, "edited": 1}}
    rows[2] |= {"unknown": 1}
    drawn = chart(rows)
    assert drawn is not None
    assert [d.mark for d in drawn.days] == ["actual", "not-actual", "unknown", "no-data"]
    assert [d.said for d in drawn.days] == [
        "",
        "1 edited, 1 estimated of 24 intervals",
        "1 unknown (not counted) of 24 intervals",
        "no reads",
    ]
    assert drawn.marked == 3
