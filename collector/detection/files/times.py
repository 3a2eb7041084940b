"""READINGS.csv's ``ts`` column as epoch seconds, read digit by digit at fixed positions, and the
bounds on the times a file may hold (from ``TS_MIN``, within ``SPAN_MAX_DAYS``).

A column in one layout (``YYYY-MM-DDTHH:MM:SS`` and one shared ``Z`` or ``±HH:MM``) is read as
whole arrays; any other goes through ``datetime`` once per distinct instant, under the rules of a
stored time (:mod:`aquami.stored_times`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from aquami.stored_times import LINE_BREAKS, shape_problem
from collector.batch_parser import TS_MIN
from collector.detection.files.errors import CsvFormatError
from collector.detection.files.fields import ZERO, fixed_width

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


#: The earliest reading time taken, the collector's: a meter whose clock reset reads 2000-01-01 (or
#: 1970), and one such row stretched the grid every meter is laid on from 21 days to 26 years.
TS_MIN_S = int(datetime.fromisoformat(TS_MIN).replace(tzinfo=UTC).timestamp())


#: The longest span of time a file's readings may cover: the grid is meters × intervals over the
#: whole span, so a reading dated years off (a clock set wrong, but after ``TS_MIN``) ran the command
#: out of memory. Three years of reads is more than detection needs; a longer file can be split.
SPAN_MAX_DAYS = 3 * 366


def parse_timestamps(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, path: Path, line_of: Callable[[int], int]
) -> np.ndarray:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` with ``Z`` or ``±HH:MM`` (and optional fraction);
    a time refused names the file's line of its row (``line_of(i)``: the ``i``-th given)."""
    lengths = ends - starts
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64)
    width = int(lengths.max())

    chars = fixed_width(data, starts, ends, width)

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
        return _parse_timestamps_slow(chars, width, path, line_of)
    bad = np.zeros(starts.size, dtype=bool)

    def num(lo: int, hi: int) -> np.ndarray:
        out = np.zeros(starts.size, dtype=np.int64)
        for k in range(lo, hi):
            digit = at(k).astype(np.int64) - ZERO
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
        raise CsvFormatError(f"{path}: row {line_of(i)}: ts {text!r} is not an ISO 8601 time")
    beyond = day > _days_in_month(year, month)  # 2025-02-29 or 04-31 read as 1 March, 1 May
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s
    early = seconds < TS_MIN_S  # year 0000 too, which datetime cannot hold (the block's times crashed)
    if beyond.any() or early.any():  # the first row with either, as the csv-module path finds it
        i = int(np.argmax(beyond | early))
        if beyond[i]:
            text = bytes(chars[i]).decode("ascii", "replace")  # as datetime says it:
            raise CsvFormatError(f"{path}: row {line_of(i)}: ts {text!r}: day is out of range for month")
        raise before_ts_min(path, line_of(i), int(seconds[i]))
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
        return -epoch_seconds("1970-01-01T00:00:00" + suffix)
    except ValueError:
        return None


def _parse_timestamps_slow(chars: np.ndarray, width: int, path: Path, line_of: Callable[[int], int]) -> np.ndarray:
    text = np.ascontiguousarray(chars).view(f"S{width}").ravel()
    uniq, inverse = np.unique(text, return_inverse=True)
    seconds = np.empty(uniq.size, dtype=np.int64)
    refused: dict[int, str] = {}
    for i, raw in enumerate(uniq.tolist()):  # once per distinct instant, not per reading
        try:
            seconds[i] = epoch_seconds(raw.decode("ascii"))
        except ValueError as error:
            refused[i] = str(error)
    if refused:  # the first row refused, as the csv-module path finds it
        first = int(np.argmax(np.isin(inverse, list(refused))))
        raw = uniq[inverse[first]].decode("ascii", "replace")
        raise CsvFormatError(f"{path}: row {line_of(first)}: ts {raw!r}: {refused[int(inverse[first])]}")
    early = seconds[inverse] < TS_MIN_S
    if early.any():
        i = int(np.argmax(early))
        raise before_ts_min(path, line_of(i), int(seconds[inverse[i]]))
    return seconds[inverse]


def epoch_seconds(text: str) -> int:
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


def utc_text(seconds: int) -> str:
    return f"{np.datetime64(seconds, 's')}Z"


def before_ts_min(path: Path, row: int, seconds: int) -> CsvFormatError:
    return CsvFormatError(
        f"{path}: row {row}: ts {utc_text(seconds)} is before {TS_MIN}Z, the earliest time the collector "
        "takes (a meter whose clock was reset?)"
    )


def refuse_long_span(seconds: np.ndarray, path: Path, line_of: Callable[[int], int]) -> None:
    """``seconds``: every row's time, in the file's order (estimated rows too: their dates are as
    wrong); ``line_of(i)`` the line of the ``i``-th."""
    if seconds.size == 0:
        return
    first, last = int(np.argmin(seconds)), int(np.argmax(seconds))
    if int(seconds[last]) - int(seconds[first]) > SPAN_MAX_DAYS * 86_400:
        raise CsvFormatError(
            f"{path}: the readings span {utc_text(int(seconds[first]))} (row {line_of(first)}) to "
            f"{utc_text(int(seconds[last]))} (row {line_of(last)}), more than {SPAN_MAX_DAYS:,} days: every meter is "
            "laid on one grid of intervals over the whole span; correct or remove a reading dated far off (a "
            "meter's clock set wrong?), or split the file by time"
        )
