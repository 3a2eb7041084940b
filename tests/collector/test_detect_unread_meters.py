"""Meters METERS.csv lists without a reading: left off the grid, and only their DMAs' balance knows them."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from collector.detection.files.grid import build_block, unread_meters
from collector.detection.files.meters import read_meters_csv
from collector.detection.files.readings import read_readings_csv

HOURS = np.datetime64("2026-01-05T00:00:00", "s") + np.arange(24 * 60) * np.timedelta64(3600, "s")


def _readings(path: Path, meters: list[str], seed: int = 3) -> None:
    """Hourly registers of ``meters`` over the 60 days of ``HOURS``."""
    rng = np.random.default_rng(seed)
    stamps = np.datetime_as_string(HOURS, unit="s")
    rows = []
    for meter in meters:
        register = 10 + np.cumsum(rng.random(HOURS.size) * 0.02)
        rows += [f"{meter},{t}Z,{v:.3f}" for t, v in zip(stamps, register.tolist(), strict=True)]
    path.write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")


def test_twenty_thousand_meters_listed_and_five_read_take_the_memory_of_five(tmp_path: Path) -> None:
    """The reviewer's case: 20,000 meters listed, 5 of them read. Every listed meter had a row of
    the grid, read or not, in every array of the run (here, 60 days of hours: 230 MB each, a peak
    of some 800 MB; the reviewer's longer file took 4.4 GB). The arrays have the 5 meters read:
    the run's peak is well under one such array, and the 19,996 others are named in the balance
    as unread, each DMA's customers counted as before."""
    read = ["C00000", "C00001", "C00002", "C00003", "I0"]
    _readings(tmp_path / "r.csv", read)
    listed = ["I0,D0,inlet"] + [f"C{i:05d},D{i % 50},customer" for i in range(20_000)]
    (tmp_path / "m.csv").write_text("meter_id,dma,role\n" + "\n".join(listed) + "\n")
    args = ["detect", "--readings", str(tmp_path / "r.csv"), "--meters", str(tmp_path / "m.csv")]
    args += ["--out", str(tmp_path / "a.json"), "--balance", str(tmp_path / "b.json")]
    tracemalloc.start()
    try:
        result = CliRunner().invoke(app, args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert peak < 20_000 * HOURS.size * 8 / 2, f"{peak / 1e6:.0f} MB"
    assert "5 meters read × 1,440 intervals" in result.output
    balance = {row["dma"]: row for row in json.loads((tmp_path / "b.json").read_text())}
    assert len(balance) == 50 and sum(row["customers"] for row in balance.values()) == 20_000
    assert sum(row["unread"] for row in balance.values()) == 19_996
    assert balance["D0"]["unread"] == 399 and "C00050" in balance["D0"]["unread_meters"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    meters=st.lists(
        st.tuples(
            st.sampled_from(["D1", "D2", "D3"]),
            st.sampled_from(["customer", "inlet"]),
            st.booleans(),  # read
            st.sampled_from(["", "2025-12-01T00:00:00Z", "2026-02-01T00:00:00Z"]),  # removed_at
        ),
        min_size=1,
        max_size=8,
    ).filter(lambda ms: any(read for _, _, read, _ in ms))
)
def test_the_block_has_the_meters_read_and_the_rest_are_unread(tmp_path: Path, meters) -> None:
    """Whatever meters are listed and whichever are read: the block has a row for each meter read,
    in the file's order, with its DMA, role and installation, and no other; the rest are the unread
    meters, in their place over the block unless removed before it began."""
    ids = [f"M{i}" for i in range(len(meters))]
    _readings(tmp_path / "r.csv", [m for m, (_, _, read, _) in zip(ids, meters, strict=True) if read])
    listed = [f"{m},{d},{r},{removed}" for m, (d, r, _, removed) in zip(ids, meters, strict=True)]
    (tmp_path / "m.csv").write_text("meter_id,dma,role,removed_at\n" + "\n".join(listed) + "\n")
    readings, table = read_readings_csv(tmp_path / "r.csv"), read_meters_csv(tmp_path / "m.csv")
    block, dropped = build_block(readings, table)
    unread = unread_meters(readings, table, block)
    is_read = [read for _, _, read, _ in meters]
    assert dropped == 0 and block.volume_m3.shape == (sum(is_read), HOURS.size)
    assert block.meter_ids.tolist() == [m for m, read in zip(ids, is_read, strict=True) if read]
    assert unread.meter_ids.tolist() == [m for m, read in zip(ids, is_read, strict=True) if not read]
    for got, want in ((block, True), (unread, False)):
        mine = [meter for meter, read in zip(meters, is_read, strict=True) if read is want]
        assert got.dma.tolist() == [d for d, _, _, _ in mine] and got.role.tolist() == [r for _, r, _, _ in mine]
    assert unread.in_place.tolist() == [removed != "2025-12-01T00:00:00Z" for _, _, read, removed in meters if not read]
    if block.installed is not None:  # each meter read keeps its own installation
        removed_early = [removed != "" for _, _, read, removed in meters if read]
        assert (~block.installed[:, -1]).tolist() == removed_early
