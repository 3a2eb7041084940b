"""A day's season is read from one table, whatever array it is wanted for.

The meter model's fast paths draw a day's use per hour and must give, to the bit, what the
consumption model gives step by step; the fleet generator asks for the seasons of arrays of any
length. Each took np.cos of its own array, and so relied on numpy computing cos element by element
the same way for arrays of every length, offset and stride (numpy's float64 cos has been SVML on
AVX-512, libm, and may become a SIMD kernel again). Now every path reads consumption.SEASON_PHASE,
worked out once at import: these tests prove that no path takes a cos after that, and that the
table gives the seasons the per-step cos gave, so no seeded output changed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators import consumption
from simulators.consumption import DAY_S
from simulators.events import Leak
from simulators.fleet import FleetSpec, generate_fleet
from simulators.meter_model import MeterModel

_1970_TO_2100_S = 130 * 365 * DAY_S


def _season_phase_as_before(step_start_s: np.ndarray) -> np.ndarray:
    """consumption.season_phase as it was: the cos of each step's phase, taken over the array."""
    days = step_start_s.astype("datetime64[s]").astype("datetime64[D]")
    doy = (days - days.astype("datetime64[Y]")).astype(np.float64)
    return np.cos(2.0 * np.pi * (doy - 196) / 365.25)


def test_no_path_takes_a_cos_once_the_table_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumption model over a day and over weeks of steps, a meter read through its days (a
    leak's days through ``_day``, the others the fast way) and a fleet: none takes np.cos, so none
    can depend on how numpy computes it for its array. Before, each took it of its own array."""
    calls: list[int] = []
    real = np.cos

    def counted(x: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(np.size(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(np, "cos", counted)
    rng = np.random.default_rng(3)
    customers = consumption.draw_customers(rng, 20, 0, 2 * 10**9)
    for steps in (19_700 * DAY_S + 60 * np.arange(1440), 19_000 * DAY_S + 900 * np.arange(96 * 21)):
        consumption.customer_use_m3(rng, customers, steps.astype(np.int64), int(steps[1] - steps[0]))
    installed = datetime(2024, 11, 20, 6, tzinfo=UTC)
    meter = MeterModel("WM-00003", installed=installed, seed=7)
    meter.inject(Leak(start=installed + timedelta(days=40, hours=3), end=installed + timedelta(days=45), rate_lph=25.0))
    meter.read(installed + timedelta(days=120))
    generate_fleet(FleetSpec(meters=50, days=3, seed=17, start=datetime(2025, 12, 30, tzinfo=UTC)))
    assert calls == [], f"np.cos taken {len(calls)} times, over {sum(calls)} values"


@pytest.mark.parametrize("step_s", [30, 60, 300, 900, 3600])
def test_the_table_gives_each_day_the_season_the_per_step_cos_gave(step_s: int) -> None:
    """Every day of a leap year and of a common one, at each step size the meter model allows: the
    season of each step, as the consumption model took it before (the cos over the day's steps,
    the array the meter model's per-hour draw was proven against), is the table's, to the bit."""
    for first_day in (19_723, 20_089):  # 2024-01-01 (a leap year), 2025-01-01
        for d in range(first_day, first_day + 366):
            steps = d * DAY_S + step_s * np.arange(DAY_S // step_s, dtype=np.int64)
            before = _season_phase_as_before(steps)
            assert before.tobytes() == consumption.season_phase(steps).tobytes(), f"day {d}"


@settings(max_examples=200, deadline=None)
@given(
    instants=st.lists(st.integers(0, _1970_TO_2100_S), min_size=1, max_size=3000),
    offset=st.integers(0, 7),
    stride=st.integers(1, 3),
)
def test_an_instant_s_season_does_not_depend_on_the_array_it_is_in(
    instants: list[int], offset: int, stride: int
) -> None:
    """Any instants from 1970 to 2100, in an array of any length, at any offset into a larger one,
    contiguous or not: each one's season is the table's entry for its day of the year (worked out
    by the datetime module), and is what the cos over the array gave before."""
    padded = np.zeros(offset + len(instants) * stride, dtype=np.int64)
    padded[offset::stride] = instants
    view = padded[offset::stride]
    seasons = consumption.season_phase(view)
    expected = [consumption.SEASON_PHASE[datetime.fromtimestamp(s, UTC).timetuple().tm_yday - 1] for s in instants]
    assert seasons.tolist() == [float(e) for e in expected]
    assert seasons.tobytes() == _season_phase_as_before(view).tobytes()


def test_the_table_is_the_season_s_cos_and_cannot_be_written() -> None:
    """366 days (0 is 1 January, 365 the 31 December of a leap year), each within 2 ulp of the cos
    that Python's math module takes (two libms within 1 ulp each), +1 on day 196 (mid-July)."""
    table = consumption.SEASON_PHASE
    assert table.shape == (366,)
    assert table[196] == 1.0
    for doy, value in enumerate(table.tolist()):
        exact = math.cos(2.0 * math.pi * (doy - 196) / 365.25)
        assert abs(value - exact) <= 2 * math.ulp(exact), doy
    with pytest.raises(ValueError, match="read-only"):
        table[0] = 0.0
