"""A scan says what answered at each configured meter's address: a serial number (Modbus) or an
identification (M-Bus) no meter of the bus has, where a meter is known by another (the meter
exchanged?), with both; a configured meter's address that did not answer, if the scan covered it.

Before, a scan said a unit answering with ANOTHER configured meter's serial number (a swap), but a
new meter at an exchanged one's unit was only a snippet's table like any other, a pinned meter that
did not answer was not said, and an M-Bus search said none of it, nor a swap.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aquami.contracts.commands import reply_errors
from aquami.ports import free_port
from gateway.config import MeterConfig, parse_config_text
from gateway.meter_identity import IDENTIFICATION, SERIAL_NUMBER
from gateway.scan import FoundMBus, mbus_snippet, serial_owners
from gateway.scan_configured import configured_answers, mbus_configured_answers
from simulators.mbus_bus import MBusSimulator, mbus_line
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.serial_line import LineSettings
from simulators.smart_meter import SteadyFlow
from tests.gateway.helpers import CountingMeter, bus_config_text, scan_command_after
from tests.gateway.test_mbus_identification import NOW, PARITY, WINDOW_S, _water_meter
from tests.gateway.test_scan_serial_numbers import AQUAMI, PROFILE, _config, _meters, _scan

NEW_SERIAL = "40000099"


def _new_meter() -> CountingMeter:
    """The meter a technician puts at unit 5 in place of FLAT-5's (set to unit 5, its own serial)."""
    return CountingMeter("NEW", 5, PROFILE, SteadyFlow(datetime.now(UTC), 0.0, 0.5), serial_number=NEW_SERIAL)


def test_the_command_line_scan_names_an_exchanged_meter_with_both_serial_numbers_and_a_silent_pinned_one(
    tmp_path: Path,
) -> None:
    """FLAT-5 pinned with 40000005 at unit 5, whose meter is exchanged for one answering 40000099;
    FLAT-8 pinned at unit 8, where nothing answers; FLAT-20 at unit 20, outside the scan (not said);
    FLAT-7 unpinned (nothing to check it against: not said)."""
    meters = [
        {"meter_id": "FLAT-5", "unit_id": 5, "serial_number": "40000005"},
        {"meter_id": "FLAT-7", "unit_id": 7},
        {"meter_id": "FLAT-8", "unit_id": 8, "serial_number": "40000008"},
        {"meter_id": "FLAT-20", "unit_id": 20, "serial_number": "40000020"},
    ]
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        sim.slaves.exchange(5, _new_meter())
        done = _scan(_config(tmp_path, sim.port, meters))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# unit 5 answered with serial number 40000099, no meter's of rtu-1; FLAT-5 is configured there with "
        '40000005 (configured with it): the meter exchanged? pin the new one (FLAT-5\'s serial_number = "40000099") '
        "or set FLAT-5's unit_id",
        "# unit 8 did not answer: FLAT-8 is configured there with 40000008 (configured with it)",
        "# 3 meters found on rtu-1 (units 4..8)",
    ]
    assert (
        'unit_id = 5\nprofile = "smart_water_meter"\nserial_number = "40000099"  # no meter of rtu-1 has it; '
        "FLAT-5 here is known by 40000005 (configured with it): exchanged?\n" in done.stdout
    )


def test_a_scan_shows_a_unit_whose_serial_number_was_never_set_as_such_not_as_0(tmp_path: Path) -> None:
    """FLAT-5 pinned with 40000005 at unit 5, whose meter is exchanged for one never given its serial
    number (its register reads 0). Before, the scan showed it as serial number 0: the snippet pinned
    it with ``serial_number = "0"``, which every such meter answers with, and the line told to pin
    FLAT-5 with it. Now it is said as not set, and the snippet, with no serial_number, loads back."""
    unset = CountingMeter("UNSET", 5, PROFILE, SteadyFlow(datetime.now(UTC), 0.0, 0.5), serial_number="0")
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        sim.slaves.exchange(5, unset)
        config = _config(tmp_path, sim.port, [{"meter_id": "FLAT-5", "unit_id": 5, "serial_number": "40000005"}])
        done = _scan(config)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# unit 5 answered with no serial number set (0, or all ones); FLAT-5 is configured there with 40000005 "
        "(configured with it): the meter exchanged for one never given its serial number? set the new meter's "
        "own, or set FLAT-5's unit_id",
        "# 3 meters found on rtu-1 (units 4..8)",
    ]
    assert (
        'unit_id = 5\nprofile = "smart_water_meter"\n# serial number not set (its register reads 0, or all ones): '
        "it cannot be checked, nor pinned by\n# serial_number; set the meter's own (the one on its label, with the "
        "manufacturer's tool)\n" in done.stdout
    )
    pasted = done.stdout.replace('meter_id = "rtu-1-unit-5"', 'meter_id = "NEW-5"')
    loaded = parse_config_text(config.read_text().replace("unit_id = 5", "unit_id = 15") + "\n" + pasted)
    assert [(m.unit_id, m.serial_number) for m in loaded.meters if m.meter_id != "FLAT-5"] == [
        (5, None),
        (6, "40000006"),
        (7, "1234567890"),
    ]


def test_the_scan_command_says_each_configured_meter_s_answer_and_holds_to_the_contract(tmp_path: Path) -> None:
    """Through the gateway: FLAT-5 unpinned, known by its first answer's serial number (remembered),
    its meter then exchanged; FLAT-6 answers with its own pinned one; FLAT-8 pinned, silent."""
    meters = [
        {"meter_id": "FLAT-5", "unit_id": 5},
        {"meter_id": "FLAT-6", "unit_id": 6, "serial_number": "40000006"},
        {"meter_id": "FLAT-8", "unit_id": 8, "serial_number": "40000008"},
    ]
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, meters)

        def exchange() -> None:
            sim.slaves.exchange(5, _new_meter())

        reply = scan_command_after(config, ["FLAT-5"], exchange, {"bus": "rtu-1", "first": 4, "last": 8})
    assert reply["configured_meters"] == [
        {
            "meter_id": "FLAT-5",
            "address": 5,
            "answer": "exchanged",
            "known_by": "40000005",
            "pinned": False,
            "answered_with": NEW_SERIAL,
        },
        {
            "meter_id": "FLAT-6",
            "address": 6,
            "answer": "own",
            "known_by": "40000006",
            "pinned": True,
            "answered_with": "40000006",
        },
        {"meter_id": "FLAT-8", "address": 8, "answer": "silent", "known_by": "40000008", "pinned": True},
    ]
    assert (
        "# no meter of rtu-1 has it; FLAT-5 here is known by 40000005 (its first answer's): exchanged?"
        in (reply["snippet"])
    )
    assert reply_errors("scan", {**reply, "request_id": "r", "ok": True}) == []


def test_the_scan_command_gives_a_serial_number_never_set_as_null_within_the_contract(tmp_path: Path) -> None:
    """FLAT-5, known by its first answer's serial number, exchanged for a meter never given one: its
    ``answered_with`` and the unit's ``serial_numbers`` entry are null (before, "0", a serial number
    like any other, which the snippet pinned it with)."""
    unset = CountingMeter("UNSET", 5, PROFILE, SteadyFlow(datetime.now(UTC), 0.0, 0.5), serial_number="0")
    with ModbusRtuSimulator(_meters(), LineSettings(baudrate=9600, parity="E")) as sim:
        config = _config(tmp_path, sim.port, [{"meter_id": "FLAT-5", "unit_id": 5}])

        def exchange() -> None:
            sim.slaves.exchange(5, unset)

        reply = scan_command_after(config, ["FLAT-5"], exchange, {"bus": "rtu-1", "first": 5, "last": 6})
    assert reply["configured_meters"] == [
        {
            "meter_id": "FLAT-5",
            "address": 5,
            "answer": "exchanged",
            "known_by": "40000005",
            "pinned": False,
            "answered_with": None,
        }
    ]
    assert reply["serial_numbers"] == [
        {"unit_id": 5, "serial_number": None},
        {"unit_id": 6, "serial_number": "40000006"},
    ]
    assert 'serial_number = "0"' not in reply["snippet"] and "# serial number not set" in reply["snippet"]
    assert reply_errors("scan", {**reply, "request_id": "r", "ok": True}) == []


def _mbus_config(tmp_path: Path, port: str, meters: list[dict[str, Any]]) -> Path:
    bus = {
        "name": "mbus-1",
        "protocol": "mbus",
        "device": port,
        "baudrate": 9600,
        "parity": PARITY,
        "answer_timeout_s": WINDOW_S,
        "poll_interval_s": 3600,
    }
    config = tmp_path / "gw.toml"
    config.write_text(
        bus_config_text(f"mqtt://127.0.0.1:{free_port()}", tmp_path / "s.sqlite", bus, meters, gateway_id="g")
    )
    return config


MBUS_METERS: list[dict[str, Any]] = [
    {"meter_id": "FLAT-5", "address": 5, "identification": "11111111"},
    {"meter_id": "FLAT-6", "address": 6, "identification": "22222222"},
    {"meter_id": "FLAT-7", "address": 7, "identification": "77777777"},
    {"meter_id": "FLAT-9", "secondary_address": "99999999"},
]


def test_the_command_line_search_names_an_exchanged_m_bus_meter_and_the_configured_ones_not_found(
    tmp_path: Path,
) -> None:
    """FLAT-5's meter (11111111 at primary address 5) exchanged for 33333333; FLAT-7 (pinned at 7)
    and FLAT-9 (by secondary address) not on the line; FLAT-6 there, as configured."""
    bus_meters = [_water_meter("11111111", 5, 10.0), _water_meter("22222222", 6, 20.0)]
    with MBusSimulator(bus_meters, mbus_line(9600), clock=lambda: NOW) as sim:
        sim.exchange("11111111", _water_meter("33333333", 0, 0.0))
        done = subprocess.run(
            [AQUAMI, "gateway", "scan", str(_mbus_config(tmp_path, sim.port, MBUS_METERS)), "--bus", "mbus-1"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "400"},
        )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "# secondary address 99999999 was not found on mbus-1: FLAT-9 is configured with it; the meter exchanged, "
        "or not answering?",
        "# primary address 5 answered with identification 33333333, no meter's of mbus-1; FLAT-5 is configured "
        "there with 11111111 (configured with it): the meter exchanged? pin the new one (FLAT-5's identification = "
        '"33333333") or set FLAT-5\'s address',
        "# primary address 7 did not answer: FLAT-7 is configured there with 77777777 (configured with it)",
        "# 2 meters found on mbus-1 (secondary search)",
    ]
    assert (
        'secondary_address = "33333333"  # no meter of mbus-1 has it; FLAT-5 here is known by 11111111 '
        "(configured with it): exchanged?\n" in done.stdout
    )
    assert 'secondary_address = "22222222"  # FLAT-6\'s (configured with it, at this primary address: configured ' in (
        done.stdout
    )


def test_the_search_command_names_swapped_and_exchanged_m_bus_meters_and_holds_to_the_contract(
    tmp_path: Path,
) -> None:
    """Through the gateway: FLAT-5 and FLAT-6 pinned, their primary addresses swapped; FLAT-8
    unpinned, known by its first answer's identification, its meter then exchanged."""
    bus_meters = [_water_meter(i, a, 1.0) for i, a in (("11111111", 5), ("22222222", 6), ("88888888", 8))]
    meters = [*MBUS_METERS[:2], {"meter_id": "FLAT-8", "address": 8}, MBUS_METERS[3]]
    with MBusSimulator(bus_meters, mbus_line(9600), clock=lambda: NOW) as sim:
        config = _mbus_config(tmp_path, sim.port, meters)

        def swap_and_exchange() -> None:
            sim.swap_primary_addresses("11111111", "22222222")
            sim.exchange("88888888", _water_meter("44444444", 0, 0.0))

        reply = scan_command_after(config, ["FLAT-8"], swap_and_exchange, {"bus": "mbus-1"}, timeout_s=90)
    assert reply["configured_meters"] == [
        {"meter_id": "FLAT-9", "address": "99999999", "answer": "silent", "known_by": "99999999", "pinned": True},
        {
            "meter_id": "FLAT-5",
            "address": 5,
            "answer": "another_meter",
            "known_by": "11111111",
            "pinned": True,
            "answered_with": "22222222",
        },
        {
            "meter_id": "FLAT-6",
            "address": 6,
            "answer": "another_meter",
            "known_by": "22222222",
            "pinned": True,
            "answered_with": "11111111",
        },
        {
            "meter_id": "FLAT-8",
            "address": 8,
            "answer": "exchanged",
            "known_by": "88888888",
            "pinned": False,
            "answered_with": "44444444",
        },
    ]
    assert (
        'secondary_address = "22222222"  # FLAT-6\'s (configured with it, at primary address 6): addresses '
        "swapped, or the meter moved?\n" in reply["snippet"]
    )
    assert "FLAT-8 here is known by 88888888 (its first answer's): exchanged?" in reply["snippet"]
    assert reply_errors("scan", {**reply, "request_id": "r", "ok": True}) == []


@given(
    st.dictionaries(
        st.integers(1, 20),
        st.tuples(st.none() | st.integers(0, 9), st.none() | st.integers(0, 9), st.booleans()),
        max_size=8,
    ),
    st.sets(st.integers(1, 20)),
    st.sets(st.integers(1, 20)),
)
def test_each_configured_meter_of_the_range_is_said_once_with_what_answered_at_its_unit(
    units: dict[int, tuple[int | None, int | None, bool]], scanned: set[int], late: set[int]
) -> None:
    """Meters at units 1..20, each pinned with a serial number or not; at each unit a serial number
    answers, or nothing (``None``), or an answer with no serial number read (``unread``). Each meter
    whose unit was scanned is said once, in order: ``own`` only for its own serial number, ``exchanged``
    only for one no meter has, ``another_meter`` for another meter's, ``silent`` where nothing answered,
    ``late`` where only a late answer came (``late``: said as such by the scan)."""
    meters = [
        MeterConfig(f"M-{unit}", unit, serial_number=None if pin is None else f"4000{pin}")
        for unit, (pin, _, _) in sorted(units.items())
    ]
    pins = {m.serial_number for m in meters if m.serial_number is not None}
    if len(pins) != sum(m.serial_number is not None for m in meters):
        return  # (one serial number, one meter of a bus: the configuration refuses it)
    answered = {
        unit: None if unread else f"4000{heard}"
        for unit, (_, heard, unread) in units.items()
        if heard is not None or unread
    }
    said = configured_answers(meters, serial_owners(meters, SERIAL_NUMBER), answered, scanned, late=late)
    assert [a.meter_id for a in said] == [m.meter_id for m in meters if m.unit_id in scanned]
    for meter, entry in zip([m for m in meters if m.unit_id in scanned], said, strict=True):
        heard = answered.get(meter.unit_id)
        assert (entry.answer == "silent") == (meter.unit_id not in answered and meter.unit_id not in late)
        assert (entry.answer == "late") == (meter.unit_id not in answered and meter.unit_id in late)
        assert (entry.answer == "own") == (heard is not None and heard == meter.serial_number)
        assert (entry.answer == "exchanged") == (
            heard is not None and meter.serial_number is not None and heard not in pins
        )
        assert (entry.answer == "another_meter") == (
            heard is not None and meter.serial_number is not None and heard in pins - {meter.serial_number}
        )
        assert reply_errors("scan", {"request_id": "r", "ok": True, "found": [], "problems": [], "snippet": "",
                                     "configured_meters": [entry.to_json()]}) == []  # fmt: skip


@given(st.lists(st.integers(0, 10**8 - 1), unique=True, max_size=6), st.booleans())
def test_an_m_bus_snippet_with_its_comments_loads_back(identifications: list[int], exchanged: bool) -> None:
    """Whatever the meters found and the comments beside them (a meter known already, or a new one at
    an exchanged meter's primary address), the tables load back as the same secondary addresses."""
    found = [FoundMBus(f"{i:08d}", 1.0, primary_address=n) for n, i in enumerate(identifications)]
    meters = [MeterConfig("OLD-0", 0, "mbus", identification="99999999")] if exchanged else []
    owners = serial_owners(meters, IDENTIFICATION)
    _, noted = mbus_configured_answers("b", meters, owners, found)
    if exchanged and found and found[0].identification != "99999999":
        assert noted[0].note is not None and "exchanged?" in noted[0].note
    head = bus_config_text(
        "mqtt://127.0.0.1:1", "s.sqlite", {"name": "b", "protocol": "mbus", "device": "/dev/null"}, [], gateway_id="g"
    )
    loaded = parse_config_text(head + "\n" + mbus_snippet("b", noted))
    assert [m.secondary_address for m in loaded.meters] == [f.identification for f in found]
