"""Readings and meters from CSV files into a :class:`SeriesBlock`, fast; alerts out as JSON.

``READINGS.csv`` has the columns ``meter_id,ts,volume_m3`` (any order, named in a header; ``ts`` ISO
8601 in UTC, from 2000-01-01 as the collector takes them, all within ``SPAN_MAX_DAYS``, written as a
stored time is (``aquami.stored_times.shape_problem``), any fraction of a second cut; ``volume_m3``
the cumulative register, m³ from 0 to 10¹² as the reads contract has it), one row per reading, rows
in any order; and optionally ``reverse_volume_m3``, the meter's backward register (empty for meters
without one), and ``quality`` (``actual``, ``estimated``, ``substituted``, ``edited``, as the API gives readings; empty
is ``actual``): rows ``estimated`` are left out, as the detection job leaves VEE's estimates out (a
gap of missing reads is the detectors' to spread, and is no evidence of flow).
``METERS.csv`` has ``meter_id,dma,role``, and optionally ``bulk`` (``true`` for a meter that
supplies many premises, a block of flats; ``false`` or empty otherwise) and ``installed_at``,
``removed_at`` (ISO 8601 with a UTC offset, within the years 1900 to 9998 and on one line, as
``register-meters`` stores them: ``aquami.stored_times``; empty: before the readings, still in
place): where a meter was not in place and has no read, it passed no water, which is no missing
read to estimate in its DMA's balance (a meter exchanged for another appears as two rows, the old
one removed when the new one was installed).

Millions of rows are parsed without a Python loop per row: the file is read as bytes, 32 MiB of
whole lines at a time (read whole, its bytes and the offsets of its fields took 3.8 bytes of
memory per byte of the file, all alive together), fields are cut at the commas and newlines with
NumPy, meter ids are compared as fixed-width byte strings, timestamps are read digit by digit at
fixed positions, and decimals as integer mantissas divided by a power of ten (which gives the same
double as ``float()``). Anything unusual (exponents, mixed timestamp layouts) falls back to a
slower, still whole-array path; a quoted field anywhere, to the csv module.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from aquami import atomic_write
from aquami.contracts.reads import VOLUME_MAX_M3
from aquami.stored_times import LINE_BREAKS, StoredTimeError, shape_problem, stored_time
from collector.batch_parser import TS_MIN
from collector.detection.alerts import Alert
from collector.detection.series import (
    CUSTOMER,
    INLET,
    LATE_READ_SHARE,
    SeriesBlock,
    UnreadMeters,
    in_place_over_the_grid,
    installed_on_the_grid,
)

#: ``progress(done, total)``: bytes of the file parsed (its rows are not counted before)
RowProgress = Callable[[int, int], None]

_BLOCK_ROWS = 1_000_000
_ZERO = ord("0")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The earliest reading time taken, the collector's: a meter whose clock reset reads 2000-01-01 (or
#: 1970), and one such row stretched the grid every meter is laid on from 21 days to 26 years.
_TS_MIN_S = int(datetime.fromisoformat(TS_MIN).replace(tzinfo=UTC).timestamp())
#: The longest span of time a file's readings may cover: the grid is meters × intervals over the
#: whole span, so a reading dated years off (a clock set wrong, but after ``TS_MIN``) ran the command
#: out of memory. Three years of reads is more than detection needs; a longer file can be split.
SPAN_MAX_DAYS = 3 * 366
#: The most intervals the grid may have: 15-minute reads over ``SPAN_MAX_DAYS`` (and a day to spare:
#: both ends' instants, a poll late past the last). The detectors keep
#: dozens of arrays of a meter's intervals (two meters' 288,000 one-minute intervals took 1.6 GB and
#: ten minutes), and the interval is the commonest step between a meter's reads, however few: reads
#: a second apart and one three years on made a grid of 95 million intervals (an allocation of
#: 4 GiB). Hourly, 15-minute and daily reads over the longest span fit; finer ones over a shorter one.
GRID_MAX_INTERVALS = (SPAN_MAX_DAYS + 1) * 96


class CsvFormatError(ValueError):
    """The file is not what the command expects; the message says where."""


@dataclass(frozen=True)
class Readings:
    meter_names: np.ndarray  # (U,) str, the distinct meter ids
    meter_index: np.ndarray  # (N,) int index into meter_names
    ts_s: np.ndarray  # (N,) int64 epoch seconds
    volume_m3: np.ndarray  # (N,) float64
    reverse_m3: np.ndarray | None = None  # (N,) float64, NaN where empty; None: no such column


REQUIRED_COLUMNS = ("meter_id", "ts", "volume_m3")
OPTIONAL_COLUMNS = ("reverse_volume_m3", "quality")
QUALITIES = ("actual", "estimated", "substituted", "edited")


def read_readings_csv(path: Path, progress: RowProgress | None = None) -> Readings:
    try:
        return _read_readings_csv(path, progress)
    except UnicodeDecodeError as error:  # an Excel export in the machine's code page
        raise CsvFormatError(f"{path}: not UTF-8 ({error.reason}): save the file as UTF-8") from None


def _read_readings_csv(path: Path, progress: RowProgress | None) -> Readings:
    total = path.stat().st_size
    chunks = _line_chunks(path)
    data = next(chunks, None)
    if data is None:
        raise CsvFormatError(f"{path}: empty file")
    newlines = np.flatnonzero(data == ord("\n"))
    # by the csv module: a header written fully quoted ("meter_id","ts",..., as R's write.csv and
    # pandas' QUOTE_ALL write it) was refused; its quotes send the rows to the slow path below
    try:
        header = next(csv.reader([bytes(data[: newlines[0]]).decode("utf-8-sig").strip()]), [])
    except csv.Error as error:  # a carriage return inside it, a NUL
        raise CsvFormatError(f"{path}: row 1, the header: {error}") from None
    names = [h.strip() for h in header]
    given = set(names)
    if len(given) != len(names) or not set(REQUIRED_COLUMNS) <= given <= {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS}:
        raise CsvFormatError(
            f"{path}: header must be the columns {','.join(REQUIRED_COLUMNS)} (and optionally "
            f"{','.join(OPTIONAL_COLUMNS)}), not {','.join(names)}"
        )
    parts = _Parts()
    bounds = newlines  # the first piece's rows begin after the header
    done = 0
    try:
        while data is not None:
            if np.any(data == ord('"')):
                return _read_slow(path, names)
            parts.add(_parse_rows(data, bounds, names, path, parts.rows))
            done += data.size
            if progress is not None:
                progress(done, total)
            data = next(chunks, None)
            if data is not None:
                bounds = np.r_[-1, np.flatnonzero(data == ord("\n"))]
    except CsvFormatError:
        # a quoted field anywhere sends the whole file to the csv module, as it did when the file
        # was read whole: the rows before it may only look wrong to the fast path
        if any(np.any(rest == ord('"')) for rest in chunks):
            return _read_slow(path, names)
        raise
    del data, bounds, newlines
    ts, volume = parts.joined("ts"), parts.joined("volume")
    _check_registers(volume, "volume_m3", path)
    reverse = None
    if "reverse_volume_m3" in names:
        reverse = parts.joined("reverse")
        filled = np.flatnonzero(parts.joined("reverse_given"))  # empty: none
        _check_registers(reverse[filled], "reverse_volume_m3", path, rows=filled)
        del filled
    _refuse_long_span(ts, path)
    keys = parts.joined("keys")
    estimated = parts.joined("estimated") if "quality" in names else None
    if estimated is not None and estimated.any():
        measured = ~estimated
        keys, ts, volume = keys[measured], ts[measured], volume[measured]
        reverse = reverse[measured] if reverse is not None else None
    meter_names, meter_index = _factorize(keys)
    return Readings(np.char.decode(meter_names, "utf-8").astype(str), meter_index, ts, volume, reverse)


#: READINGS.csv is read and parsed this many bytes at a time (whole lines): read whole, a file's
#: bytes, its fields' offsets (five int64 per row) and the comparisons over it were all alive at
#: once, and 1M meter-days (884 MB of CSV) peaked at 3.4 GB, 3.8 bytes per byte of the file.
_CHUNK_BYTES = 1 << 25


def _line_chunks(path: Path) -> Iterator[np.ndarray]:
    """The file's bytes in pieces of about :data:`_CHUNK_BYTES`, each of whole lines ending in a
    newline (one is added after the last line if the file has none)."""
    with path.open("rb") as f:
        tail = b""
        while block := f.read(_CHUNK_BYTES):
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # a line longer than a piece: it goes on
                tail += block
                continue
            yield np.frombuffer(tail + block[:cut], dtype=np.uint8)
            tail = block[cut:]
        if tail:
            yield np.frombuffer(tail + b"\n", dtype=np.uint8)


class _Parts:
    """The parsed columns of each piece of the file, joined at the end (see :func:`_parse_rows`)."""

    def __init__(self) -> None:
        self.rows = 0
        self.columns: dict[str, list[np.ndarray]] = {}

    def add(self, columns: dict[str, np.ndarray]) -> None:
        for name, values in columns.items():
            self.columns.setdefault(name, []).append(values)
        self.rows += columns["ts"].size

    def joined(self, name: str) -> np.ndarray:
        """One column, whole; its pieces are let go (meter ids of different widths take the widest)."""
        parts = self.columns.pop(name)
        whole = np.concatenate(parts)
        parts.clear()
        return whole


def _parse_rows(
    data: np.ndarray, bounds: np.ndarray, names: Sequence[str], path: Path, row0: int
) -> dict[str, np.ndarray]:
    """The rows of one piece of the file, without a Python loop per row: ``bounds`` the offsets of
    the newline before each row (-1 before the piece's first) and after the last; ``row0`` the rows
    before the piece, for the rows errors name."""
    starts = bounds[:-1] + 1
    ends = bounds[1:].copy()
    ends -= data[ends - 1] == ord("\r")
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    body = max(int(bounds[0]), 0)
    commas = np.flatnonzero(data[body:] == ord(",")) + body
    k = len(names) - 1  # commas per row
    if commas.size != k * starts.size:
        raise CsvFormatError(f"{path}: every row needs exactly {len(names)} fields")
    cuts = [commas[i::k] for i in range(k)]
    if np.any(cuts[0] < starts) or np.any(cuts[-1] >= ends):
        raise CsvFormatError(f"{path}: every row needs exactly {len(names)} fields")
    lefts, rights = [starts, *(c + 1 for c in cuts)], [*cuts, ends]
    span = {name: (lefts[i], rights[i]) for i, name in enumerate(names)}
    for name in REQUIRED_COLUMNS:
        empty = np.flatnonzero(span[name][1] <= span[name][0])
        if empty.size:
            raise CsvFormatError(f"{path}: row {row0 + int(empty[0]) + 2}: {name} is empty")
    n = starts.size
    out: dict[str, np.ndarray] = {}
    if "quality" in span:
        # a piece of blank lines alone has no field to look at
        out["estimated"] = _estimated(data, *span["quality"], path, row0) if n else np.zeros(0, dtype=bool)
    meter_keys = []
    ts = np.empty(n, dtype=np.int64)
    volume = np.empty(n, dtype=np.float64)
    reverse = np.empty(n, dtype=np.float64) if "reverse_volume_m3" in span else None
    id_width = int(np.max(span["meter_id"][1] - span["meter_id"][0], initial=1))
    for lo in range(0, n, _BLOCK_ROWS):
        hi = min(lo + _BLOCK_ROWS, n)
        meter_keys.append(_fixed(data, span["meter_id"][0][lo:hi], span["meter_id"][1][lo:hi], id_width))
        ts[lo:hi] = _parse_timestamps(data, span["ts"][0][lo:hi], span["ts"][1][lo:hi], path, row0 + lo)
        volume[lo:hi] = _decimal_column(data, span, "volume_m3", lo, hi, path, row0=row0)
        if reverse is not None:
            reverse[lo:hi] = _decimal_column(data, span, "reverse_volume_m3", lo, hi, path, optional=True, row0=row0)
    out["keys"] = np.concatenate(meter_keys).view(f"S{id_width}").ravel() if n else np.array([], dtype="S1")
    out["ts"], out["volume"] = ts, volume
    if reverse is not None:
        out["reverse"] = reverse
        out["reverse_given"] = span["reverse_volume_m3"][1] > span["reverse_volume_m3"][0]
    return out


def _check_registers(values: np.ndarray, column: str, path: Path, rows: np.ndarray | None = None) -> None:
    """Refuses the first value that is no register (``rows``: the values' rows, if not 0, 1, …):
    NaN, infinite, negative, or above the reads contract's :data:`VOLUME_MAX_M3` (the database's
    readings table takes none below 0 either). Taken in, a register of ``nan``
    would have read as a missing read, and ``-5`` or ``inf`` as water that flowed."""
    with np.errstate(invalid="ignore"):
        bad = ~((values >= 0) & (values <= VOLUME_MAX_M3))
    if bad.any():
        i = int(np.argmax(bad))
        row = int(rows[i]) if rows is not None else i
        raise CsvFormatError(f"{path}: row {row + 2}: {column} {_register_error(float(values[i]))}")


def _register_error(value: float) -> str:
    return f"{value!r} is no register: it must be a number of m³ from 0 to {VOLUME_MAX_M3:.0e}"


def _estimated(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, path: Path, row0: int = 0) -> np.ndarray:
    """(N,) bool: the rows whose ``quality`` is ``estimated``; any value but :data:`QUALITIES` or
    empty is refused with its row."""
    width = max(len(q) for q in QUALITIES)
    too_long = (ends - starts) > width
    text = _fixed(data, starts, np.minimum(ends, starts + width), width).view(f"S{width}").ravel()
    known = np.isin(text, [q.encode() for q in QUALITIES] + [b""]) & ~too_long
    if not known.all():
        row = int(np.argmin(known))
        value = bytes(data[starts[row] : ends[row]]).decode("utf-8", "replace")
        raise CsvFormatError(f"{path}: row {row0 + row + 2}: quality {value!r} is none of {', '.join(QUALITIES)}")
    return np.asarray(text == b"estimated")


def _fixed(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """(rows, width) uint8: each field left-aligned, zero-padded (rows copied from a strided view).

    A field within ``width`` bytes of the file's end (the last row's last column, shorter than the
    column's longest) is cut from a zero-padded copy of that tail alone: a window cannot start there
    (it was moved back, and a meter id "A" in the last column read as the bytes before it)."""
    near_end = starts > data.size - width
    if not near_end.any():
        chars: np.ndarray = sliding_window_view(data, width)[starts]
    else:
        chars = np.empty((starts.size, width), dtype=np.uint8)
        lo = int(starts[near_end].min())
        tail = np.concatenate([data[lo:], np.zeros(width, dtype=np.uint8)])
        chars[near_end] = sliding_window_view(tail, width)[starts[near_end] - lo]
        if not near_end.all():
            chars[~near_end] = sliding_window_view(data, width)[starts[~near_end]]
    chars *= np.arange(width) < (ends - starts)[:, None]
    return chars


def _factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, index of each key); fast when rows come grouped by meter, as they usually do."""
    if keys.size == 0:
        return keys, np.zeros(0, dtype=np.intp)
    heads = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    uniq, inverse = np.unique(keys[heads], return_inverse=True)
    run_lengths = np.diff(np.r_[heads, keys.size])
    return uniq, np.repeat(inverse, run_lengths)


class _NotADecimal(ValueError):
    def __init__(self, index: int, text: str) -> None:
        super().__init__(f"field {index}: {text!r} is not a decimal number")
        self.index, self.text = index, text


def _decimal_column(
    data: np.ndarray,
    span: dict[str, tuple[np.ndarray, np.ndarray]],
    column: str,
    lo: int,
    hi: int,
    path: Path,
    optional: bool = False,
    row0: int = 0,
) -> np.ndarray:
    """Rows ``lo:hi`` of a column of decimals (NaN for empty fields if ``optional``); a field that
    is no number is refused with its row (``row0``: the rows before ``data``'s first)."""
    starts, ends = span[column][0][lo:hi], span[column][1][lo:hi]
    try:
        return _parse_optional_decimals(data, starts, ends) if optional else _parse_decimals(data, starts, ends)
    except _NotADecimal as bad:
        raise CsvFormatError(
            f"{path}: row {row0 + lo + bad.index + 2}: {column} {bad.text!r} is not a decimal number"
        ) from None


def _parse_optional_decimals(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Like :func:`_parse_decimals`, NaN for empty fields."""
    out = np.full(starts.shape, np.nan)
    given = np.flatnonzero(ends > starts)
    if given.size:
        try:
            out[given] = _parse_decimals(data, starts[given], ends[given])
        except _NotADecimal as bad:
            raise _NotADecimal(int(given[bad.index]), bad.text) from None
    return out


def _parse_decimals(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The fields as doubles; raises :class:`_NotADecimal` with the first field that is no number."""
    width = int(np.max(ends - starts, initial=1))
    fast = _parse_fixed_point(data, starts, ends, width)
    if fast is not None:
        return fast
    chars = _fixed(data, starts, ends, width)
    digit = chars - _ZERO
    is_digit = (chars >= _ZERO) & (chars <= _ZERO + 9)
    is_dot = chars == ord(".")
    negative = chars[:, 0] == ord("-")
    allowed = is_digit | is_dot | (chars == 0)
    allowed[:, 0] |= negative | (chars[:, 0] == ord("+"))
    if width > 19 or not allowed.all() or np.any(is_dot.sum(axis=1) > 1) or not is_digit.any(axis=1).all():
        text = np.char.strip(chars.view(f"S{width}").ravel())
        try:
            return text.astype(np.float64)
        except ValueError:
            i = next(i for i, t in enumerate(text.tolist()) if not _is_float(t))
            raise _NotADecimal(i, text[i].decode("utf-8", "replace")) from None
    # digits after each digit, ignoring the point: its power of ten in the integer mantissa
    after: np.ndarray = np.cumsum(is_digit[:, ::-1], axis=1)[:, ::-1] - is_digit
    powers = 10 ** np.arange(20, dtype=np.int64)
    mantissa = np.sum(np.where(is_digit, digit.astype(np.int64) * powers[after], 0), axis=1)
    has_dot = is_dot.any(axis=1)
    dot_at = np.argmax(is_dot, axis=1)
    fraction_digits = np.where(has_dot, (ends - starts) - dot_at - 1, 0)
    value = mantissa / powers[fraction_digits].astype(np.float64)
    return np.where(negative, -value, value)


def _is_float(text: bytes) -> bool:
    """Whether the conversion :func:`_parse_decimals` makes takes ``text``."""
    try:
        np.array([text]).astype(np.float64)
    except ValueError:
        return False
    return True


def _parse_fixed_point(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray | None:
    """Unsigned decimals that all have the same number of decimals (as meters write them), or None."""
    if starts.size == 0 or width > 19:
        return None
    lengths = ends - starts
    first = bytes(data[starts[0] : ends[0]])
    point = first.rfind(b".")
    fraction = len(first) - point - 1 if point >= 0 else 0
    if point >= 0 and not np.all(data[ends - fraction - 1] == ord(".")):
        return None
    if np.any(lengths < (fraction + 2 if point >= 0 else 1)):
        return None
    windows = sliding_window_view(data, width)
    chars = windows[np.maximum(ends - width, 0)]  # right-aligned: the last character in the last column
    from_right = width - 1 - np.arange(width)
    inside = from_right < lengths[:, None]
    mantissa = np.zeros(starts.size, dtype=np.int64)
    ok = np.ones(starts.size, dtype=bool)
    for k in range(width):
        r = int(from_right[k])
        if point >= 0 and r == fraction:
            continue  # the point
        digit = chars[:, k].astype(np.int64) - _ZERO
        digit *= inside[:, k]
        ok &= (digit >= 0) & (digit <= 9)
        mantissa = mantissa * 10 + digit
    if not ok.all() or np.any(ends - width < 0):
        return None
    return mantissa / float(10**fraction)


def _parse_timestamps(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, path: Path, row0: int) -> np.ndarray:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or ``±HH:MM`` (and optional fraction)."""
    lengths = ends - starts
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64)
    width = int(lengths.max())

    chars = _fixed(data, starts, ends, width)

    def at(k: int) -> np.ndarray:  # the k-th character of every field
        return chars[:, k]

    layout_ok = (
        width >= 20
        and bool(np.all(lengths == width))
        and all(bool(np.all(at(k) == ord("-"))) for k in (4, 7))
        and bool(np.all((at(10) == ord("T")) | (at(10) == ord(" "))))
        and all(bool(np.all(at(k) == ord(":"))) for k in (13, 16))
    )
    # every row's suffix, not the first row's alone: a later row ending in "X", or a naive time
    # with a trailing space, was read as UTC
    offset_s = _shared_offset(chars) if layout_ok else None
    if offset_s is None:
        return _parse_timestamps_slow(chars, width, path, row0)
    bad = np.zeros(starts.size, dtype=bool)

    def num(lo: int, hi: int) -> np.ndarray:
        out = np.zeros(starts.size, dtype=np.int64)
        for k in range(lo, hi):
            digit = at(k).astype(np.int64) - _ZERO
            bad[:] |= (digit < 0) | (digit > 9)
            out = out * 10 + digit
        return out

    year, month, day = num(0, 4), num(5, 7), num(8, 10)
    hour, minute, second = num(11, 13), num(14, 16), num(17, 19)
    # second 60 (a leap second) too, as datetime refuses it: 23:59:60 was read as the next midnight
    bad |= (month < 1) | (month > 12) | (day < 1) | (day > 31) | (hour > 23) | (minute > 59) | (second > 59)
    if bad.any():
        i = int(np.argmax(bad))
        text = bytes(chars[i]).decode("ascii", "replace")
        raise CsvFormatError(f"{path}: row {row0 + i + 2}: ts {text!r} is not an ISO 8601 time")
    beyond = day > _days_in_month(year, month)  # 2025-02-29 or 04-31 read as 1 March, 1 May
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s
    early = seconds < _TS_MIN_S  # year 0000 too, which datetime cannot hold (the block's times crashed)
    if beyond.any() or early.any():  # the first row with either, as the csv-module path finds it
        i = int(np.argmax(beyond | early))
        if beyond[i]:
            text = bytes(chars[i]).decode("ascii", "replace")  # as datetime says it:
            raise CsvFormatError(f"{path}: row {row0 + i + 2}: ts {text!r}: day is out of range for month")
        raise _before_ts_min(path, row0 + i + 2, int(seconds[i]))
    return seconds


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Days in each (proleptic Gregorian) month 1 to 12: 29 in a February of a leap year."""
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return _MONTH_DAYS[month] + (leap & (month == 2))


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorised."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


_OFFSET_SUFFIX = re.compile(r"Z|[+-]\d\d:\d\d")


def _shared_offset(chars: np.ndarray) -> int | None:
    """The UTC offset (seconds) of the fields' suffix after ``YYYY-MM-DDTHH:MM:SS`` where every
    field has the same one, ``Z`` or ``±HH:MM`` that :mod:`datetime` takes; else None (the slow
    path reads each field, and refuses one with its row)."""
    suffix_chars = chars[:, 19:]
    if not np.all(suffix_chars == suffix_chars[0]):
        return None
    suffix = bytes(suffix_chars[0]).decode("ascii", "replace")
    if not _OFFSET_SUFFIX.fullmatch(suffix):
        return None
    try:  # as datetime reads it: "+25:00" is refused there
        return -_epoch_seconds("1970-01-01T00:00:00" + suffix)
    except ValueError:
        return None


def _parse_timestamps_slow(chars: np.ndarray, width: int, path: Path, row0: int) -> np.ndarray:
    text = np.ascontiguousarray(chars).view(f"S{width}").ravel()
    uniq, inverse = np.unique(text, return_inverse=True)
    seconds = np.empty(uniq.size, dtype=np.int64)
    refused: dict[int, str] = {}
    for i, raw in enumerate(uniq.tolist()):  # once per distinct instant, not per reading
        try:
            seconds[i] = _epoch_seconds(raw.decode("ascii"))
        except ValueError as error:
            refused[i] = str(error)
    if refused:  # the first row refused, as the csv-module path finds it
        first = int(np.argmax(np.isin(inverse, list(refused))))
        raw = uniq[inverse[first]].decode("ascii", "replace")
        raise CsvFormatError(f"{path}: row {row0 + first + 2}: ts {raw!r}: {refused[int(inverse[first])]}")
    early = seconds[inverse] < _TS_MIN_S
    if early.any():
        i = int(np.argmax(early))
        raise _before_ts_min(path, row0 + i + 2, int(seconds[inverse[i]]))
    return seconds[inverse]


def _epoch_seconds(text: str) -> int:
    """Epoch seconds of an ISO 8601 time with its offset, as ``datetime.fromisoformat`` reads it once
    ``shape_problem`` has passed it; also of one whose UTC date is before year 1
    (``0001-01-01T00:00:00+01:00``), which ``astimezone`` cannot convert
    (an OverflowError, a traceback) but which is refused as before ``TS_MIN`` all the same. A line
    break is refused, as in METERS.csv's and ACCOUNTS.csv's times: a quoted time over two lines is a
    broken file (it was stripped off, and the time read)."""
    if LINE_BREAKS.intersection(text):
        raise ValueError("has a line break: a time is one line (a quoted field over two is a broken file)")
    problem = shape_problem(text.strip())  # as a stored time's: "12.5" was read as 12:00:00.5, not 12:30
    if problem is not None:
        raise ValueError(problem)
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone: times must be UTC")
    return (moment - _EPOCH) // timedelta(seconds=1)


def _utc_text(seconds: int) -> str:
    return f"{np.datetime64(seconds, 's')}Z"


def _before_ts_min(path: Path, row: int, seconds: int) -> CsvFormatError:
    return CsvFormatError(
        f"{path}: row {row}: ts {_utc_text(seconds)} is before {TS_MIN}Z, the earliest time the collector "
        "takes (a meter whose clock was reset?)"
    )


def _refuse_long_span(seconds: np.ndarray, path: Path) -> None:
    """``seconds``: every row's time, row 2 first (estimated rows too: their dates are as wrong)."""
    if seconds.size == 0:
        return
    first, last = int(np.argmin(seconds)), int(np.argmax(seconds))
    if int(seconds[last]) - int(seconds[first]) > SPAN_MAX_DAYS * 86_400:
        raise CsvFormatError(
            f"{path}: the readings span {_utc_text(int(seconds[first]))} (row {first + 2}) to "
            f"{_utc_text(int(seconds[last]))} (row {last + 2}), more than {SPAN_MAX_DAYS:,} days: every meter is "
            "laid on one grid of intervals over the whole span; correct or remove a reading dated far off (a "
            "meter's clock set wrong?), or split the file by time"
        )


def _read_slow(path: Path, names: Sequence[str]) -> Readings:
    """Quoted CSV: the csv module, one row at a time (correct, slower)."""
    ids: list[str] = []
    seconds: list[int] = []
    values: list[float] = []
    backward: list[float] = []
    every_time: list[int] = []  # estimated rows' too, for the span
    with_backward = "reverse_volume_m3" in names
    with_quality = "quality" in names
    line = 1  # the header
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            reader.fieldnames = list(names)  # as the header was checked: stripped of spaces around
            next(reader.reader, None)  # the header itself
            for line, row in enumerate(reader, start=2):
                if None in row or any(row.get(name) is None for name in names):
                    raise CsvFormatError(f"{path}: row {line}: every row needs exactly {len(names)} fields")
                quality = row["quality"].strip() if with_quality else ""
                if quality not in (*QUALITIES, ""):
                    raise CsvFormatError(f"{path}: row {line}: quality {quality!r} is none of {', '.join(QUALITIES)}")
                try:
                    instant = _epoch_seconds(row["ts"])
                except ValueError as error:  # named, as the NumPy path names it
                    raise CsvFormatError(f"{path}: row {line}: ts {row['ts']!r}: {error}") from None
                if instant < _TS_MIN_S:
                    raise _before_ts_min(path, line, instant)
                every_time.append(instant)
                volume = _register(row["volume_m3"], "volume_m3")
                text = row["reverse_volume_m3"].strip() if with_backward else ""
                back = _register(text, "reverse_volume_m3") if text else float("nan")
                if quality == "estimated":
                    continue
                ids.append(row["meter_id"])
                seconds.append(instant)
                values.append(volume)
                if with_backward:
                    backward.append(back)
    except (ValueError, csv.Error) as error:  # CsvFormatError is a ValueError and says where already
        if isinstance(error, CsvFormatError):
            raise
        raise CsvFormatError(f"{path}: row {line}: {error}") from None
    _refuse_long_span(np.array(every_time, dtype=np.int64), path)
    meter_names, meter_index = np.unique(np.array(ids, dtype=str), return_inverse=True)
    reverse = np.array(backward, dtype=np.float64) if with_backward else None
    return Readings(meter_names, meter_index, np.array(seconds, dtype=np.int64), np.array(values), reverse)


def _register(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text.strip()!r} is not a decimal number") from None
    if not 0 <= value <= VOLUME_MAX_M3:
        raise ValueError(f"{column} {_register_error(value)}")
    return value


@dataclass(frozen=True)
class Meters:
    meter_ids: np.ndarray
    dma: np.ndarray
    role: np.ndarray
    bulk: np.ndarray | None = None  # (M,) bool; None: the file has no bulk column
    #: (row, installed or None, removed or None) of the meters whose row gives either
    installations: tuple[tuple[int, datetime | None, datetime | None], ...] = ()
    #: each row's ``service_point_id`` (empty where none is given; none at all without the column),
    #: and its job card's registers at fitting and removal (``initial_register_m3``,
    #: ``final_register_m3``, as text): not detection's, but ``aquami server register-meters``
    #: records installations with them
    service_point_ids: tuple[str, ...] = ()
    job_card_registers: tuple[tuple[str, str], ...] = ()
    #: the file's columns: a column it lacks says nothing (recording it again keeps what is stored)
    columns: frozenset[str] = frozenset()


_BULK = {"true": True, "false": False, "": False}


def read_meters_csv(path: Path) -> Meters:
    """METERS.csv: every row with each of the header's fields (a row cut short, or one with a field
    too many, such as a register written with a decimal comma, would shift or lose values), no
    column the format does not know (a misspelt ``removed_at`` would be ignored), no empty meter_id."""
    line = 1
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            missing = {"meter_id", "dma", "role"} - set(header)
            if missing:
                raise CsvFormatError(f"{path}: missing columns {sorted(missing)}")
            unknown = [name for name in header if name not in _METER_COLUMNS]
            if unknown:
                raise CsvFormatError(f"{path}: unknown columns {unknown}; the columns are {', '.join(_METER_COLUMNS)}")
            fields = set(header)
            rows = []
            for line, r in enumerate(reader, start=2):
                if None in r or any(value is None for value in r.values()):
                    raise CsvFormatError(f"{path}: row {line}: every row needs exactly {len(header)} fields")
                if any("\x00" in value for value in r.values()):
                    raise CsvFormatError(f"{path}: row {line}: a NUL character")
                rows.append(tuple(_field(r, name) if name in fields else "" for name in _METER_COLUMNS))
    except UnicodeDecodeError as error:
        raise CsvFormatError(f"{path}: after row {line}: not UTF-8 ({error.reason}): save the file as UTF-8") from None
    except csv.Error as error:
        raise CsvFormatError(f"{path}: row {line + 1}: {error}") from None
    installations = []
    for i, (meter_id, _, role, bulk, installed, removed, *_) in enumerate(rows):
        if not meter_id:
            raise CsvFormatError(f"{path}: row {i + 2}: meter_id is empty")
        if role not in (CUSTOMER, INLET):
            raise CsvFormatError(f"{path}: row {i + 2}: role must be customer or inlet, not {role!r}")
        if bulk.lower() not in _BULK:
            raise CsvFormatError(f"{path}: row {i + 2}: bulk must be true, false or empty, not {bulk!r}")
        if _BULK[bulk.lower()] and role != CUSTOMER:
            raise CsvFormatError(f"{path}: row {i + 2}: an inlet is no bulk meter (bulk is for customer meters)")
        if installed or removed:
            since = _meter_time(installed, "installed_at", path, i)
            until = _meter_time(removed, "removed_at", path, i)
            if since is not None and until is not None and until <= since:
                raise CsvFormatError(f"{path}: row {i + 2}: removed_at must be after installed_at")
            installations.append((i, since, until))
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise CsvFormatError(f"{path}: a meter_id appears twice")
    return Meters(
        np.array(ids, dtype=str),
        np.array([r[1] for r in rows], dtype=str),
        np.array([r[2] for r in rows]),
        np.array([_BULK[r[3].lower()] for r in rows], dtype=bool) if "bulk" in fields else None,
        tuple(installations),
        tuple(r[6] for r in rows) if "service_point_id" in fields else (),
        tuple((r[7], r[8]) for r in rows) if fields & {"initial_register_m3", "final_register_m3"} else (),
        frozenset(fields),
    )


_METER_COLUMNS = (
    "meter_id",
    "dma",
    "role",
    "bulk",
    "installed_at",
    "removed_at",
    "service_point_id",
    "initial_register_m3",
    "final_register_m3",
)


def _field(row: dict[str, str], name: str) -> str:
    """A field less its outer blanks; a time's line breaks are kept, for stored_time to refuse."""
    return row[name].strip(" \t") if name in _TIME_COLUMNS else row[name].strip()


_TIME_COLUMNS = frozenset({"installed_at", "removed_at"})


def _meter_time(text: str, column: str, path: Path, i: int) -> datetime | None:
    """A fitting's or removal's time, as ``register-meters`` stores it: within the years every
    database session can show (aquami.stored_times: year 1 was stored, and no session west of UTC
    could read it back), with no line break (a broken file: the line break was dropped)."""
    if not text:
        return None
    try:
        return stored_time(text)
    except StoredTimeError as e:
        raise CsvFormatError(f"{path}: row {i + 2}: {column}: {e}") from None


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
        f"{_utc_text(int(readings.ts_s[first]))} ({readings.meter_names[readings.meter_index[first]]}) to "
        f"{_utc_text(int(readings.ts_s[last]))} ({readings.meter_names[readings.meter_index[last]]}): a grid of "
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


def write_alerts_json(alerts: Sequence[Alert], path: Path) -> None:
    """All or nothing: a write that fails leaves the previous file as it was (see :mod:`aquami.atomic_write`)."""
    atomic_write.write_text(path, json.dumps([a.to_json() for a in alerts], indent=1) + "\n")
