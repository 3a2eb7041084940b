"""``aquami decode``: one JSON object per frame per line, in input order; errors on their own line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from aquami.cli import app

SMART_METER_REGISTERS = "0001e240 000001f4 0005 0000000c 0050"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "libmbus" / "test-frames"


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def test_modbus_registers_as_arguments_decode_in_order_and_a_bad_one_fails_alone():
    result = CliRunner().invoke(
        app, ["decode", "modbus", "--profile", "smart_water_meter", SMART_METER_REGISTERS, "00 01", "zz"]
    )
    assert result.exit_code == 1
    good, short, not_hex = lines(result.output)
    assert (good["volume_m3"], good["flow_m3h"], good["alarms"]) == (123.456, 0.5, ["leak", "tamper"])
    assert "expected 16 bytes" in short["error"]
    assert "error" in not_hex and not_hex["input"] == "zz"


def test_modbus_registers_from_stdin_exit_zero_when_all_decode():
    stdin = f"{SMART_METER_REGISTERS}\n\n{SMART_METER_REGISTERS.replace(' ', '')}\n"
    result = CliRunner().invoke(app, ["decode", "modbus", "--profile", "smart_water_meter"], input=stdin)
    assert result.exit_code == 0, result.output
    assert [d["volume_m3"] for d in lines(result.output)] == [123.456, 123.456]


def test_unknown_profile_is_refused():
    result = CliRunner().invoke(app, ["decode", "modbus", "--profile", "no_such_meter", SMART_METER_REGISTERS])
    assert result.exit_code != 0
    assert "no_such_meter" in result.output or "no_such_meter" in str(result.exception)


def test_mbus_frames_from_the_corpus_decode_from_stdin_beside_a_broken_one():
    frame = (CORPUS / "EFE_Engelmann-WaterStar.hex").read_text().strip()
    stdin = f"{frame}\n68 03 03 68 08 01 72 00 16\n{frame}\n"
    result = CliRunner().invoke(app, ["decode", "mbus"], input=stdin)
    assert result.exit_code == 1
    first, broken, again = lines(result.output)
    assert first == again and first["records"] and first["id"]
    assert set(broken) == {"error", "input"}
