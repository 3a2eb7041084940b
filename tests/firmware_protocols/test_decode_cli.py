"""``aquami decode``: one JSON object per frame per line, in input order; errors on their own line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aquami.cli import app

SMART_METER_REGISTERS = "0001e240 000001f4 0005 0000000c 0050 02628a39"
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
    assert good["serial_number"] == "40012345"  # its decimal digits, as on the meter's label
    assert "expected 20 bytes" in short["error"]
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


def _strict(line: str) -> dict:
    """A JSON line as a strict reader takes it: Infinity and NaN are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_a_value_that_overflows_is_an_error_line_not_infinity():
    """``--param litres_per_pulse=1e308`` times a large count printed ``"volume_m3": Infinity``,
    which no JSON reader takes, with exit 0; now that frame fails on its own line, and says why."""
    args = [
        "decode",
        "modbus",
        "--profile",
        "pulse_counter",
        "--param",
        "litres_per_pulse=1e308",
        "ffffffff",
        "000003e8",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    overflowed, fine = (_strict(line) for line in result.output.splitlines())
    assert overflowed == {
        "error": "volume_m3 = inf: out of the range of a JSON number (check --param)",
        "input": "ffffffff",
    }
    assert fine["volume_m3"] == 1e308  # 1,000 pulses of 1e308 L


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e999"])
def test_a_param_that_is_no_finite_number_is_refused_by_name(value: str):
    args = ["decode", "modbus", "--profile", "pulse_counter", "--param", f"litres_per_pulse={value}", "000003e8"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2
    assert f"Invalid value for --param: 'litres_per_pulse={value}': {value} is not a finite number" in result.output


def test_a_profile_file_with_a_byte_order_mark_loads_and_one_not_utf8_is_refused(tmp_path: Path):
    """A utility's own profile saved by a Windows editor (a byte order mark first) was refused as
    "Invalid statement (at line 1, column 1)"; one saved as Latin-1 was a UnicodeDecodeError traceback."""
    shipped = (
        Path(__file__).resolve().parents[2] / "firmware_protocols/modbus/profiles/pulse_counter.toml"
    ).read_bytes()
    marked, latin1 = tmp_path / "marked.toml", tmp_path / "latin1.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + shipped)
    latin1.write_bytes(b"# Z\xe4hler\n" + shipped)
    args = ["decode", "modbus", "--param", "litres_per_pulse=10", "000004d2", "--profile"]
    good = CliRunner().invoke(app, [*args, str(marked)])
    assert good.exit_code == 0, good.output
    assert lines(good.output)[0]["volume_m3"] == 12.34
    bad = CliRunner().invoke(app, [*args, str(latin1)], env={"COLUMNS": "400"})
    assert bad.exit_code == 2 and f"{latin1}: not UTF-8 (byte 0xe4): save it as UTF-8" in bad.output


def test_a_profile_s_missing_parameter_is_named_with_how_to_give_it() -> None:
    """`aquami decode modbus --profile pulse_counter REGISTERS` said the scale "needs a parameter the
    meter's configuration does not give": which parameter, and that the command line gives it with
    --param, was the technician's to find out."""
    result = CliRunner().invoke(
        app, ["decode", "modbus", "--profile", "pulse_counter", "00003f1d"], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2, result.output
    assert "needs a parameter, litres_per_pulse, not given" in result.output
    assert "--param litres_per_pulse=VALUE" in result.output
    given = ["decode", "modbus", "--profile", "pulse_counter", "--param", "litres_per_pulse=10", "00003f1d"]
    assert json.loads(CliRunner().invoke(app, given).stdout)["volume_m3"] == 161.57
