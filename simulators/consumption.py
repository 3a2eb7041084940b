"""How customers use water: daily profiles, weekly rhythm, seasons and random use events.

The model works on whole arrays: customers along axis 0, time steps along axis 1. Time is int64
seconds since the Unix epoch, UTC; a step ``[s, s + step_s)`` never spans an hour boundary (the step
divides an hour), so each step takes its rate from one hourly profile value.

Per step, the expected volume is ``daily_m3 × seasonal × day_weight × hourly_share × step/1h``; the
volume actually drawn is a compound Poisson sum of use events (a toilet flush, a shower), so quiet
hours have exactly zero use, as real meters see at night. This matters: detection of continuous
leaks rests on the absence of zero-flow periods.

Distractors built in (normal behaviour that looks like a fault): households away on holiday (no use
at all), irrigation timers on fixed mornings (a large, regular flow), businesses closed on Sundays
and public holidays, and heavy households whose use is several times the median.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

HOUR_S = 3600
DAY_S = 86400


class CustomerClass(IntEnum):
    RESIDENTIAL = 0
    COMMERCIAL = 1
    IRRIGATION = 2  # residential use plus a timed garden irrigation system


class DayType(IntEnum):
    WEEKDAY = 0
    SATURDAY = 1
    SUNDAY = 2  # also public holidays


def _normalise(tables: list[list[list[float]]]) -> np.ndarray:
    a = np.asarray(tables, dtype=np.float64).reshape(len(tables), 24)
    return a / a.sum(axis=-1, keepdims=True)


# Share of a day's use per hour of the day (00..23), per class and day type. Residential: morning and
# evening peaks, near zero at night; later, flatter mornings at weekends. Commercial: opening hours.
# Each table: hours 00-11, then 12-23.
_RES_WEEKDAY = [
    [1, 0.5, 0.3, 0.3, 0.5, 2, 6, 9, 7, 4, 3, 3],
    [3.5, 3, 2.5, 2.5, 3, 5, 7, 7.5, 6.5, 5, 3.5, 2],
]
_RES_WEEKEND = [
    [1.5, 0.8, 0.4, 0.3, 0.3, 0.6, 1.5, 3.5, 6.5, 8, 7, 6],
    [5.5, 5, 4, 3.5, 3.5, 4.5, 6, 6.5, 6, 5, 4, 2.5],
]
_COM_WEEKDAY = [
    [0.2, 0.2, 0.2, 0.2, 0.2, 0.3, 1, 4, 8, 9, 9, 9],
    [9.5, 9, 9, 8.5, 8, 6, 3, 1, 0.5, 0.3, 0.2, 0.2],
]
_COM_SATURDAY = [
    [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.5, 2, 7, 10, 11, 11],
    [11, 10, 8, 6, 3, 1, 0.5, 0.3, 0.2, 0.2, 0.2, 0.2],
]
_FLAT = [[1.0] * 12, [1.0] * 12]

#: HOURLY_SHARE[class, day_type, hour]: each row sums to 1.
HOURLY_SHARE = np.stack(
    [
        _normalise([_RES_WEEKDAY, _RES_WEEKEND, _RES_WEEKEND]),
        _normalise([_COM_WEEKDAY, _COM_SATURDAY, _FLAT]),
        _normalise([_RES_WEEKDAY, _RES_WEEKEND, _RES_WEEKEND]),
    ]
)

#: DAY_WEIGHT[class, day_type]: a day's use relative to the customer's mean day. Businesses are closed
#: on Sundays and public holidays (weight 0: exactly no use, the distractor).
DAY_WEIGHT = np.array(
    [
        [0.95, 1.10, 1.15],
        [1.12, 0.60, 0.0],
        [0.95, 1.10, 1.15],
    ]
)

#: Amplitude of the seasonal swing of indoor use per class (peak in mid-July, northern hemisphere).
SEASONAL_AMPLITUDE = np.array([0.10, 0.06, 0.15])
_SEASON_PEAK_DAY = 196

#: Fixed-date public holidays (month, day): businesses shut, households follow a Sunday.
PUBLIC_HOLIDAYS: tuple[tuple[int, int], ...] = ((1, 1), (5, 1), (12, 25), (12, 26))

IRRIGATION_START_HOUR = 5
IRRIGATION_HOURS = 1


@dataclass(frozen=True)
class Customers:
    """Parameters of N customers, one array entry per customer."""

    klass: np.ndarray  # (N,) int8, CustomerClass
    daily_m3: np.ndarray  # (N,) mean daily indoor use
    event_m3: np.ndarray  # (N,) mean volume of one use event
    irrigation_days: np.ndarray  # (N, 7) bool, Monday=0; all False unless IRRIGATION
    irrigation_m3h: np.ndarray  # (N,) flow of the irrigation system while it runs
    away_start_s: np.ndarray  # (N,) int64 epoch seconds; away_start == away_end means never away
    away_end_s: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return int(self.klass.shape[0])

    def select(self, index: np.ndarray | slice) -> Customers:
        return Customers(
            klass=self.klass[index],
            daily_m3=self.daily_m3[index],
            event_m3=self.event_m3[index],
            irrigation_days=self.irrigation_days[index],
            irrigation_m3h=self.irrigation_m3h[index],
            away_start_s=self.away_start_s[index],
            away_end_s=self.away_end_s[index],
        )


@dataclass(frozen=True)
class CustomerMix:
    """Shares of customer classes and of heavy households in a population."""

    commercial: float = 0.08
    irrigation: float = 0.10
    heavy: float = 0.05  # share of households using 2.5–4× a typical one (large families)
    away_per_year: float = 0.6  # probability that a household takes one holiday in a year


def draw_customers(
    rng: np.random.Generator, n: int, start_s: int, end_s: int, mix: CustomerMix | None = None
) -> Customers:
    """Draw ``n`` customers; holidays fall between ``start_s`` and ``end_s``."""
    mix = mix or CustomerMix()
    u = rng.random(n)
    klass = np.where(
        u < mix.commercial,
        CustomerClass.COMMERCIAL,
        np.where(u < mix.commercial + mix.irrigation, CustomerClass.IRRIGATION, CustomerClass.RESIDENTIAL),
    ).astype(np.int8)
    commercial = klass == CustomerClass.COMMERCIAL
    irrigating = klass == CustomerClass.IRRIGATION

    persons = rng.choice(np.arange(1, 7), size=n, p=[0.28, 0.34, 0.16, 0.14, 0.06, 0.02])
    daily = 0.12 * persons * rng.lognormal(0.0, 0.25, n)
    heavy = (rng.random(n) < mix.heavy) & ~commercial
    daily = np.where(heavy, daily * rng.uniform(2.5, 4.0, n), daily)
    daily = np.where(commercial, rng.lognormal(np.log(1.5), 0.8, n), daily)
    event = np.where(commercial, rng.uniform(0.02, 0.05, n), rng.uniform(0.008, 0.025, n))

    # Irrigation on two or three fixed weekdays, one hour from 05:00.
    days = np.zeros((n, 7), dtype=bool)
    k = rng.integers(2, 4, n)
    order = np.argsort(rng.random((n, 7)), axis=1)
    days[np.arange(n)[:, None], order] = np.arange(7)[None, :] < k[:, None]
    days &= irrigating[:, None]
    irrigation = np.where(irrigating, rng.uniform(0.4, 1.4, n), 0.0)

    span = max(end_s - start_s, DAY_S)
    away = (rng.random(n) < mix.away_per_year * span / (365 * DAY_S)) & ~commercial
    away_len = rng.integers(4, 15, n).astype(np.int64) * DAY_S
    away_start = start_s + (rng.random(n) * span).astype(np.int64) // DAY_S * DAY_S
    away_start = np.where(away, away_start, start_s)
    away_end = np.where(away, away_start + away_len, start_s)
    return Customers(klass, daily, event, days, irrigation, away_start, away_end)


def day_index(step_start_s: np.ndarray) -> np.ndarray:
    return np.floor_divide(step_start_s, DAY_S)


def weekday(step_start_s: np.ndarray) -> np.ndarray:
    """Monday=0 (1970-01-01 was a Thursday)."""
    return (day_index(step_start_s) + 3) % 7


def is_public_holiday(step_start_s: np.ndarray) -> np.ndarray:
    days = step_start_s.astype("datetime64[s]").astype("datetime64[D]")
    month = days.astype("datetime64[M]")
    month_no = month.astype(np.int64) % 12 + 1
    day_no = (days - month).astype(np.int64) + 1
    out = np.zeros(step_start_s.shape, dtype=bool)
    for m, d in PUBLIC_HOLIDAYS:
        out |= (month_no == m) & (day_no == d)
    return out


def day_type(step_start_s: np.ndarray) -> np.ndarray:
    wd = weekday(step_start_s)
    t = np.where(wd == 6, DayType.SUNDAY, np.where(wd == 5, DayType.SATURDAY, DayType.WEEKDAY))
    return np.where(is_public_holiday(step_start_s), DayType.SUNDAY, t).astype(np.int8)


#: SEASON_PHASE[day of the year, 0 to 365]: cos of the year's phase, +1 in mid-July, -1 in
#: mid-January. Worked out once, here, and read by every path that needs a day's season
#: (:func:`season_phase`, so the fleet generator's arrays of any length, and the meter model's
#: per-hour draw), so that they agree to the bit whatever np.cos does: the meter model's fast paths
#: must give the readings its step-by-step path gives. Each path took np.cos of its own array
#: before, and how numpy computes a float64 cos depends on its version and the machine: 1.22-1.24
#: used SVML on AVX-512 (a partial last vector through the same kernel, but libm for overlapping
#: arrays or strides it could not load, a last ulp apart), 1.25 on, on x86 at least, the platform's
#: libm element by element (numpy#23925; here, numpy 2.4 and glibc, np.cos equals math.cos), and a
#: libm-independent SIMD kernel is proposed (numpy#29699). Read from one table, a
#: day's season cannot differ with the length, offset or stride of the array it is wanted for.
#: Across machines and numpy versions the table itself, like the random draws (numpy's gamma and
#: Poisson use libm's log and exp), still follows the platform's maths.
SEASON_PHASE = np.cos(2.0 * np.pi * (np.arange(366, dtype=np.float64) - _SEASON_PEAK_DAY) / 365.25)
SEASON_PHASE.flags.writeable = False


def day_of_year(step_start_s: np.ndarray) -> np.ndarray:
    """Day of the year of each instant, 0 (1 January) to 365 (31 December of a leap year)."""
    days = step_start_s.astype("datetime64[s]").astype("datetime64[D]")
    return (days - days.astype("datetime64[Y]")).astype(np.int64)


def season_phase(step_start_s: np.ndarray) -> np.ndarray:
    """cos of the year's phase: +1 in mid-July, -1 in mid-January (:data:`SEASON_PHASE`)."""
    return SEASON_PHASE[day_of_year(step_start_s)]


def class_shape(step_start_s: np.ndarray, step_s: int) -> np.ndarray:
    """Share of a mean day's use (n_classes, T) in each step, season and day type included."""
    if HOUR_S % step_s:
        raise ValueError(f"step {step_s} s must divide an hour")
    hour = (step_start_s // HOUR_S) % 24
    dt = day_type(step_start_s)
    k = np.arange(len(CustomerClass))[:, None]
    seasonal = 1.0 + SEASONAL_AMPLITUDE[:, None] * season_phase(step_start_s)[None, :]
    return HOURLY_SHARE[k, dt[None, :], hour[None, :]] * DAY_WEIGHT[k, dt[None, :]] * seasonal * (step_s / HOUR_S)


def expected_use_m3(customers: Customers, step_start_s: np.ndarray, step_s: int) -> np.ndarray:
    """Mean indoor use (M, T) per step; exactly zero where nobody uses water (closed, away)."""
    out = customers.daily_m3[:, None] * class_shape(step_start_s, step_s)[customers.klass]
    away = np.flatnonzero(customers.away_end_s > customers.away_start_s)
    if away.size:
        gone = (step_start_s[None, :] >= customers.away_start_s[away, None]) & (
            step_start_s[None, :] < customers.away_end_s[away, None]
        )
        out[away] *= ~gone
    return out


def draw_use_m3(rng: np.random.Generator, expected_m3: np.ndarray, event_m3: np.ndarray) -> np.ndarray:
    """Random use per step: a Poisson number of events, each of Gamma(2)-distributed volume.

    The sum of ``n`` Gamma(2, θ) volumes is Gamma(2n, θ), so one gamma draw per busy step suffices.
    The mean equals ``expected_m3``.
    """
    ev = np.broadcast_to(event_m3[:, None], expected_m3.shape)
    n = rng.poisson(expected_m3 / ev)
    out = np.zeros(expected_m3.shape)
    busy = n > 0
    out[busy] = rng.gamma(2.0 * n[busy], ev[busy] / 2.0)
    return out


def irrigation_m3(customers: Customers, step_start_s: np.ndarray, step_s: int) -> np.ndarray:
    """Volume (M, T) of timed irrigation: deterministic, stronger in summer, runs even when away."""
    hour = (step_start_s // HOUR_S) % 24
    running = (hour >= IRRIGATION_START_HOUR) & (hour < IRRIGATION_START_HOUR + IRRIGATION_HOURS)
    seasonal = 0.7 + 0.3 * season_phase(step_start_s)  # 0.4 in mid-January, 1.0 in mid-July
    on_day = customers.irrigation_days[:, weekday(step_start_s)]
    rate = customers.irrigation_m3h[:, None] * (seasonal * running)[None, :]
    return rate * on_day * (step_s / HOUR_S)


def customer_use_m3(
    rng: np.random.Generator, customers: Customers, step_start_s: np.ndarray, step_s: int
) -> np.ndarray:
    """True customer use (M, T) per step, before any fault."""
    expected = expected_use_m3(customers, step_start_s, step_s)
    return draw_use_m3(rng, expected, customers.event_m3) + irrigation_m3(customers, step_start_s, step_s)


def mean_daily_m3(customers: Customers) -> np.ndarray:
    """Approximate mean daily use per customer, irrigation included (for sizing leakage and bursts)."""
    irrigation = customers.irrigation_m3h * customers.irrigation_days.sum(axis=1) / 7.0 * IRRIGATION_HOURS
    return customers.daily_m3 + 0.7 * irrigation
