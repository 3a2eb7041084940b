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

from collector.detection import csvio
from collector.detection.csvio import CsvFormatError, Readings, read_readings_csv

#: In a child process, after its imports: the address space it has then, plus the budget, is all
#: it may map (RLIMIT_AS); then the file is parsed.
_CHILD = """
import resource, sys
from pathlib import Path
from collector.detection.csvio import read_readings_csv
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


def test_a_readings_file_is_parsed_in_little_more_memory_than_its_size(tmp_path: Path) -> None:
    """200 MB of CSV (5.4 million rows) in 2.5 bytes of address space per byte of the file. Read
    whole, the file's bytes, five int64 offsets per row and comparisons over the whole file were all
    alive together: it needed 763 MB above the interpreter's (3.8 per byte), 1M meter-days
    (884 MB of CSV) peaked at 3.4 GB of RSS. In pieces of whole lines: 369 MB (1.9 per byte)."""
    path = tmp_path / "r.csv"
    rows = _write_fleet(path, meters=8000)
    budget = int(2.5 * path.stat().st_size)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(budget)],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, f"parsing took more than {budget:,} bytes:\n{child.stderr[-2000:]}"
    assert int(child.stdout) == rows


_IDS = st.sampled_from(["M1", "M22", "METER-0333", "A", "M4444444"])


@st.composite
def _files(draw: st.DrawFn) -> tuple[str, int]:
    """A READINGS.csv text (rows in any order, blank lines, CRLF, the optional columns) and a row of
    it to damage (-1: none)."""
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
    monkeypatch.setattr(csvio, "_CHUNK_BYTES", 1 << 30)
    whole = _parsed(path)
    monkeypatch.setattr(csvio, "_CHUNK_BYTES", piece)
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
