"""CSV in (vectorised parse, any row order, missing reads) and the ``aquami detect`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aquami.cli import app
from collector.detection.csvio import CsvFormatError, build_block, read_meters_csv, read_readings_csv
from tests.collector.test_detection_households import add_flow, block_of, household


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


def test_quoted_fields_take_the_slow_path_and_give_the_same_result(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('meter_id,ts,volume_m3\n"A",2026-01-05T00:00:00Z,1.5\n"A",2026-01-05T01:00:00Z,1.75\n')
    readings = read_readings_csv(path)
    assert readings.meter_names.tolist() == ["A"]
    assert readings.volume_m3.tolist() == [1.5, 1.75]
    assert (readings.ts_s[1] - readings.ts_s[0]) == 3600


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("meter,ts,volume\nA,2026-01-05T00:00:00Z,1\n")
    with pytest.raises(CsvFormatError, match="header"):
        read_readings_csv(bad)
    bad.write_text("meter_id,ts,volume_m3\nA,2026-13-05T00:00:00Z,1\n")
    with pytest.raises(CsvFormatError, match="row 2"):
        read_readings_csv(bad)
    roles = tmp_path / "m.csv"
    roles.write_text("meter_id,dma,role\nA,D1,bulk\n")
    with pytest.raises(CsvFormatError, match="role"):
        read_meters_csv(roles)


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
