"""A technician's work on a running rig (``swap_address``, ``exchange``), rehearsed against a real gateway.

The rig runs its transports and its fault endpoint; the gateway's own transports read it, configured
by the file the rig writes for it (``--gateway-config``: each M-Bus meter's identification, each Modbus
meter's serial number). A swap or an exchange injected with ``aquami simulate fault`` is refused by
the gateway (no reading stored under the wrong meter's id), and cleared, the readings resume. Before,
the rig knew neither: ``'swap_address' is no fault``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from aquami.cli import app
from aquami.contracts.reads import Reading
from gateway.config import GatewayConfig, MBusBusConfig, ModbusRtuBusConfig, ModbusTcpBusConfig, parse_config_text
from gateway.mbus import MBusTransport
from gateway.modbus_transport import ModbusRtuTransport, ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modelled_meter import ModelledMeter
from simulators.rig.client import meters, parse_options
from simulators.rig.config import ConfigError, parse_rig_text
from simulators.rig.control import ControlServer
from simulators.rig.faults import parse_fault
from simulators.rig.gateway_config import gateway_config_text
from simulators.rig.meters import Watched
from simulators.rig.runner import WORK_CHECK_S, Rig
from simulators.rig.running import OVER_BY_ITSELF

NOW = datetime(2026, 3, 4, 3, 30, tzinfo=UTC)

RIG = """
[rig]
seed = 7
installed = "2026-01-01T00:00:00Z"
control = "127.0.0.1:0"

[[transport]]
name = "mb"
protocol = "mbus"
baudrate = 9600

[[transport]]
name = "rtu"
protocol = "modbus_rtu"
baudrate = 19200

[[transport]]
name = "tcp"
protocol = "modbus_tcp"
port = 0

[[meter]]
id = "MB1"
kind = "mbus_water"
transport = "mb"
address = 1
secondary = "26000001"
initial_m3 = 1234

[[meter]]
id = "MB2"
kind = "mbus_water"
transport = "mb"
address = 2
secondary = "26000002"
initial_m3 = 300

[[meter]]
id = "M1"
kind = "smart_water_meter"
transport = "rtu"
address = 1
initial_m3 = 1234
serial_number = "40000001"

[[meter]]
id = "M2"
kind = "smart_water_meter"
transport = "rtu"
address = 2
initial_m3 = 300
serial_number = "40000002"

[[meter]]
id = "P1"
kind = "pulse_counter"
transport = "rtu"
address = 5
litres_per_pulse = 10

[[meter]]
id = "T1"
kind = "smart_water_meter"
transport = "tcp"
address = 1
serial_number = "40000011"

[[meter]]
id = "T2"
kind = "smart_water_meter"
transport = "tcp"
address = 2
initial_m3 = 77
serial_number = "40000012"

[[meter]]
id = "INLET"
kind = "dma_inlet"
transport = "tcp"
address = 10
customers = ["T1", "T2"]
"""


@dataclass
class Running:
    rig: Rig
    url: str
    clock: dict[str, datetime]
    gateway: GatewayConfig

    def volume(self, meter_id: str) -> float:
        return self.rig.meters[meter_id].model.read(self.clock["now"]).volume_m3


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    clock = {"now": NOW}
    rig = Rig(parse_rig_text(RIG, now=NOW), clock=lambda: clock["now"])
    ready, stop = threading.Event(), threading.Event()
    holder: dict[str, ControlServer] = {}

    async def main() -> None:
        await rig.start()
        holder["control"] = ControlServer(rig, port=0).start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        holder["control"].stop()
        await rig.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    gateway = parse_config_text(gateway_config_text(rig, "mqtt://127.0.0.1:1", "s.sqlite"))  # the rig's file
    yield Running(rig, holder["control"].url, clock, gateway)
    stop.set()
    thread.join(10)


@pytest.fixture(autouse=True)
def _clean(running: Running) -> Iterator[None]:
    """Each test from the rig as configured: its clock at NOW, no fault in force."""
    yield
    running.rig.clear()
    running.clock["now"] = NOW


Bus = MBusBusConfig | ModbusRtuBusConfig | ModbusTcpBusConfig
#: a step of :func:`polls`: a meter polled (its id), or something done meanwhile
Step = str | Callable[[], object]


def _bus(running: Running, name: str, **pins: str) -> Bus:
    """The rig's gateway file's bus ``name``, quick to give up on a silent meter; ``pins`` give a
    meter id another identification (M-Bus) or serial number (Modbus), as a technician would."""
    bus = next(b for b in running.gateway.buses if b.name == name)
    if isinstance(bus, MBusBusConfig):
        meters = tuple(replace(m, identification=pins[m.meter_id]) if m.meter_id in pins else m for m in bus.meters)
        return replace(bus, meters=meters, answer_timeout_s=0.5, retries=0)
    assert isinstance(bus, ModbusRtuBusConfig | ModbusTcpBusConfig)
    meters = tuple(replace(m, serial_number=pins[m.meter_id]) if m.meter_id in pins else m for m in bus.meters)
    return replace(bus, meters=meters, timeout_s=1.0, retries=0)


def polls(bus: Bus, *steps: Step) -> tuple[list[tuple[Reading | None, str | None]], list[Reading]]:
    """The gateway's scheduler over its real transport: each poll's reading (or None and its error),
    and every reading it stored."""
    stored: list[Reading] = []
    transport: MBusTransport | ModbusRtuTransport | ModbusTcpTransport
    if isinstance(bus, MBusBusConfig):
        transport = MBusTransport(bus)
    elif isinstance(bus, ModbusRtuBusConfig):
        transport = ModbusRtuTransport(bus, ProfileBook())
    else:
        transport = ModbusTcpTransport(bus, ProfileBook())

    async def store(reading: Reading) -> None:
        stored.append(reading)

    scheduler = BusScheduler(bus, transport, on_reading=store)

    async def run() -> list[tuple[Reading | None, str | None]]:
        results = []
        try:
            for step in steps:
                if isinstance(step, str):
                    results.append((await scheduler.read_now(step))[:2])
                else:
                    step()
            return results
        finally:
            await transport.close()

    return asyncio.run(asyncio.wait_for(run(), 60)), stored


def fault(running: Running, *args: str) -> Any:
    """``aquami simulate fault`` on the rig: its JSON answer."""
    return fault_at(running.url, *args)


def fault_at(url: str, *args: str) -> Any:
    """``aquami simulate fault`` on the rig whose endpoint is at ``url``: its JSON answer."""
    result = CliRunner().invoke(app, ["simulate", "fault", "--rig", url, *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def refused(running: Running, *args: str) -> str:
    """What ``aquami simulate fault`` says of a request it (or the rig) refuses, on one line."""
    result = CliRunner().invoke(app, ["simulate", "fault", "--rig", running.url, *args], env={"COLUMNS": "400"})
    assert result.exit_code != 0, result.output
    return result.output


def _volumes(stored: list[Reading]) -> list[tuple[str, float]]:
    return [(r.meter_id, r.volume_m3) for r in stored]


# ---- M-Bus ------------------------------------------------------------------------------------------


def test_mbus_swapped_addresses_are_refused_by_the_gateway_then_read_again_once_cleared(running: Running) -> None:
    bus = _bus(running, "mb")
    swapped = fault(running, "MB1", "swap_address", "--set", "with_meter=MB2")
    assert swapped["kind"] == "swap_address" and swapped["with_meter"] == "MB2"
    assert swapped["done"] == (
        "addresses swapped: MB1 answers at primary address 2 of mb and MB2 at primary address 1 of mb"
    )
    rows = {r["meter"]: r for r in running.rig.rows()}
    assert rows["MB1"]["faults"] == rows["MB2"]["faults"] == ["swap_address"]
    assert rows["MB1"]["where"].endswith("primary 2 secondary 26000001")
    during, stored = polls(bus, "MB1", "MB2", "MB1", "MB2")
    assert [reading for reading, _ in during] == [None] * 4
    assert stored == []  # 0 readings stored under the wrong meter's id
    one, two = during[0][1], during[1][1]
    assert "at primary address 1 the meter with identification 26000002 answered, not 26000001" in (one or "")
    assert "at primary address 2 the meter with identification 26000001 answered, not 26000002" in (two or "")

    cleared = fault(running, "MB2", "--clear")  # the other meter's clear swaps them back too
    assert [f["kind"] for f in cleared] == ["swap_address"]
    assert cleared[0]["done"].startswith("swapped back: MB1 answers at primary address 1 of mb")
    assert "note" not in cleared[0]  # not a fault in the water: none "never took effect", cleared at once
    after, stored = polls(bus, "MB1", "MB2")
    assert [reading is not None for reading, _ in after] == [True, True], after
    assert _volumes(stored) == [
        ("MB1", pytest.approx(running.volume("MB1"), abs=0.001)),
        ("MB2", pytest.approx(running.volume("MB2"), abs=0.001)),
    ]


def test_an_mbus_meter_exchanged_is_refused_naming_the_new_identification_and_put_back_when_cleared(
    running: Running,
) -> None:
    exchanged = fault(running, "MB1", "exchange", "--set", "identification=00012345", "--set", "volume_m3=5")
    assert (exchanged["identification"], exchanged["volume_m3"]) == ("00012345", 5.0)  # its leading zeros kept
    assert exchanged["done"] == (
        "exchanged: the meter with identification 00012345 answers at primary address 1 of mb in place of the one "
        "with identification 26000001, its register from 5 m3 at 2026-03-04T03:30:00Z"
    )
    at_exchange = running.volume("MB1")
    running.clock["now"] = NOW + timedelta(hours=2)  # the connection's water goes on, through the new meter
    results, stored = polls(_bus(running, "mb"), "MB1", "MB2")
    assert results[0][0] is None and stored == [r for r, _ in results[1:]]  # MB2 read, MB1 not
    error = results[0][1]
    assert error is not None and "the meter with identification 00012345 answered, not 26000001" in error
    assert 'identification = "00012345"' in error  # the new meter named, for the technician to pin
    _, stored = polls(_bus(running, "mb", MB1="00012345"), "MB1")
    assert _volumes(stored) == [("MB1", pytest.approx(5 + running.volume("MB1") - at_exchange, abs=0.001))]

    [cleared] = fault(running, "MB1", "--clear")
    assert cleared["done"].startswith("the old meter, identification 26000001, back at primary address 1 of mb")
    _, stored = polls(_bus(running, "mb"), "MB1")
    assert _volumes(stored) == [("MB1", pytest.approx(running.volume("MB1"), abs=0.001))]  # as if never off


# ---- Modbus -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("transport", "one", "two"), [("rtu", "M1", "M2"), ("tcp", "T1", "T2")])
def test_modbus_swapped_unit_ids_are_refused_by_the_gateway_then_read_again_once_cleared(
    running: Running, transport: str, one: str, two: str
) -> None:
    bus = _bus(running, transport)
    swapped = fault(running, one, "swap_address", "--set", f"with_meter={two}")
    assert swapped["done"] == (
        f"addresses swapped: {one} answers at unit 2 of {transport} and {two} at unit 1 of {transport}"
    )
    during, stored = polls(bus, one, two)
    assert [reading for reading, _ in during] == [None, None] and stored == []
    serial = {"M1": "40000001", "M2": "40000002", "T1": "40000011", "T2": "40000012"}
    assert f"at unit 1 of bus {transport}" in (during[0][1] or "")
    assert f"the meter with serial number {serial[two]} answered, not {serial[one]}" in (during[0][1] or "")
    assert f"the meter with serial number {serial[one]} answered, not {serial[two]}" in (during[1][1] or "")

    [cleared] = fault(running, one, "--clear")
    assert cleared["done"] == f"swapped back: {one} answers at unit 1 of {transport} and {two} at unit 2 of {transport}"
    _, stored = polls(bus, one, two)
    assert _volumes(stored) == [
        (one, pytest.approx(running.volume(one), abs=0.001)),
        (two, pytest.approx(running.volume(two), abs=0.001)),
    ]


def test_a_modbus_meter_exchanged_is_refused_naming_the_new_serial_number(running: Running) -> None:
    exchanged = fault(running, "M1", "exchange", "--set", "serial_number=0040000099")
    assert exchanged["serial_number"] == "40000099" and exchanged["volume_m3"] == 0.0
    results, stored = polls(_bus(running, "rtu"), "M1", "M2")
    assert results[0][0] is None and _volumes(stored) == [("M2", pytest.approx(running.volume("M2"), abs=0.001))]
    assert "the meter with serial number 40000099 answered, not 40000001" in (results[0][1] or "")
    _, stored = polls(_bus(running, "rtu", M1="40000099"), "M1")
    assert _volumes(stored) == [("M1", 0.0)]  # a new meter: from 0, and no water yet on the rig's clock
    fault(running, "M1", "--clear")
    _, stored = polls(_bus(running, "rtu"), "M1")
    assert _volumes(stored) == [("M1", pytest.approx(running.volume("M1"), abs=0.001))]


def test_meters_exchanged_for_new_ones_whose_serial_number_was_never_set_are_refused_by_the_gateway(
    running: Running,
) -> None:
    """Two meters exchanged each for a new one as it leaves the factory, its serial number never set
    (0): the rig does both, as every such meter answers with 0, and the gateway refuses each in its
    own words. Before, the second was refused by the rig: ``serial_number: 0 is M1's on transport``."""
    assert fault(running, "M1", "exchange", "--set", "serial_number=0")["serial_number"] == "0"
    assert fault(running, "M2", "exchange", "--set", "serial_number=0")["serial_number"] == "0"
    results, stored = polls(_bus(running, "rtu"), "M1", "M2")
    assert stored == [], stored
    for (_, error), serial in zip(results, ("40000001", "40000002"), strict=True):
        assert f"a meter with no serial number set (0, or all ones) answered, not {serial}" in (error or "")


def test_an_exchange_without_a_serial_number_gets_one_the_answer_names(running: Running) -> None:
    exchanged = fault(running, "T2", "exchange")
    serial = exchanged["serial_number"]
    assert serial.isdigit() and serial not in ("40000011", "40000012")
    results, stored = polls(_bus(running, "tcp"), "T2")
    assert stored == [] and f"serial number {serial} answered, not 40000012" in (results[0][1] or "")


# ---- for a while: duration_s ------------------------------------------------------------------------


def _rows(running: Running) -> dict[str, dict[str, Any]]:
    """``GET /meters`` on the rig's endpoint, by meter id."""
    return {row["meter"]: row for row in meters(running.url)}


@pytest.mark.parametrize(("transport", "one", "two"), [("rtu", "M1", "M2"), ("tcp", "T1", "T2")])
def test_a_modbus_swap_for_a_while_is_swapped_back_at_its_end_as_a_clear_swaps_it_back(
    running: Running, transport: str, one: str, two: str
) -> None:
    """Before, ``duration_s does not apply to a swap_address fault``: the work stayed until cleared."""
    bus = _bus(running, transport)
    swapped = fault(running, one, "swap_address", "--set", f"with_meter={two}", "--set", "duration_s=90")
    assert (swapped["duration_s"], swapped["until"]) == (90.0, "2026-03-04T03:31:30Z")
    running.clock["now"] = NOW + timedelta(seconds=89)
    _, stored = polls(bus, one, two)
    assert stored == [] and _rows(running)[one]["faults"] == ["swap_address"]  # not over yet

    running.clock["now"] = NOW + timedelta(seconds=90)
    rows = _rows(running)
    assert rows[one]["faults"] == rows[two]["faults"] == []
    assert rows[one]["where"].endswith(" unit 1") and rows[two]["where"].endswith(" unit 2")
    _, stored = polls(bus, one, two)
    assert _volumes(stored) == [
        (one, pytest.approx(running.volume(one), abs=0.001)),
        (two, pytest.approx(running.volume(two), abs=0.001)),
    ]
    [over] = fault(running, one, "--clear")  # over, and undone once: answered as over, not undone again
    assert over["id"] == swapped["id"] and over["note"] == OVER_BY_ITSELF
    assert over["done"] == f"swapped back: {one} answers at unit 1 of {transport} and {two} at unit 2 of {transport}"
    assert fault(running, one, "--clear") == []


def test_the_gateway_alone_sees_a_swap_for_a_while_undone_at_its_end(running: Running) -> None:
    """No one asks the rig anything: its own check (every WORK_CHECK_S) swaps the meters back, and
    the gateway's polls, which reach the transport alone, read both again."""
    bus = _bus(running, "rtu")
    fault(running, "M1", "swap_address", "--set", "with_meter=M2", "--set", "duration_s=1")
    running.clock["now"] = NOW + timedelta(seconds=1)
    deadline = time.monotonic() + 100 * WORK_CHECK_S
    stored: list[Reading] = []
    while not stored and time.monotonic() < deadline:  # each poll a real request on the pty
        _, stored = polls(bus, "M1")
    assert _volumes(stored) == [("M1", pytest.approx(running.volume("M1"), abs=0.001))]


def test_an_mbus_exchange_for_a_while_puts_the_old_meter_back_at_its_end(running: Running) -> None:
    exchanged = fault(running, "MB1", "exchange", "--set", "identification=00012345", "--set", "duration_s=3600")
    assert (exchanged["duration_s"], exchanged["until"]) == (3600.0, "2026-03-04T04:30:00Z")
    assert _rows(running)["MB1"]["where"].endswith("secondary 00012345")
    running.clock["now"] = NOW + timedelta(hours=2)
    row = _rows(running)["MB1"]
    assert row["faults"] == [] and row["where"].endswith("primary 1 secondary 26000001")
    _, stored = polls(_bus(running, "mb"), "MB1")
    assert _volumes(stored) == [("MB1", pytest.approx(running.volume("MB1"), abs=0.001))]  # as if never off


#: a fault of each kind, with the options for ``aquami simulate fault``: on the wire, in the water, a
#: technician's work (a new meter's identification or serial number given, the same in every rig)
EVERY_KIND = [
    ("M1", ["slow"]),
    ("M1", ["leak"]),
    ("M1", ["swap_address", "--set", "with_meter=M2"]),
    ("T2", ["exchange", "--set", "serial_number=40000099"]),
    ("MB1", ["exchange", "--set", "identification=00012345"]),
]
EVERY_KIND_IDS = ["wire", "water", "modbus swap", "modbus exchange", "mbus exchange"]
CLEARED_BY = pytest.mark.parametrize("by_id", [True, False], ids=["DELETE /faults/ID", "DELETE /faults?meter="])


@CLEARED_BY
@pytest.mark.parametrize(("meter", "args"), EVERY_KIND, ids=EVERY_KIND_IDS)  # wire, water: guards, already so
def test_a_fault_over_by_itself_is_answered_by_its_clear_as_over_whatever_its_kind(
    running: Running, meter: str, args: list[str], by_id: bool
) -> None:
    """A fault whose ``duration_s`` is over is no longer in force (``GET /faults``); a clear after it,
    of it or of its meter's faults, answers it with its ``until`` and a note saying it was over by
    itself, once, and does nothing more (a technician's work is not undone again). Before, a wire or
    water fault was answered so (without the note), but a technician's work was dropped at its end:
    its clear by id was ``404: no fault 7``, the meter's ``[]``."""
    where = {m: row["where"] for m, row in _rows(running).items()}
    injected = fault(running, meter, *args, "--set", "duration_s=90")
    running.clock["now"] = NOW + timedelta(hours=2)
    assert running.rig.active_faults() == [] and {m: row["where"] for m, row in _rows(running).items()} == where

    cleared = fault(running, meter, *([str(injected["id"])] if by_id else []), "--clear")
    assert [(f["id"], f["kind"], f["until"], f["note"]) for f in cleared] == [
        (injected["id"], injected["kind"], injected["until"], OVER_BY_ITSELF)
    ]
    if "done" in injected:  # undone at its until, once: the meters where they were
        assert cleared[0]["done"].startswith(("swapped back: ", "the old meter, "))
    assert {m: row["where"] for m, row in _rows(running).items()} == where
    assert fault(running, meter, "--clear") == []  # cleared now: nothing more


# ---- refused, in words --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["P1", "swap_address", "--set", "with_meter=M1"], "swap_address is not a fault of a pulse_counter meter"),
        (["M1", "swap_address", "--set", "with_meter=P1"], "with_meter: P1: swap_address is not a fault of a pulse"),
        (["P1", "exchange"], "exchange is not a fault of a pulse_counter meter"),
        (["M1", "swap_address", "--set", "with_meter=T1"], "M1 is on transport 'rtu' and T1 on 'tcp': a swap_address"),
        (["MB1", "swap_address", "--set", "with_meter=M2"], "MB1 is on transport 'mb' and M2 on 'rtu'"),
        (["M1", "swap_address", "--set", "with_meter=M1"], "M1 swaps its address with another meter, not itself"),
        (["M1", "swap_address", "--set", "with_meter=NOPE"], "with_meter: 'NOPE' is not on this rig"),
        (["T1", "swap_address", "--set", "with_meter=INLET"], "T1 is a smart_water_meter and INLET a dma_inlet"),
        (["M1", "swap_address"], "with_meter: expected the id of the meter to swap addresses with, got None"),
        (["M1", "exchange", "--set", "serial_number=40000002"], "serial_number: 40000002 is M2's on transport 'rtu'"),
        (["M1", "exchange", "--set", "serial_number=40000001"], "40000001 is the meter's own: the new meter has"),
        (["MB1", "exchange", "--set", "identification=26000002"], "identification: 26000002 is MB2's on transport"),
        (["MB1", "exchange", "--set", "serial_number=1"], "serial_number does not apply to an exchange fault on a"),
        (["M1", "exchange", "--set", "identification=12345678"], "identification does not apply to an exchange fault"),
        (["M1", "exchange", "--set", "duration_s=0"], "duration_s: 0 is outside 0.001..31536000 s"),
        (["M1", "swap_address", "--set", "with_meter=M2", "--set", "duration_s=-5"], "duration_s: -5 is outside"),
        (["M1", "exchange", "--set", "volume_m3=-1"], "volume_m3: -1 is outside 0..99999 m3"),
    ],
)
def test_work_that_makes_no_sense_is_refused_in_words(running: Running, args: list[str], said: str) -> None:
    assert said in refused(running, *args).replace("\n", " ")
    assert running.rig.active_faults() == []


def test_one_swap_or_exchange_at_a_time_on_a_meter(running: Running) -> None:
    fault(running, "M1", "swap_address", "--set", "with_meter=M2")
    for args in (["M2", "exchange"], ["M1", "exchange"], ["M2", "swap_address", "--set", "with_meter=M1"]):
        output = refused(running, *args).replace("\n", " ")
        assert "swap_address (fault" in output and "is in force: clear it first" in output, output
    assert [f.spec.kind for f in running.rig.active_faults()] == ["swap_address"]


def test_a_radio_meter_and_a_rig_file_refuse_the_work() -> None:
    with pytest.raises(ValueError, match="exchange is not a fault of a wmbus_oms meter: a radio meter has no address"):
        parse_fault({"kind": "exchange"}, "wmbus_oms")
    with pytest.raises(ValueError, match="swap_address is not a fault of a wmbus_oms meter"):
        parse_fault({"kind": "swap_address", "with_meter": "W2"}, "wmbus_oms")
    text = RIG.replace('serial_number = "40000001"\n', 'serial_number = "40000001"\nfaults = [{ kind = "exchange" }]\n')
    with pytest.raises(ConfigError, match=r"meter\[2\]\.faults\[0\]: a exchange is a technician's work on a running"):
        parse_rig_text(text, now=NOW)


# ---- the options, on their own ------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**8 - 1))
def test_an_identification_given_as_a_number_keeps_its_8_digits(number: int) -> None:
    """``--set identification=00012345`` arrives as the number 12345: it is the identification 00012345."""
    spec = parse_fault({"kind": "exchange", "identification": number}, "mbus_water")
    assert spec.identification == f"{number:08d}" and int(spec.identification) == number
    assert parse_fault({"kind": "exchange", "identification": spec.identification}, "mbus_water") == spec


@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=10**8), st.text(max_size=10)))
def test_an_identification_that_is_not_8_digits_is_refused(value: int | str) -> None:
    if isinstance(value, str) and len(value) == 8 and value.isascii() and value.isdigit():
        return  # (one that is)
    with pytest.raises(ValueError, match=r"^identification: .* is not 8 decimal digits 0-9$"):
        parse_fault({"kind": "exchange", "identification": value}, "mbus_water")


@given(st.integers(min_value=-(2**40), max_value=2**40), st.floats(allow_nan=True) | st.integers(-(10**6), 10**6))
def test_an_exchange_accepted_is_one_the_state_file_reads_back(serial: int, volume: float) -> None:
    """Refused (ValueError) or a spec within range that a state file (every option, as written) reads back."""
    try:
        spec = parse_fault({"kind": "exchange", "serial_number": serial, "volume_m3": volume}, "smart_water_meter")
    except ValueError:
        assert not (0 <= serial < 2**32) or not (0 <= volume <= 99_999.0)  # (a rig file's initial_m3 too)
        return
    assert spec.serial_number == str(serial) and spec.volume_m3 == float(volume)
    assert parse_fault(asdict(spec), "smart_water_meter", only_its_options=False) == spec


def in_a_rig(state: Path, clock: dict[str, datetime], action: Callable[[Rig], Any], text: str = RIG) -> Any:
    """``action`` on a rig of the rig file ``text`` started from the state file ``state``, then
    stopped: each call a run of the rig, and the next a restart."""

    async def lifetime() -> Any:
        rig = Rig(parse_rig_text(text, now=NOW), clock=lambda: clock["now"], state_path=state)
        await rig.start()
        try:
            return action(rig)
        finally:
            await rig.stop()

    return asyncio.run(lifetime())


def test_an_exchange_outlives_a_restart_of_the_rig(tmp_path: Path) -> None:
    """The state file keeps it, its new meter's identification with it: a restarted rig's exchanged
    meter answers with the same identification and register, and clearing it puts the old one back."""
    state = tmp_path / "rig.state.json"
    clock = {"now": NOW}
    made = in_a_rig(state, clock, lambda rig: rig.inject("MB1", {"kind": "exchange", "volume_m3": 2.5}).to_json())
    clock["now"] = NOW + timedelta(hours=1)

    def restarted(rig: Rig) -> dict[str, Any]:
        model = rig.meters["MB1"].model
        through = model.read(clock["now"]).volume_m3 - model.read(NOW).volume_m3
        seen = {"faults": [f.to_json() for f in rig.active_faults()], "during": rig.rows(), "register": 2.5 + through}
        rig.clear(meter_id="MB1")
        return seen | {"after": rig.rows()}

    seen = in_a_rig(state, clock, restarted)
    assert [(f["kind"], f["identification"]) for f in seen["faults"]] == [("exchange", made["identification"])]
    during = next(r for r in seen["during"] if r["meter"] == "MB1")
    assert during["where"].endswith(f"primary 1 secondary {made['identification']}")
    assert during["register"] == f"{seen['register']:.3f} m3"
    after = next(r for r in seen["after"] if r["meter"] == "MB1")
    assert after["where"].endswith("primary 1 secondary 26000001")


@pytest.mark.parametrize(
    ("meter", "work", "moved"),
    [
        ("MB1", {"kind": "exchange", "identification": "00012345"}, "primary 1 secondary 00012345"),
        ("M1", {"kind": "swap_address", "with_meter": "M2"}, " unit 2"),
    ],
)
def test_work_for_a_while_outlives_a_restart_until_its_end(
    tmp_path: Path, meter: str, work: dict[str, Any], moved: str
) -> None:
    """A restarted rig does the work again until its ``until`` (from its first ``since``), and not after."""
    state = tmp_path / "rig.state.json"
    clock = {"now": NOW}

    def run() -> dict[str, Any]:
        """The faults in force and the meter's row of a rig started from the state file, at the clock."""

        def seen(rig: Rig) -> dict[str, Any]:
            row = next(r for r in rig.rows() if r["meter"] == meter)
            return {"faults": [f.to_json() for f in rig.active_faults()], "where": row["where"]}

        return in_a_rig(state, clock, seen)

    made = in_a_rig(state, clock, lambda rig: rig.inject(meter, {**work, "duration_s": 7200}).to_json())
    assert made["until"] == "2026-03-04T05:30:00Z"
    clock["now"] = NOW + timedelta(hours=1)
    during = run()
    assert [(f["id"], f["until"]) for f in during["faults"]] == [(made["id"], made["until"])]
    assert during["where"].endswith(moved)
    clock["now"] = NOW + timedelta(hours=3)
    after = run()
    assert after["faults"] == [] and not after["where"].endswith(moved)


# ---- over by itself, across a restart -------------------------------------------------------------------


@contextlib.contextmanager
def endpoint(rig: Rig) -> Iterator[str]:
    """The rig's fault endpoint, its URL, for as long as the ``with``."""
    control = ControlServer(rig, port=0).start()
    try:
        yield control.url
    finally:
        control.stop()


def _where(rig: Rig) -> dict[str, str]:
    """Where each meter answers on its transport (``GET /meters``' ``where`` after the transport's
    port or pty, new at each start)."""
    listening = {meter_id: rig.where[meter.config.transport] for meter_id, meter in rig.meters.items()}
    return {row["meter"]: row["where"].removeprefix(listening[row["meter"]]) for row in rig.rows()}


def _inject(rig: Rig, meter: str, args: list[str], duration_s: float) -> dict[str, Any]:
    """``aquami simulate fault METER ARGS --set duration_s=…``'s injection, on the rig itself."""
    request = {"kind": args[0], **parse_options([*args[2::2], f"duration_s={duration_s}"])}
    return rig.inject(meter, request).to_json()


@CLEARED_BY
@pytest.mark.parametrize(("meter", "args"), EVERY_KIND, ids=EVERY_KIND_IDS)
def test_a_fault_over_by_itself_before_a_restart_is_answered_by_its_clear_as_the_rig_that_ran_it_answers(
    running: Running, tmp_path: Path, meter: str, args: list[str], by_id: bool
) -> None:
    """The state file keeps a fault over by itself and not cleared: a restarted rig knows it, not in
    force, its meters where they were, and its clear answers it as the rig that ran it (never
    stopped: ``running``) answers it, over, once. Before, a water fault was (its history replayed),
    but a timed wire fault or a technician's work over before the restart was dropped at start-up:
    ``404: no fault 1`` by its id, ``[]`` by its meter's."""
    state, clock = tmp_path / "rig.state.json", {"now": NOW}
    home, injected = in_a_rig(state, clock, lambda rig: (_where(rig), _inject(rig, meter, args, 90)))
    reference = fault(running, meter, *args, "--set", "duration_s=90")
    clock["now"] = running.clock["now"] = NOW + timedelta(hours=2)
    [expected] = fault(running, meter, *([str(reference["id"])] if by_id else []), "--clear")

    def restarted(rig: Rig) -> tuple[list[Any], dict[str, str], dict[str, str], list[Any]]:
        before = _where(rig)
        assert rig.active_faults() == []
        with endpoint(rig) as url:
            cleared = fault_at(url, meter, *([str(injected["id"])] if by_id else []), "--clear")
            return cleared, before, _where(rig), fault_at(url, meter, "--clear")

    cleared, before, after, again = in_a_rig(state, clock, restarted)
    assert before == after == home  # nothing done again at the restart, nor undone by the clear
    assert [f["id"] for f in cleared] == [injected["id"]] and expected["note"] == OVER_BY_ITSELF
    assert [f | {"id": expected["id"]} for f in cleared] == [expected]  # its until, note and done
    assert again == []  # cleared now: nothing more
    assert in_a_rig(state, clock, lambda rig: rig.clear(meter_id=meter)) == []  # nor after a restart


@pytest.mark.parametrize(("meter", "args"), EVERY_KIND, ids=EVERY_KIND_IDS)
def test_a_clear_after_a_fault_ended_by_itself_keeps_its_end_not_the_clear_s_time(
    tmp_path: Path, meter: str, args: list[str]
) -> None:
    """The state file's ``cleared`` of a fault over by itself before its clear is its end (its
    ``until``), as the answer says with its note; one cleared before its end keeps the clear's time,
    answered without a note; a restarted rig's water is the same. Before, both kept the clear's
    time: the file said a technician ended a fault that had ended by itself two hours before."""
    state, clock = tmp_path / "rig.state.json", {"now": NOW}
    later = NOW + timedelta(days=1)

    def run(rig: Rig) -> tuple[Any, Any, Any, Any, float]:
        over = _inject(rig, meter, args, 90)
        clock["now"] = NOW + timedelta(hours=2)
        [over_cleared] = rig.clear(meter_id=meter)
        cut_short = _inject(rig, meter, args, 7200)
        clock["now"] = NOW + timedelta(hours=2, minutes=10)
        [cut_short_cleared] = rig.clear(meter_id=meter)
        register = rig.meters[meter].model.read(later).volume_m3
        return over, over_cleared.to_json(), cut_short, cut_short_cleared.to_json(), register

    over, over_cleared, cut_short, cut_short_cleared, register = in_a_rig(state, clock, run)
    assert (over_cleared["until"], over_cleared["note"]) == (over["until"], OVER_BY_ITSELF)
    assert cut_short_cleared["until"] == "2026-03-04T05:40:00Z" and "note" not in cut_short_cleared
    kept = {f["id"]: f["cleared"] for f in json.loads(state.read_text())["faults"]}
    assert kept == {over["id"]: over["until"], cut_short["id"]: "2026-03-04T05:40:00Z"}
    assert in_a_rig(state, clock, lambda rig: rig.meters[meter].model.read(later).volume_m3) == register


M2 = 'id = "M2"\nkind = "smart_water_meter"\ntransport = "rtu"\naddress = 2\n'
M2_REMOVED = RIG.replace(f'[[meter]]\n{M2}initial_m3 = 300\nserial_number = "40000002"\n', "")
M2_MOVED = RIG.replace(M2, 'id = "M2"\nkind = "smart_water_meter"\ntransport = "tcp"\naddress = 3\n')


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (M2_REMOVED, "with_meter: 'M2' is not on this rig"),
        (
            M2_MOVED,
            "with_meter: M1 is on transport 'rtu' and M2 on 'tcp': a swap_address is between two meters of one "
            "transport",
        ),
    ],
    ids=["removed", "moved to another transport"],
)
def test_a_swap_whose_other_meter_the_rig_file_no_longer_has_there_is_not_done_again_at_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, said: str
) -> None:
    """The restarted rig starts, its meter at its own unit id, says why in its log, and keeps the
    swap as cleared at the restart, as for any work the rig file no longer allows. Before, it did
    not start: ``KeyError: 'M2'`` (removed), a bare ``AssertionError`` (moved: not one transport's)."""
    assert M2_REMOVED != RIG and M2_MOVED != RIG
    state, clock = tmp_path / "rig.state.json", {"now": NOW}
    swap = in_a_rig(state, clock, lambda rig: _inject(rig, "M1", ["swap_address", "--set", "with_meter=M2"], 7200))
    clock["now"] = NOW + timedelta(hours=1)
    with caplog.at_level(logging.WARNING, logger="simulators.rig.runner"):
        faults, where = in_a_rig(state, clock, lambda rig: (rig.active_faults(), _where(rig)), text)
    assert faults == [] and where["M1"] == " unit 1"
    assert f"fault {swap['id']} of M1 not done again: {said}" in caplog.messages
    kept = {f["id"]: f["cleared"] for f in json.loads(state.read_text())["faults"]}
    assert kept == {swap["id"]: "2026-03-04T04:30:00Z"}


# ---- a Modbus unit id's slot ------------------------------------------------------------------------------


def _slots(rig: Rig, transport: str) -> list[Watched]:
    """The unit ids' slots of the rig's Modbus ``transport`` (the rig's ``rtu`` or ``tcp``)."""
    if transport == "rtu":
        (line,) = [line for line in rig._lines if isinstance(line, ModbusRtuSimulator)]
        return [cast(Watched, unit) for unit in line.slaves.units]
    ((simulator, _),) = rig._tcp
    return [cast(Watched, unit) for unit in simulator.meters]


@pytest.mark.parametrize(("transport", "one", "two"), [("rtu", "M1", "M2"), ("tcp", "T1", "T2")])
def test_a_modbus_slot_s_unit_id_is_where_it_answers_whichever_meter_stands_in_it(
    running: Running, transport: str, one: str, two: str
) -> None:
    """After a swap, a gateway polling each meter at its slot's ``unit_id`` reads every one: a slot's
    unit id is where it answers. Before, ``Watched.unit_id`` was its meter's own, the unit the meter
    had left: the gateway polled each swapped meter where the other answered, and refused both."""
    fault(running, one, "swap_address", "--set", f"with_meter={two}")
    bus = _bus(running, transport)
    configured = {m.meter_id: m for m in bus.meters}
    standing = [(slot.unit_id, slot.source) for slot in _slots(running.rig, transport)]
    meters = tuple(
        replace(configured[source.meter_id], unit_id=unit_id)
        for unit_id, source in standing
        if isinstance(source, ModelledMeter)
    )
    assert {m.meter_id: m.unit_id for m in meters if m.meter_id in (one, two)} == {one: 2, two: 1}
    _, stored = polls(replace(bus, meters=meters), one, two)
    assert _volumes(stored) == [
        (one, pytest.approx(running.volume(one), abs=0.001)),
        (two, pytest.approx(running.volume(two), abs=0.001)),
    ]
