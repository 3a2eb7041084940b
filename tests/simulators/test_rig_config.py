"""The rig file: the shipped example validates, and every mistake is named by line and field."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from typer.testing import CliRunner

from aquami.cli import app
from aquami.config.toml_lines import LineIndex
from simulators.meter_model import MeterModel
from simulators.modbus_unit import serial_number_for
from simulators.rig.config import KIND_PROTOCOLS, ConfigError, RigConfig, load_rig, parse_rig, parse_rig_text
from simulators.rig.runner import Rig
from simulators.rig.running import ActiveFault
from tests.damage import damaged_documents, damaged_texts, parsed_or_refused

EXAMPLE = Path(__file__).parents[2] / "simulators" / "examples" / "rig.toml"
NOW = datetime(2026, 3, 4, 3, 30, tzinfo=UTC)

BASE = """
[rig]
installed = "2026-01-01T00:00:00Z"

[[transport]]
name = "tcp"
protocol = "modbus_tcp"

[[transport]]
name = "bus"
protocol = "mbus"

[[meter]]
id = "M1"
kind = "smart_water_meter"
transport = "tcp"
address = 1
"""


def test_the_example_has_every_meter_kind_on_every_transport() -> None:
    config = load_rig(EXAMPLE, now=NOW)
    assert {m.kind for m in config.meters} == set(KIND_PROTOCOLS)
    assert {t.protocol for t in config.transports} == {"modbus_tcp", "modbus_rtu", "mbus", "wmbus"}
    inlet = next(m for m in config.meters if m.kind == "dma_inlet")
    assert set(inlet.customers) == {m.meter_id for m in config.meters if m.kind != "dma_inlet"}
    result = CliRunner().invoke(app, ["simulate", "rig", "--config", str(EXAMPLE), "--check"])
    assert result.exit_code == 0, result.output
    assert "8 meters on 4 transports: OK" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 1\n',
         r"rig.toml:2\d: meter\[1\].address: 1 is M1's on transport 'tcp'"),
        ('\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "nowhere"\naddress = 2\n',
         r"meter\[1\].transport: 'nowhere' is no \[\[transport\]\] name"),
        ('\n[[meter]]\nid = "M2"\nkind = "mbus_water"\ntransport = "tcp"\naddress = 2\n',
         r"meter\[1\].transport: a mbus_water meter speaks mbus, not modbus_tcp"),
        ('\n[[meter]]\nid = "M2"\nkind = "pulse_counter"\ntransport = "tcp"\naddress = 2\n',
         r"meter\[1\]: missing field 'litres_per_pulse'"),
        ('\n[[meter]]\nid = "M2"\nkind = "pulse_counter"\ntransport = "tcp"\naddress = 2\nlitres_per_pulse = 0\n',
         r"meter\[1\].litres_per_pulse: 0.0 must be at least 0.001"),
        ('\n[[meter]]\nid = "M2"\nkind = "mbus_water"\ntransport = "bus"\naddress = 3\nsecondary = "12AB5678"\n',
         r"meter\[1\].secondary: '12AB5678': 8 decimal digits"),
        # passed str.isdigit(), then every request to the meter failed with a traceback
        ('\n[[meter]]\nid = "M2"\nkind = "mbus_water"\ntransport = "bus"\naddress = 3\nsecondary = "١٢٣٤٥٦٧٨"\n',
         r"meter\[1\].secondary: '١٢٣٤٥٦٧٨': 8 decimal digits 0-9"),
        ('\n[[meter]]\nid = "M2"\nkind = "mbus_water"\ntransport = "bus"\naddress = 3\nsecondary = "26000003"\n'
         'manufacturer = "ÄÖÜ"\n', r"meter\[1\].manufacturer: 'ÄÖÜ': three letters A-Z"),
        ('\n[[meter]]\nid = "M2"\nkind = "dma_inlet"\ntransport = "tcp"\naddress = 9\ncustomers = ["M1", "M9"]\n',
         r"meter\[1\].customers: 'M9' is no customer meter of this rig"),
        ('\n[[meter]]\nid = "M2"\nkind = "dma_inlet"\ntransport = "tcp"\naddress = 9\ncustomers = ["M1", "M1"]\n',
         r"rig.toml:2\d: meter\[1\].customers: 'M1' is listed more than once \(the inlet would count its water"),
        ('\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 2\nadress = 3\n',
         r"meter\[1\].adress: unknown field 'adress'"),
        ('\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 2\n'
         'faults = [{ kind = "main_burst" }]\n', r"meter\[1\].faults\[0\]: kind: 'main_burst' is not a fault"),
        ('\n[[transport]]\nname = "radio"\nprotocol = "wmbus"\n[[meter]]\nid = "W1"\nkind = "wmbus_oms"\n'
         'transport = "radio"\nsecondary = "77000001"\nkey = "0011"\n',
         r"meter\[1\].key: an AES-128 key is 32 hexadecimal digits: this one has 4$"),
        ('\n[[transport]]\nname = "far"\nprotocol = "modbus_tcp"\nhost = "10.0.0.1"\n',
         r"transport\[2\].host: '10.0.0.1': the rig listens on loopback only"),
        ('\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 2\nserial_number = "12AB"\n',
         r"meter\[1\].serial_number: serial number '12AB' is not decimal digits 0-9"),
        ('\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 2\n'
         'serial_number = "4294967296"\n', r"meter\[1\].serial_number: serial number 4294967296 does not fit a u32"),
        # two meters of one line with one serial number: one of them the gateway would refuse at every poll
        ('\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 2\n'
         f'serial_number = "{serial_number_for("M1")}"\n',
         rf"meter\[1\].serial_number: '{serial_number_for('M1')}' is M1's on transport 'tcp'"),
        ('\n[[meter]]\nid = "M2"\nkind = "pulse_counter"\ntransport = "tcp"\naddress = 2\nlitres_per_pulse = 1\n'
         'serial_number = "40012345"\n', r"meter\[1\].serial_number: unknown field 'serial_number'"),
    ],
)  # fmt: skip
def test_mistakes_are_named_by_field(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rig_text(BASE + extra, now=NOW)


@pytest.mark.parametrize("unset", ["0", "0000", "4294967295"])
def test_meters_whose_serial_number_was_never_set_may_share_it_on_one_transport(unset: str) -> None:
    """Every meter never given its serial number answers with 0 (or all ones): two of them on one
    line are what the gateway meets (and never tells apart), so the rig serves them. Before,
    ``'0' is M1's on transport 'tcp'``, a serial number taken as an identity."""
    second = '\n[[meter]]\nid = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 2\n'
    two = BASE.replace("address = 1\n", f'address = 1\nserial_number = "{unset}"\n') + second
    two += f'serial_number = "{unset}"\n'
    config = parse_rig_text(two, now=NOW)
    assert [(m.meter_id, m.serial_number) for m in config.meters] == [("M1", str(int(unset))), ("M2", str(int(unset)))]


def test_rig_table_mistakes() -> None:
    with pytest.raises(ConfigError, match=r"rig.installed: 2027-01-01T00:00:00Z: in the future"):
        parse_rig_text(BASE.replace("2026-01-01", "2027-01-01"), now=NOW)
    with pytest.raises(ConfigError, match=r"rig.control: '0.0.0.0:8470'"):
        parse_rig_text(BASE.replace("[rig]", '[rig]\ncontrol = "0.0.0.0:8470"'), now=NOW)
    with pytest.raises(ConfigError, match=r"rig.control: '127.0.0.1:٨٤٧٠'"):
        parse_rig_text(BASE.replace("[rig]", '[rig]\ncontrol = "127.0.0.1:٨٤٧٠"'), now=NOW)
    with pytest.raises(ConfigError, match=r"rig.toml:3: rig.seed: -1 must be at least 0"):
        parse_rig_text(BASE.replace("[rig]", "[rig]\nseed = -1"), now=NOW)
    assert Rig(parse_rig_text(BASE.replace("[rig]", "[rig]\nseed = 0"), now=NOW)).config.seed == 0  # builds
    with pytest.raises(ConfigError, match=r"rig.toml: not valid TOML"):
        parse_rig_text("[rig", now=NOW)


def test_the_command_reports_the_field_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "rig.toml"
    bad.write_text(BASE.replace("address = 1", "address = 300"))
    result = CliRunner().invoke(app, ["simulate", "rig", "--config", str(bad), "--check"])
    assert result.exit_code == 2
    assert "meter[0].address: 300 is outside 1..247" in result.output


def test_an_installation_before_the_model_s_epoch_is_refused_by_check_as_by_the_run(tmp_path: Path) -> None:
    """``installed = 1960-…`` passed ``--check`` and then crashed the run (numpy cannot seed the days
    before 1970): the file is refused when it is read, so ``--check`` says so, naming the field."""
    rig = tmp_path / "rig.toml"
    rig.write_text(BASE.replace("2026-01-01T00:00:00Z", "1960-01-01T00:00:00Z"))
    result = CliRunner().invoke(app, ["simulate", "rig", "--config", str(rig), "--check"])
    assert result.exit_code == 2
    assert "rig.toml:3: rig.installed: 1960-01-01T00:00:00Z: before 1970-01-01T00:00:00Z" in result.output
    for edge in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):  # overflow on the way to UTC
        with pytest.raises(ConfigError, match=r"rig.installed: .* is outside the years 1 to 9999 in UTC"):
            parse_rig_text(BASE.replace("2026-01-01T00:00:00Z", edge), now=NOW)
    earliest = parse_rig_text(BASE.replace("2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z"), now=NOW).installed
    a_day_later = earliest + timedelta(days=1)
    assert MeterModel("M1", installed=earliest, seed=7).volume_m3(a_day_later) >= 0  # the earliest runs
    with pytest.raises(ValueError, match="M1: installed 1969-12-31T23:59:59Z, before 1970-01-01T00:00:00Z"):
        MeterModel("M1", installed=earliest - timedelta(seconds=1), seed=7)  # and a second earlier is refused


def test_without_installed_a_restarted_rig_reads_on_where_it_left_off() -> None:
    """The default installation date is fixed: a rig restarted after midnight must not move it (and
    with it every register) a day later."""
    text = EXAMPLE.read_text()
    assert '\ninstalled = "' not in text  # the example relies on the default
    before = load_rig(EXAMPLE, now=datetime(2026, 3, 10, 8, 0, tzinfo=UTC))
    after = load_rig(EXAMPLE, now=datetime(2026, 3, 11, 0, 10, tzinfo=UTC))
    later = load_rig(EXAMPLE, now=datetime(2027, 7, 1, tzinfo=UTC))
    assert before.installed == after.installed == later.installed == datetime(2026, 1, 1, tzinfo=UTC)
    last_read, reread = datetime(2026, 3, 10, 23, 50, tzinfo=UTC), datetime(2026, 3, 11, 0, 10, tzinfo=UTC)
    for customer in ("M000001", "MB000001", "W000001"):
        old = MeterModel(customer, installed=before.installed, seed=before.seed).volume_m3(last_read)
        new = MeterModel(customer, installed=after.installed, seed=after.seed).volume_m3(reread)
        assert old <= new
    with pytest.raises(ConfigError, match=r"rig.installed: the default, 2026-01-01T00:00:00Z, is in the future"):
        parse_rig_text(BASE.replace('installed = "2026-01-01T00:00:00Z"', ""), now=datetime(2025, 12, 31, tzinfo=UTC))


def _assert_consistent(config: RigConfig) -> None:
    """What a rig file that loads promises: each transport and meter once, on a transport it names,
    and an inlet's customers among the rig's customer meters."""
    transports = [t.name for t in config.transports]
    assert len(set(transports)) == len(transports)
    meters = {m.meter_id: m for m in config.meters}
    assert meters and len(meters) == len(config.meters)
    for meter in config.meters:
        assert meter.transport in transports
        assert all(meters[c].kind != "dma_inlet" for c in meter.customers)


@settings(max_examples=150, deadline=None)
@given(text=damaged_texts(EXAMPLE.read_text()))
def test_a_damaged_rig_file_loads_or_is_a_config_error(text: str) -> None:
    """Fuzz: the example with a few characters inserted, changed or deleted either loads or is refused
    with a ConfigError naming the file, never another exception."""
    config = parsed_or_refused(lambda: parse_rig_text(text, "rig.toml", NOW), ConfigError, "rig.toml")
    if config is not None:
        _assert_consistent(config)


@settings(max_examples=200, deadline=None)
@given(document=damaged_documents(tomllib.loads(EXAMPLE.read_text())))
def test_a_rig_file_with_values_of_the_wrong_kind_loads_or_is_a_config_error(document: dict) -> None:
    """Fuzz: the example's values replaced by values of other types or left out either load or are
    refused with a ConfigError naming the file."""
    lines = LineIndex(EXAMPLE.read_text())
    config = parsed_or_refused(lambda: parse_rig(document, "rig.toml", lines, NOW), ConfigError, "rig.toml")
    if config is not None:
        _assert_consistent(config)


def test_the_rig_file_s_step_s_is_when_a_fault_in_the_water_starts() -> None:
    """``[rig] step_s`` is the meter models' step, so a leak injected at 03:30:00.5 is in the water from
    03:30:02 at ``step_s = 2`` (from 03:31:00 at the default 60 s): a test need not wait out a minute.
    Before, the rig had no such field and always stepped every minute."""
    at = NOW + timedelta(seconds=0.5)
    for text, step_s, since in (
        (BASE, 60, NOW + timedelta(minutes=1)),
        (BASE.replace("[rig]", "[rig]\nstep_s = 2"), 2, NOW + timedelta(seconds=2)),
    ):
        rig = Rig(parse_rig_text(text, now=NOW), clock=lambda: at)
        leak = asyncio.run(_injected_on_a_running_rig(rig, "M1", {"kind": "leak", "rate_lph": 3600}))  # 1 l/s
        assert rig.config.step_s == step_s and leak.since == since
        model = rig.meters["M1"].model
        assert isinstance(model, MeterModel) and model.step_s == step_s
        # the leak's litre a second on top of the use: at least 2 l in the 2 s from its start
        assert model.true_volume_m3(since + timedelta(seconds=2)) - model.true_volume_m3(since) >= 0.002 - 1e-9


async def _injected_on_a_running_rig(rig: Rig, meter_id: str, request: dict[str, Any]) -> ActiveFault:
    await rig.start()
    try:
        return rig.inject(meter_id, request)
    finally:
        await rig.stop()


@pytest.mark.parametrize(
    ("step_s", "message"),
    [
        (0, r"0 is outside 1\.\.3600"),
        (3601, r"3601 is outside 1\.\.3600"),
        (7, r"7 does not divide an hour \(3600 s\)"),  # a step would span two hours of the consumption model
        (35, r"35 does not divide an hour"),
    ],
)
def test_a_step_that_does_not_divide_an_hour_is_refused_by_line_and_field(step_s: int, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"rig\.toml:3: rig\.step_s: {message}"):
        parse_rig_text(BASE.replace("[rig]", f"[rig]\nstep_s = {step_s}"), now=NOW)
