"""The block of register series every detector works on: meters × intervals, on one regular time grid.

The database layer fetches a block in bulk (one query, readings pivoted onto the grid) and hands it to
:func:`collector.detection.detect`; the offline command builds the same block from CSV files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

CUSTOMER = "customer"
INLET = "inlet"
#: A read stands for the first grid instant at or after it, give or take this share of the interval:
#: each interval is (instant - step + late, instant + late]. A poll made on the hour lands a few
#: milliseconds to seconds after it; without the allowance, such polls fell on both sides of the
#: hour, and every other interval of some meters was a gap. Both the database's job and the
#: offline command place reads this way.
LATE_READ_SHARE = 1 / 20


@dataclass(frozen=True)
class SeriesBlock:
    """Cumulative registers of M meters at T regularly spaced instants.

    ``volume_m3[m, j]`` is meter m's register at ``timestamps[j]`` (NaN: no read). ``alarms`` maps a
    meter alarm name (``leak``, ``burst``, ``reverse_flow``, ``tamper``, …) to an (M, T) boolean array
    of the alarm bits the meters reported with each reading; it may be empty. ``reverse_m3``, where
    given, is each meter's backward-volume register at the same instants (EN 13757-3 "volume,
    backward"; reading field ``reverse_volume_m3``): NaN where no read or the meter keeps none.
    ``bulk``, where given, marks the meters that supply many premises behind one meter (a block of
    flats, an estate; meterization says which): never idle, continuous flow is their ordinary use.
    ``installed``, where given, says whether each meter was in its place over the interval ending at
    each instant (meterization's installations and removals): where it was not and has no read, no
    water went through it, which is not a gap to estimate. A meter exchanged for another stops
    being read; estimated on, its household's use would be counted twice in its DMA's balance,
    beside its replacement's reads.
    """

    meter_ids: np.ndarray  # (M,) str
    dma: np.ndarray  # (M,) str
    role: np.ndarray  # (M,) str: "customer" | "inlet"
    timestamps: np.ndarray  # (T,) datetime64[s], UTC, regular spacing
    volume_m3: np.ndarray  # (M, T) float64
    alarms: Mapping[str, np.ndarray] = field(default_factory=dict)
    reverse_m3: np.ndarray | None = None  # (M, T) float64, NaN where unknown; None: no meter keeps one
    bulk: np.ndarray | None = None  # (M,) bool; None: no meter is a bulk meter
    installed: np.ndarray | None = None  # (M, T) bool; None: every meter in its place throughout
    #: Seconds the utility's standard time is ahead of UTC: days (a household's night, a shop's
    #: Sunday) run from local midnight. The instants stay UTC.
    day_offset_s: int = 0

    def __post_init__(self) -> None:
        m = self.meter_ids.shape[0]
        if self.dma.shape != (m,) or self.role.shape != (m,):
            raise ValueError("meter_ids, dma and role must have one entry per meter")
        if self.timestamps.ndim != 1 or self.timestamps.dtype != np.dtype("datetime64[s]"):
            raise ValueError("timestamps must be a 1-D datetime64[s] array")
        t = self.timestamps.shape[0]
        if self.volume_m3.shape != (m, t):
            raise ValueError(f"volume_m3 has shape {self.volume_m3.shape}, expected {(m, t)}")
        if t >= 2:
            steps = np.diff(self.timestamps.astype(np.int64))
            if steps[0] <= 0 or np.any(steps != steps[0]):
                raise ValueError("timestamps must be increasing and regularly spaced")
        bad_roles = set(np.unique(self.role).tolist()) - {CUSTOMER, INLET}
        if bad_roles:
            raise ValueError(f"unknown meter roles: {sorted(bad_roles)}")
        for name, bits in self.alarms.items():
            if bits.shape != (m, t):
                raise ValueError(f"alarm {name!r} has shape {bits.shape}, expected {(m, t)}")
        if self.reverse_m3 is not None and self.reverse_m3.shape != (m, t):
            raise ValueError(f"reverse_m3 has shape {self.reverse_m3.shape}, expected {(m, t)}")
        if self.bulk is not None and (self.bulk.shape != (m,) or self.bulk.dtype != np.bool_):
            raise ValueError(
                f"bulk must be a boolean array of one entry per meter, not {self.bulk.dtype} {self.bulk.shape}"
            )
        if self.installed is not None and (self.installed.shape != (m, t) or self.installed.dtype != np.bool_):
            raise ValueError(
                f"installed must be a boolean array of shape {(m, t)}, "
                f"not {self.installed.dtype} {self.installed.shape}"
            )

    @property
    def n_meters(self) -> int:
        return int(self.meter_ids.shape[0])

    @property
    def n_intervals(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def interval_s(self) -> int:
        """Seconds between consecutive instants (3600 for a single instant, by convention)."""
        if self.timestamps.shape[0] < 2:
            return 3600
        return int(self.timestamps[1].astype(np.int64) - self.timestamps[0].astype(np.int64))

    def take(self, rows: np.ndarray) -> SeriesBlock:
        """The block restricted to the meters at ``rows`` (indices or a boolean mask)."""
        return SeriesBlock(
            meter_ids=self.meter_ids[rows],
            dma=self.dma[rows],
            role=self.role[rows],
            timestamps=self.timestamps,
            volume_m3=self.volume_m3[rows],
            alarms={name: bits[rows] for name, bits in self.alarms.items()},
            reverse_m3=None if self.reverse_m3 is None else self.reverse_m3[rows],
            bulk=None if self.bulk is None else self.bulk[rows],
            installed=None if self.installed is None else self.installed[rows],
            day_offset_s=self.day_offset_s,
        )

    @property
    def is_bulk(self) -> np.ndarray:
        """(M,) bool: which meters are bulk meters (all False without ``bulk``)."""
        return np.zeros(self.n_meters, dtype=bool) if self.bulk is None else self.bulk

    def not_installed(self) -> np.ndarray:
        """(M, T) bool: where meterization says the meter was not in its place (all False without
        ``installed``)."""
        if self.installed is None:
            return np.zeros(self.volume_m3.shape, dtype=bool)
        return ~self.installed

    def until(self, t: datetime) -> SeriesBlock:
        """The block as it was known at ``t``: instants after ``t`` dropped (for causality checks)."""
        return self.instants(self.timestamps <= np.datetime64(to_naive_utc(t), "s"))

    def since(self, t: datetime) -> SeriesBlock:
        """The block from ``t`` on: instants before ``t`` dropped (a run's sliding window)."""
        return self.instants(self.timestamps >= np.datetime64(to_naive_utc(t), "s"))

    def instants(self, keep: np.ndarray) -> SeriesBlock:
        """The block at the instants ``keep`` selects (a boolean mask or indices of its columns)."""
        return SeriesBlock(
            meter_ids=self.meter_ids,
            dma=self.dma,
            role=self.role,
            timestamps=self.timestamps[keep],
            volume_m3=self.volume_m3[:, keep],
            alarms={name: bits[:, keep] for name, bits in self.alarms.items()},
            reverse_m3=None if self.reverse_m3 is None else self.reverse_m3[:, keep],
            bulk=self.bulk,
            installed=None if self.installed is None else self.installed[:, keep],
            day_offset_s=self.day_offset_s,
        )

    def time(self, j: int) -> datetime:
        """Instant ``j`` as an aware UTC datetime."""
        return to_datetime(self.timestamps[j])


def installed_on_the_grid(
    installations: Sequence[tuple[int, datetime | None, datetime | None]], n_meters: int, timestamps: np.ndarray
) -> np.ndarray | None:
    """(meters, instants) bool, for :attr:`SeriesBlock.installed`: whether each meter was in its
    place over some of the interval (instant - step, instant], from meterization's installations
    (row, installed or None: since ever, removed or None: still in place). A meter with none is
    taken as in its place throughout: meters are read that the utility's records do not list yet.
    None when no meter has any."""
    if not installations:
        return None
    count = timestamps.shape[0]
    meter, first, last = _installation_columns(installations, timestamps)
    # +1 from each installation's first interval, -1 after its last: in place where the count is above 0
    edges = np.zeros((n_meters, count + 1), dtype=np.int32)
    np.add.at(edges, (meter, first), 1)
    np.add.at(edges, (meter, last), -1)
    installed = np.cumsum(edges[:, :count], axis=1) > 0
    listed = np.zeros(n_meters, dtype=bool)
    listed[meter] = True
    installed[~listed] = True
    return installed


def in_place_over_the_grid(
    installations: Sequence[tuple[int, datetime | None, datetime | None]], n_meters: int, timestamps: np.ndarray
) -> np.ndarray:
    """(meters,) bool: whether each meter was in its place over some of the grid's intervals, as
    :func:`installed_on_the_grid` has it (a meter without installations: yes), without the
    (meters, instants) array."""
    in_place = np.ones(n_meters, dtype=bool)
    if installations:
        meter, first, last = _installation_columns(installations, timestamps)
        in_place[meter] = False
        np.logical_or.at(in_place, meter, first < last)
    return in_place


def _installation_columns(
    installations: Sequence[tuple[int, datetime | None, datetime | None]], timestamps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first column, column after the last) of each installation's intervals on the grid."""
    count = timestamps.shape[0]
    step = timestamps[1] - timestamps[0] if count > 1 else np.timedelta64(3600, "s")
    meter = np.array([row for row, _, _ in installations], dtype=np.int64)
    since = np.array([_naive_us(a) for _, a, _ in installations])
    until = np.array([_naive_us(b) for _, _, b in installations])
    # an installation's first interval is the first ending after it was fitted; ``last`` is the one
    # after the interval its removal falls in
    first = np.where(np.isnat(since), 0, np.searchsorted(timestamps, since, side="right"))
    last = np.where(np.isnat(until), count, np.searchsorted(timestamps, until + step))
    return meter, first, last


@dataclass(frozen=True)
class UnreadMeters:
    """Meters listed (METERS.csv) without a single reading in the block: not laid on its grid (20,000
    listed and 5 read made rows for all 20,000, 4.4 GB), but their DMAs' balance is not whole
    without them. ``in_place``: in their place over some of the block (meterization); a meter
    exchanged before it began passed no water in it, and is missing nothing."""

    meter_ids: np.ndarray  # (U,) str
    dma: np.ndarray  # (U,) str
    role: np.ndarray  # (U,) str: "customer" | "inlet"
    in_place: np.ndarray  # (U,) bool


def _naive_us(t: datetime | None) -> np.datetime64:
    return np.datetime64("NaT", "us") if t is None else np.datetime64(to_naive_utc(t), "us")


def to_naive_utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("naive datetime: times are UTC and timezone-aware")
    return t.astimezone(UTC).replace(tzinfo=None)


def to_datetime(t: np.datetime64) -> datetime:
    seconds = int(t.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=UTC)
