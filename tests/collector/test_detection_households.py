"""Tiny labelled fleets built by hand for the detection tests, and tests that pin the builders.

Use per interval is in litres; a register counts whole litres (``floor`` of the running total), as a
1-litre register does. Behaviour that looks like a fault but is not (the distractors): a household
away on holiday (no use at all), irrigation on fixed mornings, a business closed on Sundays, a heavy
household that uses water nearly every hour of the day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from collector.detection.series import SeriesBlock

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)

# expected events per hour of the day for a two-person household: nights nearly silent
_HOURLY_EVENTS = np.array(
    [
        0.04,
        0.02,
        0.01,
        0.01,
        0.02,
        0.2,
        1.2,
        1.8,
        1.2,
        0.7,
        0.5,
        0.5,
        0.6,
        0.5,
        0.4,
        0.4,
        0.5,
        0.9,
        1.3,
        1.4,
        1.2,
        0.9,
        0.6,
        0.2,
    ]
)


def n_intervals(days: int) -> int:
    return days * 24 + 1  # reads at 00:00 of the first day … 00:00 after the last


def household(rng: np.random.Generator, days: int, scale: float = 1.0) -> np.ndarray:
    """Litres per interval (T-1,): Poisson use events of about 12 litres each."""
    hours = np.arange(days * 24) % 24
    events = rng.poisson(_HOURLY_EVENTS[hours] * scale)
    return np.array([rng.gamma(2.0, 6.0, k).sum() for k in events])


def heavy_household(rng: np.random.Generator, days: int) -> np.ndarray:
    return household(rng, days, scale=4.0)


def flats(rng: np.random.Generator, days: int, households: int) -> np.ndarray:
    """A block of flats: ``households`` independent households on one meter."""
    return np.sum([household(rng, days) for _ in range(households)], axis=0)


def business(rng: np.random.Generator, days: int) -> np.ndarray:
    """Open 07–19 on weekdays and Saturdays, every hour busy; closed (no use) on Sundays."""
    hours = np.arange(days * 24)
    open_hours = ((hours % 24) >= 7) & ((hours % 24) < 19) & ((hours // 24) % 7 != 6)
    return np.where(open_hours, rng.gamma(4.0, 15.0, hours.size), 0.0)


def night_owl_household(rng: np.random.Generator, days: int) -> np.ndarray:
    """A heavy household that also draws a few litres in about a third of its night hours
    (00:00–06:00): busy every hour of the day, rarely idle at night."""
    use = heavy_household(rng, days)
    hours = np.arange(days * 24)
    night = (hours % 24) < 6
    return use + np.where(night & (rng.random(hours.size) < 0.3), rng.gamma(2.0, 3.0, hours.size), 0.0)


def steady_shop(rng: np.random.Generator, days: int) -> np.ndarray:
    """A shop open 07–19 on weekdays and Saturdays, closed on Sundays, whose every open hour draws
    its own usual amount (30–150 L, drawn once per hour of the day) give or take 5%."""
    hours = np.arange(days * 24)
    usual = rng.uniform(30.0, 150.0, 24)
    open_hours = ((hours % 24) >= 7) & ((hours % 24) < 19) & ((hours // 24) % 7 != 6)
    return np.where(open_hours, usual[hours % 24] * rng.uniform(0.95, 1.05, hours.size), 0.0)


def irrigating_household(rng: np.random.Generator, days: int, litres: float = 450.0) -> np.ndarray:
    """A household whose garden system runs 05:00–06:00 on Mondays and Thursdays."""
    use = household(rng, days)
    hours = np.arange(days * 24)
    on = ((hours % 24) == 5) & np.isin((hours // 24) % 7, [0, 3])
    return use + on * litres


def away(use: np.ndarray, first_day: int, last_day: int) -> np.ndarray:
    """No use at all from ``first_day`` 00:00 to ``last_day`` 00:00 (a holiday)."""
    out = use.copy()
    out[first_day * 24 : last_day * 24] = 0.0
    return out


def add_flow(use: np.ndarray, start_h: float, l_h: float, end_h: float | None = None) -> np.ndarray:
    """Add a constant flow from hour ``start_h`` (fractional) to ``end_h``: a leak, burst, main burst."""
    edges = np.arange(use.size + 1, dtype=np.float64)
    hi = np.minimum(edges[1:], end_h if end_h is not None else np.inf)
    overlap = np.clip(hi - np.maximum(edges[:-1], start_h), 0.0, 1.0)
    return use + l_h * overlap


def registers(uses: np.ndarray, initial_m3: float = 250.0) -> np.ndarray:
    """(M, T) cumulative 1-litre registers from (M, T-1) litres per interval."""
    litres = np.floor(np.cumsum(uses, axis=1) + 1e-9)
    return np.concatenate([np.zeros((uses.shape[0], 1)), litres], axis=1) / 1000.0 + initial_m3


def block_of(
    uses: dict[str, np.ndarray],
    *,
    dma: str = "D1",
    inlet_extra_l: np.ndarray | None = None,
    volume: np.ndarray | None = None,
) -> SeriesBlock:
    """Customers ``uses`` (litres per interval) in one DMA, plus its inlet when ``inlet_extra_l``
    (what the mains lose per interval) is given. ``volume`` overrides the customers' registers."""
    ids = list(uses)
    stacked = np.stack([uses[i] for i in ids])
    regs = registers(stacked) if volume is None else volume
    roles = ["customer"] * len(ids)
    if inlet_extra_l is not None:
        inflow = stacked.sum(axis=0) + inlet_extra_l
        regs = np.vstack([regs, registers(inflow[None, :], 5000.0)])
        ids.append(f"{dma}-INLET")
        roles.append("inlet")
    t = regs.shape[1]
    timestamps = np.datetime64(START.replace(tzinfo=None), "s") + np.arange(t) * np.timedelta64(3600, "s")
    return SeriesBlock(
        meter_ids=np.array(ids),
        dma=np.full(len(ids), dma),
        role=np.array(roles),
        timestamps=timestamps,
        volume_m3=regs,
    )


def at_hour(h: float) -> datetime:
    return START + h * HOUR


def test_households_rest_at_night_and_businesses_on_sundays() -> None:
    rng = np.random.default_rng(1)
    use = household(rng, 28)
    night = use.reshape(28, 24)[:, 1:5]
    assert np.mean(night == 0) > 0.9
    shop = business(rng, 14).reshape(14, 24)
    assert np.all(shop[6] == 0) and np.all(shop[13] == 0)  # Sundays
    assert np.all(shop[0, 7:19] > 0)


def test_registers_count_whole_litres_and_add_flow_splits_partial_hours() -> None:
    use = add_flow(np.zeros(4), 1.5, 10.0, 3.0)
    assert use.tolist() == [0.0, 5.0, 10.0, 0.0]
    regs = registers(np.array([[0.6, 0.6, 0.6]]), initial_m3=0.0)
    assert regs.tolist() == [[0.0, 0.0, 0.001, 0.001]]
