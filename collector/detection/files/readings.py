"""READINGS.csv into arrays (:class:`Readings`), fast: 32 MiB of whole lines at a time.

The file is read as bytes (read whole, its bytes and the offsets of its fields took 3.8 bytes of
memory per byte of the file, all alive together), and its fields are cut at the commas and
newlines with NumPy (:mod:`.fields`, :mod:`.times`). A quoted field anywhere sends the file to the
csv module, one row at a time (correct, slower). The columns are described in :mod:`collector.detection.files`.

A row whose ``volume_m3`` is empty (or blanks alone) is a missing read, as a head-end export writes
one for a read it did not get: left out and counted (:attr:`Readings.no_reading`), its meter id and
time still checked; before, it refused the whole file. Any other value that is no number is refused
with its row.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aquami.contracts.reads import VOLUME_MAX_M3
from collector.detection.files.errors import CsvFormatError
from collector.detection.files.fields import (
    NotADecimal,
    factorize,
    fixed_width,
    parse_decimals,
    parse_optional_decimals,
)
from collector.detection.files.times import (
    TS_MIN_S,
    before_ts_min,
    epoch_seconds,
    parse_timestamps,
    refuse_long_span,
)

#: ``progress(done, total)``: bytes of the file parsed (its rows are not counted before)
RowProgress = Callable[[int, int], None]


_BLOCK_ROWS = 1_000_000


@dataclass(frozen=True)
class Readings:
    meter_names: np.ndarray  # (U,) str, the distinct meter ids
    meter_index: np.ndarray  # (N,) int index into meter_names
    ts_s: np.ndarray  # (N,) int64 epoch seconds
    volume_m3: np.ndarray  # (N,) float64
    reverse_m3: np.ndarray | None = None  # (N,) float64, NaN where empty; None: no such column
    no_reading: int = 0  # rows left out as missing reads: their volume_m3 empty or blanks alone


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
    first_line = bytes(data[: newlines[0]]).decode("utf-8-sig").strip()
    if "\r" in first_line:  # csv said "new-line character seen in unquoted field - do you need to
        # open the file in universal-newline mode?", a hint to a programmer
        raise CsvFormatError(
            f"{path}: row 1, the header: a carriage return inside the line (a file whose lines end in a "
            "carriage return alone, as classic Mac OS wrote them, is one line: save it with LF or CRLF line ends)"
        )
    try:
        header = next(csv.reader([first_line]), [])
    except csv.Error as error:  # a NUL
        raise CsvFormatError(f"{path}: row 1, the header: {error}") from None
    names = [h.strip() for h in header]
    given = set(names)
    if len(given) != len(names) or not set(REQUIRED_COLUMNS) <= given <= {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS}:
        raise CsvFormatError(
            f"{path}: header must be the columns {','.join(REQUIRED_COLUMNS)} (and optionally "
            f"{','.join(OPTIONAL_COLUMNS)}), not {','.join(names)}"
        )
    parts = _Parts()
    lines = _LineNumbers()
    bounds = newlines  # the first piece's rows begin after the header
    done = 0
    try:
        while data is not None:
            if np.any(data == ord('"')):
                return _read_slow(path, names)
            parts.add(_parse_rows(data, bounds, names, path, parts.rows, lines))
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
    missing = ~parts.joined("volume_given")
    if missing.any():
        read = np.flatnonzero(~missing)
        _check_registers(volume[read], "volume_m3", path, lines, rows=read)
        del read
    else:  # (no copy of the column: the common case)
        _check_registers(volume, "volume_m3", path, lines)
    reverse = None
    if "reverse_volume_m3" in names:
        reverse = parts.joined("reverse")
        filled = np.flatnonzero(parts.joined("reverse_given"))  # empty: none
        _check_registers(reverse[filled], "reverse_volume_m3", path, lines, rows=filled)
        del filled
    refuse_long_span(ts, path, lines.line)
    keys = parts.joined("keys")
    estimated = parts.joined("estimated") if "quality" in names else None
    left_out = missing if estimated is None else missing | estimated
    if left_out.any():
        measured = ~left_out
        keys, ts, volume = keys[measured], ts[measured], volume[measured]
        reverse = reverse[measured] if reverse is not None else None
    meter_names, meter_index = factorize(keys)
    names_read = np.char.decode(meter_names, "utf-8").astype(str)
    return Readings(names_read, meter_index, ts, volume, reverse, no_reading=int(missing.sum()))


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


class _LineNumbers:
    """The file's line of each row that is read (rows counted from 0, blank lines skipped): blank
    lines were not counted, so a row after them was named by a line above it (`row 4` for line 6)."""

    def __init__(self) -> None:
        #: for each blank line, the rows read before it (sorted): few, unless the file is spaced
        self.blanks: list[np.ndarray] = []
        self.joined = np.zeros(0, dtype=np.int64)

    def skip(self, rows_before: np.ndarray) -> None:
        if rows_before.size:
            self.blanks.append(rows_before.astype(np.int64))
            self.joined = np.concatenate(self.blanks)

    def line(self, row: int) -> int:
        """The line of the file (the header is line 1) where row ``row`` is."""
        return row + 2 + int(np.searchsorted(self.joined, row, side="right"))


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
    data: np.ndarray, bounds: np.ndarray, names: Sequence[str], path: Path, row0: int, lines: _LineNumbers
) -> dict[str, np.ndarray]:
    """The rows of one piece of the file, without a Python loop per row: ``bounds`` the offsets of
    the newline before each row (-1 before the piece's first) and after the last; ``row0`` the rows
    before the piece, and ``lines`` (which takes the piece's blank lines) their lines, for the rows
    errors name."""
    starts = bounds[:-1] + 1
    ends = bounds[1:].copy()
    ends -= data[ends - 1] == ord("\r")
    keep = ends > starts
    if not keep.all():
        lines.skip(row0 + np.cumsum(keep)[~keep])
    starts, ends = starts[keep], ends[keep]
    body = max(int(bounds[0]), 0)
    commas = np.flatnonzero(data[body:] == ord(",")) + body
    k = len(names) - 1  # commas per row
    cuts = [commas[i::k] for i in range(k)] if commas.size == k * starts.size else []
    if not cuts or np.any(cuts[0] < starts) or np.any(cuts[-1] >= ends):
        row = _first_row_without_fields(commas, starts, ends, k)
        raise CsvFormatError(f"{path}: row {lines.line(row0 + row)}: every row needs exactly {len(names)} fields")
    lefts, rights = [starts, *(c + 1 for c in cuts)], [*cuts, ends]
    span = {name: (lefts[i], rights[i]) for i, name in enumerate(names)}
    for name in REQUIRED_COLUMNS:
        if name == "volume_m3":
            continue  # empty: a missing read (NaN, left out by the caller)
        empty = np.flatnonzero(span[name][1] <= span[name][0])
        if empty.size:
            raise CsvFormatError(f"{path}: row {lines.line(row0 + int(empty[0]))}: {name} is empty")
    for name in ("volume_m3", "reverse_volume_m3"):  # blanks alone: empty (no reading, no backward register)
        if name in span:
            left, right = span[name]
            span[name] = (left, np.where(_blank(data, left, right), left, right))
    volume_given = span["volume_m3"][1] > span["volume_m3"][0]
    all_read = bool(volume_given.all())  # (the common case: no field to leave out, none copied)
    n = starts.size
    out: dict[str, np.ndarray] = {}
    if "quality" in span:
        # a piece of blank lines alone has no field to look at
        at_row = functools.partial(_piece_line, lines, row0)
        out["estimated"] = _estimated(data, *span["quality"], path, at_row) if n else np.zeros(0, dtype=bool)
    meter_keys = []
    ts = np.empty(n, dtype=np.int64)
    volume = np.empty(n, dtype=np.float64)
    reverse = np.empty(n, dtype=np.float64) if "reverse_volume_m3" in span else None
    id_width = int(np.max(span["meter_id"][1] - span["meter_id"][0], initial=1))
    for lo in range(0, n, _BLOCK_ROWS):
        hi = min(lo + _BLOCK_ROWS, n)
        meter_keys.append(fixed_width(data, span["meter_id"][0][lo:hi], span["meter_id"][1][lo:hi], id_width))
        line_of = functools.partial(_piece_line, lines, row0 + lo)
        ts[lo:hi] = parse_timestamps(data, span["ts"][0][lo:hi], span["ts"][1][lo:hi], path, line_of)
        volume[lo:hi] = _decimal_column(data, span, "volume_m3", lo, hi, path, line_of, optional=not all_read)
        if reverse is not None:
            reverse[lo:hi] = _decimal_column(data, span, "reverse_volume_m3", lo, hi, path, line_of, optional=True)
    out["keys"] = np.concatenate(meter_keys).view(f"S{id_width}").ravel() if n else np.array([], dtype="S1")
    out["ts"], out["volume"] = ts, volume
    out["volume_given"] = volume_given
    if reverse is not None:
        out["reverse"] = reverse
        out["reverse_given"] = span["reverse_volume_m3"][1] > span["reverse_volume_m3"][0]
    return out


def _first_row_without_fields(commas: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int) -> int:
    """The first row (of ``starts``, ``ends``) without ``k`` commas: a row cut short or with a field
    too many (a decimal comma) was refused without its row, one among a million."""
    per_row = np.searchsorted(commas, ends) - np.searchsorted(commas, starts)
    return int(np.argmax(per_row != k))


def _piece_line(lines: _LineNumbers, first: int, i: int) -> int:
    """The line of row ``i`` of rows that begin at row ``first`` of the file."""
    return lines.line(first + i)


def _check_registers(
    values: np.ndarray, column: str, path: Path, lines: _LineNumbers, rows: np.ndarray | None = None
) -> None:
    """Refuses the first value that is no register (``rows``: the values' rows, if not 0, 1, …):
    NaN, infinite, negative, or above the reads contract's :data:`VOLUME_MAX_M3` (the database's
    readings table takes none below 0 either). Taken in, a register of ``nan``
    would have read as a missing read, and ``-5`` or ``inf`` as water that flowed."""
    with np.errstate(invalid="ignore"):
        bad = ~((values >= 0) & (values <= VOLUME_MAX_M3))
    if bad.any():
        i = int(np.argmax(bad))
        row = int(rows[i]) if rows is not None else i
        raise CsvFormatError(f"{path}: row {lines.line(row)}: {column} {_register_error(float(values[i]))}")


def _register_error(value: float) -> str:
    return f"{value!r} is no register: it must be a number of m³ from 0 to {VOLUME_MAX_M3:.0e}"


def _estimated(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, path: Path, line_of: Callable[[int], int]
) -> np.ndarray:
    """(N,) bool: the rows whose ``quality`` is ``estimated``; any value but :data:`QUALITIES` or
    empty is refused with its row."""
    width = max(len(q) for q in QUALITIES)
    too_long = (ends - starts) > width
    text = fixed_width(data, starts, np.minimum(ends, starts + width), width).view(f"S{width}").ravel()
    known = np.isin(text, [q.encode() for q in QUALITIES] + [b""]) & ~too_long
    if not known.all():
        row = int(np.argmin(known))
        value = bytes(data[starts[row] : ends[row]]).decode("utf-8", "replace")
        raise CsvFormatError(f"{path}: row {line_of(row)}: quality {value!r} is none of {', '.join(QUALITIES)}")
    return np.asarray(text == b"estimated")


def _decimal_column(
    data: np.ndarray,
    span: dict[str, tuple[np.ndarray, np.ndarray]],
    column: str,
    lo: int,
    hi: int,
    path: Path,
    line_of: Callable[[int], int],
    optional: bool = False,
) -> np.ndarray:
    """Rows ``lo:hi`` of a column of decimals (NaN for empty fields if ``optional``); a field that
    is no number is refused with its line (``line_of``: of the ``i``-th row from ``lo``)."""
    starts, ends = span[column][0][lo:hi], span[column][1][lo:hi]
    try:
        return parse_optional_decimals(data, starts, ends) if optional else parse_decimals(data, starts, ends)
    except NotADecimal as bad:
        raise CsvFormatError(
            f"{path}: row {line_of(bad.index)}: {column} {bad.text!r} is not a decimal number"
        ) from None


def _blank(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(N,) bool: the fields that are spaces or tabs alone (not empty ones). Only fields that begin
    with one are looked at whole: most begin with a digit."""
    blank = np.zeros(starts.size, dtype=bool)
    first = data[np.minimum(starts, data.size - 1)]
    lead = np.flatnonzero(((first == _SPACE) | (first == _TAB)) & (ends > starts))
    if lead.size:
        s, e = starts[lead], ends[lead]
        chars = fixed_width(data, s, e, int(np.max(e - s)))
        inside = np.arange(chars.shape[1]) < (e - s)[:, None]
        blank[lead] = np.all((chars == _SPACE) | (chars == _TAB) | ~inside, axis=1)
    return blank


_SPACE, _TAB = ord(" "), ord("\t")


def _read_slow(path: Path, names: Sequence[str]) -> Readings:
    """Quoted CSV: the csv module, one row at a time (correct, slower)."""
    ids: list[str] = []
    seconds: list[int] = []
    values: list[float] = []
    backward: list[float] = []
    every_time: list[int] = []  # estimated rows' too, for the span
    every_line: list[int] = []  # their lines
    no_reading = 0
    with_backward = "reverse_volume_m3" in names
    with_quality = "quality" in names
    line = 1  # the header
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)  # the header itself, checked already
            while True:
                line = reader.line_num + 1  # where the next row begins (a quoted field may take more)
                fields = next(reader, None)
                if fields is None:
                    break
                if not fields:  # a blank line, skipped but counted: the rows after it keep their lines
                    continue
                if len(fields) != len(names):
                    raise CsvFormatError(f"{path}: row {line}: every row needs exactly {len(names)} fields")
                row = dict(zip(names, fields, strict=True))  # the header's names, stripped of spaces around
                quality = row["quality"].strip() if with_quality else ""
                if quality not in (*QUALITIES, ""):
                    raise CsvFormatError(f"{path}: row {line}: quality {quality!r} is none of {', '.join(QUALITIES)}")
                try:
                    instant = epoch_seconds(row["ts"])
                except ValueError as error:  # named, as the NumPy path names it
                    raise CsvFormatError(f"{path}: row {line}: ts {row['ts']!r}: {error}") from None
                if instant < TS_MIN_S:
                    raise before_ts_min(path, line, instant)
                every_time.append(instant)
                every_line.append(line)
                given = row["volume_m3"].strip(" \t")
                volume = _register(given, "volume_m3") if given else float("nan")
                text = row["reverse_volume_m3"].strip(" \t") if with_backward else ""
                back = _register(text, "reverse_volume_m3") if text else float("nan")
                if not given:  # a missing read
                    no_reading += 1
                    continue
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
    refuse_long_span(np.array(every_time, dtype=np.int64), path, every_line.__getitem__)
    meter_names, meter_index = np.unique(np.array(ids, dtype=str), return_inverse=True)
    reverse = np.array(backward, dtype=np.float64) if with_backward else None
    values_read = np.array(values, dtype=np.float64)
    return Readings(meter_names, meter_index, np.array(seconds, dtype=np.int64), values_read, reverse, no_reading)


def _register(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text.strip()!r} is not a decimal number") from None
    if not 0 <= value <= VOLUME_MAX_M3:
        raise ValueError(f"{column} {_register_error(value)}")
    return value
