"""A meter's daily consumption as an inline SVG bar chart, drawn on the server: no script, no library.

Each day is one bar, its height the day's volume over the highest day's; a day whose intervals
include a reading that is not actual (estimated, substituted, edited) is marked (its own colour,
and said in its title and the table beside the chart), as is a day with an interval of unknown
consumption (not in the day's volume) and a day no interval closed (no bar: no data, not zero).

The utility's day still running (``today``, in the utility's zone) is the water so far: its bar is
drawn paler and it is said "so far" in its title, the table and the chart's heading. Before, today's
few hours stood at the end of the chart as a day like the others, a day of almost no water.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

WIDTH = 600  # the SVG's viewBox; the browser scales it to the page (its labels are the page's text)
HEIGHT = 120
PLOT_TOP = 2  # room above the highest bar
PLOT_BOTTOM = HEIGHT  # the baseline
MIN_BAR = 1.0
GAP = 0.2  # of a slot, between two bars


@dataclass(frozen=True)
class Day:
    """A day of the chart and its table row."""

    date: date
    volume_m3: Decimal | None  # None: no interval closed that day
    intervals: int = 0
    not_actual: int = 0
    unknown: int = 0
    qualities: Mapping[str, int] = field(default_factory=dict)  # of the counted intervals, by closing read's quality
    card_m3: Decimal | None = None  # of the volume, a job card's water (billing's: repository.daily_consumption)
    partial: bool = False  # the utility's day still running: its water so far
    x: float = 0.0
    y: float = PLOT_BOTTOM
    width: float = 0.0
    height: float = 0.0

    @property
    def mark(self) -> str:
        """The bar's class: ``no-data``, ``unknown`` (some interval's consumption not known),
        ``not-actual`` (estimated, substituted or edited reads), or ``actual``."""
        if self.volume_m3 is None:
            return "no-data"
        if self.unknown:
            return "unknown"
        return "not-actual" if self.not_actual else "actual"

    @property
    def said(self) -> str:
        """What is marked about the day, in words ("" for a day of actual reads only)."""
        if self.volume_m3 is None:
            return "no reads"
        parts = self._not_actual_said()
        if self.unknown:
            parts.append(f"{self.unknown} unknown (not counted)")
        said = f"{', '.join(parts)} of {self.intervals} intervals" if parts else ""
        if self.card_m3 is None:
            return said
        # a day of a job card's water alone was "0 actual", though it shows water
        card = f"{self.card_m3} m³ from a job card"
        if not said and self.intervals:
            said = f"{self.intervals} actual"
        return f"{said}; {card}" if said else card

    def _not_actual_said(self) -> list[str]:
        """The day's intervals closed by a read other than actual, as many as the day counts
        (``not_actual``), by their read's quality where the day's reads tell it: ``["1 estimated"]``.

        ``qualities`` counts the reads, by their quality now, that closed the intervals the day counts
        (repository.daily_consumption: not those whose interval the day leaves out, across an
        installation boundary of a meter fitted again, which billing bills to no account), so they add
        up to ``not_actual``. They differ only where a read's quality changed after the day was stored:
        more, and all of one quality, the counted ones are of that quality; more, of several, the count
        is said with the qualities it is among ("2 not actual (edited or estimated)"); fewer, the count
        alone. Before, the days' query counted every read that closed an interval that day: a day of
        actual intervals only, drawn as one, said "1 estimated"."""
        if not self.not_actual:
            return []
        read = {quality: n for quality, n in self.qualities.items() if n > 0}
        if sum(read.values()) == self.not_actual:
            return [f"{n} {quality}" for quality, n in sorted(read.items())]
        if sum(read.values()) < self.not_actual:  # the reads were changed since consumption was stored
            return [f"{self.not_actual} not actual"]
        if len(read) == 1:
            return [f"{self.not_actual} {next(iter(read))}"]
        return [f"{self.not_actual} not actual ({' or '.join(sorted(read))})"]


@dataclass(frozen=True)
class Chart:
    days: list[Day]
    highest_m3: Decimal  # 0 when no day used water
    total_m3: Decimal
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def marked(self) -> int:
        """Days not of actual reads only (estimated, edited, unknown or no reads)."""
        return sum(1 for day in self.days if day.mark != "actual")


def chart(rows: Sequence[Mapping[str, Any]], today: date | None = None) -> Chart | None:
    """The chart of ``rows`` (server.meters.repository.daily_consumption, oldest first); None for none.
    ``today``: the utility's day now, which is not over (a day at or after it is its water so far)."""
    if not rows:
        return None
    volumes = [row["consumption_m3"] for row in rows if row["consumption_m3"] is not None]
    highest = max(volumes, default=Decimal(0))
    slot = WIDTH / len(rows)
    plot = PLOT_BOTTOM - PLOT_TOP
    days = []
    for i, row in enumerate(rows):
        volume: Decimal | None = row["consumption_m3"]
        # geometry only: the figures shown are the stored Decimals. A day with reads is at least
        # MIN_BAR high, so a day of no water (or an estimated one of none) is still a bar to point at.
        height = float(volume / highest) * plot if volume is not None and highest > 0 else 0.0
        height = max(height, MIN_BAR) if volume is not None else 0.0
        days.append(
            Day(
                date=row["date"],
                volume_m3=volume,
                intervals=row["intervals"] or 0,
                not_actual=row["not_actual"] or 0,
                unknown=row["unknown"] or 0,
                qualities=row["qualities"] or {},
                card_m3=row.get("card_m3"),
                partial=today is not None and row["date"] >= today,
                x=round(i * slot + slot * GAP / 2, 2),
                y=round(PLOT_BOTTOM - height, 2),
                width=round(slot * (1 - GAP), 2),
                height=round(height, 2),
            )
        )
    return Chart(days=days, highest_m3=highest, total_m3=sum(volumes, Decimal(0)))
