"""A READINGS.csv row with an empty ``volume_m3`` is a missing read, as a head-end export writes one.

The contract of ``aquami detect`` says reads may be missing; before, a row written for a read the
head-end did not get (``A,2026-01-05T03:00:00Z,``) refused the whole file ("volume_m3 is empty"), and
one of blanks alone ("' ' is not a decimal number") too. Now such a row is left out and counted
(``Readings.no_reading``), said once by the command; any other value that is no register is still
refused with its row, by the fast path and the quoted (csv module) path alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from collector.detection.files.errors import CsvFormatError
from collector.detection.files.readings import read_readings_csv
from tests.collector.test_detection_files import _meters, _small_block

EPOCH = np.datetime64("2026-01-05T00:00:00", "s")
NO_READING = ["", " ", "  ", "\t", " \t "]


def _ts(hours: int) -> str:
    return f"{np.datetime_as_string(EPOCH + np.timedelta64(hours, 'h'), unit='s')}Z"


def _quoted(text: str) -> str:
    """The same rows with every meter id quoted: the csv module's path."""
    header, *rows = text.split("\n")
    return "\n".join([header, *(f'"{row.replace(",", chr(34) + ",", 1)}' if row else row for row in rows)])


@pytest.mark.parametrize("quoted", [False, True])
def test_rows_with_no_reading_are_left_out_and_counted_not_refused(tmp_path: Path, quoted: bool) -> None:
    text = (
        "meter_id,ts,volume_m3,reverse_volume_m3\n"
        f"A,{_ts(0)},1.5,\n"
        f"A,{_ts(1)},,\n"
        f"B,{_ts(1)},  ,0.5\n"
        f"A,{_ts(2)},1.75,0.25\n"
        f"B,{_ts(2)},\t,\n"
        f"B,{_ts(3)},2,\n"
    )
    path = tmp_path / "r.csv"
    path.write_text(_quoted(text) if quoted else text)
    readings = read_readings_csv(path)
    assert readings.meter_names[readings.meter_index].tolist() == ["A", "A", "B"]
    assert readings.volume_m3.tolist() == [1.5, 1.75, 2.0]
    assert ((readings.ts_s - int(EPOCH.astype(np.int64))) // 3600).tolist() == [0, 2, 3]
    assert readings.reverse_m3 is not None and readings.reverse_m3[1] == 0.25
    assert readings.no_reading == 3


@pytest.mark.parametrize("quoted", [False, True])
@pytest.mark.parametrize(
    ("volume", "says"),
    [
        ("x", "row 3: volume_m3 'x' is not a decimal number"),
        ("1,5", "row 3: every row needs exactly 3 fields"),
        (" 1 x", "row 3: volume_m3 '1 x' is not a decimal number"),
        ("nan", "row 3: volume_m3 nan is no register"),
        ("-1", "row 3: volume_m3 -1.0 is no register"),
    ],
)
def test_a_malformed_volume_is_still_refused_with_its_row(tmp_path: Path, quoted: bool, volume: str, says: str) -> None:
    text = f"meter_id,ts,volume_m3\nA,{_ts(0)},\nA,{_ts(1)},{volume}\nA,{_ts(2)},3\n"
    path = tmp_path / "r.csv"
    path.write_text(_quoted(text) if quoted else text)
    with pytest.raises(CsvFormatError, match=f"{path}: {says}"):
        read_readings_csv(path)


def test_a_row_with_no_reading_still_has_its_time_and_meter_checked(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    for row, says in (("A,2026-13-05T00:00:00Z,", "row 3"), (f",{_ts(1)},", "row 3: meter_id is empty")):
        path.write_text(f"meter_id,ts,volume_m3\nA,{_ts(0)},1\n{row}\n")
        with pytest.raises(CsvFormatError, match=says):
            read_readings_csv(path)


_ROW = st.tuples(
    st.sampled_from(["A", "B7", "M-000123"]),
    st.integers(0, 5_000),  # hours after EPOCH
    st.one_of(st.integers(0, 10**9).map(lambda litres: f"{litres / 1000:.3f}"), st.sampled_from(NO_READING)),
    st.one_of(st.just(""), st.integers(0, 10**6).map(str)),  # reverse register
    st.sampled_from(["actual", "estimated", ""]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(_ROW, min_size=1, max_size=40),
    columns=st.permutations(["meter_id", "ts", "volume_m3", "reverse_volume_m3", "quality"]),
    quoted=st.booleans(),
)
def test_readings_with_empty_volumes_parse_to_the_rows_that_have_one(
    tmp_path: Path, rows: list[tuple[str, int, str, str, str]], columns: list[str], quoted: bool
) -> None:
    """Any columns' order, either path: the rows kept are those with a volume and not estimated, in
    the file's order with what was written; every row with no volume (estimated or not) is counted."""
    path = tmp_path / "r.csv"
    lines = []
    for meter, hours, volume, reverse, quality in rows:
        fields = {"meter_id": meter, "ts": _ts(hours), "volume_m3": volume, "reverse_volume_m3": reverse}
        fields["quality"] = quality
        if quoted:
            fields["meter_id"] = f'"{meter}"'
        lines.append(",".join(fields[c] for c in columns))
    path.write_text(",".join(columns) + "\n" + "\n".join(lines) + "\n")
    try:
        readings = read_readings_csv(path)
    except CsvFormatError as error:  # one meter read twice at one time with two registers: refused by name
        assert "two" in str(error) or "twice" in str(error), error
        return
    kept = [r for r in rows if r[2].strip(" \t") and r[4] != "estimated"]
    assert readings.meter_names[readings.meter_index].tolist() == [r[0] for r in kept]
    assert ((readings.ts_s - int(EPOCH.astype(np.int64))) // 3600).tolist() == [r[1] for r in kept]
    assert readings.volume_m3.tolist() == [float(r[2]) for r in kept]
    assert readings.reverse_m3 is not None
    assert [None if v != v else v for v in readings.reverse_m3.tolist()] == [
        float(r[3]) if r[3] else None for r in kept
    ]
    assert readings.no_reading == sum(1 for r in rows if not r[2].strip(" \t"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    volume=st.text(alphabet="0123456789.-+eEnaif \t_x\x0b", max_size=12),
    at=st.integers(0, 5),
    quoted=st.booleans(),
)
def test_any_volume_text_is_a_register_a_missing_read_or_refused_with_its_row(
    tmp_path: Path, volume: str, at: int, quoted: bool
) -> None:
    """Fuzz one row's volume among good ones: blanks alone are a missing read; anything else is the
    number written (a register from 0 to 10¹²) or refused naming that row, never taken as missing."""
    good = [f"A,{_ts(hours)},{hours + 1}" for hours in range(6)]
    good[at] = f"A,{_ts(at)},{volume}"
    text = "meter_id,ts,volume_m3\n" + "\n".join(good) + "\n"
    path = tmp_path / "r.csv"
    path.write_text(_quoted(text) if quoted else text)
    try:
        readings = read_readings_csv(path)
    except CsvFormatError as error:
        assert volume.strip(" \t"), f"blanks alone refused: {error}"
        assert f"row {at + 2}: volume_m3 " in str(error), error
        return
    if not volume.strip(" \t"):
        assert readings.no_reading == 1 and readings.volume_m3.size == 5
        assert at + 1 not in readings.volume_m3.tolist()
    else:
        assert readings.no_reading == 0 and readings.volume_m3.size == 6
        assert readings.volume_m3[at] == float(volume)
        assert 0 <= readings.volume_m3[at] <= 1e12


def _detect(tmp_path: Path, readings: Path, name: str) -> tuple[list[dict[str, Any]], str]:
    out = tmp_path / f"{name}.json"
    args = ["detect", "--readings", str(readings), "--meters", str(tmp_path / "m.csv"), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_the_detect_command_takes_rows_with_no_reading_as_missing_reads_and_says_how_many_once(
    tmp_path: Path,
) -> None:
    """The same readings with the missed reads left out of the file, or written with an empty
    volume: the same alerts, and the command says the rows with no reading once."""
    block = _small_block(missing=0.05)
    _meters(block, tmp_path / "m.csv")
    stamps = np.datetime_as_string(block.timestamps, unit="s")
    with_rows, without_rows, empty = ["meter_id,ts,volume_m3"], ["meter_id,ts,volume_m3"], 0
    for i, meter in enumerate(block.meter_ids.tolist()):
        for j, v in enumerate(block.volume_m3[i].tolist()):
            if v == v:
                row = f"{meter},{stamps[j]}Z,{v:.3f}"
                with_rows.append(row)
                without_rows.append(row)
            else:
                with_rows.append(f"{meter},{stamps[j]}Z,{' ' * (empty % 2)}")
                empty += 1
    assert empty > 10
    (tmp_path / "with.csv").write_text("\n".join(with_rows) + "\n")
    (tmp_path / "without.csv").write_text("\n".join(without_rows) + "\n")
    alerts_with, said = _detect(tmp_path, tmp_path / "with.csv", "with")
    alerts_without, said_without = _detect(tmp_path, tmp_path / "without.csv", "without")
    assert alerts_with == alerts_without
    assert any(alert["kind"] == "leak" for alert in alerts_with)  # (something was detected)
    line = f"{empty:,} rows of {tmp_path / 'with.csv'} had no reading (volume_m3 empty): taken as missing reads"
    assert said.count("had no reading") == 1 and line in said, said
    assert "had no reading" not in said_without


def test_a_file_whose_every_row_has_no_reading_is_refused_saying_so(tmp_path: Path) -> None:
    block = _small_block()
    _meters(block, tmp_path / "m.csv")
    (tmp_path / "r.csv").write_text(f"meter_id,ts,volume_m3\nM000,{_ts(0)},\nM000,{_ts(1)}, \n")
    args = ["detect", "--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.json")], terminal_width=400)
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, said
    assert "no readings to detect on" in said and "or has no reading (volume_m3 empty)" in said, said
