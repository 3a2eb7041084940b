"""Gateway configuration: a good file loads; a bad one stops the start naming the line and the field."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from typer.testing import CliRunner

from aquami.cli import app
from aquami.config.toml_lines import LineIndex
from aquami.exit_codes import CONFIG
from gateway.config import (
    ConfigError,
    GatewayConfig,
    MBusBusConfig,
    ModbusRtuBusConfig,
    ModbusTcpBusConfig,
    WMBusBusConfig,
    load_config,
    parse_config,
    parse_config_text,
)
from tests.damage import damaged_documents, damaged_texts, parsed_or_refused

EXAMPLE = Path(__file__).resolve().parents[2] / "gateway" / "examples" / "gateway.toml"
PROFILES = Path(__file__).resolve().parents[2] / "firmware_protocols" / "modbus" / "profiles"
AQUAMI = str(Path(sys.executable).with_name("aquami"))

GOOD = """\
gateway_id = "gw-1"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[buses]]
name = "tcp-1"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = 5020

[[meters]]
meter_id = "WM-1"
bus = "tcp-1"
unit_id = 1

[[meters]]
meter_id = "WM-2"
bus = "tcp-1"
unit_id = 2
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "gw.toml")
    return str(caught.value)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def test_the_example_configuration_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.gateway_id == "gw-north-1"
    kinds = {bus.name: type(bus) for bus in config.buses}
    assert kinds == {
        "tcp-1": ModbusTcpBusConfig,
        "rtu-1": ModbusRtuBusConfig,
        "mbus-1": MBusBusConfig,
        "radio-1": WMBusBusConfig,
    }
    assert [m.meter_id for m in config.meters][:4] == ["WM-00001", "WM-00002", "DMA-7-INLET", "PULSE-0001"]
    assert {m.meter_id: m.address for m in config.meters[4:]} == {
        "FLAT-12": 12,
        "FLAT-13": "12345678",
        "HOUSE-77": "87654321",
    }
    assert config.meters[1].poll_interval_s == 900
    assert config.meters[3].parameters == {"litres_per_pulse": 10}
    assert config.spool_path == EXAMPLE.parent / "gw-north-1-spool.sqlite"  # relative to the file


def test_a_good_file_gives_defaults() -> None:
    config = parse_config_text(GOOD)
    assert config.mqtt.port == 1883 and config.mqtt_options.protocol == "auto" and config.mqtt_options.qos == 1
    assert config.spool.policy == "drop_oldest"
    assert config.mqtt_options.max_packet_size is None  # the broker's own word (MQTT 5), or no limit
    assert config.mqtt_options.connack_wait_s == 10.0
    slow_broker = GOOD.replace("[mqtt]\n", "[mqtt]\nconnack_wait_s = 25\n", 1)
    assert parse_config_text(slow_broker).mqtt_options.connack_wait_s == 25.0
    assert (
        parse_config_text(
            GOOD.replace("[mqtt]\n", "[mqtt]\nmax_packet_size = 131072\n", 1)
        ).mqtt_options.max_packet_size
        == 131072
    )
    bus = config.buses[0]
    assert isinstance(bus, ModbusTcpBusConfig)
    assert (bus.port, bus.retries, bus.poll_interval_s) == (5020, 2, 60.0)
    assert [m.unit_id for m in bus.meters] == [1, 2]


def test_meters_may_be_nested_under_their_bus() -> None:
    text = GOOD.replace('[[meters]]\nmeter_id = "WM-2"\nbus = "tcp-1"', '[[buses.meters]]\nmeter_id = "WM-2"')
    text = text.replace("port = 5020\n", 'port = 5020\n\n[[buses.meters]]\nmeter_id = "WM-3"\nunit_id = 3\n')
    # the nested tables must follow their bus; move the top-level meter to the end
    config = parse_config_text(text)
    assert sorted(m.meter_id for m in config.meters) == ["WM-1", "WM-2", "WM-3"]


def test_wrong_type_names_line_and_field() -> None:
    text = GOOD.replace("unit_id = 2", 'unit_id = "2"')
    message = error_of(text)
    line = line_of(text, 'unit_id = "2"')
    assert message == f"gw.toml:{line}: meters[1].unit_id: expected integer, got string '2'"


def test_unknown_profile_names_line_and_lists_the_known_ones() -> None:
    text = GOOD.replace("unit_id = 2\n", 'unit_id = 2\nprofile = "smart_watr_meter"\n')
    message = error_of(text)
    assert message.startswith(f"gw.toml:{line_of(text, 'smart_watr_meter')}: meters[1].profile: ")
    assert "unknown meter profile 'smart_watr_meter'" in message and "smart_water_meter" in message


def test_duplicate_meter_id_names_both_lines() -> None:
    text = GOOD.replace('"WM-2"', '"WM-1"')
    message = error_of(text)
    first, second = line_of(text, '"WM-1"', 1), line_of(text, '"WM-1"', 2)
    assert message == f"gw.toml:{second}: meters[1].meter_id: duplicate meter id 'WM-1' (first at line {first})"


@pytest.mark.parametrize(
    ("change", "needle", "expected"),
    [
        (("port = 5020", "port = 70000"), "port = 70000", "buses[0].port: 70000 is outside 1..65535"),
        (("unit_id = 2", "unit_id = 300"), "unit_id = 300", "meters[1].unit_id: 300 is outside 1..247"),
        (("unit_id = 2", "unit_id =  1"), "unit_id =  1", "meters[1].unit_id: unit id 1 on bus 'tcp-1' is already"),
        (('bus = "tcp-1"\nunit_id = 2', 'bus = "tcp-9"\nunit_id = 2'), "tcp-9", "meters[1].bus: no bus named 'tcp-9'"),
        (
            ("port = 5020", "port = 5020\npol_interval_s = 5"),
            "pol_interval_s",
            "buses[0].pol_interval_s: unknown",
        ),
        (
            ('protocol = "modbus-tcp"', 'protocol = "modbus-udp"'),
            "modbus-udp",
            "buses[0].protocol: 'modbus-udp'",
        ),
        (("[mqtt]\n", "[mqtt]\nqos = 0\n"), "qos = 0", "mqtt.qos: QoS 0 has no PUBACK"),
        (("[mqtt]\n", '[mqtt]\nprotocol = "4"\n'), 'protocol = "4"', "mqtt.protocol: '4' is not one of"),
        (('url = "mqtt://', 'url = "http://'), "http://", "mqtt.url: MQTT URL"),
        # said "gw.toml:4: mqtt.url: gw.toml:4: mqtt.url: expected string, …": the file and field twice
        (('url = "mqtt://127.0.0.1:1883"', "url = 1883"), "url = 1883", "mqtt.url: expected string, got integer 1883"),
        (('"WM-2"', '"WM 2"'), "WM 2", "meters[1].meter_id: 'WM 2' is not an identifier"),
        # a name ending in a line break passed the gateway's check, and every batch naming it was refused
        (('"WM-2"', '"WM-2\\n"'), "WM-2", "meters[1].meter_id: 'WM-2\\n' is not an identifier"),
        (("[mqtt]\n", '[mqtt]\nca_file = "missing-ca.pem"\n'), "missing-ca.pem", "mqtt.ca_file: no such file"),
        (("[mqtt]\n", '[mqtt]\npassword = "x"\n'), 'password = "x"', "mqtt.password: a password needs a username"),
        (
            ("[mqtt]\n", "[mqtt]\nmax_packet_size = 100\n"),
            "max_packet_size",
            "mqtt.max_packet_size: 100 is outside 1024..268435460",
        ),
        (("[mqtt]\n", "[mqtt]\nconnack_wait_s = 0.5\n"), "connack_wait_s", "mqtt.connack_wait_s: 0.5 is outside 1.0"),
    ],
)
def test_each_mistake_is_named_with_its_line(change: tuple[str, str], needle: str, expected: str) -> None:
    text = GOOD.replace(*change, 1)
    assert text != GOOD
    message = error_of(text)
    assert message.startswith(f"gw.toml:{line_of(text, needle)}: {expected}"), message


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_number_must_be_finite(value: str) -> None:
    """TOML has nan and inf; no bound catches nan (every comparison is false): a bus polled every
    nan seconds would never let the event loop run anything else."""
    text = GOOD.replace("port = 5020", f"port = 5020\npoll_interval_s = {value}")
    message = error_of(text)
    line = line_of(text, "poll_interval_s")
    assert message == f"gw.toml:{line}: buses[0].poll_interval_s: {float(value)!r} is not a finite number"


def test_missing_field_points_at_its_table() -> None:
    text = GOOD.replace('host = "127.0.0.1"\n', "")
    assert error_of(text) == f"gw.toml:{line_of(text, '[[buses]]')}: buses[0]: missing field 'host'"


def test_missing_mqtt_table_and_no_buses() -> None:
    assert "missing table [mqtt]" in error_of('gateway_id = "g"\n')
    assert "no [[buses]]" in error_of('gateway_id = "g"\n[mqtt]\nurl = "mqtt://h"\n')


def test_pulse_counter_needs_its_litres_per_pulse() -> None:
    text = GOOD.replace("unit_id = 2\n", 'unit_id = 2\nprofile = "pulse_counter"\n')
    message = error_of(text)
    assert message.startswith(f"gw.toml:{line_of(text, 'pulse_counter')}: meters[1].profile: ")
    assert "needs a parameter" in message
    fixed = text.replace(
        'profile = "pulse_counter"\n', 'profile = "pulse_counter"\nparameters = { litres_per_pulse = 1 }\n'
    )
    assert parse_config_text(fixed).meters[1].parameters == {"litres_per_pulse": 1}


def test_broken_toml_says_where() -> None:
    message = error_of(GOOD.replace("unit_id = 2", "unit_id = = 2"))
    assert message.startswith("gw.toml: not valid TOML:") and f"line {line_of(GOOD, 'unit_id = 2')}" in message


def test_credentials_and_tls_files(tmp_path: Path) -> None:
    for name in ("ca.pem", "gw.pem", "gw.key"):
        (tmp_path / name).write_text("x")
    text = GOOD.replace(
        "[mqtt]\n",
        '[mqtt]\nusername = "gw"\npassword = "pw"\nca_file = "ca.pem"\ncert_file = "gw.pem"\nkey_file = "gw.key"\n',
    )
    (tmp_path / "gw.toml").write_text(text)
    config = load_config(tmp_path / "gw.toml")
    assert (config.mqtt.username, config.mqtt.password, config.mqtt.tls) == ("gw", "pw", True)
    assert config.mqtt_options.key_file == tmp_path / "gw.key"
    half = text.replace('key_file = "gw.key"\n', "")
    (tmp_path / "half.toml").write_text(half)
    with pytest.raises(ConfigError, match="key_file: a client certificate needs both"):
        load_config(tmp_path / "half.toml")


def test_line_index_follows_tables_arrays_and_multiline_values() -> None:
    text = """\
a = 1
list = [
  "x = 2",
  3,
]
[t]
"quoted.key" = 4
sub.key = 5
[[arr]]
k = 6
[[arr]]
k = 7
[[arr.inner]]
z = 8
s = '''
w = 9
'''
after = 10
"""
    index = LineIndex(text)
    assert index.line(("a",)) == 1
    assert index.line(("list",)) == 2
    assert index.line(("x",)) is None  # inside the array, not a key
    assert index.line(("t", "quoted.key")) == 7
    assert index.line(("t", "sub", "key")) == 8
    assert index.line(("arr", 0, "k")) == 10
    assert index.line(("arr", 1, "k")) == 12
    assert index.line(("arr", 1, "inner", 0, "z")) == 14
    assert index.line(("arr", 1, "inner", 0, "after")) == 18  # not fooled by the multi-line string
    assert index.line(("arr", 1, "nothing")) == 11  # falls back to its table


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    done = subprocess.run([AQUAMI, "gateway", "check", str(good)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ok (1 bus, 2 meters)" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"WM-2"', '"WM-1"'))
    for command, code in (("check", 1), ("run", CONFIG)):  # a misconfigured file stops the start, no traceback
        done = subprocess.run([AQUAMI, "gateway", command, str(bad)], capture_output=True, text=True, timeout=60)
        assert done.returncode == code  # run: EX_CONFIG, which its unit does not start again on
        assert f"error: {bad}:{line_of(bad.read_text(), 'WM-1', 2)}: meters[1].meter_id: duplicate" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["check"], ["run"], ["scan", "--bus", "tcp-1"]])
def test_a_config_not_there_is_a_bad_argument_exit_2_naming_it(tmp_path: Path, command: list[str]) -> None:
    """A CONFIG not there (or a folder) was exit 1, ``error: PATH: no such file``, where every other
    command's file (``simulate rig --config``, ``detect --readings``) is exit 2 naming its argument.
    One there but invalid stays exit 1 (test_check_command_exit_codes)."""
    for path, why in ((tmp_path / "missing.toml", "does not exist"), (tmp_path, "is a directory")):
        result = CliRunner().invoke(app, ["gateway", command[0], str(path), *command[1:]], env={"COLUMNS": "400"})
        assert result.exit_code == 2, result.output
        assert f"Invalid value for 'config': file '{path}' {why}." in result.output, result.output


def test_a_spool_that_cannot_be_opened_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    """A damaged spool file (or one on a disk mounted read-only) stopped ``gateway run`` with a
    traceback that did not name the file ("file is not a database"): now one line names it. (A
    damaged one stops the start only with ``on_damage = "stop"``: by default it is set aside and
    salvaged, tests/gateway/test_spool_damage.py.)"""
    config = tmp_path / "gw.toml"
    config.write_text(GOOD + '\n[spool]\non_damage = "stop"\n')
    spool = tmp_path / "gw-1-spool.sqlite"  # the default path: beside the configuration
    spool.write_bytes(b"not a database at all" * 100)
    done = subprocess.run([AQUAMI, "gateway", "run", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"error: cannot open the spool {spool}: it is damaged: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr


RADIO = """\
gateway_id = "gw-1"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[buses]]
name = "m"
protocol = "mbus"
device = "/dev/ttyUSB0"
baudrate = 2400
[[buses]]
name = "r"
protocol = "wmbus"
device = "/dev/ttyUSB1"
[[meters]]
meter_id = "A"
bus = "m"
address = 5
[[meters]]
meter_id = "B"
bus = "m"
secondary_address = "12345678"
[[meters]]
meter_id = "C"
bus = "r"
id = "87654321"
key = "000102030405060708090a0b0c0d0e0f"
"""


@pytest.mark.parametrize(
    ("change", "needle", "expected"),
    [
        (("baudrate = 2400", "baudrate = 1000"), "baudrate = 1000", "buses[0].baudrate: M-Bus runs at 300, 600"),
        (("address = 5", 'address = 5\nsecondary_address = "1"'), "[[meters]]", "meters[0]: an M-Bus meter"),
        (('"12345678"', '"1234567X"'), "1234567X", "meters[1].secondary_address: '1234567X' is not an 8-digit"),
        (("address = 5", "address = 251"), "address = 251", "meters[0].address: 251 is outside 0..250"),
        (('key = "0001', 'key = "01'), 'key = "01', "meters[2].key: an AES-128 key is 32 hexadecimal digits"),
        *(  # a key copied from a key sheet the wrong way: said what is wrong, where it said only the rule
            (('key = "', f'key = "{prefix}'), "key = ", f"meters[2].key: an AES-128 key is 32 hexadecimal digits{said}")
            for prefix, said in [
                ("0x", ", written without 0x before them"),
                ("0", ": this one has 33"),
                (":", " (0-9, A-F) and nothing else: this one has ':' in it; write the digits alone"),
            ]
        ),
        (('id = "87654321"', "id = 87654321"), "id = 87654321", "meters[2].id: expected string, got integer"),
        (("address = 5", "unit_id = 5"), "[[meters]]", "meters[0]: an M-Bus meter has either"),
        *(
            (('id = "87654321"', f'id = "87654321"\nmanufacturer = {bad}'), "manufacturer", expected)
            for bad, expected in [
                ('"KA1"', "meters[2].manufacturer: 'KA1' is not a manufacturer's 3-letter FLAG code"),
                ('"KAMS"', "meters[2].manufacturer: 'KAMS' is not a manufacturer's 3-letter FLAG code"),
                ('""', "meters[2].manufacturer: '' is not a manufacturer's 3-letter FLAG code"),
                ("3", "meters[2].manufacturer: expected string, got integer"),
            ]
        ),
    ],
)
def test_mbus_and_wmbus_mistakes(change: tuple[str, str], needle: str, expected: str) -> None:
    text = RADIO.replace(*change, 1)
    assert text != RADIO
    message = error_of(text)
    assert message.startswith(f"gw.toml:{line_of(text, needle)}: {expected}"), message


def test_a_wmbus_meter_s_manufacturer_is_its_flag_code() -> None:
    config = parse_config_text(RADIO.replace('id = "87654321"', 'id = "87654321"\nmanufacturer = "kam"'))
    assert config.meters[2].manufacturer == "KAM"
    assert parse_config_text(RADIO).meters[2].manufacturer is None


def test_two_buses_on_one_serial_port_are_refused() -> None:
    """Each bus has its own scheduler and lock: two on one port would put two transactions on the
    line at once."""
    text = RADIO.replace('device = "/dev/ttyUSB1"', 'device = "/dev/ttyUSB0"')
    line = line_of(text, 'device = "/dev/ttyUSB0"', 2)
    assert error_of(text) == f"gw.toml:{line}: buses[1].device: /dev/ttyUSB0 is already bus 'm' (one bus per port)"


def test_mbus_timeout_follows_the_baud_rate() -> None:
    config = parse_config_text(RADIO)
    bus = config.buses[0]
    assert isinstance(bus, MBusBusConfig)
    assert bus.timeout_s == pytest.approx(330 / 2400 + 0.05 + 261 * 11 / 2400, abs=1e-3)
    slow = parse_config_text(RADIO.replace("baudrate = 2400", "baudrate = 300")).buses[0]
    assert slow.timeout_s / bus.timeout_s == pytest.approx(8, rel=0.05)
    duplicate = RADIO.replace(
        'id = "87654321"', 'id = "87654321"\n[[meters]]\nmeter_id = "D"\nbus = "r"\nid = "87654321"'
    )
    assert "id 87654321 on bus 'r' is already meter 'C'" in error_of(duplicate)


def test_an_mbus_bus_s_answer_window_is_the_standard_s_unless_widened() -> None:
    """EN 13757-2 clause 5.4: an answer starts within 330 bit times + 50 ms; ``answer_timeout_s``
    widens that for a converter or bridge that delays answers, and the default timeout with it."""
    bus = parse_config_text(RADIO).buses[0]
    assert isinstance(bus, MBusBusConfig) and bus.answer_timeout_s == pytest.approx(330 / 2400 + 0.05)
    wide = parse_config_text(RADIO.replace("baudrate = 2400", "baudrate = 2400\nanswer_timeout_s = 1.5")).buses[0]
    assert isinstance(wide, MBusBusConfig) and wide.answer_timeout_s == 1.5
    assert wide.timeout_s == pytest.approx(1.5 + 261 * 11 / 2400, abs=1e-3)
    too_wide = RADIO.replace("baudrate = 2400", "baudrate = 2400\nanswer_timeout_s = 1.5\ntimeout_s = 1.0")
    line = line_of(too_wide, "answer_timeout_s")
    assert error_of(too_wide).startswith(f"gw.toml:{line}: buses[0].answer_timeout_s: the answer window (1.5 s)")
    zero = RADIO.replace("baudrate = 2400", "baudrate = 2400\nanswer_timeout_s = 0")
    assert "0.0 is outside 0.01..60" in error_of(zero)
    on_modbus = RADIO.replace('protocol = "mbus"', 'protocol = "modbus-rtu"').replace(
        "baudrate = 2400", "baudrate = 2400\nanswer_timeout_s = 1.0"
    )
    assert "answer_timeout_s is for M-Bus buses" in error_of(on_modbus)


def test_a_profile_naming_an_alarm_outside_the_reads_contract_is_refused(tmp_path: Path) -> None:
    """The collector refuses a whole batch (every meter's readings in it) for one alarm name outside
    the contract's list: a utility's own profile with such a name must fail the configuration."""
    shipped = (PROFILES / "smart_water_meter.toml").read_text()
    (tmp_path / "copy.toml").write_text(shipped)
    parse_config_text(GOOD.replace("unit_id = 2\n", f'unit_id = 2\nprofile = "{tmp_path / "copy.toml"}"\n'))
    (tmp_path / "acme.toml").write_text(shipped.replace('"leak"', '"valve_closed"'))  # its bit and its example
    text = GOOD.replace("unit_id = 2\n", f'unit_id = 2\nprofile = "{tmp_path / "acme.toml"}"\n')
    message = error_of(text)
    assert message.startswith(f"gw.toml:{line_of(text, 'acme.toml')}: meters[1].profile: ")
    assert "names alarm(s) 'valve_closed'" in message and "leak, burst" in message


def _assert_consistent(config: GatewayConfig) -> None:
    """What a configuration that loads promises: each bus and each meter once, one meter per address."""
    buses = [bus.name for bus in config.buses]
    assert buses and len(set(buses)) == len(buses)
    meters = [m.meter_id for m in config.meters]
    assert len(set(meters)) == len(meters)
    for bus in config.buses:
        addresses = [m.address for m in bus.meters]
        assert len(set(addresses)) == len(addresses), bus.name


@settings(max_examples=150, deadline=None)
@given(text=damaged_texts(EXAMPLE.read_text()))
def test_a_damaged_configuration_file_loads_or_is_a_config_error(text: str) -> None:
    """Fuzz: the example with a few characters inserted, changed or deleted either loads or is refused
    with a ConfigError naming the file, never another exception."""
    config = parsed_or_refused(lambda: parse_config_text(text, "gw.toml", EXAMPLE.parent), ConfigError, "gw.toml")
    if config is not None:
        _assert_consistent(config)


@settings(max_examples=200, deadline=None)
@given(document=damaged_documents(tomllib.loads(EXAMPLE.read_text())))
def test_a_configuration_with_values_of_the_wrong_kind_loads_or_is_a_config_error(document: dict) -> None:
    """Fuzz: the example's values replaced by values of other types (a table for a number, a date for
    a name, NaN, 10**30) or left out either load or are refused with a ConfigError naming the file."""
    lines = LineIndex(EXAMPLE.read_text())
    config = parsed_or_refused(lambda: parse_config(document, "gw.toml", lines, EXAMPLE.parent), ConfigError, "gw.toml")
    if config is not None:
        _assert_consistent(config)


def test_a_configuration_s_size_is_said_in_agreement_with_its_numbers(tmp_path: Path) -> None:
    """``aquami gateway check`` and a reload's log line said ``1 buses, 1 meters``."""
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    loaded = load_config(good)
    assert loaded.size() == "1 bus, 2 meters"
    one = replace(loaded, buses=(replace(loaded.buses[0], meters=loaded.buses[0].meters[:1]),))
    assert one.size() == "1 bus, 1 meter"
    assert replace(loaded, buses=loaded.buses * 2).size() == "2 buses, 4 meters"
    assert replace(loaded, buses=()).size() == "0 buses, 0 meters"
