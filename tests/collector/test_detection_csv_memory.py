"""READINGS.csv is parsed in pieces of whole lines: the memory it takes, and the same readings (or the
same error) whatever the pieces' size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.detection.files import grid as grid_module
from collector.detection.files import readings as readings_module
from collector.detection.files.errors import CsvFormatError
from collector.detection.files.readings import Readings, read_readings_csv

#: In a child process, after its imports: the address space it has then, plus the budget, is all
#: it may map (RLIMIT_AS); then the file is parsed.
_CHILD = """
import resource, sys
from pathlib import Path
from collector.detection.files.readings import read_readings_csv
with open("/proc/self/status") as status:
    vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
limit = vm + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
readings = read_readings_csv(Path(sys.argv[1]))
print(readings.ts_s.size)
"""


def _write_fleet(path: Path, meters: int, hours: int = 672) -> int:
    """Hourly reads of ``meters`` meters over four weeks, as a head-end writes them; the rows."""
    start = np.datetime64("2026-01-05T00:00:00", "s")
    stamps = np.datetime_as_string(start + np.arange(hours) * np.timedelta64(3600, "s"), unit="s").tolist()
    registers = (100.0 + np.cumsum(np.random.default_rng(7).random(hours) * 0.05)).tolist()
    one_meter = "".join(f"@ID@,{ts}Z,{v:.3f}\n" for ts, v in zip(stamps, registers, strict=True)).encode()
    with path.open("wb") as f:
        f.write(b"meter_id,ts,volume_m3\n")
        for k in range(meters):
            f.write(one_meter.replace(b"@ID@", b"M%06d" % k))
    return meters * hours


#: The same, the limit set once the file is parsed: then the readings are laid on the grid.
_CHILD_BLOCK = """
import resource, sys
from pathlib import Path
from collector.detection.files.grid import build_block
from collector.detection.files.meters import read_meters_csv
from collector.detection.files.readings import read_readings_csv
readings, meters = read_readings_csv(Path(sys.argv[1])), read_meters_csv(Path(sys.argv[3]))
with open("/proc/self/status") as status:
    vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
limit = vm + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
block, dropped = build_block(readings, meters)
print(block.n_meters)
"""

_METERS = 8000


@pytest.fixture(scope="module")
def fleet_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """200 MB of READINGS.csv (5.4 million rows) and its METERS.csv."""
    folder = tmp_path_factory.mktemp("fleet")
    rows = _write_fleet(folder / "r.csv", meters=_METERS)
    lines = [f"M{k:06d},DMA{k // 500:03d},customer\n" for k in range(_METERS)]
    (folder / "m.csv").write_text("meter_id,dma,role\n" + "".join(lines), encoding="utf-8")
    return folder / "r.csv", folder / "m.csv", rows


def _within(script: str, budget: int, *args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, str(args[0]), str(budget), *map(str, args[1:])],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        timeout=120,
        check=False,
    )


def test_a_readings_file_is_parsed_in_little_more_memory_than_its_size(fleet_files: tuple[Path, Path, int]) -> None:
    """200 MB of CSV in 2.5 bytes of address space per byte of the file. Read whole, the file's
    bytes, five int64 offsets per row and comparisons over the whole file were all alive together:
    it needed 763 MB above the interpreter's (3.8 per byte), and 1M meter-days (884 MB of CSV)
    peaked at 3.4 GB of RSS. In pieces of whole lines: 369 MB (1.9 per byte)."""
    path, _, rows = fleet_files
    budget = int(2.5 * path.stat().st_size)
    child = _within(_CHILD, budget, path)
    assert child.returncode == 0, f"parsing took more than {budget:,} bytes:\n{child.stderr[-2000:]}"
    assert int(child.stdout) == rows


def test_the_readings_are_laid_on_the_grid_in_little_more_memory(fleet_files: tuple[Path, Path, int]) -> None:
    """The same file's readings onto the meters × intervals grid in 1.4 bytes of address space per
    byte of the file, above the parsed readings (the grid is 43 MB of it). Sorted by ``np.lexsort``
    of four columns (meter, interval, distance from the instant, time), alive with their copies,
    it needed 361 MB (1.8 per byte; at 1M meter-days the command's peak, 2.5 GB of RSS); by one
    int64 key, 210 MB (1.05 per byte)."""
    path, meters, _ = fleet_files
    budget = int(1.4 * path.stat().st_size)
    child = _within(_CHILD_BLOCK, budget, path, meters)
    assert child.returncode == 0, f"laying out took more than {budget:,} bytes:\n{child.stderr[-2000:]}"
    assert int(child.stdout) == _METERS


_IDS = st.sampled_from(["M1", "M22", "METER-0333", "A", "M4444444"])


@st.composite
def _files(draw: st.DrawFn) -> tuple[str, int]:
    """A READINGS.csv text (rows in any order, blank lines, CRLF, the optional columns, a row damaged,
    a meter id quoted) and the damaged row (-1: none)."""
    reverse, quality = draw(st.booleans()), draw(st.booleans())
    header = ["meter_id", "ts", "volume_m3"] + (["reverse_volume_m3"] if reverse else [])
    header += ["quality"] if quality else []
    lines = []
    for _ in range(draw(st.integers(0, 40))):
        hour = draw(st.integers(0, 200))
        fields = [draw(_IDS), f"2026-01-{5 + hour // 24:02d}T{hour % 24:02d}:00:00Z", f"{hour * 0.013:.3f}"]
        if reverse:
            fields.append(draw(st.sampled_from(["", "0.000", "1.250"])))
        if quality:
            fields.append(draw(st.sampled_from(["", "actual", "estimated", "edited"])))
        lines.append(",".join(fields))
        if draw(st.integers(0, 9)) == 0:
            lines.append("")
    bad = draw(st.integers(-1, len(lines) - 1)) if lines else -1
    if bad >= 0 and lines[bad]:
        lines[bad] = lines[bad].replace(":00:00Z", draw(st.sampled_from([":00:00X", ":61:00Z"])), 1)
        lines[bad] = lines[bad] if draw(st.booleans()) else lines[bad].replace(".", ",", 1)
    quoted = draw(st.integers(-1, len(lines) - 1)) if lines else -1
    if quoted >= 0 and lines[quoted]:  # the whole file to the csv module, whichever piece has it
        lines[quoted] = '"' + lines[quoted].replace(",", '",', 1)
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    end = draw(st.sampled_from([newline, ""]))
    return newline.join([",".join(header), *lines]) + end, bad


def _parsed(path: Path) -> Readings | str:
    try:
        return read_readings_csv(path)
    except CsvFormatError as error:
        return str(error)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=_files(), piece=st.integers(1, 300))
def test_pieces_of_any_size_give_the_file_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: tuple[str, int], piece: int
) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(file[0].encode())
    monkeypatch.setattr(readings_module, "_CHUNK_BYTES", 1 << 30)
    whole = _parsed(path)
    monkeypatch.setattr(readings_module, "_CHUNK_BYTES", piece)
    pieces = _parsed(path)
    if isinstance(whole, str) or isinstance(pieces, str):
        assert pieces == whole
        return
    assert pieces.meter_names.tolist() == whole.meter_names.tolist()
    for name in ("meter_index", "ts_s", "volume_m3"):
        assert np.array_equal(getattr(pieces, name), getattr(whole, name)), name
    assert (pieces.reverse_m3 is None) == (whole.reverse_m3 is None)
    if whole.reverse_m3 is not None and pieces.reverse_m3 is not None:
        assert np.array_equal(pieces.reverse_m3, whole.reverse_m3, equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(
    interval=st.sampled_from([60, 300, 900, 3600, 86_400]),
    reads=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40), st.floats(-0.99, 0.99)), max_size=60),
    repeats=st.lists(st.integers(0, 59), max_size=5),
)
def test_one_key_orders_the_reads_as_the_four_columns_did(
    interval: int, reads: list[tuple[int, int, float]], repeats: list[int]
) -> None:
    """Each meter's reads by interval, then distance from its instant, the later of two as far
    first, the rows' order kept between equals (the same read twice): ``np.lexsort`` of the four
    columns, as build_block sorted before, and the one key give the same order."""
    t0 = 1_767_571_200  # 2026-01-05T00:00:00Z
    rows = reads + [reads[i] for i in repeats if i < len(reads)]
    meter_index = np.array([m for m, _, _ in rows], dtype=np.intp)
    ts = np.array([t0 + k * interval + round(f * interval) for _, k, f in rows], dtype=np.int64)
    readings = Readings(np.array(["A", "B", "C", "D", "E"]), meter_index, ts, np.zeros(ts.size))
    t0 = int(ts.min(initial=t0)) // interval * interval  # as build_block places the grid: no read before it
    cols = np.ceil((ts - t0 - interval * grid_module.LATE_READ_SHARE) / interval).astype(np.int64)
    t = int(cols.max(initial=0)) + 1
    order, key, radix = grid_module._reads_in_order(readings, cols, t0, interval, t)
    off = np.abs(ts - (t0 + cols * interval))
    assert order.tolist() == np.lexsort((-ts, off, cols, meter_index)).tolist()
    assert (key // radix).tolist() == (meter_index[order] * t + cols[order]).tolist()
    same = (np.diff(meter_index[order]) == 0) & (np.diff(ts[order]) == 0)
    assert (key[1:] == key[:-1]).tolist() == same.tolist()
