"""The rig's live table in a technician's 80-column terminal: what they compare to the gateway whole."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from simulators.rig.table import render


def _row(meter: str, protocol: str, register: str, faults: list[str]) -> dict[str, Any]:
    return {
        "meter": meter,
        "protocol": protocol,
        "register": register,
        "flow_m3h": 0.084,
        "alarms": [f for f in faults if f in ("leak", "reverse_flow", "tamper")],
        "last_request_age_s": 3.0,
        "faults": faults,
    }


#: The example rig's meters (simulators/examples/rig.toml) with faults on, as `aquami simulate rig` shows them.
EXAMPLE = [
    _row("M000001", "modbus_tcp", "197.563 m3", ["leak"]),
    _row("DMA1-INLET", "modbus_tcp", "51864.444 m3", ["truncated"]),
    _row("M000002", "modbus_rtu", "281.808 m3", ["slow", "bad_checksum"]),
    _row("P000001", "modbus_rtu", "16157 pulses", ["stuck"]),
    _row("MB000001", "mbus", "55.008 m3", ["reverse_flow"]),
    _row("MB000002", "mbus", "452.542 m3", ["garbled"]),
    _row("W000001", "wmbus", "231.805 m3", ["tamper"]),
]


def _lines(rows: list[dict[str, Any]], width: int) -> list[str]:
    console = Console(width=width, record=True)
    console.print(render(rows))
    return console.export_text().splitlines()


def test_the_example_rig_in_80_columns_shows_ids_protocols_and_registers_whole() -> None:
    """In an 80-column terminal the table cut every column alike: `DMA1-IN…`, `modbus_…` (TCP or
    RTU?) and a register of `51864.4…`, the digits a technician compares to the gateway's reading."""
    lines = _lines(EXAMPLE, 80)
    assert all(len(line) <= 80 for line in lines)
    for row in EXAMPLE:
        (line,) = [line for line in lines if line.startswith(row["meter"] + " ")]
        assert row["protocol"] in line and row["register"] in line, line
    assert "…" not in "".join(lines)


@given(
    meter=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,23}", fullmatch=True),
    register=st.decimals(min_value=0, max_value=99_999_999, places=3).map(lambda d: f"{d} m3"),
    width=st.integers(min_value=80, max_value=200),
)
def test_any_meter_id_up_to_24_characters_and_its_register_are_never_cut(meter: str, register: str, width: int) -> None:
    rows = [*EXAMPLE, _row(meter, "modbus_rtu", register, ["slow", "bad_checksum", "reverse_flow"])]
    lines = _lines(rows, width)
    assert any(line.startswith(meter + " ") and register in line for line in lines), "\n".join(lines)
