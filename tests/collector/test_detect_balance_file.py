"""``aquami detect --balance``: each DMA's water balance, and what it says where it cannot be known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from collector.detection.balance import DmaBalance
from collector.detection.series import SeriesBlock
from tests.collector.test_detection_households import block_of, household

FIGURES = ("inlet_m3", "customers_m3", "losses_m3", "losses_share", "estimated_m3")
DAYS = 10


def _districts(d2_inlet: bool = False) -> tuple[SeriesBlock, SeriesBlock]:
    """D1: four households and its inlet (50 L/h lost); D2: three households, and no inlet unless
    ``d2_inlet`` (then 30 L/h lost)."""
    rng = np.random.default_rng(7)
    d1 = block_of({f"A{i}": household(rng, DAYS) for i in range(4)}, inlet_extra_l=np.full(DAYS * 24, 50.0))
    lost = np.full(DAYS * 24, 30.0) if d2_inlet else None
    d2 = block_of({f"B{i}": household(rng, DAYS) for i in range(3)}, dma="D2", inlet_extra_l=lost)
    return d1, d2


def _write(tmp_path: Path, name: str, read: list[SeriesBlock], listed: list[tuple[str, ...]]) -> list[str]:
    """READINGS.csv of the blocks ``read``, METERS.csv of ``listed`` (meter, dma, role, and
    optionally installed_at, removed_at): the args."""
    rows = []
    for block in read:
        stamps = np.datetime_as_string(block.timestamps, unit="s")
        for i, meter in enumerate(block.meter_ids.tolist()):
            rows += [f"{meter},{t}Z,{v:.3f}" for t, v in zip(stamps, block.volume_m3[i].tolist(), strict=True)]
    (tmp_path / f"{name}-r.csv").write_text("meter_id,ts,volume_m3\n" + "\n".join(rows) + "\n")
    meters = "".join(",".join((*meter, "", "")[:5]) + "\n" for meter in listed)
    (tmp_path / f"{name}-m.csv").write_text("meter_id,dma,role,installed_at,removed_at\n" + meters)
    return ["--readings", str(tmp_path / f"{name}-r.csv"), "--meters", str(tmp_path / f"{name}-m.csv")]


def _listed(*blocks: SeriesBlock) -> list[tuple[str, ...]]:
    return [
        (m, d, r) for b in blocks for m, d, r in zip(b.meter_ids.tolist(), b.dma.tolist(), b.role.tolist(), strict=True)
    ]


def _balance(tmp_path: Path, name: str, args: list[str]) -> tuple[dict[str, dict[str, object]], str]:
    """(the balance by DMA, what the command said)."""
    out, balance = tmp_path / f"{name}-alerts.json", tmp_path / f"{name}-balance.json"
    result = CliRunner().invoke(app, ["detect", *args, "--out", str(out), "--balance", str(balance)])
    assert result.exit_code == 0, result.output
    return {row["dma"]: row for row in json.loads(balance.read_text())}, result.output


def test_a_dma_without_an_inlet_has_null_figures_and_is_warned_of_once(tmp_path: Path) -> None:
    """A DMA with no inlet meter had 0.0 m³ in, recorded and lost (as if it had been measured and
    nothing flowed), and its main-burst detection was off without a word. Its figures are null,
    and one warning names it; the DMA with an inlet has the same figures as on its own."""
    d1, d2 = _districts()
    both, said = _balance(tmp_path, "both", _write(tmp_path, "both", [d1, d2], _listed(d1, d2)))
    alone, _ = _balance(tmp_path, "d1", _write(tmp_path, "d1", [d1], _listed(d1)))
    assert both["D2"] == {"dma": "D2", "customers": 3} | dict.fromkeys(FIGURES) | {"unread": 0, "unread_meters": []}
    assert both["D1"] == alone["D1"] and isinstance(both["D1"]["inlet_m3"], float)
    assert said.count("no inlet meter") == 1
    assert "1 DMA has no inlet meter in" in said and "(D2): main-burst (dma_burst) detection is off" in said


def test_a_dma_with_a_meter_unread_has_null_figures_and_names_it(tmp_path: Path) -> None:
    """The reviewer's case: a customer meter listed in METERS.csv with no reading at all counted as
    no use, and its DMA's losses share came out 0.21 for 0.05, without a word. Its DMA's figures
    are null and the meter named (``unread``, ``unread_meters``), as is a second inlet of D2 that
    was never read; a meter removed before the readings begin is no unread meter (it passed no
    water then); a warning names the unread meters and their DMAs once."""
    d1, d2 = _districts(d2_inlet=True)
    listed = [*_listed(d1, d2), ("A9", "D1", "customer"), ("A0-OLD", "D1", "customer", "", "2025-12-01T00:00:00Z")]
    unread, said = _balance(tmp_path, "unread", _write(tmp_path, "unread", [d1, d2], listed))
    read, _ = _balance(tmp_path, "read", _write(tmp_path, "read", [d1, d2], _listed(d1, d2)))
    assert unread["D1"] == {"dma": "D1", "customers": 6} | dict.fromkeys(FIGURES) | {
        "unread": 1,
        "unread_meters": ["A9"],
    }
    assert unread["D2"] == read["D2"] and read["D2"]["unread_meters"] == []  # fully read: as it was
    assert isinstance(read["D1"]["losses_share"], float)
    assert said.count("no reading at all") == 1 and "1 meter in" in said and "(A9)" in said
    assert "the water balance of 1 DMA (D1) is incomplete" in said
    second_inlet = [*_listed(d1, d2), ("D2-INLET-2", "D2", "inlet")]
    unread, said = _balance(tmp_path, "inlet", _write(tmp_path, "inlet", [d1, d2], second_inlet))
    assert unread["D2"]["unread_meters"] == ["D2-INLET-2"] and unread["D2"]["losses_m3"] is None
    assert unread["D1"] == read["D1"] and "(D2-INLET-2)" in said


@settings(max_examples=50, deadline=None)
@given(
    inlet=st.lists(
        st.lists(st.sampled_from([np.nan, 0.0, 40.0, 120.0]), min_size=4, max_size=4), min_size=1, max_size=4
    )
)
def test_a_balance_s_figures_are_null_exactly_where_its_inflow_is_known_at_no_interval(inlet) -> None:
    """Figures are numbers wherever some interval's inflow is known, null (never 0.0) where none is."""
    flows = np.array(inlet)
    d, t = flows.shape
    balance = DmaBalance(
        dmas=np.array([f"D{i}" for i in range(d)]),
        timestamps=np.datetime64("2026-01-05T00:00:00", "s") + np.arange(t) * np.timedelta64(3600, "s"),
        interval_s=3600,
        inlet_l_h=flows,
        customers_l_h=np.full((d, t), 30.0),
        estimated_l_h=np.zeros((d, t)),
        known_idx=np.tile(np.arange(t), (d, 1)),
        n_customers=np.ones(d, dtype=np.int64),
        still_l_h=np.zeros((d, t)),
    )
    for row, known in zip(balance.summary(), ~np.isnan(flows).all(axis=1), strict=True):
        if known:
            assert all(isinstance(row[f], float) for f in FIGURES if f != "losses_share")
        else:
            assert all(row[f] is None for f in FIGURES)


@pytest.mark.parametrize(
    "dates",
    [("", "2025-12-01T00:00:00Z"), ("2030-01-01T00:00:00Z", "")],
    ids=["removed-before-the-readings", "fitted-after-them"],
)
def test_a_dma_whose_inlets_were_not_in_place_is_warned_of_as_one_without_an_inlet(
    tmp_path: Path, dates: tuple[str, str]
) -> None:
    """D2's only inlet is listed in METERS.csv, but it was removed before the readings (or fitted
    after them): D2's inflow is unknown, its figures null and its main-burst detection off, as for a
    DMA with no inlet listed. The warning went by the meters' roles alone and named no DMA; it names
    D2 now, exactly the DMAs whose figures BALANCE.json has null for want of an inlet."""
    d1, d2 = _districts()
    listed = [*_listed(d1, d2), ("D2-INLET", "D2", "inlet", *dates)]
    balance, said = _balance(tmp_path, "gone", _write(tmp_path, "gone", [d1, d2], listed))
    assert balance["D2"] == {"dma": "D2", "customers": 3} | dict.fromkeys(FIGURES) | {"unread": 0, "unread_meters": []}
    assert isinstance(balance["D1"]["inlet_m3"], float)
    assert said.count("no inlet meter") == 1
    assert "1 DMA has no inlet meter in" in said and "(D2): main-burst (dma_burst) detection is off" in said
    null = sorted(dma for dma, row in balance.items() if row["inlet_m3"] is None and not row["unread"])
    assert null == ["D2"]
