"""CSV in (vectorised parse, any row order, missing reads) and the ``aquami detect`` command."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from collector.detection.files.errors import CsvFormatError
from collector.detection.files.grid import GRID_MAX_INTERVALS, build_block
from collector.detection.files.meters import read_meters_csv
from collector.detection.files.readings import read_readings_csv
from collector.detection.files.times import SPAN_MAX_DAYS
from collector.detection.series import SeriesBlock
from tests.collector.test_detection_households import add_flow, block_of, household
from tests.damage import damaged_texts, parsed_or_refused


def _write(block, path: Path, *, shuffle: int | None = None, ts_suffix: str = "Z") -> None:
    stamps = np.datetime_as_string(block.timestamps, unit="s")
    rows = [
        f"{mid},{stamps[j]}{ts_suffix},{v:.3f}"
        for i, mid in enumerate(block.meter_ids.tolist())
        for j, v in enumerate(block.volume_m3[i].tolist())
        if v == v
    ]
    if shuffle is not None:
        np.random.default_rng(shuffle).shuffle(rows)
    path.write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n", encoding="utf-8")


def _meters(block, path: Path) -> None:
    lines = [f"{m},{d},{r}" for m, d, r in zip(block.meter_ids, block.dma, block.role, strict=True)]
    path.write_text("meter_id,dma,role\n" + "\n".join(lines) + "\n", encoding="utf-8")


def _small_block(missing: float = 0.03):
    rng = np.random.default_rng(61)
    uses = {f"M{i:03d}": household(rng, 10) for i in range(8)}
    uses["M-LEAK"] = add_flow(household(rng, 10), 4 * 24 + 2.5, 20.0)
    block = block_of(uses, inlet_extra_l=np.full(240, 50.0))
    volume = block.volume_m3.copy()
    gone = rng.random(volume.shape) < missing
    gone[:, 0] = False
    volume[gone] = np.nan
    return type(block)(block.meter_ids, block.dma, block.role, block.timestamps, volume)


@pytest.mark.parametrize(("shuffle", "suffix"), [(None, "Z"), (3, "Z"), (None, "+00:00"), (4, "+02:00")])
def test_readings_round_trip_into_the_same_block(tmp_path: Path, shuffle: int | None, suffix: str) -> None:
    block = _small_block()
    _write(block, tmp_path / "r.csv", shuffle=shuffle, ts_suffix=suffix)
    _meters(block, tmp_path / "m.csv")
    parsed, dropped = build_block(read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv"))
    assert dropped == 0
    shift = np.timedelta64(-2, "h") if suffix == "+02:00" else np.timedelta64(0, "h")
    assert np.array_equal(parsed.timestamps, block.timestamps + shift)
    assert np.array_equal(np.isnan(parsed.volume_m3), np.isnan(block.volume_m3))
    ok = ~np.isnan(block.volume_m3)
    assert np.array_equal(parsed.volume_m3[ok], np.round(block.volume_m3[ok], 3))


@pytest.mark.parametrize("shuffle", [1, 2, 3])
def test_an_extra_read_beside_an_instant_gives_the_same_block_in_any_row_order(tmp_path: Path, shuffle: int) -> None:
    """A read-now at 10:20 lands nearest the 10:00 instant: the row last in the file stood for it,
    so the same rows in another order gave another block (and other alerts). The read nearest the
    instant stands for it."""
    block = _small_block(missing=0.0)
    _write(block, tmp_path / "r.csv")
    extra = block.timestamps[10] + np.timedelta64(20, "m")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    lines.append(f"M001,{np.datetime_as_string(extra, unit='s')}Z,{block.volume_m3[1, 10] + 0.004:.3f}")
    body = lines[1:]
    np.random.default_rng(shuffle).shuffle(body)
    (tmp_path / "r.csv").write_text("\n".join([lines[0], *body]) + "\n")
    _meters(block, tmp_path / "m.csv")
    parsed, _ = build_block(read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv"))
    assert np.array_equal(parsed.volume_m3, np.round(block.volume_m3, 3))


@pytest.mark.parametrize("half_first", [False, True])
def test_meters_read_half_an_interval_off_the_grid_keep_every_read(tmp_path: Path, half_first: bool) -> None:
    """Two gateways, one polling on the hour, the other at half past: the half-past reads were
    rounded to the nearest instant, half-to-even, so pairs fell on one instant and one of each was
    lost; and the grid's phase came from the file's first rows, so which DMA lost them depended on
    the rows' order. Each read now stands for the first instant at or after it."""
    start = np.datetime64("2026-01-05T00:00:00", "s")
    rows = []
    for meter, offset_min in (("ON-HOUR", 0), ("HALF-PAST", 30)):
        for h in range(72):
            ts = start + np.timedelta64(h * 60 + offset_min, "m")
            rows.append(f"{meter},{np.datetime_as_string(ts, unit='s')}Z,{100 + h / 100:.3f}")
    if half_first:
        rows = rows[72:] + rows[:72]
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nON-HOUR,D1,customer\nHALF-PAST,D2,customer\n")
    block, _ = build_block(read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv"))
    assert (~np.isnan(block.volume_m3)).sum(axis=1).tolist() == [72, 72]
    assert block.timestamps[0] == start


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    centre_s=st.integers(0, 3599),
    lead_s=st.integers(0, 360),
    wobble_s=st.integers(0, 720),
    seed=st.integers(0, 2**32 - 1),
)
def test_hourly_polls_off_their_grid_by_seconds_to_minutes_keep_every_read(
    tmp_path: Path, centre_s: int, lead_s: int, wobble_s: int, seed: int
) -> None:
    """Polls jittered each time by up to ``wobble_s`` either way (a gateway's default was ±6 min),
    each meter at its own place up to ``lead_s`` before ``centre_s``: the commonest step between
    reads was any one of hundreds (3,543 s: "must divide a day"; 3,660 s: a grid of no hours), and
    reads fell on both sides of an instant. The grid is hourly and every read has its own instant."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-01-05T00:00:00", "s") + np.timedelta64(centre_s, "s")
    rows, kept = [], {}
    for m in range(6):
        place = -int(rng.integers(0, lead_s + 1))
        hours = [h for h in range(96) if rng.random() > 0.05]
        kept[f"M{m}"] = len(hours)
        for h in hours:
            ts = start + np.timedelta64(h * 3600 + place + int(rng.integers(-wobble_s // 2, wobble_s // 2 + 1)), "s")
            rows.append(f"M{m},{np.datetime_as_string(ts, unit='s')}Z,{100 + h / 100:.3f}")
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\n" + "".join(f"M{m},D1,customer\n" for m in range(6)))
    block, _ = build_block(read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv"))
    assert block.interval_s == 3600
    assert dict(zip(block.meter_ids.tolist(), (~np.isnan(block.volume_m3)).sum(axis=1).tolist(), strict=True)) == kept


@pytest.mark.parametrize(
    ("step_s", "match"), [(420, "every 420 s, which does not divide a day"), (5000, "every 5000 s")]
)
def test_reads_at_an_interval_that_divides_no_day_are_refused_by_name(tmp_path: Path, step_s: int, match: str) -> None:
    start = np.datetime64("2026-01-05T00:00:00", "s")
    rows = [f"M1,{np.datetime_as_string(start + np.timedelta64(k * step_s, 's'), unit='s')}Z,{k}" for k in range(50)]
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nM1,D1,customer\n")
    with pytest.raises(CsvFormatError, match=match):
        build_block(read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv"))


def _address_space_limited(limit: int) -> None:
    """In the child: allocations past ``limit`` bytes of address space fail (MemoryError)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_reads_a_second_apart_and_one_years_later_are_refused_before_the_grid_is_made(tmp_path: Path) -> None:
    """The reviewer's case: twenty reads a second apart and one 1,097 days later (within the span
    allowed) made a grid of 1-second intervals over three years, 95 million of them, and the command
    died allocating 4 GiB (here: a MemoryError traceback under a 2 GiB address space). It exits 2
    before making the grid, saying the interval, the span and the limit, and writes nothing."""
    import subprocess
    import sys

    start = np.datetime64("2026-01-05T00:00:00", "s")
    times = [start + np.timedelta64(k, "s") for k in range(20)] + [start + np.timedelta64(1097, "D")]
    rows = [f"C1,{np.datetime_as_string(t, unit='s')}Z,{1 + k / 1000:.3f}" for k, t in enumerate(times)]
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nC1,D1,customer\n")
    out = tmp_path / "alerts.json"
    args = ["--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv"), "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "aquami", "detect", *args],
        capture_output=True,
        text=True,
        preexec_fn=lambda: _address_space_limited(2 << 30),
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "400"},
        check=False,
    )
    said = _said(run.stderr)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "readings come every 1 s" in said and "2026-01-05T00:00:00Z (C1) to 2029-01-06T00:00:00Z (C1)" in said
    assert f"a grid of 94,780,801 intervals, more than the {GRID_MAX_INTERVALS:,}" in said
    assert "Traceback" not in run.stderr and not out.exists()


_DAY_DIVISORS = [d for d in range(1, 86_401) if 86_400 % d == 0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    step_s=st.sampled_from([900, 3600, 86_400]) | st.sampled_from(_DAY_DIVISORS),
    span_days=st.integers(1, SPAN_MAX_DAYS),
)
def test_a_grid_is_laid_out_up_to_its_limit_and_refused_beyond(tmp_path: Path, step_s: int, span_days: int) -> None:
    """Reads every ``step_s`` seconds and one ``span_days`` after the first: the block is made where
    its grid has at most ``GRID_MAX_INTERVALS`` intervals (15-minute, hourly and daily reads over
    any span the readings may have), and refused by name, never allocated, beyond."""
    start = np.datetime64("2026-01-05T00:00:00", "s")
    times = [start + np.timedelta64(k * step_s, "s") for k in range(6)] + [start + np.timedelta64(span_days, "D")]
    times = sorted(set(times))
    rows = [f"C1,{np.datetime_as_string(t, unit='s')}Z,{1 + k / 1000:.3f}" for k, t in enumerate(times)]
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nC1,D1,customer\n")
    readings, meters = read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv")
    intervals = (times[-1] - times[0]) // np.timedelta64(step_s, "s") + 1
    if step_s >= 900 or intervals <= GRID_MAX_INTERVALS:
        block, _ = build_block(readings, meters)
        assert block.interval_s == step_s and block.n_intervals == intervals
    else:
        with pytest.raises(CsvFormatError, match=rf"readings come every {step_s:,} s .* a grid of {intervals:,} "):
            build_block(readings, meters)


def test_two_readings_of_one_meter_at_one_time_with_different_registers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(
        "meter_id,ts,volume_m3\nM1,2026-01-13T06:00:00Z,1.100\nM1,2026-01-13T07:00:00Z,1.200\n"
        "M1,2026-01-13T06:00:00Z,1.105\nM1,2026-01-13T07:00:00Z,1.200\n"  # (the same row twice is harmless)
    )
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nM1,D1,customer\n")
    with pytest.raises(CsvFormatError, match=r"meter M1 has two readings at 2026-01-13T06:00:00Z: 1.1 and 1.105 m³"):
        build_block(read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(backward=st.tuples(*[st.sampled_from(["", "0.000", "0.500", "40.000"])] * 2), quoted=st.booleans())
def test_two_readings_of_one_meter_at_one_time_with_different_backward_registers_are_refused(
    tmp_path: Path, backward: tuple[str, str], quoted: bool
) -> None:
    """The same meter, time and volume with 0.000 and 40.000 in ``reverse_volume_m3`` were both
    taken, and the rows' order chose (one order gave a reverse_flow alert of 40,000 L/h): now two
    backward registers that differ (one empty, one given: whether the meter counted water going
    back is not told) are refused in either order; the same twice gives the same block either way."""
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nM1,D1,customer\n")
    rows = [f"M1,2026-01-13T06:00:00Z,1.100,{b}" for b in backward]
    if quoted:
        rows[0] = '"M1"' + rows[0][2:]
    blocks = []
    for name, pair in (("ab", rows), ("ba", rows[::-1])):
        path = tmp_path / f"{name}.csv"
        lines = ["M1,2026-01-13T05:00:00Z,1.000,0.000", *pair, "M1,2026-01-13T07:00:00Z,1.200,0.000"]
        path.write_text("meter_id,ts,volume_m3,reverse_volume_m3\n" + "\n".join(lines) + "\n")
        if backward[0] != backward[1]:
            with pytest.raises(CsvFormatError, match=r"meter M1 has two readings at 2026-01-13T06:00:00Z: reverse_vol"):
                build_block(read_readings_csv(path), read_meters_csv(tmp_path / "m.csv"))
        else:
            blocks.append(build_block(read_readings_csv(path), read_meters_csv(tmp_path / "m.csv"))[0])
    if blocks:
        first, second = (b.reverse_m3 if b.reverse_m3 is not None else np.full((1, 3), np.nan) for b in blocks)
        np.testing.assert_array_equal(first, second)


def test_quoted_fields_take_the_slow_path_and_give_the_same_result(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('meter_id,ts,volume_m3\n"A",2026-01-05T00:00:00Z,1.5\n"A",2026-01-05T01:00:00Z,1.75\n')
    readings = read_readings_csv(path)
    assert readings.meter_names.tolist() == ["A"]
    assert readings.volume_m3.tolist() == [1.5, 1.75]
    assert (readings.ts_s[1] - readings.ts_s[0]) == 3600


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("meter,ts,volume\nA,2026-01-05T00:00:00Z,1\n", "header"),
        ("m\reter_id,ts,volume_m3\nA,2026-01-05T00:00:00Z,1\n", "row 1, the header: a carriage return inside"),
        (  # lines ended by a carriage return alone: csv's hint was for a programmer
            "meter_id,ts,volume_m3\rA,2026-01-05T00:00:00Z,1\rA,2026-01-05T01:00:00Z,2\r",
            r"row 1, the header: a carriage return inside the line \(a file whose lines end in a carriage return "
            r"alone, .* save it with LF or CRLF line ends\)",
        ),
        ("meter_id,ts,volume_m3\nA,2026-13-05T00:00:00Z,1\n", "row 2"),
        ("meter_id,ts,volume_m3,reverse_volume_m3\nA,2026-01-05T00:00:00Z,1,x1\n", "reverse_volume_m3"),
        ("meter_id,ts,volume_m3,flow\nA,2026-01-05T00:00:00Z,1,2\n", "header"),
        ("meter_id,ts,volume_m3,reverse_volume_m3\nA,2026-01-05T00:00:00Z,1\n", "4 fields"),
        ("meter_id,ts,volume_m3\nA,,1\n", "ts is empty"),
        (
            "meter_id,ts,volume_m3\nA,2026-01-05T00:00:00Z,1\nA,2026-01-05T01:00:00Z,1.5x\n",
            "row 3: volume_m3 '1.5x' is not a",
        ),
        ("meter_id,ts,volume_m3\nA,2026-01-05T00:00:00Z,-5\n", "row 2: volume_m3 -5.0 is no register"),
        ("meter_id,ts,volume_m3\nA,2026-01-05T00:00:00Z,1\nA,2026-01-05T01:00:00Z,nan\n", "row 3: volume_m3 nan is no"),
        ("meter_id,ts,volume_m3\nA,2026-01-05T00:00:00Z,inf\n", "row 2: volume_m3 inf is no register"),
        ("meter_id,ts,volume_m3\nA,2026-01-05T00:00:00Z,1e13\n", "row 2: volume_m3 10000000000000.0 is no register"),
        ('meter_id,ts,volume_m3\n"A",2026-01-05T00:00:00Z,-1\n', "row 2: volume_m3 -1.0 is no register"),
        (
            "meter_id,ts,volume_m3,reverse_volume_m3\nA,2026-01-05T00:00:00Z,1,\nA,2026-01-05T01:00:00Z,1,-0.5\n",
            "row 3: reverse_volume_m3 -0.5 is no register",
        ),
        (
            "meter_id,ts,volume_m3,reverse_volume_m3\nA,2026-01-05T00:00:00Z,1,\nA,2026-01-05T01:00:00Z,1,2y\n",
            "row 3: reverse_volume_m3 '2y' is not a",
        ),
        (
            "meter_id,ts,volume_m3,quality\nA,2026-01-05T00:00:00Z,1,actual\nA,2026-01-05T01:00:00Z,-1,estimated\n",
            "row 3: volume_m3 -1.0 is no register",
        ),
    ],
)
def test_bad_readings_files_say_what_is_wrong(tmp_path: Path, content: str, match: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    with pytest.raises(CsvFormatError, match=match):
        read_readings_csv(bad)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.integers(1, 300),
    bad_at=st.integers(0, 299),
    extra=st.sampled_from([",x", ",0,5", ""]),
    quoted=st.booleans(),
)
def test_a_row_cut_short_or_with_a_field_too_many_is_refused_with_its_row(
    tmp_path: Path, rows: int, bad_at: int, extra: str, quoted: bool
) -> None:
    """A register written with a decimal comma (``1,250``), a stray column or a row cut short, one
    row among many: the fast path refused the file without naming any row; now it names that row, as
    the quoted (csv-module) path does."""
    bad_at %= rows
    lines = [f"M1,2026-01-05T{h // 60:02d}:{h % 60:02d}:00Z,{h}.000" for h in range(rows)]
    lines[bad_at] = lines[bad_at] + extra if extra else lines[bad_at].rsplit(",", 1)[0]
    if quoted:
        lines[0] = '"' + lines[0].replace(",", '","') + '"'
    path = tmp_path / "r.csv"
    path.write_text("meter_id,ts,volume_m3\n" + "\n".join(lines) + "\n")
    with pytest.raises(CsvFormatError, match=rf": row {bad_at + 2}: every row needs exactly 3 fields$"):
        read_readings_csv(path)


_BAD_READINGS = {  # a row's fault, and the words its refusal begins with after the row
    "volume": ("M1,2026-01-05T09:00:00Z,1.5x", "volume_m3 '1.5x' is not a decimal number"),
    "negative": ("M1,2026-01-05T09:00:00Z,-2", "volume_m3 -2.0 is no register"),
    "time": ("M1,2026-01-05T25:00:00Z,1", "ts '2026-01-05T25:00:00Z'"),
    "fields": ("M1,2026-01-05T09:00:00Z,1,2", "every row needs exactly 3 fields"),
    "empty": ("M1,,1", "ts "),  # the quoted path: "ts '': is no ISO 8601 time"
    "before 2000": ("M1,1999-01-05T09:00:00Z,1", "ts 1999-01-05T09:00:00Z is before"),
}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blanks=st.lists(st.integers(0, 40), max_size=12),
    bad_at=st.integers(0, 39),
    fault=st.sampled_from(sorted(_BAD_READINGS)),
    crlf=st.booleans(),
    quoted=st.booleans(),
)
def test_a_bad_reading_after_blank_lines_is_refused_with_the_file_s_line(
    tmp_path: Path, blanks: list[int], bad_at: int, fault: str, crlf: bool, quoted: bool
) -> None:
    """Blank lines are skipped, but were not counted: a bad row after two of them was named as
    `row 4` where an editor shows it on line 6, by the fast path and the quoted one alike."""
    rows = [f"M1,2026-01-05T00:{m:02d}:00Z,{m}.000" for m in range(40)]
    bad, says = _BAD_READINGS[fault]
    rows[bad_at] = bad
    if quoted:
        good = 1 if bad_at == 0 else 0  # a quoted meter id sends the file to the csv module
        rows[good] = rows[good].replace("M1,", '"M1",', 1)
    lines = ["meter_id,ts,volume_m3"]
    for i, row in enumerate(rows):
        lines.extend([""] * blanks.count(i))
        lines.append(row)
    lines.extend([""] * blanks.count(40))
    path = tmp_path / "r.csv"
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode() + b"\n")
    line = lines.index(bad) + 1
    with pytest.raises(CsvFormatError, match=rf"^{re.escape(str(path))}: row {line}: {re.escape(says)}"):
        read_readings_csv(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blanks=st.lists(st.integers(0, 9), max_size=8),
    bad_at=st.integers(0, 9),
    fault=st.sampled_from(["role", "fields", "installed_at"]),
)
def test_a_bad_meter_after_blank_lines_is_refused_with_the_file_s_line(
    tmp_path: Path, blanks: list[int], bad_at: int, fault: str
) -> None:
    """METERS.csv's blank lines are counted too: its rows were numbered as if they were not there."""
    rows = [f"M{i},DMA1,customer," for i in range(10)]
    rows[bad_at] = {
        "role": f"M{bad_at},DMA1,house,",
        "fields": f"M{bad_at},DMA1,customer,,x",
        "installed_at": f"M{bad_at},DMA1,customer,2026-13-01T00:00:00Z",
    }[fault]
    lines = ["meter_id,dma,role,installed_at"]
    for i, row in enumerate(rows):
        lines.extend([""] * blanks.count(i))
        lines.append(row)
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CsvFormatError, match=rf"^{re.escape(str(path))}: row {lines.index(rows[bad_at]) + 1}: "):
        read_meters_csv(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meters=st.integers(2, 60), first=st.integers(0, 59), again=st.integers(0, 59))
def test_a_meter_listed_twice_is_refused_naming_it_and_its_two_rows(
    tmp_path: Path, meters: int, first: int, again: int
) -> None:
    """`a meter_id appears twice` named neither the meter nor its rows, in a file of thousands."""
    first, again = sorted((first % meters, again % meters))
    if first == again:
        again = first + 1
    ids = [f"M{i:03d}" for i in range(meters)]
    ids.insert(again, ids[first])
    path = tmp_path / "m.csv"
    path.write_text("meter_id,dma,role\n" + "".join(f"{m},DMA1,customer\n" for m in ids))
    says = rf": rows {first + 2} and {again + 2}: meter 'M{first:03d}' appears twice"
    with pytest.raises(CsvFormatError, match=says):
        read_meters_csv(path)


def _read_or_refusal(path: Path) -> tuple[list[int], str]:
    """The readings' epoch seconds, or the refusal's message without the path."""
    try:
        return read_readings_csv(path).ts_s.tolist(), ""
    except CsvFormatError as error:
        return [], str(error).replace(str(path), "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dates=st.lists(
        st.tuples(
            st.integers(1, 9999).filter(lambda y: y % 4 == 0) | st.integers(1, 9999),  # leap years often
            st.integers(1, 12),
            st.integers(1, 31),  # 29 to 31 fit some months only
            st.integers(0, 23),
            st.integers(0, 59),
            st.integers(0, 59),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_fast_and_the_quoted_path_accept_and_refuse_the_same_dates(tmp_path: Path, dates) -> None:
    """The NumPy path refuses 2025-02-29 and 2025-04-31 as the csv-module path does (it read them
    as 1 March and 1 May), and takes 2024-02-29, 2000-02-29: the same instants or the same refusal."""
    rows = [f"M1,{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z,1.000" for y, mo, d, h, mi, s in dates]
    fast, quoted = tmp_path / "fast.csv", tmp_path / "quoted.csv"
    fast.write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    quoted.write_text("meter_id,ts,volume_m3\n" + "\n".join(r.replace("M1,", '"M1",') for r in rows) + "\n")
    assert _read_or_refusal(fast) == _read_or_refusal(quoted)


_TS_MIN_S = 946_684_800  # 2000-01-01T00:00:00Z, the collector's earliest reading time
_ANCHORS_S = [
    -62_135_596_800 + 3 * 86_400,  # 0001-01-04: two days and an offset off, still year 1 (year 0: see below)
    0,  # 1970, a clock at zero
    _TS_MIN_S,
    _TS_MIN_S + SPAN_MAX_DAYS * 86_400,
    1_767_225_600,  # 2026-01-01
    1_767_225_600 + SPAN_MAX_DAYS * 86_400,
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(_ANCHORS_S),
            st.integers(-2 * 86_400, 2 * 86_400),  # seconds from the anchor
            st.sampled_from(["Z", "+05:30", "-03:00"]),
            st.sampled_from(["actual", "estimated"]),
        ),
        min_size=1,
        max_size=6,
    ),
    quote_row=st.integers(0, 5),
)
def test_readings_before_2000_or_spanning_years_are_refused_alike_by_the_fast_and_the_quoted_path(
    tmp_path: Path, rows, quote_row: int
) -> None:
    """A meter whose clock reset (2000-01-01, 1970, year 1) stretched the grid every meter is laid on
    from weeks to decades (a hang, then out of memory); a time before 2000-01-01, the collector's
    bound, is refused with its row, and a file spanning more than ``SPAN_MAX_DAYS`` with its
    earliest and latest rows (estimated rows' times too), by both parsers in the same words. Before,
    a time before year 1 in UTC crashed the csv-module path (OverflowError)."""
    lines, instants = [], []
    for anchor, shift, suffix, quality in rows:
        utc = anchor + shift
        offset = {"Z": 0, "+05:30": 19_800, "-03:00": -10_800}[suffix]
        local = np.datetime_as_string(np.datetime64(utc + offset, "s"), unit="s")
        lines.append(f"M1,{local}{suffix},1.000,{quality}")
        instants.append(utc)
    header = "meter_id,ts,volume_m3,quality\n"
    fast, quoted = tmp_path / "fast.csv", tmp_path / "quoted.csv"
    fast.write_text(header + "\n".join(lines) + "\n")
    quoted_lines = [
        f'"{line}"'.replace(",", '","') if i == quote_row % len(lines) else line for i, line in enumerate(lines)
    ]
    quoted.write_text(header + "\n".join(quoted_lines) + "\n")
    found, refusal = _read_or_refusal(fast)
    assert (found, refusal) == _read_or_refusal(quoted)
    early = [i for i, t in enumerate(instants) if t < _TS_MIN_S]
    if early:
        assert refusal.startswith(f": row {early[0] + 2}: ts ") and "is before 2000-01-01T00:00:00Z" in refusal
    elif max(instants) - min(instants) > SPAN_MAX_DAYS * 86_400:
        first, last = instants.index(min(instants)), instants.index(max(instants))
        assert refusal.startswith(": the readings span ") and f"(row {first + 2}) to " in refusal
        assert f"(row {last + 2}), more than {SPAN_MAX_DAYS:,} days" in refusal
    else:
        assert refusal == "" and found == [t for t, r in zip(instants, rows, strict=True) if r[3] == "actual"]


def _said(output: str) -> str:
    """The command's output as one line, without the error box's borders it was wrapped in."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_one_reading_from_a_reset_clock_is_refused_by_the_detect_command(tmp_path: Path) -> None:
    """The reviewer's case: a hundred meters' three weeks and one row dated 2000-01-01, whose grid of
    228,528 hours did not finish in 90 s; and a row of year 0000, which crashed (year 0 is out of
    range). Both now exit 2 naming the row, nothing written."""
    block = _small_block()
    _write(block, tmp_path / "r.csv")
    _meters(block, tmp_path / "m.csv")
    good = (tmp_path / "r.csv").read_text()
    rows = good.count("\n")  # the header and the readings: the added row is the next
    for name, row, says in [
        ("year0", "M000,0000-01-05T05:00:00Z,0.000", rf"row {rows + 1}: ts 0000-01-05T05:00:00Z is before 2000-01-01"),
        ("reset", "M000,2000-01-01T00:00:00Z,0.000", rf"readings span 2000-01-01T00:00:00Z \(row {rows + 1}\)"),
    ]:
        (tmp_path / f"{name}.csv").write_text(good + row + "\n")
        out = tmp_path / f"{name}.json"
        args = ["detect", "--readings", str(tmp_path / f"{name}.csv"), "--meters", str(tmp_path / "m.csv")]
        result = CliRunner().invoke(app, [*args, "--out", str(out)], terminal_width=400)
        assert result.exit_code == 2, result.output
        assert re.search(says, _said(result.output)), result.output
        assert not out.exists()


@pytest.mark.parametrize(("date", "refused"), [("2025-02-29", True), ("2025-04-31", True), ("2024-02-29", False)])
def test_an_impossible_date_is_refused_with_its_row(tmp_path: Path, date: str, refused: bool) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"meter_id,ts,volume_m3\nM1,2025-02-28T23:00:00Z,1.000\nM1,{date}T00:00:00Z,1.010\n")
    if refused:
        with pytest.raises(CsvFormatError, match=rf"row 3: ts '{date}T00:00:00Z': day is out of range for month"):
            read_readings_csv(path)
    else:
        assert read_readings_csv(path).ts_s.size == 2


@pytest.mark.parametrize(
    ("later", "says"),
    [
        ("2026-01-01T01:00:00X", "Invalid isoformat string"),
        ("2026-01-01T01:00:00 ", "has no timezone"),  # naive, the same width as "...Z"
        ("2026-01-01T23:59:60Z", "is not an ISO 8601 time"),  # a leap second read as the next midnight
        ("2026-01-01T01:00:00+25:00", "offset must be"),
    ],
)
def test_a_later_row_s_bad_time_is_refused_with_its_row(tmp_path: Path, later: str, says: str) -> None:
    """The reviewer's cases: the fast path checked the ``Z`` on the first row only, so a later row
    ending in ``X``, or a naive time padded by a space, was taken as UTC; ``23:59:60Z`` rolled over
    to the next day; an offset ``+25:00`` every row had was taken as one. Each is refused with its
    row, as the csv-module path refuses it (the rows alike in every field but ``ts`` take the fast
    path; the same file with a field quoted takes the other)."""
    first = "2026-01-01T00:00:00Z" if "+" not in later else "2026-01-01T00:00:00+25:00"
    for meter in ("M1", '"M1"'):
        path = tmp_path / "r.csv"
        path.write_text(f"meter_id,ts,volume_m3\nM1,2026-01-01T00:00:00Z,1.000\n{meter},{later},1.010\n")
        with pytest.raises(CsvFormatError, match=rf"row 3: ts {re.escape(repr(later))}.*({re.escape(says)}|second)"):
            read_readings_csv(path)
    path.write_text(f"meter_id,ts,volume_m3\nM1,{first},1.000\nM1,{later},1.010\n")
    with pytest.raises(CsvFormatError, match=r"row [23]: "):
        read_readings_csv(path)


@pytest.mark.parametrize("ts", ["2026-01-01T01:00:00Z\n", "\r\n2026-01-01T01:00:00Z", "2026-01-01T01:00:00Z\x0b"])
def test_a_time_with_a_line_break_is_refused_with_its_row(tmp_path: Path, ts: str) -> None:
    """A quoted time over two lines (a broken file), or ending in a vertical tab: the line break was
    stripped and the time read. It is refused with its row, as in METERS.csv and ACCOUNTS.csv."""
    path = tmp_path / "r.csv"
    path.write_text(f'meter_id,ts,volume_m3\nM1,2026-01-01T00:00:00Z,1.000\nM1,"{ts}",1.010\n', newline="")
    with pytest.raises(CsvFormatError, match=rf"row 3: ts {re.escape(repr(ts))}: has a line break"):
        read_readings_csv(path)


_SUFFIXES = ["Z", "Z", "Z", "+00:00", "+05:30", "-03:00", "X", " ", "", "z", "Z ", "+25:00", "+05", "+"]


def _refused_row(refusal: str) -> int | None:
    found = re.search(r"row (\d+)", refusal)
    return int(found.group(1)) if found else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 47), st.integers(0, 60), st.sampled_from(_SUFFIXES)),
        min_size=1,
        max_size=6,
    ),
)
def test_the_fast_path_reads_every_row_s_time_as_the_quoted_path_does(tmp_path: Path, rows) -> None:
    """Every row's time is checked, not the first's: the NumPy path gives the same instants as the
    csv-module path, or refuses the same row, whatever suffix (``Z``, an offset, none, another
    letter, a space) and second (60 included) each row has; a refusal names its row."""
    lines = [f"M1,2026-01-0{1 + h // 24}T{h % 24:02d}:00:{s:02d}{suffix},1.000" for h, s, suffix in rows]
    fast, quoted = tmp_path / "fast.csv", tmp_path / "quoted.csv"
    fast.write_text("meter_id,ts,volume_m3\n" + "\n".join(lines) + "\n")
    quoted.write_text("meter_id,ts,volume_m3\n" + "\n".join(r.replace("M1,", '"M1",') for r in lines) + "\n")
    (found, refusal), (expected, expected_refusal) = _read_or_refusal(fast), _read_or_refusal(quoted)
    assert found == expected
    assert _refused_row(refusal) == _refused_row(expected_refusal)
    if refusal:
        assert _refused_row(refusal) is not None, refusal


def test_a_bad_meters_file_says_what_is_wrong(tmp_path: Path) -> None:
    roles = tmp_path / "m.csv"
    roles.write_text("meter_id,dma,role\nA,D1,bulk\n")
    with pytest.raises(CsvFormatError, match="role"):
        read_meters_csv(roles)


def test_a_bulk_column_marks_bulk_meters_and_a_bad_value_is_refused(tmp_path: Path) -> None:
    meters = tmp_path / "m.csv"
    meters.write_text("meter_id,bulk,dma,role\nA,true,D1,customer\nB,,D1,customer\nC,FALSE,D1,customer\n")
    parsed = read_meters_csv(meters)
    assert parsed.bulk is not None and parsed.bulk.tolist() == [True, False, False]
    meters.write_text("meter_id,dma,role\nA,D1,customer\n")
    assert read_meters_csv(meters).bulk is None
    meters.write_text("meter_id,dma,role,bulk\nA,D1,customer,yes please\n")
    with pytest.raises(CsvFormatError, match="row 2: bulk must be true, false or empty"):
        read_meters_csv(meters)
    meters.write_text("meter_id,dma,role,bulk\nA,D1,customer,true\nD1-IN,D1,inlet,true\n")
    with pytest.raises(CsvFormatError, match="row 3: an inlet is no bulk meter"):
        read_meters_csv(meters)


def test_installed_and_removed_columns_say_where_each_meter_was_in_place(tmp_path: Path) -> None:
    """A meter exchanged at 02:30: the old one is in place over the interval 02:00-03:00 and before,
    the new one over it and after; a meter with neither date is in place throughout."""
    readings, meters = tmp_path / "r.csv", tmp_path / "m.csv"
    lines = ["meter_id,ts,volume_m3"]
    lines += [f"OLD,2026-01-05T0{h}:00:00Z,{1 + h / 1000}" for h in range(3)]
    lines += [f"NEW,2026-01-05T0{h}:00:00Z,{h / 1000}" for h in range(3, 6)]
    lines += [f"KEPT,2026-01-05T0{h}:00:00Z,{h / 1000}" for h in range(6)]
    readings.write_text("\n".join(lines) + "\n")
    meters.write_text(
        "meter_id,dma,role,installed_at,removed_at\n"
        "OLD,D1,customer,2025-06-01T00:00:00Z,2026-01-05T02:30:00Z\n"
        "NEW,D1,customer,2026-01-05T02:30:00Z,\n"
        "KEPT,D1,customer,,\n"
    )
    block, dropped = build_block(read_readings_csv(readings), read_meters_csv(meters))
    assert dropped == 0 and block.installed is not None
    assert block.installed.tolist() == [
        [True, True, True, True, False, False],
        [False, False, False, True, True, True],
        [True] * 6,
    ]
    meters.write_text("meter_id,dma,role\nOLD,D1,customer\n")
    assert build_block(read_readings_csv(readings), read_meters_csv(meters))[0].installed is None


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("A,D1,customer,2026-01-05 02:30,", "row 2: installed_at: .* needs a UTC offset"),
        ("A,D1,customer,,yesterday", "row 2: removed_at: .*yesterday"),
        ("A,D1,customer,2026-01-05x02:30Z,", r"row 2: installed_at: '2026-01-05x02:30Z' is no ISO 8601 time"),
        ("A,D1,customer,2026-01-05T02:30Z,2026-01-05T02:30Z", "row 2: removed_at must be after installed_at"),
        # stored by register-meters in year 1, which no session west of UTC can read back; and a
        # quoted time over two lines (a broken file), whose line break was dropped
        (
            "A,D1,customer,0001-01-01T00:00:00Z,",
            r"row 2: installed_at: '0001-01-01T00:00:00Z' is outside the years 1900",
        ),
        ("A,D1,customer,,9999-12-31T00:00:00Z", r"row 2: removed_at: '9999-12-31T00:00:00Z' is outside the years 1900"),
        ('A,D1,customer,"2026-01-05T02:30Z\n",', r"row 2: installed_at: '2026-01-05T02:30Z\\n' has a line break"),
        ('A,D1,customer,,"\r\n2026-01-05T02:30Z"', r"row 2: removed_at: '\\r\\n2026-01-05T02:30Z' has a line break"),
    ],
)
def test_a_bad_installation_date_is_refused_with_its_row(tmp_path: Path, row: str, match: str) -> None:
    meters = tmp_path / "m.csv"
    meters.write_text(f"meter_id,dma,role,installed_at,removed_at\n{row}\n")
    with pytest.raises(CsvFormatError, match=match):
        read_meters_csv(meters)


def test_blanks_around_an_installation_date_are_dropped(tmp_path: Path) -> None:
    """Spaces and tabs around a time are dropped, as around the other fields (a line break is not)."""
    meters = tmp_path / "m.csv"
    meters.write_text(
        'meter_id,dma,role,installed_at,removed_at\nA,D1,customer, 2026-01-05T02:30Z,"\t2026-02-01T00:00Z "\n'
    )
    [(_, installed, removed)] = read_meters_csv(meters).installations
    assert (installed, removed) == (datetime(2026, 1, 5, 2, 30, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))


def test_a_backward_register_column_is_read_in_any_position_and_may_be_empty(tmp_path: Path) -> None:
    fast, quoted = tmp_path / "fast.csv", tmp_path / "quoted.csv"
    fast.write_text(
        "reverse_volume_m3,meter_id,ts,volume_m3\n"
        "0.012,A,2026-01-05T00:00:00Z,1.5\n"
        ",B,2026-01-05T00:00:00Z,7\n"
        "0.015,A,2026-01-05T01:00:00Z,1.25\n"
        ",B,2026-01-05T01:00:00Z,7.125\n"
    )
    quoted.write_text(fast.read_text().replace(",A,", ',"A",'))
    meters = tmp_path / "m.csv"
    meters.write_text("meter_id,dma,role\nA,D1,customer\nB,D1,customer\n")
    for path in (fast, quoted):
        readings = read_readings_csv(path)
        assert readings.reverse_m3 is not None
        block, _ = build_block(readings, read_meters_csv(meters))
        assert block.reverse_m3 is not None
        assert block.reverse_m3[0].tolist() == [0.012, 0.015]
        assert np.isnan(block.reverse_m3[1]).all()
        assert block.volume_m3.tolist() == [[1.5, 1.25], [7.0, 7.125]]
    without = tmp_path / "plain.csv"
    without.write_text("meter_id,ts,volume_m3\nA,2026-01-05T00:00:00Z,1.5\nA,2026-01-05T01:00:00Z,1.75\n")
    assert read_readings_csv(without).reverse_m3 is None
    assert build_block(read_readings_csv(without), read_meters_csv(meters))[0].reverse_m3 is None


def test_meter_ids_of_any_length_in_the_last_column_are_read_whole(tmp_path: Path) -> None:
    """A field near the file's end, shorter than its column's longest: the last row's meter id "A"
    was read as the bytes before it (":"), when meter_id was the last column."""
    path = tmp_path / "last.csv"
    path.write_text("ts,volume_m3,meter_id\n2026-01-05T00:00:00Z,1.5,LONGID-1234\n2026-01-05T01:00:00Z,2.5,A\n")
    readings = read_readings_csv(path)
    assert readings.meter_names[readings.meter_index].tolist() == ["LONGID-1234", "A"]
    path.write_text("ts,volume_m3,meter_id\n2026-01-05T00:00:00Z,1.5,A")  # no newline at the end either
    assert read_readings_csv(path).meter_names.tolist() == ["A"]


def test_a_quality_column_leaves_out_what_vee_estimated_and_refuses_an_unknown_quality(tmp_path: Path) -> None:
    """Readings exported with their quality (as ``GET /meters/{id}/readings`` gives them): the
    estimated ones are left out, as the detection job leaves them out; empty is actual."""
    fast, quoted = tmp_path / "fast.csv", tmp_path / "quoted.csv"
    fast.write_text(
        "meter_id,quality,ts,volume_m3\n"
        "A,actual,2026-01-05T00:00:00Z,1.5\n"
        "A,estimated,2026-01-05T01:00:00Z,1.6\n"
        "A,,2026-01-05T02:00:00Z,1.75\n"
        "A,substituted,2026-01-05T03:00:00Z,1.8\n"
        "A,edited,2026-01-05T04:00:00Z,1.9\n"
    )
    quoted.write_text(fast.read_text().replace("A,", '"A",'))
    for path in (fast, quoted):
        readings = read_readings_csv(path)
        assert readings.volume_m3.tolist() == [1.5, 1.75, 1.8, 1.9]
        assert ((readings.ts_s - readings.ts_s[0]) // 3600).tolist() == [0, 2, 3, 4]
    for bad_quality in ("guessed", "estimatedX", "ACTUAL"):
        for path in (fast, quoted):
            path.write_text(
                f"meter_id,ts,volume_m3,quality\nA,2026-01-05T00:00:00Z,1,actual\nA,2026-01-05T01:00:00Z,2,{bad_quality}\n"
            )
            if path is quoted:
                path.write_text(path.read_text().replace("A,", '"A",'))
            with pytest.raises(CsvFormatError, match=f"row 3: quality '{bad_quality}' is none of"):
                read_readings_csv(path)


def _reading_rows(fourth: st.SearchStrategy[object]) -> st.SearchStrategy[list[tuple[str, int, int, object]]]:
    """Rows of (meter id, hours after the first instant, register in litres, ``fourth``)."""
    row = st.tuples(st.sampled_from(["A", "B7", "M-000123"]), st.integers(0, 10_000), st.integers(0, 10**12), fourth)
    return st.lists(row, min_size=1, max_size=40)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=_reading_rows(st.sampled_from(["actual", "estimated", "substituted", "edited", ""])),
    columns=st.permutations(["meter_id", "ts", "volume_m3", "quality"]),
)
def test_readings_with_their_quality_parse_to_the_rows_that_are_not_estimated(
    tmp_path: Path, rows, columns: list[str]
) -> None:
    """Columns in any order: each field is read whole wherever it stands, the last row's last one too."""
    path = tmp_path / "quality.csv"
    epoch = np.datetime64("2026-01-05T00:00:00", "s")
    lines = []
    for mid, h, v, q in rows:
        fields = {
            "meter_id": mid,
            "ts": f"{np.datetime_as_string(epoch + np.timedelta64(h, 'h'), unit='s')}Z",
            "volume_m3": f"{v / 1000:.3f}",
            "quality": q,
        }
        lines.append(",".join(fields[c] for c in columns))
    path.write_text(",".join(columns) + "\n" + "\n".join(lines) + "\n")
    readings = read_readings_csv(path)
    kept = [r for r in rows if r[3] != "estimated"]
    assert readings.meter_names[readings.meter_index].tolist() == [r[0] for r in kept]
    assert (readings.ts_s - int(epoch.astype(np.int64))).tolist() == [r[1] * 3600 for r in kept]
    assert readings.volume_m3.tolist() == [float(f"{r[2] / 1000:.3f}") for r in kept]


_FIELD_TEXT = st.text(alphabet='AB0123456789.,-:TZ+\n\r" e', max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.sampled_from(["meter_id,ts,volume_m3", "meter_id,ts,volume_m3,reverse_volume_m3", "ts,x"]),
    body=_FIELD_TEXT,
)
def test_any_bytes_give_readings_or_a_csv_format_error(tmp_path: Path, header: str, body: str) -> None:
    """Fuzz: whatever the file holds, the reader returns readings or says what is wrong."""
    path = tmp_path / "fuzz.csv"
    path.write_bytes((header + "\n" + body).encode())
    try:
        readings = read_readings_csv(path)
    except CsvFormatError:
        return
    n = readings.ts_s.size
    assert readings.meter_index.size == readings.volume_m3.size == n
    assert readings.reverse_m3 is None or readings.reverse_m3.size == n
    _assert_registers(readings)


def _assert_registers(readings) -> None:
    """What the reader gives is registers: finite, 0 or more (a backward register may be absent, NaN)."""
    assert np.all((readings.volume_m3 >= 0) & np.isfinite(readings.volume_m3))
    if readings.reverse_m3 is not None:
        given = readings.reverse_m3[~np.isnan(readings.reverse_m3)]
        assert np.all((given >= 0) & np.isfinite(given))


_VALID = (
    "meter_id,ts,volume_m3,reverse_volume_m3\n"
    "A,2026-01-05T00:00:00Z,12.345,0.001\n"
    "B,2026-01-05T01:00:00+00:00,7,\n"
    "A,2026-01-05T01:00:00Z,12.5,0.002\n"
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=damaged_texts(_VALID, list('AB09.,-:TZ+\n\r" e\x00é'), max_edits=4))
def test_a_damaged_file_gives_readings_or_a_csv_format_error(tmp_path: Path, text: str) -> None:
    """Fuzz: a good file with a few characters inserted, changed or deleted."""
    path = tmp_path / "damaged.csv"
    path.write_text(text, encoding="utf-8")
    meters = tmp_path / "m.csv"
    meters.write_text("meter_id,dma,role\nA,D1,customer\nB,D1,customer\n")
    try:
        readings = read_readings_csv(path)
        block, _ = build_block(readings, read_meters_csv(meters))
    except CsvFormatError:
        return
    _assert_registers(readings)
    # the block's rows are the listed meters (A, B) that have a reading, in the meters file's order
    read = set(readings.meter_names[np.unique(readings.meter_index)].tolist())
    assert block.meter_ids.tolist() == [m for m in ("A", "B") if m in read]
    assert block.volume_m3.shape == (len(block.meter_ids), block.n_intervals)
    assert block.reverse_m3 is None or block.reverse_m3.shape == block.volume_m3.shape


_VALID_METERS = (
    "meter_id,dma,role,bulk,installed_at,removed_at,service_point_id,initial_register_m3,final_register_m3\n"
    "A,D1,customer,false,2026-01-01T00:00:00Z,,SP1,1.5,\n"
    "B,D1,inlet,,,2026-03-01T00:00:00Z,,,\n"
)
# single characters, and whole values a meters file may hold in the wrong place
_METER_PIECES = [*'AB09.,-:TZ+\n\r" e\x00é\ufeff', "true", "inlet", "bulk", "9999-12-31T23:00:00-10:00"]


def _assert_meters(meters) -> None:
    """What a meters file that reads promises: each meter once, named, with a role; no removal before
    its installation."""
    ids = meters.meter_ids.tolist()
    assert all(ids) and len(set(ids)) == len(ids) == len(meters.dma) == len(meters.role)
    assert set(meters.role.tolist()) <= {"customer", "inlet"}
    assert meters.bulk is None or (len(meters.bulk) == len(ids) and not meters.bulk[meters.role == "inlet"].any())
    for row, installed, removed in meters.installations:
        assert 0 <= row < len(ids) and (installed is None or removed is None or installed < removed)


def _meters_or_a_csv_format_error(path: Path) -> None:
    """The file reads as meters that hold together, or is refused with an error naming it."""
    meters = parsed_or_refused(lambda: read_meters_csv(path), CsvFormatError, str(path))
    if meters is not None:
        _assert_meters(meters)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=damaged_texts(_VALID_METERS, _METER_PIECES))
def test_a_damaged_meters_file_gives_meters_or_a_csv_format_error(tmp_path: Path, text: str) -> None:
    """Fuzz: a good meters file with a few characters inserted, changed or deleted."""
    path = tmp_path / "damaged-meters.csv"
    path.write_text(text, encoding="utf-8")
    _meters_or_a_csv_format_error(path)


_METER_COLUMNS = _VALID_METERS.split("\n")[0].split(",")
# per column: values that are right, and values that are wrong there (times whose UTC date is outside
# the years 1..9999, month 13, a date alone, a register with a decimal comma)
_COLUMN_FIELDS = {
    "meter_id": (["A"], ["", "A"]),  # a right row's meter_id is its own (see _meter_files)
    "dma": (["D1", "D2", ""], []),
    "role": (["customer", "customer", "inlet"], ["bulk", ""]),
    "bulk": (["", "false", "FALSE"], ["yes", "true"]),
    "installed_at": (["", "2026-01-01T00:00:00Z"], ["9999-12-31T23:00:00-10:00", "2026-13-01T00:00:00Z", "0"]),
    "removed_at": (["", "2026-03-01T00:00:00+00:00"], ["0001-01-01T00:00:00+01:00", "2026-02-30T00:00:00Z"]),
    "service_point_id": (["", "SP1"], []),
    "initial_register_m3": (["", "1.5"], ["-1", "nan"]),
    "final_register_m3": (["", "2.5"], ["1,5"]),
}
_ANY_FIELD = st.sampled_from([f for right, wrong in _COLUMN_FIELDS.values() for f in right + wrong]) | st.text(
    max_size=12
)


@st.composite
def _meter_files(draw: st.DrawFn) -> str:
    """A meters file written by csv.writer (quoting as a spreadsheet does): its columns in any order
    (a required one now and then left out), rows of right values, then up to two fields made wrong
    for their column (or any value, any text) and now and then a row a field short or long."""
    required, optional = _METER_COLUMNS[:3], _METER_COLUMNS[3:]
    kept = st.sampled_from([True] * 9 + [False])
    columns = [c for c in required if draw(kept)] + [c for c in optional if draw(st.booleans())]
    columns = draw(st.permutations(columns))
    rows = [
        [f"M-{i}" if c == "meter_id" else draw(st.sampled_from(_COLUMN_FIELDS[c][0])) for c in columns]
        for i in range(draw(st.integers(1, 3)))
    ]
    for _ in range(draw(st.integers(0, 2)) if columns else 0):
        row, at = draw(st.sampled_from(rows)), draw(st.integers(0, len(columns) - 1))
        wrong = _COLUMN_FIELDS[columns[at]][1]
        wrong_here: bool = bool(wrong) and draw(kept)
        row[at] = draw(st.sampled_from(wrong)) if wrong_here else draw(_ANY_FIELD)
    if draw(st.sampled_from([False] * 9 + [True])):
        row = draw(st.sampled_from(rows))
        row[:] = row[:-1] if draw(st.booleans()) else [*row, draw(_ANY_FIELD)]
    out = io.StringIO()
    csv.writer(out).writerows([columns, *rows])
    return out.getvalue()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_meter_files())
def test_a_meters_file_of_any_fields_gives_meters_or_a_csv_format_error(tmp_path: Path, text: str) -> None:
    """Fuzz: a well-formed CSV meters file, its columns in any order, a field or two wrong for its column."""
    path = tmp_path / "fields-meters.csv"
    path.write_text(text, encoding="utf-8")
    _meters_or_a_csv_format_error(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["meter_id,dma,role", _VALID_METERS.split("\n")[0], "meter_id,role"]), body=st.binary())
def test_any_bytes_give_meters_or_a_csv_format_error(tmp_path: Path, header: str, body: bytes) -> None:
    """Fuzz: whatever bytes follow the header (not UTF-8, NULs, lone quotes), meters or a CsvFormatError."""
    path = tmp_path / "fuzz-meters.csv"
    path.write_bytes(header.encode() + b"\n" + body)
    _meters_or_a_csv_format_error(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_reading_rows(st.one_of(st.none(), st.integers(0, 10**9))))  # backward register in litres, or none
def test_readings_with_a_backward_register_parse_to_what_was_written(tmp_path: Path, rows) -> None:
    path = tmp_path / "prop.csv"
    epoch = np.datetime64("2026-01-05T00:00:00", "s")
    lines = [
        f"{mid},{np.datetime_as_string(epoch + np.timedelta64(h, 'h'), unit='s')}Z,{v / 1000:.3f},"
        + ("" if b is None else f"{b / 1000:.3f}")
        for mid, h, v, b in rows
    ]
    path.write_text("meter_id,ts,volume_m3,reverse_volume_m3\n" + "\n".join(lines) + "\n")
    readings = read_readings_csv(path)
    assert readings.reverse_m3 is not None
    names = readings.meter_names[readings.meter_index].tolist()
    assert names == [r[0] for r in rows]
    assert (readings.ts_s - int(epoch.astype(np.int64))).tolist() == [r[1] * 3600 for r in rows]
    assert readings.volume_m3.tolist() == [float(f"{r[2] / 1000:.3f}") for r in rows]
    expected = [np.nan if r[3] is None else float(f"{r[3] / 1000:.3f}") for r in rows]
    np.testing.assert_array_equal(readings.reverse_m3, np.array(expected))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=_reading_rows(st.one_of(st.none(), st.integers(0, 10**9))),
    quoting=st.sampled_from([csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_MINIMAL]),
    columns=st.permutations(["meter_id", "ts", "volume_m3", "reverse_volume_m3"]),
    header_spaces=st.booleans(),
)
def test_a_file_written_by_the_csv_module_with_any_quoting_parses_as_the_plain_one(
    tmp_path: Path, rows, quoting, columns: list[str], header_spaces: bool
) -> None:
    """R's write.csv and pandas' QUOTE_ALL quote the header too: ``"meter_id","ts","volume_m3"`` was
    refused (rc 2), where METERS.csv quoted alike was read. Any quoting gives the readings the
    unquoted file gives, the columns in any order (spaces around the header's names as well)."""
    epoch = np.datetime64("2026-01-05T00:00:00", "s")
    records = [
        {
            "meter_id": mid,
            "ts": f"{np.datetime_as_string(epoch + np.timedelta64(h, 'h'), unit='s')}Z",
            "volume_m3": f"{v / 1000:.3f}",
            "reverse_volume_m3": "" if b is None else f"{b / 1000:.3f}",
        }
        for mid, h, v, b in rows
    ]
    plain, quoted = tmp_path / "plain.csv", tmp_path / "quoted.csv"
    plain.write_text(",".join(columns) + "\n" + "\n".join(",".join(r[c] for c in columns) for r in records) + "\n")
    with quoted.open("w", newline="") as file:
        writer = csv.writer(file, quoting=quoting)  # (QUOTE_NONNUMERIC quotes every str: all of ours)
        writer.writerow([f" {c} " if header_spaces else c for c in columns])
        writer.writerows([r[c] for c in columns] for r in records)
    expected, got = read_readings_csv(plain), read_readings_csv(quoted)
    assert got.meter_names[got.meter_index].tolist() == expected.meter_names[expected.meter_index].tolist()
    assert got.ts_s.tolist() == expected.ts_s.tolist() and got.volume_m3.tolist() == expected.volume_m3.tolist()
    assert expected.reverse_m3 is not None and got.reverse_m3 is not None
    np.testing.assert_array_equal(got.reverse_m3, expected.reverse_m3)


@pytest.mark.parametrize("hours", [12, 24])
def test_reads_once_or_twice_a_day_are_detected_over_not_a_crash(tmp_path: Path, hours: int) -> None:
    """A shop read once a day (a drive-by schedule) drawing 7 m³ a day crashed the burst rules: a
    day of one or two intervals has no part before the last two to take the highest of."""
    rows = [f"SHOP1,{np.datetime_as_string(np.datetime64('2026-01-01T00:00', 's') + np.timedelta64(h, 'h'))}Z,"
            f"{100 + 7 * h / 24:.3f}" for h in range(0, 30 * 24, hours)]  # fmt: skip
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nSHOP1,D1,customer\n")
    out = tmp_path / "alerts.json"
    files = ["--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv"), "--out", str(out)]
    result = CliRunner().invoke(app, ["detect", *files])
    assert result.exit_code == 0, result.output
    alerts = json.loads(out.read_text())
    assert isinstance(alerts, list) and all(a["start"] <= a["detected_at"] for a in alerts)


def test_the_detect_command_writes_alerts_json(tmp_path: Path) -> None:
    block = _small_block()
    _write(block, tmp_path / "r.csv", shuffle=5)
    _meters(block, tmp_path / "m.csv")
    out = tmp_path / "alerts.json"
    result = CliRunner().invoke(
        app,
        [
            "detect",
            "--readings",
            str(tmp_path / "r.csv"),
            "--meters",
            str(tmp_path / "m.csv"),
            "--out",
            str(out),
            "--balance",
            str(tmp_path / "balance.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    alerts = json.loads(out.read_text())
    leaks = [a for a in alerts if a["kind"] == "leak"]
    assert [a["meter_id"] for a in leaks] == ["M-LEAK"]
    leak = leaks[0]
    assert {"meter_id", "dma", "kind", "start", "detected_at", "rate_l_h"} <= leak.keys()
    assert leak["dma"] == "D1" and leak["start"].endswith("Z") and leak["detected_at"].endswith("Z")
    assert leak["start"] < leak["detected_at"]
    assert abs(leak["rate_l_h"] - 20.0) < 3.0
    assert json.loads((tmp_path / "balance.json").read_text())[0]["dma"] == "D1"
    assert "alerts" in result.output  # the progress lines (stderr) end with a summary


def test_the_detect_command_writes_an_alert_whose_flow_stopped_as_resolved(tmp_path: Path) -> None:
    """A burst over by the file's end was written `"status": "open"` beside its `ended_at`, with no
    `resolved_at`, where the collector stores (and its dry run writes) it resolved at its end: an
    analyst listing the open alerts of ALERTS.json counted repaired bursts. The leak still running
    stays open."""
    rng = np.random.default_rng(61)
    uses = {f"M{i:03d}": household(rng, 10) for i in range(8)}
    uses["M-LEAK"] = add_flow(household(rng, 10), 4 * 24 + 2.5, 20.0)
    uses["M-BURST"] = add_flow(household(rng, 10), 6 * 24 + 1.5, 900.0, end_h=6 * 24 + 9.5)
    block = block_of(uses, inlet_extra_l=np.full(240, 50.0))
    _write(block, tmp_path / "r.csv")
    _meters(block, tmp_path / "m.csv")
    out = tmp_path / "alerts.json"
    args = ["detect", "--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv"), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    alerts = {(a["kind"], a["meter_id"]): a for a in json.loads(out.read_text())}
    burst, leak = alerts[("burst", "M-BURST")], alerts[("leak", "M-LEAK")]
    assert burst["ended_at"] is not None
    assert (burst["status"], burst["resolved_at"]) == ("resolved", burst["ended_at"])
    assert (leak["status"], leak["ended_at"], leak["resolved_at"]) == ("open", None, None)
    for alert in alerts.values():  # every alert by the same rule
        assert alert["status"] == ("open" if alert["ended_at"] is None else "resolved")
        assert alert["resolved_at"] == alert["ended_at"]


def test_the_detect_command_takes_the_utility_s_time_zone(tmp_path: Path) -> None:
    """``--timezone``: households keep the local clock. The same readings ten hours earlier by UTC
    (a utility in Brisbane, UTC+10 all year) with ``--timezone Australia/Brisbane`` give the same
    alerts ten hours earlier; a name that is no time zone is refused."""
    import dataclasses
    from datetime import datetime, timedelta

    from tests.collector.test_detection_causal import _small_fleet

    block = _small_fleet()
    brisbane = dataclasses.replace(block, timestamps=block.timestamps - np.timedelta64(10 * 3600, "s"))
    _meters(block, tmp_path / "m.csv")

    def alerts(source: SeriesBlock, name: str, *options: str) -> list[tuple[str, str, datetime]]:
        _write(source, tmp_path / f"{name}.csv", shuffle=5)
        out = tmp_path / f"{name}.json"
        args = ["detect", "--readings", str(tmp_path / f"{name}.csv"), "--meters", str(tmp_path / "m.csv")]
        result = CliRunner().invoke(app, [*args, "--out", str(out), *options])
        assert result.exit_code == 0, result.output
        found = json.loads(out.read_text())
        return sorted((a["kind"], a["meter_id"], datetime.fromisoformat(a["start"])) for a in found)

    in_utc = alerts(block, "utc")
    local = alerts(brisbane, "brisbane", "--timezone", "Australia/Brisbane")
    assert in_utc and [(k, m, start + timedelta(hours=10)) for k, m, start in local] == in_utc
    by_utc_days = alerts(brisbane, "brisbane-utc")  # the option matters: days cut ten hours off differ
    assert [(k, m, start + timedelta(hours=10)) for k, m, start in by_utc_days] != in_utc
    bad = CliRunner().invoke(
        app, ["detect", "--readings", str(tmp_path / "utc.csv"), "--meters", str(tmp_path / "m.csv"),
              "--out", str(tmp_path / "x.json"), "--timezone", "Mars/Olympus"], terminal_width=200,
    )  # fmt: skip
    assert bad.exit_code == 2 and "no IANA time zone" in bad.output


def _file_size_limited(limit: int) -> None:
    """In the child: a write past ``limit`` bytes fails (EFBIG), as on a full disk."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not the signal that kills
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("option", ["--out", "--balance"])
def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path, option: str) -> None:
    """ALERTS.json was written in place: a write that failed midway (a 32 KiB file system) left 32,768
    bytes of JSON cut short and the previous run's file gone. Now the new content goes to a temporary
    file beside it, renamed over it only when whole: the previous file is as it was, and nothing
    else is left in the folder. Writes past 64 bytes fail: the leak's alerts (2 KiB) for ``--out``;
    for ``--balance``, a quiet district's (``[]`` alerts, then its 150-byte balance)."""
    import subprocess
    import sys

    if option == "--out":
        block = _small_block()
        _write(block, tmp_path / "r.csv")
        _meters(block, tmp_path / "m.csv")
    else:
        hours = [f"2026-01-05T{h:02d}:00:00Z" for h in range(24)]
        rows = [f"{meter},{ts},{h / 100:.3f}" for h, ts in enumerate(hours) for meter in ("C1", "I1")]
        (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
        (tmp_path / "m.csv").write_text("meter_id,dma,role\nC1,D1,customer\nI1,D1,inlet\n")
    out = tmp_path / "out"
    out.mkdir()
    previous = '[{"previous": "run"}]\n'
    (out / "alerts.json").write_text(previous)
    (out / "balance.json").write_text(previous)
    args = ["--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv")]
    args += ["--out", str(out / "alerts.json"), "--balance", str(out / "balance.json")]
    run = subprocess.run(
        [sys.executable, "-m", "aquami", "detect", *args],
        capture_output=True,
        text=True,
        preexec_fn=lambda: _file_size_limited(64),
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert run.returncode != 0 and "File too large" in run.stderr, run.stderr[-2000:]
    failed = out / ("alerts.json" if option == "--out" else "balance.json")
    assert failed.read_text() == previous
    if option == "--balance":
        assert (out / "alerts.json").read_text() == "[]\n"  # written before, whole
    assert sorted(p.name for p in out.iterdir()) == ["alerts.json", "balance.json"]


@pytest.mark.parametrize(
    "readings",
    [
        "meter_id,ts,volume_m3\n",
        "meter_id,ts,volume_m3\n\n\n",
        "meter_id,ts,volume_m3,quality\nM1,2026-01-05T00:00:00Z,1.000,estimated\n",
    ],
)
def test_a_readings_file_with_nothing_to_detect_on_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, readings: str
) -> None:
    """A READINGS.csv of its header alone, or of VEE's estimates alone: the command said `Invalid
    value: no readings`, naming neither the file nor why. It names both, exit 2, nothing written."""
    (tmp_path / "r.csv").write_text(readings)
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nM1,D1,customer\n")
    monkeypatch.chdir(tmp_path)
    args = ["detect", "--readings", "r.csv", "--meters", "m.csv", "--out", "alerts.json"]
    result = CliRunner().invoke(app, args, terminal_width=400)
    assert result.exit_code == 2, result.output
    assert "r.csv: no readings to detect on: it has no row below its header, or every row is estimated" in _said(
        result.output
    )
    assert not (tmp_path / "alerts.json").exists()


def test_readings_of_no_meter_in_the_meters_file_are_refused_not_reported_as_no_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """METERS.csv naming none of the readings' meters (another utility's, or ids written another
    way): the command warned "51,408 readings of meters not in ... ignored", wrote ``[]`` and
    exited 0, as a run that found no problem does. It exits 2 saying so, the files' first meter ids
    beside each other, and leaves the previous ALERTS.json as it was."""
    block = _small_block()
    _write(block, tmp_path / "r.csv")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nWM-1,D1,customer\n")
    out = tmp_path / "alerts.json"
    out.write_text("[]\n")
    monkeypatch.chdir(tmp_path)  # files named short: the error box wraps its lines, a long path's anywhere
    args = ["detect", "--readings", "r.csv", "--meters", "m.csv", "--out", "alerts.json"]
    result = CliRunner().invoke(app, args, terminal_width=400)
    assert result.exit_code == 2, result.output
    said = _said(result.output)
    assert f"none of the {np.count_nonzero(~np.isnan(block.volume_m3)):,} readings in" in said
    assert "(its meters: D1-INLET, M-LEAK, M000 and 7 more;" in said and "m.csv's: WM-1)" in said
    assert out.read_text() == "[]\n"


@pytest.mark.parametrize(
    ("out", "balance", "refused"),
    [
        ("r.csv", None, "--out"),
        ("m.csv", None, "--out"),
        ("a.json", "m.csv", "--balance"),
        ("a.json", "a.json", "--balance"),
    ],
)
def test_an_output_over_an_input_or_the_other_output_is_refused(
    tmp_path: Path, out: str, balance: str | None, refused: str
) -> None:
    """``--out same.csv`` over ``--readings same.csv`` exited 0 with the readings replaced by alerts;
    ``--balance`` over ``--meters`` (or ``--out``) alike. Now refused before anything is written."""
    block = _small_block()
    _write(block, tmp_path / "r.csv", shuffle=5)
    _meters(block, tmp_path / "m.csv")
    before = {name: (tmp_path / name).read_bytes() for name in ("r.csv", "m.csv")}
    args = ["detect", "--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv")]
    args += ["--out", str(tmp_path / out)] + (["--balance", str(tmp_path / balance)] if balance else [])
    result = CliRunner().invoke(app, args, terminal_width=400)
    assert result.exit_code == 2, result.output
    assert refused in result.output and "write to another file" in result.output
    assert {name: (tmp_path / name).read_bytes() for name in ("r.csv", "m.csv")} == before
    assert not (tmp_path / "a.json").exists()
