"""The command line refuses impossible option values up front, naming the option, before it starts anything."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aquami.cli import app


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "modbus-tcp", "--port", "99999"],
        ["server", "run", "--database-url", "postgresql://127.0.0.1:1/none", "--port", "70000"],
        ["demo", "--port", "-1"],
    ],
)
def test_a_port_out_of_range_is_refused_by_name(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--port'" in result.output


@pytest.mark.parametrize("days", ["inf", "1e308", "366.5", "0.5", "nan"])
def test_stuck_days_beyond_a_year_or_none_are_refused_by_name(tmp_path: Path, days: str) -> None:
    """``--stuck-days inf`` (or 1e308) overflowed into a traceback (OverflowError: cannot convert
    float infinity to integer): the option takes 1 to 366 days."""
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\nM,2026-01-01T00:00:00Z,1\nM,2026-01-01T01:00:00Z,1\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nM,D,customer\n")
    files = [
        "--readings",
        str(tmp_path / "r.csv"),
        "--meters",
        str(tmp_path / "m.csv"),
        "--out",
        str(tmp_path / "a.json"),
    ]
    result = CliRunner().invoke(app, ["detect", *files, "--stuck-days", days], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--stuck-days'" in result.output and not (tmp_path / "a.json").exists()


def _aquami(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command, as a user runs it (its own error handling, not CliRunner's)."""
    command = [str(Path(sys.executable).with_name("aquami")), *args]
    env = {**os.environ, "COLUMNS": "400"}  # the error box wraps at the terminal's width
    return subprocess.run(command, capture_output=True, text=True, timeout=60, input=stdin, env=env)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["bill", "determinants", "--database-url", "notaurl", "--period", "2026-01"], 1, "error: database: "),
        (["collector", "timezone", "--database-url", "postgresql://127.0.0.1:1/x"], 1, "error: database: "),
        (["decode", "modbus", "--profile", "nosuch", "0001"], 2, "unknown meter profile 'nosuch'"),
        # a URL that is none is the option's mistake, said before anything is sent; a rig not there, the machine's
        (["simulate", "fault", "M1", "leak", "--rig", "notaurl"], 2, "Invalid value for --rig: 'notaurl'"),
        (["simulate", "fault", "M1", "leak", "--rig", "http://127.0.0.1:1"], 1, "error: cannot reach the rig"),
    ],
)
def test_what_the_machine_or_the_database_refuses_is_one_line_not_a_traceback(args, code, says) -> None:
    result = _aquami(*args)
    assert result.returncode == code, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_a_busy_port_and_a_missing_output_folder_are_said_plainly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _aquami("simulate", "modbus-tcp", "--port", str(port))
    assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in busy.stderr
    # ours alone: pymodbus's own "Failed to start server [Errno 98] …" line came before it
    assert busy.stderr.splitlines() == [
        f"error: Modbus TCP simulator cannot listen on 127.0.0.1:{port}: the port is in use, or the address is "
        "not this machine's"
    ], busy.stderr
    (tmp_path / "r.csv").write_text("meter_id,ts,volume_m3\nM,2026-01-01T00:00:00Z,1\n")
    (tmp_path / "m.csv").write_text("meter_id,dma,role\nM,D,customer\n")
    (tmp_path / "latin.csv").write_bytes("meter_id,ts,volume_m3\nZÄHLER,2026-01-01T00:00:00Z,1\n".encode("cp1252"))
    files = ["--meters", str(tmp_path / "m.csv")]
    nowhere = _aquami("detect", "--readings", str(tmp_path / "r.csv"), *files, "--out", str(tmp_path / "no/x.json"))
    assert nowhere.returncode == 2 and "there is no folder" in nowhere.stderr
    latin = _aquami("detect", "--readings", str(tmp_path / "latin.csv"), *files, "--out", str(tmp_path / "x.json"))
    assert latin.returncode == 2 and "not UTF-8" in latin.stderr and "Traceback" not in latin.stderr


def test_decode_modbus_reads_a_pulse_counter_with_its_parameter() -> None:
    result = _aquami("decode", "modbus", "--profile", "pulse_counter", "--param", "litres_per_pulse=2.5", "000003e8")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["volume_m3"] == 2.5  # 1,000 pulses of 2.5 L
    bad = _aquami("decode", "modbus", "--profile", "pulse_counter", "--param", "litres_per_pulse", "000003e8")
    assert bad.returncode == 2 and "give KEY=VALUE" in bad.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--seed", "-1"], "Invalid value for '--seed'"),
        (["--installed", "1969-12-31T23:59:59Z"], "before 1970-01-01T00:00:00Z"),
        (["--installed", "0001-01-01T00:00:00+01:00"], "is outside the years 1 to 9999 in UTC"),
        (["--installed", "2999-01-01T00:00:00Z"], "in the future"),
    ],
)
def test_the_modbus_simulator_refuses_a_seed_or_installation_it_cannot_simulate(args: list[str], says: str) -> None:
    """A negative seed, an installation before the model's epoch, or one that overflows on the way
    to UTC was a numpy or datetime traceback once the meters were first read; now each is refused
    up front, naming the option."""
    result = CliRunner().invoke(app, ["simulate", "modbus-tcp", "--port", "0", *args], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Invalid value for --installed" in result.output or "--installed" not in args


NO_DATABASE = "postgresql://127.0.0.1:1/none"  # a closed port: every connection is refused


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bill", "nem12", "--period", "2026-13"], "Invalid value for --period: '2026-13': no month 13"),
        (["bill", "determinants", "--period", "last month"], "Invalid value for --period: 'last month': use YYYY-MM"),
        (["bill", "determinants", "--period", "2026-02-01/2026-01-01"], "the period's end must be after its start"),
        (["bill", "nem12", "--period", "2026-01", "--sender", "AQUAMI-GRID"], "Invalid value for --sender: 'AQUAMI-"),
        (["bill", "nem12", "--period", "2026-01", "--receiver", ""], "Invalid value for --receiver: '' is no"),
        (
            ["bill", "nem12", "--period", "2026-01", "--out", "no/such/folder/x.csv"],
            "there is no folder no/such/folder",
        ),
        (["bill", "determinants", "--period", "2026-01", "--out", "."], "Invalid value for '--out': file '.' is a"),
        (["server", "create-key", "--name", "me", "--role", "wizard"], "Invalid value for --role: roles must be among"),
        (["server", "create-key", "--name", "Detection", "--role", "admin"], "Invalid value for --name: a key cannot"),
        (["server", "create-key", "--name", " ", "--role", "admin"], "Invalid value for --name: a key needs a name"),
        (["collector", "timezone", "Mars/Olympus"], "Invalid value for ZONE: unknown time zone 'Mars/Olympus'"),
        (["collector", "timezone", "../etc/passwd"], "Invalid value for ZONE: unknown time zone '../etc/passwd'"),
    ],
)
def test_a_wrong_argument_is_said_before_connecting(args: list[str], says: str) -> None:
    """With the database unreachable, each of these said "connection failed": the arguments were
    checked only after connecting. Now the real mistake is said first, whatever the database."""
    result = CliRunner().invoke(app, [*args, "--database-url", NO_DATABASE], env={"COLUMNS": "400"})
    assert result.exit_code == 2, (result.output, result.exception)
    assert says in result.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["server", "revoke-key", "0123\x0056789ab"], "Invalid value for KEY_ID: contains a NUL character"),
        (["bill", "determinants", "--period", "2026-01", "--account", "A\x001"], "for --account: contains a NUL"),
        (["bill", "nem12", "--period", "2026-01", "--account", "A\x001"], "for --account: contains a NUL"),
        (["collector", "assign-meters", "--from-gateway", "gw\x001"], "for --from-gateway: 'gw\\x001' is no identif"),
    ],
)
def test_a_nul_in_an_id_is_refused_by_name_before_connecting(args: list[str], says: str) -> None:
    """A key id, account or --from-gateway with a NUL character was sent to the database, which said
    "error: database: PostgreSQL text fields cannot contain NUL (0x00) bytes": now it is refused
    first, naming the argument, whatever the database (--from-gateway as --gateway is: an identifier)."""
    result = CliRunner().invoke(app, [*args, "--database-url", NO_DATABASE], env={"COLUMNS": "400"})
    assert result.exit_code == 2, (result.output, result.exception)
    assert says in result.output


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ([b"server", b"revoke-key", b"aqk_0123456789ab.s\xe9cret"], "KEY_ID"),
        ([b"bill", b"determinants", b"--period", b"2026-01", b"--account", b"A\xff1"], "--account"),
        ([b"bill", b"nem12", b"--period", b"2026-01", b"--account", b"A\xff1"], "--account"),
        ([b"server", b"create-key", b"--name", b"J\xe9r\xf4me", b"--role", b"reader"], "--name"),
    ],
)
def test_an_id_that_is_not_utf8_is_refused_by_name_before_connecting(args: list[bytes], names: str) -> None:
    """A shell passes bytes that are not UTF-8 on as they are (a Latin-1 terminal's "é"): on a
    database, revoke-key, create-key and bill determinants died in a UnicodeEncodeError traceback,
    bill nem12 said the encoder's error naming no option. Now each is refused before connecting,
    naming the argument, and a key given whole is not echoed."""
    command = [str(Path(sys.executable).with_name("aquami")).encode(), *args, b"--database-url", NO_DATABASE.encode()]
    result = subprocess.run(command, capture_output=True, timeout=60, env={**os.environ, "COLUMNS": "400"})
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert f"Invalid value for {names}: is not UTF-8 text" in stderr and "Traceback" not in stderr
    assert "cret" not in stderr


def test_a_period_empty_in_utc_but_not_in_every_zone_waits_for_the_utility_s_zone() -> None:
    """From a date to a date-time, the start's midnight moves with the zone: 2 January to 1 January
    20:00Z is empty in UTC but 7 hours long in Sydney. The check before connecting must not refuse
    it; whether it is a period is for the utility's zone, read from the database."""
    from zoneinfo import ZoneInfo

    from aquami.commands.bill import _check_period
    from server.billing.service import parse_period

    period = "2026-01-02/2026-01-01T20:00Z"
    _check_period(period)
    start, end = parse_period(period, ZoneInfo("Australia/Sydney"))
    assert end - start == timedelta(hours=7)
    result = CliRunner().invoke(app, ["bill", "determinants", "--period", period, "--database-url", NO_DATABASE])
    assert result.exit_code == 1 and "connection" in str(result.exception)  # the database's to say


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["leek"], "Invalid value for KIND: 'leek' is no fault: no_reply,"),
        ([], "Invalid value for KIND: '' is no fault"),
        (["leak", "--set", "rate_lph=abc"], "Invalid value for --set: rate_lph: expected a number, got 'abc'"),
        (["leak", "--set", "rate_lph=-5"], "Invalid value for --set: rate_lph: -5 is outside 0..1000000 l/h"),
        (["slow", "--set", "delay=2"], "Invalid value for --set: unknown field(s) delay"),
        (["leak", "--set", "meter=M2"], "Invalid value for --set: unknown field(s) meter"),  # would redirect the fault
        (["leak", "--set", "kind=burst"], "Invalid value for --set: kind: the fault is the KIND argument"),  # a burst
        (["leak", "--set", "rate_lph"], "Invalid value for --set: option 'rate_lph': expected NAME=VALUE"),  # was 1
        (["leak", "--set", "=40"], "Invalid value for --set: option '=40': expected NAME=VALUE"),
        (["leak", "--set", "rate_lph=nan"], "Invalid value for --set: option 'rate_lph=nan': nan is not a finite"),
    ],
)
def test_a_fault_no_rig_takes_is_said_before_calling_the_rig(args: list[str], says: str) -> None:
    """With no rig running, a misspelt fault or option said "cannot reach the rig"; with one running
    it was refused there. Now what no meter of any rig would take is refused first; what depends on
    the meter (a main burst on a customer meter) is still the rig's to say. A --set that is not
    NAME=VALUE, or not a finite number, was said with exit 1, as if the rig had refused; it is a
    usage error (2) like the others."""
    result = CliRunner().invoke(
        app, ["simulate", "fault", "M1", *args, "--rig", "http://127.0.0.1:1"], env={"COLUMNS": "400"}
    )
    assert result.exit_code == 2, result.output
    assert says in result.output
    inlet_only = CliRunner().invoke(app, ["simulate", "fault", "M1", "main_burst", "--rig", "http://127.0.0.1:1"])
    assert inlet_only.exit_code == 1 and "cannot reach the rig" in inlet_only.output
