"""The readings laid on one time grid for the meters of METERS.csv: the
:class:`~collector.detection.series.SeriesBlock` the detectors take.

The grid's interval is the commonest step between a meter's reads (or, for jittered polls, the
median step taken to an interval dividing a day), its phase where the reads fall in the interval,
and each read stands for the first instant at or after it, as in the database's detection job.
"""

from __future__ import annotations

import numpy as np

from collector.detection.files.errors import CsvFormatError
from collector.detection.files.meters import Meters
from collector.detection.files.readings import Readings
from collector.detection.files.times import SPAN_MAX_DAYS, utc_text
from collector.detection.series import (
    LATE_READ_SHARE,
    SeriesBlock,
    UnreadMeters,
    in_place_over_the_grid,
    installed_on_the_grid,
)

#: The most intervals the grid may have: 15-minute reads over ``SPAN_MAX_DAYS`` (and a day to spare:
#: both ends' instants, a poll late past the last). The detectors keep
#: dozens of arrays of a meter's intervals (two meters' 288,000 one-minute intervals took 1.6 GB and
#: ten minutes), and the interval is the commonest step between a meter's reads, however few: reads
#: a second apart and one three years on made a grid of 95 million intervals (an allocation of
#: 4 GiB). Hourly, 15-minute and daily reads over the longest span fit; finer ones over a shorter one.
GRID_MAX_INTERVALS = (SPAN_MAX_DAYS + 1) * 96


def build_block(readings: Readings, meters: Meters) -> tuple[SeriesBlock, int]:
    """The block on the readings' own grid (interval: the commonest step between a meter's reads),
    and how many readings were dropped because their meter is not in the meters file.

    The block has the meters file's meters that have readings, in the file's order: the others
    (:func:`unread_meters`) would be rows of nothing but missing reads, and 20,000 listed meters
    of which 5 were read took 4.4 GB."""
    if readings.ts_s.size == 0:
        raise CsvFormatError("no readings")
    interval = _interval(readings)
    phase = _grid_phase(readings, interval)
    t0 = (int(readings.ts_s.min()) - phase) // interval * interval + phase
    # a read stands for the first instant at or after it, as in the database's job (interval
    # (instant - step, instant]), give or take LATE_READ_SHARE of the step (a gateway's poll a few
    # seconds late is still the hour's): another gateway's reads half an interval off the grid,
    # rounded to the nearest instant, fell half on one instant and half on the next, and one of
    # each pair was lost
    cols = np.ceil((readings.ts_s - t0 - interval * LATE_READ_SHARE) / interval).astype(np.int64)
    t = int(cols.max()) + 1
    _refuse_fine_grid(readings, interval, t)
    mapping = _meter_rows(readings, meters)
    read = np.flatnonzero(_read_in_file(mapping, meters))  # the block's rows, as the file has them
    compact = np.full(meters.meter_ids.size, -1, dtype=np.int64)
    compact[read] = np.arange(read.size)
    row_of = np.where(mapping >= 0, compact[mapping], -1)  # each read meter's row in the block
    known = (row_of >= 0)[readings.meter_index]
    # of the reads nearest one instant (a read-now at 10:20 beside the 10:00 one), the nearest stands
    # for it, the later of two as near: whatever the rows' order (the last in the file used to win)
    order, key, radix = _reads_in_order(readings, cols, t0, interval, t)
    _refuse_conflicting_duplicates(readings, order, key[1:] == key[:-1])
    keep = known[order]
    order, cell = order[keep], key[keep] // radix
    del key, keep
    first = order[np.r_[True, cell[1:] != cell[:-1]]] if order.size else order
    del order, cell
    rows, first_cols = row_of[readings.meter_index[first]], cols[first]
    volume = np.full((read.size, t), np.nan)
    volume[rows, first_cols] = readings.volume_m3[first]
    reverse = None
    if readings.reverse_m3 is not None and not np.isnan(readings.reverse_m3[known]).all():
        reverse = np.full((read.size, t), np.nan)
        reverse[rows, first_cols] = readings.reverse_m3[first]
    timestamps = (t0 + interval * np.arange(t, dtype=np.int64)).astype("datetime64[s]")
    installations = [
        (int(compact[row]), since, until) for row, since, until in meters.installations if compact[row] >= 0
    ]
    block = SeriesBlock(
        meters.meter_ids[read],
        meters.dma[read],
        meters.role[read],
        timestamps,
        volume,
        reverse_m3=reverse,
        bulk=None if meters.bulk is None else meters.bulk[read],
        installed=installed_on_the_grid(installations, read.size, timestamps),
    )
    return block, int((~known).sum())


def unread_meters(readings: Readings, meters: Meters, block: SeriesBlock) -> UnreadMeters:
    """The meters file's meters without a single reading (see :func:`build_block`), and whether
    each was in its place over some of the block's intervals."""
    unread = np.flatnonzero(~_read_in_file(_meter_rows(readings, meters), meters))
    in_place = in_place_over_the_grid(meters.installations, meters.meter_ids.size, block.timestamps)
    return UnreadMeters(meters.meter_ids[unread], meters.dma[unread], meters.role[unread], in_place[unread])


def _meter_rows(readings: Readings, meters: Meters) -> np.ndarray:
    """(readings.meter_names,) int: each read meter's row in the meters file (-1: not in it)."""
    row_of = {name: i for i, name in enumerate(meters.meter_ids.tolist())}
    return np.array([row_of.get(name, -1) for name in readings.meter_names.tolist()], dtype=np.int64)


def _read_in_file(mapping: np.ndarray, meters: Meters) -> np.ndarray:
    """(meters,) bool: which of the meters file's meters have a reading (``mapping``: _meter_rows)."""
    read = np.zeros(meters.meter_ids.size, dtype=bool)
    read[mapping[mapping >= 0]] = True
    return read


def _refuse_fine_grid(readings: Readings, interval: int, t: int) -> None:
    """Refuses, before anything of its size is made, a grid of more than :data:`GRID_MAX_INTERVALS`
    (a file whose reads come seconds apart over years): every meter is laid on it whole."""
    if t <= GRID_MAX_INTERVALS:
        return
    first, last = int(np.argmin(readings.ts_s)), int(np.argmax(readings.ts_s))
    days = GRID_MAX_INTERVALS * interval / 86_400
    raise CsvFormatError(
        f"readings come every {interval:,} s (the commonest step between a meter's reads) from "
        f"{utc_text(int(readings.ts_s[first]))} ({readings.meter_names[readings.meter_index[first]]}) to "
        f"{utc_text(int(readings.ts_s[last]))} ({readings.meter_names[readings.meter_index[last]]}): a grid of "
        f"{t:,} intervals, more than the {GRID_MAX_INTERVALS:,} detection lays out (at {interval:,} s, "
        f"{days:,.1f} days); leave out reads off the meters' schedule, correct or remove a reading dated far "
        "off, or split the file by time"
    )


def _reads_in_order(
    readings: Readings, cols: np.ndarray, t0: int, interval: int, t: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """The readings' order by meter, then grid column, then distance from the column's instant,
    the later of two as far first (``order``); each one's sort key in that order (``key``: two
    readings share one when of one meter at one time); and the key's ``radix``: ``key // radix`` is
    the reading's cell, meter by column.

    One sort of one int64 key: ``np.lexsort`` of the four columns (the way before) kept the four,
    and its own copies of them, alive together: 1M meter-days peaked at 2.5 GB there. The key
    cannot overflow: ``t * interval`` is at most the span (``SPAN_MAX_DAYS``) and an interval,
    so ``meters * t * radix`` stays below 2⁶³ for fewer than 40 billion meters."""
    radix = 2 * (interval + 1)  # a read is less than an interval from its instant
    key = readings.meter_index.astype(np.int64)
    key *= t
    key += cols
    key *= radix
    offset = readings.ts_s - t0
    offset -= cols * interval
    key += 2 * np.abs(offset)
    key += offset < 0  # of two as far from the instant, the later first
    del offset
    order = np.argsort(key, kind="stable")
    return order, key[order], radix


def _refuse_conflicting_duplicates(readings: Readings, order: np.ndarray, same: np.ndarray) -> None:
    """Two rows of one meter at one time with different registers, forward or backward: which is the
    meter's cannot be told (the database keeps the first and records the other as a conflict); the
    same row twice is harmless. A backward register given in one row and empty in the other is a
    conflict too, as the database's ``IS DISTINCT FROM`` has it: the rows do not say whether the
    meter counted water going back. (Backward registers were not compared, and the rows' order
    chose between 0.000 and 40.000, one order inventing a reverse flow of 40,000 L/h.)
    ``order``: the rows sorted with each meter's rows of one time next to each other; ``same``:
    whether each row in that order is of the meter and time of the one before it (``order``'s second
    row first)."""
    registers = [("", readings.volume_m3[order])]
    if readings.reverse_m3 is not None:
        registers.append(("reverse_volume_m3 ", readings.reverse_m3[order]))
    for column, values in registers:
        differ = ~((values[1:] == values[:-1]) | (np.isnan(values[1:]) & np.isnan(values[:-1])))
        clash = np.flatnonzero(same & differ)
        if clash.size:
            i = order[clash[0]]
            at = np.datetime64(int(readings.ts_s[i]), "s")
            raise CsvFormatError(
                f"meter {readings.meter_names[readings.meter_index[i]]} has two readings at {at}Z: {column}"
                f"{_register_text(values[clash[0]])} and {_register_text(values[clash[0] + 1])} m³"
            )


def _register_text(value: float) -> str:
    return "empty" if np.isnan(value) else repr(float(value))


def _sample(readings: Readings) -> tuple[np.ndarray, np.ndarray]:
    """(meter index, ts) of a spread of meters (every k-th by name, whatever the rows' order)
    holding about 200,000 reads."""
    every = max(1, readings.ts_s.size // 200_000)
    sample = readings.meter_index % every == 0
    return readings.meter_index[sample], readings.ts_s[sample]


def _interval(readings: Readings) -> int:
    """The step between a meter's consecutive reads: the commonest one, when most steps are it (a
    head-end's exports); else (polls a few seconds to minutes off their grid, each step a different
    number of seconds) the median step, taken to the nearest interval that divides a day. The
    commonest of jittered steps was any one of hundreds: 3,543 s failed on "must divide a day",
    and 3,660 s laid an hourly fleet on a grid that is not hours."""
    idx, ts = _sample(readings)
    order = np.lexsort((ts, idx))
    same = idx[order][1:] == idx[order][:-1]
    steps = np.diff(ts[order])[same]
    steps = steps[steps > 0]
    if steps.size == 0:
        return 3600
    values, counts = np.unique(steps, return_counts=True)
    if counts.max() * 2 >= steps.size:
        step = int(values[np.argmax(counts)])
    else:
        median = float(np.median(steps))
        step = min(_DAY_DIVISORS, key=lambda d: abs(d - median))
        if abs(step - median) > 0.1 * step:
            raise CsvFormatError(
                f"readings come about every {median:.0f} s, which is no interval dividing a day "
                "(detection needs one: 60, 300, 900, 3600 s, ...)"
            )
    if _SECONDS_PER_DAY % step:
        raise CsvFormatError(
            f"readings come every {step} s, which does not divide a day "
            "(detection needs an interval that does: 60, 300, 900, 3600 s, ...)"
        )
    return step


_SECONDS_PER_DAY = 86_400


_DAY_DIVISORS = [d for d in range(1, _SECONDS_PER_DAY + 1) if _SECONDS_PER_DAY % d == 0]


def _grid_phase(readings: Readings, interval: int) -> int:
    """Where in each interval (seconds after a multiple of it) the grid's instants fall.

    Where most reads fall on one second of the interval (a head-end's exports, a gateway polling on
    the hour): there, over the whole file (a sample of its first rows made the grid, and so the
    alerts, depend on the rows' order). Where reads scatter around one time of the interval (polls
    jittered by seconds to minutes, each meter's at its own place): at the scatter's late end, so
    that each read stands for the first instant at or after it and none falls on the far side of
    an instant from its neighbours. Reads scattered over the whole interval: the commonest second.
    """
    phases = readings.ts_s % interval
    counts = np.bincount(phases.astype(np.int64))
    commonest = int(counts.argmax())
    if counts[commonest] * 2 >= phases.size:
        return commonest
    _, ts = _sample(readings)
    angle = (ts % interval) * (2 * np.pi / interval)
    centre = float(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) * interval / (2 * np.pi)
    deviation = (ts - centre + interval / 2) % interval - interval / 2
    earliest, latest = np.quantile(deviation, [0.001, 0.999])
    if latest - earliest > interval / 2:
        return commonest
    return round(centre + float(latest)) % interval
