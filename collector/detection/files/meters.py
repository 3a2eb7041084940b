"""METERS.csv: each meter's DMA and role, and optionally whether it is a bulk meter, when it was
fitted and removed, its service point and its job card's registers (see
:mod:`collector.detection.files`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from aquami.districts import dma_refusal
from aquami.excerpt import quoted
from aquami.stored_times import StoredTimeError, stored_time
from collector.detection.files.errors import CsvFormatError
from collector.detection.series import CUSTOMER, INLET


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
    #: each meter's row by the file's line it begins on, blank lines counted (a quoted field over
    #: lines takes more than one): what ``aquami server register-meters`` names a row by
    lines: tuple[int, ...] = ()


_BULK = {"true": True, "false": False, "": False}


def read_meters_csv(path: Path) -> Meters:
    """METERS.csv: every row with each of the header's fields (a row cut short, or one with a field
    too many, such as a register written with a decimal comma, would shift or lose values), no
    column the format does not know (a misspelt ``removed_at`` would be ignored), no empty meter_id,
    and no district register-meters would refuse (:mod:`aquami.districts`: over 500 characters, or
    a line break; before, ``aquami detect`` took either, into ALERTS.json's districts)."""
    line = last = 1  # the row being read, the last row read (the header's line is 1)
    lines: list[int] = []  # each meter's row: the file's line it begins on, blank lines counted
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            missing = {"meter_id", "dma", "role"} - set(header)
            if missing:
                raise CsvFormatError(f"{path}: missing columns {sorted(missing)}")
            unknown = [name for name in header if name not in _METER_COLUMNS]
            if unknown:
                raise CsvFormatError(f"{path}: unknown columns {unknown}; the columns are {', '.join(_METER_COLUMNS)}")
            fields = set(header)
            rows = []
            while True:
                line = reader.line_num + 1  # a quoted field over lines takes more than one
                values = next(reader, None)
                if values is None:
                    break
                if not values:  # a blank line: skipped, but the rows after it keep their lines
                    continue
                if len(values) != len(header):
                    raise CsvFormatError(f"{path}: row {line}: every row needs exactly {len(header)} fields")
                r = dict(zip(header, values, strict=True))
                if any("\x00" in value for value in values):
                    raise CsvFormatError(f"{path}: row {line}: a NUL character")
                rows.append(tuple(_field(r, name) if name in fields else "" for name in _METER_COLUMNS))
                lines.append(last := line)
    except UnicodeDecodeError as error:
        raise CsvFormatError(f"{path}: after row {last}: not UTF-8 ({error.reason}): save the file as UTF-8") from None
    except csv.Error as error:
        raise CsvFormatError(f"{path}: row {line}: {error}") from None
    installations = []
    for i, (meter_id, dma, role, bulk, installed, removed, *_) in enumerate(rows):
        if not meter_id:
            raise CsvFormatError(f"{path}: row {lines[i]}: meter_id is empty")
        refused = dma_refusal(dma)  # register-meters' rule: a file one takes, the other does too
        if refused:
            raise CsvFormatError(f"{path}: row {lines[i]}: {refused}")
        if role not in (CUSTOMER, INLET):
            raise CsvFormatError(f"{path}: row {lines[i]}: role must be customer or inlet, not {role!r}")
        if bulk.lower() not in _BULK:
            raise CsvFormatError(f"{path}: row {lines[i]}: bulk must be true, false or empty, not {bulk!r}")
        if _BULK[bulk.lower()] and role != CUSTOMER:
            raise CsvFormatError(f"{path}: row {lines[i]}: an inlet is no bulk meter (bulk is for customer meters)")
        if installed or removed:
            since = _meter_time(installed, "installed_at", path, lines[i])
            until = _meter_time(removed, "removed_at", path, lines[i])
            if since is not None and until is not None and until <= since:
                raise CsvFormatError(f"{path}: row {lines[i]}: removed_at must be after installed_at")
            installations.append((i, since, until))
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise CsvFormatError(_twice(ids, lines, path))
    return Meters(
        np.array(ids, dtype=str),
        np.array([r[1] for r in rows], dtype=str),
        np.array([r[2] for r in rows]),
        np.array([_BULK[r[3].lower()] for r in rows], dtype=bool) if "bulk" in fields else None,
        tuple(installations),
        tuple(r[6] for r in rows) if "service_point_id" in fields else (),
        tuple((r[7], r[8]) for r in rows) if fields & {"initial_register_m3", "final_register_m3"} else (),
        frozenset(fields),
        tuple(lines),
    )


def _twice(ids: list[str], lines: list[int], path: Path) -> str:
    """The first meter listed twice, by its id and the rows: `a meter_id appears twice` left an
    analyst to search a file of thousands of meters for it."""
    first: dict[str, int] = {}
    for meter, line in zip(ids, lines, strict=True):
        if meter in first:
            return (
                f"{path}: rows {first[meter]} and {line}: meter {quoted(meter)} appears twice "
                "(a meter is listed once, with its DMA and role)"
            )
        first[meter] = line
    raise AssertionError("no meter_id appears twice")


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
    """A field less its outer blanks; a time's or a register's line breaks are kept, for its reader
    to refuse (a quoted field over two lines is a broken file)."""
    return row[name].strip(" \t") if name in _KEEP_LINE_BREAKS else row[name].strip()


_TIME_COLUMNS = frozenset({"installed_at", "removed_at"})
_KEEP_LINE_BREAKS = _TIME_COLUMNS | {"initial_register_m3", "final_register_m3"}


def _meter_time(text: str, column: str, path: Path, line: int) -> datetime | None:
    """A fitting's or removal's time, as ``register-meters`` stores it: within the years every
    database session can show (aquami.stored_times: year 1 was stored, and no session west of UTC
    could read it back), with no line break (a broken file: the line break was dropped)."""
    if not text:
        return None
    try:
        return stored_time(text)
    except StoredTimeError as e:
        raise CsvFormatError(f"{path}: row {line}: {column}: {e}") from None
