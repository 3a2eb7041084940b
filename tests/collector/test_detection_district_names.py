"""``aquami detect`` holds a METERS.csv district to register-meters' rule (:mod:`aquami.districts`).

register-meters refuses a district over 500 characters or with a line break, naming the row; the
offline command, reading the same file, took either: a file it ran on was refused when recorded, and
its ALERTS.json carried districts over two lines. It now refuses such a row in the same one line,
writing nothing."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from aquami.districts import DMA_MAX_LENGTH
from aquami.excerpt import quoted
from aquami.stored_times import LINE_BREAKS
from collector.detection.files.errors import CsvFormatError
from collector.detection.files.meters import read_meters_csv
from server.meters.districts import check_dmas
from tests.collector.test_detection_files import _small_block, _write


def _said(output: str) -> str:
    """The command's output as one line, without the error box's borders it was wrapped in."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


@pytest.mark.parametrize(
    ("dma", "says"),
    [
        ("D" * (DMA_MAX_LENGTH + 1), f"a district's name is at most {DMA_MAX_LENGTH} characters"),
        ("Hill\nside", "has a line break: a district's name is one line"),
        ("Hill\u2028side", "has a line break: a district's name is one line"),
    ],
    ids=["501", "newline", "line-separator"],
)
def test_detect_refuses_a_district_register_meters_refuses_naming_the_row(tmp_path: Path, dma: str, says: str) -> None:
    """Before: exit 0, ALERTS.json written with the district as given."""
    block = _small_block()
    _write(block, tmp_path / "r.csv")
    meters = zip(block.meter_ids.tolist(), block.dma.tolist(), block.role.tolist(), strict=True)
    rows = [[m, dma if i == 1 else d, r] for i, (m, d, r) in enumerate(meters)]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([["meter_id", "dma", "role"], *rows])
    (tmp_path / "m.csv").write_text(out.getvalue(), encoding="utf-8", newline="")
    alerts = tmp_path / "alerts.json"
    args = ["detect", "--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv"), "--out", str(alerts)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "1000"})  # rich wraps its error box at COLUMNS
    assert result.exit_code == 2, result.output
    said = _said(result.output)
    assert f"m.csv: row 3: dma {_said(quoted(dma))}" in said and says in said, said
    assert "Traceback" not in result.output and not alerts.exists()


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_DISTRICTS = st.one_of(
    _TEXT,
    st.integers(DMA_MAX_LENGTH - 3, DMA_MAX_LENGTH + 3).map(lambda n: "Zone " + "z" * (n - 5)),
    st.tuples(_TEXT, st.sampled_from(sorted(LINE_BREAKS)), _TEXT).map("".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dma=_DISTRICTS)
def test_a_meters_file_detect_reads_is_one_register_meters_stores(tmp_path: Path, dma: str) -> None:
    """Any district, written as a spreadsheet quotes it: ``aquami detect``'s reader refuses its row
    exactly when register-meters' writers' guard (server.meters.districts) refuses the district read."""
    out = io.StringIO()
    csv.writer(out).writerows([["meter_id", "dma", "role"], ["M1", "D1", "customer"], ["M2", dma, "customer"]])
    path = tmp_path / "m.csv"
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    read = dma.strip()  # as the reader takes a field, less its outer blanks
    try:
        check_dmas([("M2", read)])
    except ValueError as refusal:
        with pytest.raises(CsvFormatError) as refused:
            read_meters_csv(path)
        assert str(refused.value) == f"{path}: row 3: {str(refusal).removeprefix('meter ' + repr('M2') + ': ')}"
        return
    assert read_meters_csv(path).dma.tolist() == ["D1", read]
