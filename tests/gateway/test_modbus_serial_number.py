"""A Modbus meter whose profile reads its serial number is known by it: an answer from another meter
at its unit id (a meter exchanged for a new one set to the same unit id, two meters' unit ids swapped
by a technician) is refused for that poll with words saying which serial number answered, which was
expected, where, and what to do (gateway.modbus_identity). Before, the other meter's registers were
stored as this meter's: a step back, reverse flow, another customer's water."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aquami.config.reader import ConfigError
from aquami.contracts.reads import Reading
from firmware_protocols.modbus import load_profile
from gateway.config import MeterConfig, ModbusRtuBusConfig, ModbusTcpBusConfig, parse_config_text
from gateway.meter_identity import MeterIdentities
from gateway.modbus_identity import SerialNumberMismatch, check_serial_number, expected_serial_number
from gateway.modbus_transport import ModbusRtuTransport, ModbusTcpTransport
from gateway.profiles import ProfileBook
from gateway.scheduler import BusScheduler
from gateway.spool import Spool
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_tcp import ModbusTcpSimulator
from simulators.serial_line import LineSettings, pty_accepts_parity
from simulators.smart_meter import SmartMeter, SteadyFlow
from tests.gateway.helpers import CountingMeter, bus_config_text, exchanged_across
from tests.services import free_port

PARITY: Literal["E", "N"] = "E" if pty_accepts_parity() else "N"
NOW = datetime(2026, 6, 4, 3, 30, tzinfo=UTC)
PROFILE = load_profile("smart_water_meter")


def _meter(meter_id: str, unit_id: int, initial_m3: float, serial_number: str = "") -> CountingMeter:
    flow = SteadyFlow(NOW - timedelta(days=1), initial_m3=initial_m3, rate_m3h=0.5)
    return CountingMeter(meter_id, unit_id, PROFILE, flow, serial_number=serial_number)


def _rtu_bus(device: str, *meters: MeterConfig, retries: int = 0) -> ModbusRtuBusConfig:
    return ModbusRtuBusConfig(
        "rtu-1", device, meters, baudrate=19200, parity=PARITY, timeout_s=0.5, retries=retries, retry_backoff_s=0.01
    )


#: a step of :meth:`Polls.run`: a meter polled (its id), or something done meanwhile
Step = str | Callable[[], object]


class Polls:
    """A bus's scheduler over a real Modbus transport: each poll's reading or error, and what was spooled."""

    def __init__(self, bus: ModbusRtuBusConfig | ModbusTcpBusConfig, identities: MeterIdentities | None = None):
        self.spooled: list[Reading] = []
        transport_kind = ModbusRtuTransport if isinstance(bus, ModbusRtuBusConfig) else ModbusTcpTransport
        self.transport = transport_kind(bus, ProfileBook(), lambda: NOW, identities=identities)  # type: ignore[arg-type]
        self.scheduler = BusScheduler(bus, self.transport, on_reading=self._spool)

    async def _spool(self, reading: Reading) -> None:
        self.spooled.append(reading)

    async def polls(self, *steps: Step) -> list[tuple[Reading | None, str | None]]:
        results = []
        try:
            for step in steps:
                if isinstance(step, str):
                    results.append((await self.scheduler.read_now(step))[:2])
                else:
                    step()
            return results
        finally:
            await self.transport.close()

    def run(self, *steps: Step) -> list[tuple[Reading | None, str | None]]:
        """Each step in turn, then the transport closed: each poll's reading, or None and its error."""
        return asyncio.run(asyncio.wait_for(self.polls(*steps), 60))


def _scheduler_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.scheduler" and r.levelno >= logging.WARNING]


def test_two_meters_whose_unit_ids_were_swapped_on_an_rtu_line_are_refused_not_read_as_each_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FLAT-5 has its serial number in the configuration, FLAT-6 not (its first answer's is kept).
    Once a technician has swapped their unit ids, each poll gets the other meter's registers: before,
    4 of 4 polls after the swap stored the other meter's register (FLAT-5 with FLAT-6's 300 m3, FLAT-6
    with FLAT-5's 1234 m3); now 0."""
    five, six = _meter("FLAT-5", 5, 1234.0, "40000005"), _meter("FLAT-6", 6, 300.0, "40000006")
    with ModbusRtuSimulator([five, six], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
        bus = _rtu_bus(sim.port, MeterConfig("FLAT-5", 5, serial_number="40000005"), MeterConfig("FLAT-6", 6))
        polls = Polls(bus)
        with caplog.at_level(logging.WARNING):
            swap = lambda: sim.slaves.swap_unit_ids(5, 6)  # noqa: E731
            results = polls.run("FLAT-5", "FLAT-6", swap, "FLAT-5", "FLAT-6", "FLAT-5", "FLAT-6")
    before, after = results[:2], results[2:]
    assert [reading is not None for reading, _ in before] == [True, True], before
    # each its own register, and nothing spooled after the swap
    assert [(r.meter_id, r.volume_m3) for r in polls.spooled] == [
        ("FLAT-5", pytest.approx(five.model.volume_m3(NOW))),
        ("FLAT-6", pytest.approx(six.model.volume_m3(NOW))),
    ]
    assert [reading for reading, _ in after] == [None] * 4
    five_error, six_error = after[0][1], after[1][1]
    assert five_error == (
        f"FLAT-5: at unit 5 of bus rtu-1 ({sim.port}) the meter with serial number 40000006 answered, not 40000005, "
        "the serial number this meter is configured with (40000006 is FLAT-6's, at unit 6): its reading is not "
        "taken. A meter exchanged, or unit ids set anew by a technician? `aquami gateway scan` lists the bus's "
        "meters by serial number (it is on each meter's label too); then set this meter's unit_id to where 40000005 "
        'answers, or, for a new meter, serial_number = "40000006", and reload'
    )
    assert six_error is not None and six_error.startswith(
        f"FLAT-6: at unit 6 of bus rtu-1 ({sim.port}) the meter with serial number 40000005 answered, not 40000006, "
        "the serial number of this meter's first answer, at 2026-06-04T03:30:00"
    )
    assert six_error.endswith(
        "(40000005 is FLAT-5's, at unit 5): its reading is not taken. A meter exchanged, or unit ids set anew by a "
        "technician? `aquami gateway scan` lists the bus's meters by serial number (it is on each meter's label "
        "too); once the meter at unit 6 is checked, pin it: "
        'serial_number = "40000005" in this meter\'s configuration (or set its unit_id to where its own meter '
        "answers), and reload"
    )
    assert after[2][1] == five_error and after[3][1] == six_error
    # once an episode, as any failing poll: each meter's first failure said, the second not
    warnings = _scheduler_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "FLAT-5 on rtu-1: failed after 1 attempt, the last: " + five_error in warnings[0]
    assert "FLAT-6 on rtu-1: failed after 1 attempt, the last: " + six_error in warnings[1]


def test_a_meter_exchanged_at_its_unit_id_is_refused_until_its_serial_number_is_pinned() -> None:
    """The old meter (1234 m3) taken off the line and a new one (from 0 m3) set to its unit id:
    before, the new one's register was stored as the old meter's next reading, a step back of some
    1200 m3. Refused, then taken once the configuration names the new meter's serial number."""
    old = _meter("OLD", 5, 1234.0, "40000005")
    with ModbusRtuSimulator([old], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
        unpinned = MeterConfig("FLAT-5", 5)
        polls = Polls(_rtu_bus(sim.port, unpinned))
        identities = polls.transport.identities
        first = polls.run("FLAT-5")
        new = _meter("NEW", 5, 0.0, "40000099")
        assert sim.slaves.exchange(5, new) is old
        refused_polls = Polls(_rtu_bus(sim.port, unpinned), identities)
        refused = refused_polls.run("FLAT-5", "FLAT-5")
        pinned = replace(unpinned, serial_number="40000099")
        taken = Polls(_rtu_bus(sim.port, pinned), identities).run("FLAT-5")
    assert first[0][0] is not None and first[0][0].volume_m3 == pytest.approx(old.model.volume_m3(NOW))
    assert [reading for reading, _ in refused] == [None, None] and refused_polls.spooled == []
    error = refused[0][1]
    assert error is not None and "at unit 5 of bus rtu-1" in error
    assert "the meter with serial number 40000099 answered, not 40000005" in error
    assert 'pin it: serial_number = "40000099"' in error
    assert taken[0][0] is not None and taken[0][0].volume_m3 == pytest.approx(new.model.volume_m3(NOW))
    assert taken[0][0].meter_id == "FLAT-5"
    # the pin is remembered too: taken out again, the new meter is still the one expected
    assert expected_serial_number(identities, unpinned) == "40000099"


def test_a_meter_exchanged_behind_a_modbus_tcp_gateway_is_refused() -> None:
    """The same over Modbus TCP: the old meter's unit answered first; the one behind the same host,
    port and unit id after the exchange has another serial number, and is not taken."""
    port = free_port()
    old, new = _meter("OLD", 3, 1234.0, "40000003"), _meter("NEW", 3, 0.0, "40000077")
    bus = ModbusTcpBusConfig("plant-tcp", "127.0.0.1", port, (MeterConfig("PLANT-3", 3),), timeout_s=1.0, retries=0)
    identities = MeterIdentities()

    async def serve_then_poll(meter: SmartMeter) -> list[tuple[Reading | None, str | None]]:
        simulator = ModbusTcpSimulator([meter], port=port, clock=lambda: NOW)
        await simulator.start()
        try:
            return await Polls(bus, identities).polls("PLANT-3")
        finally:
            await simulator.stop()

    first = asyncio.run(serve_then_poll(old))
    after = asyncio.run(serve_then_poll(new))
    assert first[0][0] is not None and first[0][0].volume_m3 == pytest.approx(old.model.volume_m3(NOW))
    assert after[0][0] is None
    assert after[0][1] is not None and after[0][1].startswith(
        f"PLANT-3: at unit 3 of bus plant-tcp (127.0.0.1:{port}) the meter with serial number 40000077 answered, "
        "not 40000003, the serial number of this meter's first answer"
    )


def test_a_refused_answer_is_one_request_while_a_silent_unit_is_retried() -> None:
    """With ``retries = 2``: the other meter's answer at FLAT-5's unit id comes again however often it
    is asked, so it is asked once a poll (a :class:`PollRefused`); a unit that does not answer (which a
    retry may mend) is asked 3 times. The serial number comes in the poll's one request: the smart
    water meter's profile is one block (1 request a poll before the serial number was read, 1 after)."""
    other = _meter("OTHER", 5, 300.0, "40000066")
    with ModbusRtuSimulator([other], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
        bus = _rtu_bus(
            sim.port, MeterConfig("FLAT-5", 5, serial_number="40000005"), MeterConfig("GONE-9", 9), retries=2
        )
        polls = Polls(bus)
        results = polls.run("FLAT-5", "GONE-9")
    assert [reading for reading, _ in results] == [None, None]
    assert results[0][1] is not None and "serial number 40000066 answered, not 40000005" in results[0][1]
    assert results[1][1] is not None and "no answer from unit 9" in results[1][1]
    assert other.served == 1  # one request: not retried
    assert len(PROFILE.blocks) == 1


def test_the_simulator_s_exchange_and_swap_name_a_unit_that_is_not_there() -> None:
    with ModbusRtuSimulator([_meter("A", 5, 1.0), _meter("B", 6, 2.0)], LineSettings(baudrate=19200)) as sim:
        with pytest.raises(ValueError, match="no meter at unit 7 to exchange"):
            sim.slaves.exchange(7, _meter("C", 7, 0.0))
        with pytest.raises(ValueError, match="no meter at unit 8 to swap"):
            sim.slaves.swap_unit_ids(5, 8)


# ---- the check, on its own ---------------------------------------------------------------------------

SERIALS = st.sampled_from(["40000001", "40000002", "40000003"])
_BUS_DEVICE = "/dev/ttyUSB3"


def _fields(serial: str | None) -> dict[str, Any]:
    return {"volume_m3": 1.0} | ({} if serial is None else {"serial_number": serial})


@given(st.lists(SERIALS, min_size=1, max_size=12), st.one_of(st.none(), SERIALS))
def test_only_answers_with_the_expected_serial_number_are_taken(answers: list[str], pinned: str | None) -> None:
    """Configured: only its serial number; else only the first answer's, whatever came after."""
    meter = MeterConfig("FLAT-5", 5, serial_number=pinned)
    bus = _rtu_bus(_BUS_DEVICE, meter)
    identities = MeterIdentities()
    expected = pinned if pinned is not None else answers[0]
    for n, serial in enumerate(answers):
        at = NOW + timedelta(seconds=n)
        if serial == expected:
            check_serial_number(identities, meter, _fields(serial), at, bus)
        else:
            with pytest.raises(SerialNumberMismatch, match=f"serial number {serial} answered, not {expected}"):
                check_serial_number(identities, meter, _fields(serial), at, bus)
    assert expected_serial_number(identities, meter) == expected


def test_a_profile_without_a_serial_number_and_a_scan_s_unit_are_not_checked() -> None:
    """A pulse counter's profile reads no serial number: nothing checked, nothing remembered. A scan
    tries units that are none of the bus's meters: their serial numbers are not remembered (a later
    scan, or a meter configured with the scan's name, would be refused for it)."""
    pulse = MeterConfig("PULSE-1", 10, "pulse_counter", {"litres_per_pulse": 10})
    probe = MeterConfig("rtu-1-unit-5", 5)
    bus = _rtu_bus(_BUS_DEVICE, pulse)
    identities = MeterIdentities()
    check_serial_number(identities, pulse, _fields(None), NOW, bus)
    check_serial_number(identities, probe, _fields("40000001"), NOW, bus)
    check_serial_number(identities, probe, _fields("40000002"), NOW, bus)
    assert expected_serial_number(identities, pulse) is None
    assert expected_serial_number(identities, probe) is None


def test_the_first_answer_s_serial_number_is_kept_in_the_spool_across_a_restart(tmp_path: Path) -> None:
    """Kept: a restart (new MeterIdentities on the spool, opened anew) expects it; the same table as a
    wired M-Bus meter's identification, by meter id."""
    meter = MeterConfig("FLAT-5", 5)
    bus = _rtu_bus(_BUS_DEVICE, meter)
    spool = Spool(tmp_path / "s.sqlite")
    check_serial_number(MeterIdentities(spool), meter, _fields("40000001"), NOW, bus)
    spool.close()
    reopened = Spool(tmp_path / "s.sqlite")
    restarted = MeterIdentities(reopened)
    assert expected_serial_number(restarted, meter) == "40000001"
    with pytest.raises(
        SerialNumberMismatch,
        match=r"not 40000001, the serial number of this meter's first answer, at 2026-06-04T03:30:00",
    ):
        check_serial_number(restarted, meter, _fields("40000002"), NOW + timedelta(minutes=1), bus)
    reopened.close()


# ---- the configuration ----------------------------------------------------------------------------------


def _config(*meters: dict[str, Any]) -> str:
    bus = {"name": "rtu-1", "protocol": "modbus-rtu", "device": _BUS_DEVICE}
    return bus_config_text("mqtt://127.0.0.1:1", "/tmp/s.sqlite", bus, list(meters), gateway_id="gw")


def test_serial_number_is_read_for_a_modbus_meter_whose_profile_has_one() -> None:
    config = parse_config_text(_config({"meter_id": "FLAT-5", "unit_id": 5, "serial_number": "0040012345"}))
    assert config.meters[0].serial_number == "40012345"  # the number the register holds
    assert parse_config_text(_config({"meter_id": "FLAT-5", "unit_id": 5})).meters[0].serial_number is None


@pytest.mark.parametrize(
    ("meters", "said"),
    [
        ([{"meter_id": "F", "unit_id": 5, "serial_number": "4001-2345"}], "'4001-2345' is not decimal digits 0-9"),
        (
            [{"meter_id": "F", "unit_id": 5, "serial_number": "0000"}],
            "0 is the register of a meter whose serial number was never set (0, or all ones): it tells no meter "
            "from another; take serial_number out, or set the meter's own serial number first",
        ),
        (
            [{"meter_id": "F", "unit_id": 5, "serial_number": "4294967295"}],
            "4294967295 is the register of a meter whose serial number was never set",
        ),
        (
            [{"meter_id": "F", "unit_id": 5, "serial_number": "4294967296"}],
            "serial number 4294967296 does not fit a u32 register (at most 4294967295)",
        ),
        (
            [
                {
                    "meter_id": "P",
                    "unit_id": 5,
                    "profile": "pulse_counter",
                    "parameters": {"litres_per_pulse": 10},
                    "serial_number": "40012345",
                }
            ],
            "profile 'pulse_counter' reads no serial number (no field named 'serial_number')",
        ),
        (
            [
                {"meter_id": "F", "unit_id": 5, "serial_number": "40012345"},
                {"meter_id": "G", "unit_id": 6, "serial_number": "40012345"},
            ],
            "40012345 on bus 'rtu-1' is already meter 'F'",
        ),
    ],
)
def test_a_serial_number_that_cannot_be_a_meter_s_is_refused(meters: list[dict[str, Any]], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config_text(_config(*meters))
    assert said in str(refused.value)


# ---- the gateway: a reload and a restart ---------------------------------------------------------------


@pytest.mark.parametrize("between", ["reload", "restart"])
def test_a_reload_or_a_restart_keeps_the_serial_number_a_meter_answered_with_first(
    tmp_path: Path, between: str
) -> None:
    """A meter exchanged just before a reload (which makes the buses anew), or while the gateway was
    stopped: the first answer after it is not taken as the meter's (the new meter's register would be
    stored under the old meter's id, a step back of some 1200 m3), as for a wired M-Bus meter."""
    old = _meter("OLD", 5, 1234.0, "40000005")
    with ModbusRtuSimulator([old], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
        bus = {"name": "rtu-1", "protocol": "modbus-rtu", "device": sim.port, "baudrate": 19200, "parity": PARITY,
               "timeout_s": 0.5, "retries": 0, "poll_interval_s": 0.3}  # fmt: skip
        text = bus_config_text(
            f"mqtt://127.0.0.1:{free_port()}",
            tmp_path / "s.sqlite",
            bus,
            [{"meter_id": "FLAT-5", "unit_id": 5}],
            gateway_id="gw-exchange",
        )

        def exchange() -> None:
            sim.slaves.exchange(5, _meter("NEW", 5, 0.0, "40000099"))

        last, before, after = exchanged_across(text, between, exchange, "FLAT-5")
    assert before and before[0].volume_m3 == pytest.approx(old.model.volume_m3(NOW))
    assert after == []  # the new meter's register never stored as FLAT-5's
    last_error = last.health.meters["FLAT-5"].last_error
    assert last_error is not None
    assert "at unit 5 of bus rtu-1" in last_error[1]
    assert "the meter with serial number 40000099 answered, not 40000005" in last_error[1]


# ---- a serial number never set ---------------------------------------------------------------------


def _said(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("never_set", ["0", "4294967295"])  # the smart water meter's u32: 0, all ones
def test_a_meter_whose_serial_number_was_never_set_is_read_unchecked_not_remembered_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, never_set: str
) -> None:
    """Its register reads 0 (or all ones): no identity, every such meter answers with it. Before,
    "0" was remembered as its serial number and checked, two such meters swapped never told apart.
    Now it is read as a meter without one: its readings taken, nothing remembered (in memory or in
    the spool), and one warning for the run, naming the meter, its unit and bus, and what to do."""
    unset = _meter("UNSET", 5, 1234.0, never_set)
    spool = Spool(tmp_path / "s.sqlite")
    identities = MeterIdentities(spool)
    meter = MeterConfig("FLAT-5", 5)
    with ModbusRtuSimulator([unset], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
        polls = Polls(_rtu_bus(sim.port, meter), identities)
        with caplog.at_level(logging.WARNING):
            results = polls.run("FLAT-5", "FLAT-5", "FLAT-5")
    try:
        assert [error for _, error in results] == [None, None, None]
        assert [r.volume_m3 for r in polls.spooled] == [pytest.approx(unset.model.volume_m3(NOW))] * 3
        assert expected_serial_number(identities, meter) is None
        assert spool.load_identity("FLAT-5") is None
    finally:
        spool.close()
    assert _said(caplog, "gateway.modbus_identity") == [
        f"FLAT-5: the meter at unit 5 of bus rtu-1 ({sim.port}) answers with no serial number set (its register "
        "reads 0, or all ones): it is read unchecked, as a meter without one, and a meter exchanged or unit ids "
        "swapped there would be taken as this one; its serial_number cannot be configured. Set the meter's own "
        "serial number (the one on its label, with the manufacturer's tool), and it is checked from its next "
        "answer on; until then, only its unit_id says which meter it is: check it at the meter"
    ]


@pytest.mark.parametrize("pinned", [True, False])
def test_a_meter_known_by_its_serial_number_exchanged_for_one_never_given_one_is_refused(pinned: bool) -> None:
    """Configured with its serial number, or with its first answer's remembered: a meter answering
    with none set is another meter (a new one, never given its serial number), refused as any other.
    Before, it was refused as "the meter with serial number 0", a number no label carries."""
    old = _meter("OLD", 5, 1234.0, "40000005")
    meter = MeterConfig("FLAT-5", 5, serial_number="40000005" if pinned else None)
    with ModbusRtuSimulator([old], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
        polls = Polls(_rtu_bus(sim.port, meter))
        first = polls.run("FLAT-5")
        sim.slaves.exchange(5, _meter("NEW", 5, 0.0, "0"))
        refused_polls = Polls(_rtu_bus(sim.port, meter), polls.transport.identities)
        refused = refused_polls.run("FLAT-5", "FLAT-5")
    assert first[0][0] is not None and first[0][0].volume_m3 == pytest.approx(old.model.volume_m3(NOW))
    assert [reading for reading, _ in refused] == [None, None] and refused_polls.spooled == []
    error = refused[0][1]
    known = (
        "the serial number this meter is configured with"
        if pinned
        else "the serial number of this meter's first answer, at 2026-06-04T03:30:00Z"
    )
    assert error == (
        f"FLAT-5: at unit 5 of bus rtu-1 ({sim.port}) a meter with no serial number set (0, or all ones) answered, "
        f"not 40000005, {known}: its reading is not taken. A meter exchanged for one never given its serial "
        "number, or unit ids set anew by a technician? `aquami gateway scan` lists the bus's meters by serial "
        "number; set the new meter's serial number (the one on its label, with the manufacturer's tool), or, to "
        "read it unchecked, "
        + ("take serial_number out of this meter's configuration, " if pinned else "")
        + "give it a meter_id of its own, and reload"
    )
    assert expected_serial_number(polls.transport.identities, meter) == "40000005"


def test_a_serial_number_never_set_remembered_by_an_earlier_version_is_set_aside(tmp_path: Path) -> None:
    """An earlier version remembered "0" as a meter's serial number: the meter is read on (not refused
    for answering with none set), and its first real serial number is taken in its place."""
    spool = Spool(tmp_path / "s.sqlite")
    spool.save_identity("FLAT-5", "0", "2026-06-01T00:00:00.000Z")  # (an earlier version's row: no kind)
    identities = MeterIdentities(spool)
    meter = MeterConfig("FLAT-5", 5)
    unset = _meter("UNSET", 5, 1234.0, "0")
    try:
        with ModbusRtuSimulator([unset], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
            polls = Polls(_rtu_bus(sim.port, meter), identities)
            unchecked = polls.run("FLAT-5")
            sim.slaves.exchange(5, _meter("SET", 5, 1234.0, "40000005"))  # its serial number set at last
            taken = Polls(_rtu_bus(sim.port, meter), identities).run("FLAT-5")
        assert unchecked[0][1] is None and taken[0][1] is None
        assert expected_serial_number(identities, meter) == "40000005"
        assert spool.load_identity("FLAT-5") == ("40000005", "2026-06-04T03:30:00Z", "serial number")
    finally:
        spool.close()


# ---- a meter id moved from M-Bus to Modbus, or back ------------------------------------------------------


def test_a_meter_remembered_over_mbus_then_configured_on_modbus_is_read_and_its_serial_number_remembered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An M-Bus identification and a Modbus serial number are different numbers, not compared. Before,
    the remembered identification was expected of the Modbus meter, and every poll refused until its
    serial_number was configured. Now the identification is set aside (said once), the first Modbus
    answer's serial number taken and remembered, and checked from then on, after a restart too; moved
    back to M-Bus, its first identification is taken afresh likewise."""
    from gateway.mbus_identity import check_identification, expected_identification

    on_mbus = MeterConfig("FLAT-5", 5)
    spool = Spool(tmp_path / "s.sqlite")
    check_identification(MeterIdentities(spool), on_mbus, {"id": "11111111"}, NOW - timedelta(days=30), [on_mbus])
    spool.close()
    spool = Spool(tmp_path / "s.sqlite")  # a restart, the configuration now a Modbus meter's
    identities = MeterIdentities(spool)
    meter = MeterConfig("FLAT-5", 5)
    smart = _meter("SMART", 5, 1234.0, "40000005")
    try:
        with ModbusRtuSimulator([smart], LineSettings(baudrate=19200, parity="E"), clock=lambda: NOW) as sim:
            polls = Polls(_rtu_bus(sim.port, meter), identities)
            with caplog.at_level(logging.WARNING):
                results = polls.run("FLAT-5", "FLAT-5")
            sim.slaves.exchange(5, _meter("OTHER", 5, 0.0, "40000099"))
            refused = Polls(_rtu_bus(sim.port, meter), identities).run("FLAT-5")
        assert [error for _, error in results] == [None, None]
        assert [r.volume_m3 for r in polls.spooled] == [pytest.approx(smart.model.volume_m3(NOW))] * 2
        assert spool.load_identity("FLAT-5") == ("40000005", "2026-06-04T03:30:00Z", "serial number")
        assert refused[0][0] is None and "serial number 40000099 answered, not 40000005" in str(refused[0][1])
        assert _said(caplog, "gateway.meter_identity") == [
            "FLAT-5: its remembered M-Bus identification 11111111 (its first answer's, at 2026-05-05T03:30:00Z) "
            "is set aside: the meter is now read by Modbus, whose serial number cannot be compared with it; its "
            "serial number is checked from now on (its configured one, else its first Modbus answer's, remembered "
            "then)"
        ]
        # and back to M-Bus: its serial number set aside, its first identification taken
        check_identification(identities, on_mbus, {"id": "22222222"}, NOW + timedelta(days=1), [on_mbus])
        assert expected_identification(identities, on_mbus) == "22222222"
        assert expected_serial_number(identities, meter) is None
    finally:
        spool.close()
